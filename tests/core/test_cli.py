import subprocess
import sys

from icl_interp.cli import main


def test_no_command_prints_help_and_returns_2() -> None:
    assert main([]) == 2


def test_unknown_command_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "icl_interp", "bogus"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice" in proc.stderr
