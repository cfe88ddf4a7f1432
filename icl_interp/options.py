"""Argument types and actions shared by the ``icl-interp`` subcommands (import-light: no torch).

- ``seed``: ``type=seed`` accepts an integer 0 .. 2**63-1 (what torch, numpy and the result
  folders' unit names all take); anything else is a one-line parser error, exit 2.
- ``Distinct``: ``action=Distinct`` for ``nargs="+"`` list options (``--seeds``, ``--mu-x``,
  ``--datasets``): a repeated value is a one-line parser error naming it (a repeated value
  would otherwise repeat every row it produces).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

MAX_SEED = 2**63 - 1


def seed(text: str) -> int:
    """An argparse ``type``: a non-negative integer seed, at most ``MAX_SEED``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2**63-1, got {value}")
    return value


def repeated(values: Sequence[Any]) -> list[Any]:
    """The values that occur more than once in ``values``, each once, in first-seen order."""
    seen: set[Any] = set()
    twice: list[Any] = []
    for value in values:
        if value in seen and value not in twice:
            twice.append(value)
        seen.add(value)
    return twice


class Distinct(argparse.Action):
    """Store a list option's values, refusing repeats (``--seeds 0 0`` -> exit 2, one line)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        twice = repeated(list(values))
        if twice:
            shown = " ".join(str(v) for v in twice)
            parser.error(f"argument {option_string}: repeated value(s) {shown}; give each once")
        setattr(namespace, self.dest, list(values))
