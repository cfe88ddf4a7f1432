"""scripts/gpu_check.sh --dry-run: every step of the prepared GPU check, on CPU at tiny sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from analyses.gpu_check import Tolerance, _main, csv_agreement

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", str(out)],
        env=env, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {k: s["status"] for k, s in summary["steps"].items()} == {
        "tests": "passed", "lm": "passed", "synthetic": "passed",
    }  # fmt: skip
    assert "3 skipped" in summary["steps"]["tests"]["pytest"]
    agreement = pd.read_csv(out / "lm" / "agreement.csv")
    commands = {"layers", "compare", "adapt", "adapt-table"}
    assert set(agreement["command"]) == commands and agreement["passed"].all()
    rows = pd.read_csv(out / "synthetic" / "table1_rows.csv")
    assert len(rows) == 12 and (rows["steps"] == rows["total_steps"]).all()
    speed = json.loads((out / "synthetic" / "speed.json").read_text())
    assert speed["steps_per_second"] > 0 and speed["mfu"] is None
    assert "Self CPU" in (out / "synthetic" / "profile.txt").read_text()


def test_agreement_applies_the_tolerance(tmp_path: Path) -> None:
    for name, value in (("cpu", 1.0), ("dev", 1.0015)):
        (tmp_path / name).mkdir()
        pd.DataFrame({"layer": [0, 1], "value": [0.5, value], "seconds": [1, 9]}).to_csv(
            tmp_path / name / "m.csv", index=False
        )
    loose, tight = Tolerance(1e-3, 1e-3), Tolerance(1e-3, 0.0)
    rows = csv_agreement(tmp_path / "cpu", tmp_path / "dev", loose)
    assert [r["column"] for r in rows] == ["layer", "value"] and all(r["passed"] for r in rows)
    value = csv_agreement(tmp_path / "cpu", tmp_path / "dev", tight)[1]
    assert not value["passed"] and value["max_abs_diff"] == pytest.approx(1.5e-3)


@pytest.mark.parametrize(
    "argv", [["--budget-minutes", "0"], ["--bogus"], []], ids=["budget", "bogus", "no-out"]
)
def test_usage_mistakes_are_one_line(argv, capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OUT", raising=False)
    out = [str(tmp_path / "out")] if argv else []
    assert _main([*argv, *out, "--dry-run"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_refusals_are_one_line(capsys, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert _main([str(tmp_path / "full"), "--dry-run"]) == 2
    if not torch.cuda.is_available():
        assert _main([str(tmp_path / "new")]) == 2
        assert not (tmp_path / "new").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) <= 2
