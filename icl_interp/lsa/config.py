"""Settings of ``icl-interp lsa`` (``LSAConfig``) and its command-line options.

Import-light (no torch, numpy or pandas), so the CLI reports a mistyped option at once;
the computation lives in :mod:`icl_interp.lsa.experiment`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import (
    MAX_SEED,
    add_config_arguments,
    config_values,
    option,
    repeated,
    seed,
)

FORM_NAMES = ("recursion", "matrix")
DTYPE_NAMES = ("float64", "float32")
DEFAULT_OUT = Path("results/lsa")


@dataclass
class LSAConfig:
    """Settings of the LSA experiment; the defaults are the paper's (section 5.1, appendix D.1)."""

    d: int = option(16, "input dimension", type=int)
    n_context: int = option(40, "context examples per sequence", type=int)
    n_queries: int = option(200, "isolated queries per sequence", type=int)
    n_sequences: int = option(64, "sequences (tasks w)", type=int)
    eta: float = option(1.6, "prefix/causal step; each layer uses eta/n", type=float)
    eta_causal2: float = option(
        0.1, "causalLM2 step; position j uses eta/j (1.6 diverges there)", type=float
    )
    n_layers: int = option(50, "LSA layers", type=int)
    layer_mu_x: float = option(0.0, "input shift mu_x for the layer panels", type=float)
    stationary_max_context: int = option(
        300,
        "largest number of context examples in the stationary panel",
        flags=("--max-context",),
        type=int,
    )
    stationary_mu_x: Sequence[float] = option(
        (0.0, 1.0, 2.0, 3.0),
        "input shifts mu_x for the stationary panel (distinct values)",
        flags=("--mu-x",),
        nargs="+",
        type=float,
    )
    form: str = option(
        "recursion",
        "layer panels from the closed-form recursion or the explicit K,Q,V,P LSA stack",
        choices=sorted(FORM_NAMES),
    )
    dtype: str = option(
        "float64", "floating-point type of the LSA computations", choices=sorted(DTYPE_NAMES)
    )
    seed: int = option(0, "0..2**63-1", type=seed)

    def __post_init__(self) -> None:
        self.stationary_mu_x = tuple(float(mu) for mu in self.stationary_mu_x)
        for name in ("d", "n_context", "n_queries", "n_sequences", "stationary_max_context"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_layers < 0:
            raise UserError(f"n_layers must be >= 0, got {self.n_layers}")
        for name in ("eta", "eta_causal2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"{name} must be a positive number, got {value}")
        if not self.stationary_mu_x:
            raise UserError("stationary_mu_x needs at least one value")
        if not all(math.isfinite(mu) for mu in (*self.stationary_mu_x, self.layer_mu_x)):
            raise UserError("mu_x values must be finite numbers")
        twice = repeated(self.stationary_mu_x)
        if twice:
            raise UserError(
                f"stationary_mu_x repeats {', '.join(f'{mu:g}' for mu in twice)}; give each once"
            )
        if self.form not in FORM_NAMES:
            raise UserError(f"unknown form {self.form!r}; valid forms: {', '.join(FORM_NAMES)}")
        if self.dtype not in DTYPE_NAMES:
            raise UserError(f"unknown dtype {self.dtype!r}; valid dtypes: {', '.join(DTYPE_NAMES)}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"seed must be in 0..2**63-1, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LSAConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown LSAConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**values)

    @property
    def torch_dtype(self) -> Any:
        import torch

        return getattr(torch, self.dtype)

    def eta_for(self, variant: str) -> float:
        return self.eta_causal2 if variant == "causal2" else self.eta


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    add_config_arguments(parser, LSAConfig)
    parser.add_argument(
        "--no-figures", action="store_true", help="write results.csv and config.json only"
    )


def check_arguments(args: argparse.Namespace) -> None:
    """Validate the options before the computation's imports (the CLI calls this first)."""
    config_from_args(args)


def config_from_args(args: argparse.Namespace) -> LSAConfig:
    return LSAConfig(**config_values(LSAConfig, args))
