"""``icl-interp lsa``: paper Figures 2 and 4 from the constructed LSA and its stationary points.

Figure 2: context and query MSE per layer of the prefixLM and causalLM constructions
(left, middle) and the query MSE of the causalLM stationary point as the number of
context examples grows, for x ~ U(-1, 1)^d + mu_x (right). Figure 4: the same for
causalLM2 (step eta/j). The layer curves come from the closed-form recursion
(:func:`icl_interp.lsa.reference.reference_predictions`) or, with ``form="matrix"``, from
the LSA stack with explicit K, Q, V, P (:func:`icl_interp.lsa.model.lsa_predictions`);
the stationary curves from forward substitution (:mod:`icl_interp.lsa.stationary`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lsa.model import lsa_predictions
from icl_interp.lsa.reference import reference_predictions
from icl_interp.lsa.stationary import check_step_size, contraction_factor, stationary_weights
from icl_interp.results import write_config, write_csv, write_figure

LAYER_VARIANTS = ("prefix", "causal", "causal2")
STATIONARY_VARIANTS = ("causal", "causal2")
DTYPES = {"float64": torch.float64, "float32": torch.float32}
FORMS = {"recursion": reference_predictions, "matrix": lsa_predictions}
MEAN_OVER = {
    "context": "sequences x context positions",
    "query": "sequences x queries",
}


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
        if self.form not in FORMS:
            raise UserError(f"unknown form {self.form!r}; valid forms: {', '.join(FORMS)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; valid dtypes: {', '.join(DTYPES)}")
        if self.seed < 0:
            raise UserError(f"seed must be >= 0, got {self.seed}")

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
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def eta_for(self, variant: str) -> float:
        return self.eta_causal2 if variant == "causal2" else self.eta


def child_generators(seed: int, count: int) -> list[torch.Generator]:
    """Independent torch generators derived from one seed (numpy SeedSequence spawning)."""
    children = np.random.SeedSequence(seed).spawn(count)
    return [torch.Generator().manual_seed(int(c.generate_state(1, np.uint64)[0])) for c in children]


def sample_linear_regression(
    n_sequences: int,
    n_points: int,
    d: int,
    *,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> tuple[Float[Tensor, "batch point d"], Float[Tensor, "batch d"]]:
    """Centred inputs u ~ U(-1, 1)^d and task weights w ~ N(0, I), one w per sequence.

    Inputs are x = u + mu_x and labels y = w . x; sampling u once lets every mu_x reuse it.
    Sampled in float64 and then cast, so every ``dtype`` sees the same draws.
    """
    inputs = torch.rand(n_sequences, n_points, d, generator=generator, dtype=torch.float64)
    weights = torch.randn(n_sequences, d, generator=generator, dtype=torch.float64)
    return (inputs * 2 - 1).to(dtype), weights.to(dtype)


def layer_curves(
    config: LSAConfig, x: Float[Tensor, "batch pos d"], w: Float[Tensor, "batch d"]
) -> list[dict[str, Any]]:
    """Context and query MSE per layer of every variant (mean over sequences and positions).

    ``config.form`` picks the closed-form recursion (fast) or the LSA stack in matrix
    form with explicit K, Q, V, P; the two agree to ~1e-12 in float64 (tested).
    """
    y = einsum(x, w, "batch pos d, batch d -> batch pos")
    rows = []
    for variant in LAYER_VARIANTS:
        eta = config.eta_for(variant)
        predictions = FORMS[config.form](
            variant, x, y[:, : config.n_context], eta=eta, n_layers=config.n_layers
        )
        squared_errors = (predictions - y).pow(2)
        by_split = {
            "context": squared_errors[..., : config.n_context].mean(dim=(1, 2)),
            "query": squared_errors[..., config.n_context :].mean(dim=(1, 2)),
        }
        for split, mse in by_split.items():
            rows += [
                {
                    "panel": f"{split}_mse_vs_layer",
                    "variant": variant,
                    "evaluated_on": split,
                    "mu_x": config.layer_mu_x,
                    "eta": eta,
                    "n_context": config.n_context,
                    "layer": layer,
                    "metric": "mse",
                    "value": float(value),
                    "mean_over": MEAN_OVER[split],
                }
                for layer, value in enumerate(mse.tolist())
            ]
    return rows


def stationary_curves(
    config: LSAConfig, u: Float[Tensor, "batch point d"], w: Float[Tensor, "batch d"]
) -> list[dict[str, Any]]:
    """Query MSE of the causal(2) stationary point w_n* for n = 1..max, per mu_x.

    The first ``stationary_max_context`` rows of ``u`` are the context pool (w_n* uses its
    first n), the rest are queries. Mean over sequences and queries, computed as
    e^T (mean_q x_q x_q^T) e with e = w_n* - w.
    """
    n_max = config.stationary_max_context
    rows = []
    for variant in STATIONARY_VARIANTS:
        for mu_x in config.stationary_mu_x:
            x = u + mu_x
            y = einsum(x, w, "batch pos d, batch d -> batch pos")
            weight_errors = stationary_weights(variant, x[:, :n_max], y[:, :n_max]) - w[:, None]
            queries = x[:, n_max:]
            query_second_moment = queries.mT @ queries / queries.shape[1]
            per_sequence = ((weight_errors @ query_second_moment) * weight_errors).sum(-1)
            mse = per_sequence.mean(dim=0)
            rows += [
                {
                    "panel": "stationary_query_mse_vs_n",
                    "variant": variant,
                    "evaluated_on": "query",
                    "mu_x": mu_x,
                    "eta": float("nan"),
                    "n_context": n,
                    "layer": float("nan"),
                    "metric": "mse",
                    "value": float(value),
                    "mean_over": MEAN_OVER["query"],
                }
                for n, value in enumerate(mse.tolist(), start=1)
            ]
    return rows


def run_experiment(
    config: LSAConfig, out: Path | None = None, *, figures: bool = True
) -> pd.DataFrame:
    """Compute every plotted point; with ``out``, write results.csv, config.json and figures.

    Returns the tidy table. Raises UserError before any LSA layer runs when a step size
    diverges on the sampled data.
    """
    with single_threaded_torch():
        table, contraction = compute_curves(config)
    if out is not None:
        write_results(Path(out), config, table, contraction, figures=figures)
    return table


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run torch ops on one thread: these tensors are small, so threading costs more than it saves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compute_curves(config: LSAConfig) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """The tidy table of every plotted point and each variant's per-sequence contraction factor."""
    layer_generator, stationary_generator = child_generators(config.seed, 2)
    u, w = sample_linear_regression(
        config.n_sequences,
        config.n_context + config.n_queries,
        config.d,
        generator=layer_generator,
        dtype=config.torch_dtype,
    )
    x = u + config.layer_mu_x
    x_context = x[:, : config.n_context]
    for variant in LAYER_VARIANTS:
        check_step_size(variant, x_context, eta=config.eta_for(variant))
    contraction = {
        variant: contraction_factor(variant, x_context, eta=config.eta_for(variant))
        for variant in LAYER_VARIANTS
    }
    stationary_u, stationary_w = sample_linear_regression(
        config.n_sequences,
        config.stationary_max_context + config.n_queries,
        config.d,
        generator=stationary_generator,
        dtype=config.torch_dtype,
    )
    table = pd.DataFrame(
        layer_curves(config, x, w) + stationary_curves(config, stationary_u, stationary_w)
    )
    return table, contraction


