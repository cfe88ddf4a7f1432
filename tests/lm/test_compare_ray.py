"""``icl-interp compare --backend ray|processes|submitit --workers N``: units on a local Ray
cluster, local processes or a submitit job array (its local executor) give the serial run's
files byte for byte, and the serial path never needs Ray."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from icl_interp.cli import main
from icl_interp.lm.compare import run_compare
from tests.lm.test_compare import TINY

GRID = dataclasses.replace(
    TINY, seeds=(0, 1), n_test=2, methods=("gd",), masks=("causal",), bootstrap=40
)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid run serially with Ray blocked (so it never imports it) on one torch thread, as
    each worker has."""
    out = tmp_path_factory.mktemp("serial")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as blocked:
        blocked.setitem(sys.modules, "ray", None)
        try:
            torch.set_num_threads(1)
            run_compare(GRID, out, figures=False)
        finally:
            torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("backend", ["processes", "ray", "submitit"])
def test_every_backend_writes_the_serial_runs_files_byte_for_byte(
    backend: str,
    serial_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every file but the timings and config.json (which holds the command line)."""
    pytest.importorskip({"processes": "concurrent.futures"}.get(backend, backend))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / backend
    run_compare(dataclasses.replace(GRID, workers=2, backend=backend), out, figures=False)
    if backend == "ray":
        import ray

        assert not ray.is_initialized(), "the Ray started for the run is shut down"
    files = sorted(
        p.relative_to(serial_run)
        for p in serial_run.rglob("*")
        if p.is_file() and not p.name.endswith("timings.json") and p.name != "config.json"
    )
    assert {Path("metrics.csv"), Path("summary.csv"), Path("bootstrap.csv")} <= set(files)
    assert len(list((out / "units").glob("*.csv"))) == 2 * 4
    for path in files:
        assert (serial_run / path).read_bytes() == (out / path).read_bytes(), path
    capsys.readouterr()
    run_compare(GRID, out, figures=False)
    assert "resuming: 2 of 2 units already done" in capsys.readouterr().out


def test_workers_without_ray_is_a_one_line_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    argv = ["--models", "tiny-gemma3", "--source", "package", "--out", str(out)]
    assert main(["compare", *argv, "--backend", "ray", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install "icl-interp[ray]"' in err and len(err.splitlines()) == 1
    assert not out.exists()
