"""The notebooks are front doors: stored with small outputs, runnable from a fresh clone with no
prior command (each makes its tiny results folder in a temporary directory), and writing nothing
into the checkout. ``tests/lm/test_compare.py`` and ``tests/lsa/test_experiment.py`` also run
them on a results folder given through ``ICL_INTERP_RESULTS``."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.helpers import run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_with_small_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    stored = sum(bool(cell.get("outputs")) for cell in code)
    assert code and stored >= len(code) // 2, f"{path.name}: run scripts/refresh_notebooks.py"
    assert not any(
        output.get("output_type") == "error" for cell in code for output in cell.get("outputs", [])
    ), f"{path.name} was stored with an error"
    assert path.stat().st_size < 1_000_000, f"{path.name}: {path.stat().st_size} bytes"


def _tree(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*") if ".ipynb_checkpoints" not in p.parts
    }


def test_compare_results_runs_from_a_fresh_clone_and_writes_nothing_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ICL_INTERP_RESULTS", raising=False)
    before = _tree(ROOT / "notebooks")
    run_notebook(ROOT / "notebooks" / "compare_results.ipynb", timeout=300)
    assert _tree(ROOT / "notebooks") == before