def write_results(
    out: Path,
    config: LSAConfig,
    table: pd.DataFrame,
    contraction: dict[str, Tensor],
    *,
    figures: bool,
) -> None:
    """results.csv, config.json (with how each panel averages) and figure2/figure4 PNG + PDF."""
    write_csv(out / "results.csv", table)
    write_config(
        out,
        config,
        averaging={
            "layer panels": "MSE = mean over sequences and over the context (left) or "
            "query (middle) positions of each sequence",
            "stationary panel": "MSE of w_n* on the isolated queries = mean over sequences "
            "and queries, for each n = 1..stationary_max_context",
        },
        contraction_factor={
            variant: {
                "max_over_sequences": float(factor.max()),
                "median_over_sequences": float(factor.median()),
            }
            for variant, factor in contraction.items()
        },
    )
    if figures:
        from icl_interp.lsa.plots import FIGURES, plot_lsa_figure

        for figure in FIGURES:
            write_figure(out / figure, plot_lsa_figure(table, figure))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = LSAConfig()
    parser.add_argument("--out", type=Path, default=Path("results/lsa"), help="results folder")
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
        default=list(defaults.stationary_mu_x),
        help="input shifts mu_x for the stationary panel",
    )
    parser.add_argument(
        "--max-context",
        type=int,
        default=defaults.stationary_max_context,
        help="largest number of context examples in the stationary panel",
    )
    parser.add_argument(
        "--form",
        choices=sorted(FORMS),
        default=defaults.form,
        help="layer panels from the closed-form recursion or the explicit K,Q,V,P LSA stack",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=defaults.dtype)
    parser.add_argument(
        "--no-figures", action="store_true", help="write results.csv and config.json only"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)


def run(args: argparse.Namespace) -> int:
    config = LSAConfig(
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
    run_experiment(config, args.out, figures=not args.no_figures)
    figures = "" if args.no_figures else ", figure2.png/pdf, figure4.png/pdf"
    print(f"wrote {args.out}/results.csv, config.json{figures}")
    return 0
