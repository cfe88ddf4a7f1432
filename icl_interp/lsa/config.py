"""Settings of ``icl-interp lsa`` (``LSAConfig``) and its command-line options.

Import-light (no torch, numpy or pandas), so the CLI reports a mistyped option at once;
the computation lives in :mod:`icl_interp.lsa.experiment`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icl_interp.errors import UserError
from icl_interp.options import MAX_SEED, Distinct, repeated, seed

FORM_NAMES = ("recursion", "matrix")
DTYPE_NAMES = ("float64", "float32")
DEFAULT_OUT = Path("results/lsa")


@dataclass
class LSAConfig:
    """Settings of the LSA experiment; the defaults are the paper's (section 5.1, appendix D.1)."""

    d: int = 16
    n_context: int = 40
    n_queries: int = 200
    n_sequences: int = 64
    eta: float = 1.6
    eta_causal2: float = 0.1
    n_layers: int = 50
    layer_mu_x: float = 0.0
    stationary_max_context: int = 300
    stationary_mu_x: Sequence[float] = field(default=(0.0, 1.0, 2.0, 3.0))
    form: str = "recursion"
    dtype: str = "float64"
    seed: int = 0

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
    defaults = LSAConfig()
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--d", type=int, default=defaults.d, help="input dimension")
    parser.add_argument(
        "--n-context", type=int, default=defaults.n_context, help="context examples per sequence"
    )
    parser.add_argument(
        "--n-queries", type=int, default=defaults.n_queries, help="isolated queries per sequence"
    )
    parser.add_argument(
        "--n-sequences", type=int, default=defaults.n_sequences, help="sequences (tasks w)"
    )
    parser.add_argument(
        "--eta", type=float, default=defaults.eta, help="prefix/causal step; each layer uses eta/n"
    )
    parser.add_argument(
        "--eta-causal2",
        type=float,
        default=defaults.eta_causal2,
        help="causalLM2 step; position j uses eta/j (1.6 diverges there)",
    )
    parser.add_argument("--n-layers", type=int, default=defaults.n_layers, help="LSA layers")
    parser.add_argument(
        "--layer-mu-x",
        type=float,
        default=defaults.layer_mu_x,
        help="input shift mu_x for the layer panels",
    )
    parser.add_argument(
        "--mu-x",
        type=float,
        nargs="+",
        action=Distinct,
        default=list(defaults.stationary_mu_x),
        help="input shifts mu_x for the stationary panel (distinct values)",
    )
    parser.add_argument(
        "--max-context",
        type=int,
        default=defaults.stationary_max_context,
        help="largest number of context examples in the stationary panel",
    )
    parser.add_argument(
        "--form",
        choices=sorted(FORM_NAMES),
        default=defaults.form,
        help="layer panels from the closed-form recursion or the explicit K,Q,V,P LSA stack",
    )
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPE_NAMES),
        default=defaults.dtype,
        help="floating-point type of the LSA computations",
    )
    parser.add_argument(
        "--no-figures", action="store_true", help="write results.csv and config.json only"
    )
    parser.add_argument("--seed", type=seed, default=defaults.seed, help="0..2**63-1")


def check_arguments(args: argparse.Namespace) -> None:
    """Validate the options before the computation's imports (the CLI calls this first)."""
    config_from_args(args)


def config_from_args(args: argparse.Namespace) -> LSAConfig:
    return LSAConfig(
        d=args.d,
        n_context=args.n_context,
        n_queries=args.n_queries,
        n_sequences=args.n_sequences,
        eta=args.eta,
        eta_causal2=args.eta_causal2,
        n_layers=args.n_layers,
        layer_mu_x=args.layer_mu_x,
        stationary_max_context=args.max_context,
        stationary_mu_x=tuple(args.mu_x),
        form=args.form,
        dtype=args.dtype,
        seed=args.seed,
    )
