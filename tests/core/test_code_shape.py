"""The package's shape, kept by a test: no function longer than ``MAX_FUNCTION_LINES`` (a
function that long does several things; split it into named steps)."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_FUNCTION_LINES = 80
PACKAGE = Path(__file__).resolve().parents[2] / "icl_interp"


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines})"
                    )
    assert not long, long
