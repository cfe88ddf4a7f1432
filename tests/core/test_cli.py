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


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from icl_interp.cli import SUBCOMMANDS, build_parser

    missing = []
    for name in SUBCOMMANDS:
        (sub,) = [
            a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction)
        ]  # noqa: SLF001
        for action in sub.choices[name]._actions:  # noqa: SLF001
            if not isinstance(action, argparse._HelpAction) and not action.help:  # noqa: SLF001
                missing.append(f"{name} {(action.option_strings or [action.dest])[0]}")
    assert not missing, f"options without help: {missing}"
