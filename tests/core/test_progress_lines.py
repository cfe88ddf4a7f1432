"""Logs of long runs: where stderr is not a terminal, stages write plain, throttled lines with
elapsed time and an estimate of what is left; ``--quiet`` silences them; results are unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\[\s*\d+ s\] \S")
TINY_LSA = ["--d", "4", "--n-context", "10", "--n-queries", "5", "--n-sequences", "3",
            "--n-layers", "6", "--max-context", "20", "--mu-x", "0", "2", "--eta", "0.5",
            "--no-figures"]  # fmt: skip


def _run(argv: list[str], every: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"TQDM_DISABLE", "ICL_INTERP_QUIET"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["ICL_INTERP_LOG_EVERY"] = every
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, env=env, cwd=REPO, check=False
    )


def test_a_log_gets_throttled_lines_per_stage_with_time_left() -> None:
    code = (
        "import time\n"
        "from icl_interp.progress import progress, stage\n"
        "with stage('job'):\n"
        "    for _ in progress(range(4), desc='units', unit='unit'):\n"
        "        for _ in progress(range(8), desc='finetuning', unit='step'):\n"
        "            time.sleep(0.05)\n"
    )
    proc = _run(["-c", code], every="0.25")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines), proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr
    assert any(
        re.search(r"units \d/4( \(~\d+ s left\))? > finetuning \d/8 step: \d+ s, ~\d+ s left", line)
        for line in lines
    )
    assert any(line.endswith("job ...") for line in lines)
    assert re.search(r"job: done in \d+ s$", lines[-1]), proc.stderr
    assert len(lines) <= 2 + 1.6 / 0.25 + 2, proc.stderr  # at most one line per interval


def test_quick_steps_say_nothing() -> None:
    code = "from icl_interp.progress import progress\nfor _ in progress(range(50)): pass\n"
    proc = _run(["-c", code], every="5")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_quiet_silences_the_lines_and_results_are_the_same(tmp_path: Path) -> None:
    loud = _run(["-m", "icl_interp", "lsa", *TINY_LSA, "--out", str(tmp_path / "loud")], "0")
    quiet = _run(
        ["-m", "icl_interp", "lsa", *TINY_LSA, "--quiet", "--out", str(tmp_path / "quiet")], "0"
    )
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    assert "icl-interp lsa" in loud.stderr and all(
        LINE.match(line) for line in loud.stderr.splitlines()
    ), loud.stderr
    results = "results.csv"
    assert (tmp_path / "loud" / results).read_bytes() == (tmp_path / "quiet" / results).read_bytes()
