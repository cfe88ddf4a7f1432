"""Test helpers shared across test modules."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, atol: float, rtol: float = 0.0, what: str = ""
) -> None:
    """torch.testing.assert_close with a stated tolerance and a message naming what was compared."""
    torch.testing.assert_close(
        actual,
        expected,
        atol=atol,
        rtol=rtol,
        msg=lambda m: f"{what}: {m}" if what else m,
    )


def run_notebook(path: Path, *, cwd: Path | None = None, timeout: int = 600) -> None:
    """Execute a notebook top to bottom in this interpreter's kernel; any cell error fails the test."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or path.parent)}},
    ).execute()


def tiny_table(training: dict[str, Any] | None = None, **table: Any) -> Any:
    """adapt-table's ``tiny`` preset on the packaged data, ``table`` overriding the table's
    settings and ``training`` those of the adaptation it embeds."""
    from icl_interp.lm.adapt.config import AdaptConfig
    from icl_interp.lm.adapt.table_config import PRESETS, TableConfig

    preset = PRESETS["tiny"]
    merged = {**preset["training"], "data_dir": str(SHARED_DATA), **(training or {})}
    return TableConfig(**{**preset, **table, "training": AdaptConfig(**merged)})


def options_without_help(parser: argparse.ArgumentParser) -> list[str]:
    """The options of ``parser`` and of its subcommands that have no help."""
    bare = []
    for action in parser._actions:  # noqa: SLF001
        if not action.help:
            bare.append("/".join(action.option_strings) or action.dest)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                bare += [f"{name} {option}" for option in options_without_help(sub)]
    return bare
