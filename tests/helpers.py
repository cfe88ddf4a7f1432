"""Test helpers shared across test modules."""

from __future__ import annotations

from pathlib import Path

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
