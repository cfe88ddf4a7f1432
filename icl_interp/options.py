"""Argument types and actions shared by the ``icl-interp`` subcommands (import-light: no torch).

- ``seed``: ``type=seed`` accepts an integer 0 .. 2**63-1 (what torch, numpy and the result
  folders' unit names all take); anything else is a one-line parser error, exit 2.
- ``Distinct``: ``action=Distinct`` for ``nargs="+"`` list options (``--seeds``, ``--mu-x``,
  ``--datasets``): a repeated value is a one-line parser error naming it (a repeated value
  would otherwise repeat every row it produces).
- ``add_backend_arguments``: ``--backend``, ``--workers``, ``--threads``, the same for every
  command that runs units through the run kernel (``icl_interp.runs``).
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


BACKEND_CHOICES = ("auto", "serial", "processes", "ray", "submitit")


def add_backend_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, units: str
) -> None:
    """``--backend``, ``--workers`` and ``--threads``: where a command's ``units`` run
    (``icl_interp.runs``); they change how fast, never a number."""
    parser.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help=f"where {units} run: serial (this process), processes (local), ray (local or "
        "RAY_ADDRESS), submitit (a SLURM job array, or local processes without SLURM); "
        "auto: serial for one worker, processes for more",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"{units} at a time (processes, ray; at most in flight for submitit)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per worker (default: torch's choice in this process, 1 per worker "
        "on the other backends)",
    )


def check_backend_options(backend: str, workers: int, threads: int | None) -> None:
    """A one-line ``UserError`` for a backend, worker count or thread count that cannot run."""
    from icl_interp.errors import UserError

    if backend not in BACKEND_CHOICES:
        raise UserError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
