"""``icl-interp compare --workers N``: units on a local Ray cluster give the serial run's files,
and the serial path never needs Ray."""

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


def test_ray_workers_write_the_serial_runs_files_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every file but the timings and config.json (which holds the command line); the serial
    run has Ray blocked (so it never imports it) and one torch thread, as each worker has."""
    ray = pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with monkeypatch.context() as blocked:
            blocked.setitem(sys.modules, "ray", None)
            run_compare(GRID, tmp_path / "serial", figures=False)
    finally:
        torch.set_num_threads(threads)
    run_compare(dataclasses.replace(GRID, workers=2), tmp_path / "ray", figures=False)
    assert not ray.is_initialized(), "the Ray started for the run is shut down"
    files = sorted(
        p.relative_to(tmp_path / "serial")
        for p in (tmp_path / "serial").rglob("*")
        if p.is_file() and not p.name.endswith("timings.json") and p.name != "config.json"
    )
    assert {Path("metrics.csv"), Path("summary.csv"), Path("bootstrap.csv")} <= set(files)
    assert len(list((tmp_path / "ray" / "units").glob("*.csv"))) == 2 * 4
    for path in files:
        assert (tmp_path / "serial" / path).read_bytes() == (
            tmp_path / "ray" / path
        ).read_bytes(), path
    capsys.readouterr()
    run_compare(GRID, tmp_path / "ray", figures=False)
    assert "resuming: 2 of 2 units already done" in capsys.readouterr().out


def test_workers_without_ray_is_a_one_line_error_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    argv = ["--models", "tiny-gemma3", "--source", "package", "--out", str(out)]
    assert main(["compare", *argv, "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert 'pip install "icl-interp[ray]"' in err and len(err.splitlines()) == 1
    assert not out.exists()
