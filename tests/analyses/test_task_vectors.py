"""analyses/task_vectors.py through its ``_main(argv)`` on a tiny model: tidy table, units
reused on a rerun, figure, one-line errors; with ../shared/data, the other-data control."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from analyses import task_vectors
from tests.helpers import SHARED_DATA

TINY = ["--models", "tiny-gemma3", "--k", "2", "--n-test", "3", "--seeds", "0", "1"]


def test_task_vectors_driver_on_a_tiny_model(tmp_path: Path) -> None:
    argv = [*TINY, "--datasets", "mr", "--source", "package", "--out", str(tmp_path)]
    assert task_vectors._main(argv) == 0
    table = pd.read_csv(tmp_path / "task_vectors.csv")
    n_layers = 3
    assert len(table) == 2 * 2 * (2 + 2 * n_layers), "seeds x masks x (zsl, icl, 2 sources x L)"
    assert set(table["condition"]) == {"zero_shot", "icl", "task_vector", "rotated_labels"}
    assert set(table["mask"]) == {"causal", "prefix"} and table["value"].between(0, 1).all()
    assert table.loc[table["condition"] == "icl", "layer"].isna().all()
    assert (tmp_path / "figure_tiny-gemma3.png").exists()
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "units").iterdir()}
    assert len(stamps) == 4
    assert task_vectors._main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "finished units are reused"


def test_bad_options_are_one_line_errors(capsys, tmp_path: Path) -> None:
    assert task_vectors._main(["--masks", "full", "--out", str(tmp_path)]) == 2
    assert task_vectors._main(["--sources", "icl", "--out", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason="needs ../shared/data (SST-2)")
def test_other_data_control(tmp_path: Path) -> None:
    argv = [*TINY[:-1], "--datasets", "mr", "sst2", "--masks", "causal", "--no-figures",
            "--data-dir", str(SHARED_DATA), "--out", str(tmp_path)]  # fmt: skip
    assert task_vectors._main(argv) == 0
    table = pd.read_csv(tmp_path / "task_vectors.csv")
    assert "other_data" in set(table["condition"])
    assert set(table.groupby("data")["other_data"].first()) == {"mr", "sst2"}
