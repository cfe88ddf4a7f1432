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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lsa.config import (  # noqa: F401  (LSAConfig, add_arguments: re-exported)
    FORM_NAMES,
    LSAConfig,
    add_arguments,
    config_from_args,
)
from icl_interp.lsa.model import lsa_predictions
from icl_interp.lsa.reference import reference_predictions
from icl_interp.lsa.stationary import check_step_size, contraction_factor, stationary_weights
from icl_interp.results import ResultFolder, write_csv, write_figure
from icl_interp.threads import torch_threads

COMMAND = "lsa"
LAYER_VARIANTS = ("prefix", "causal", "causal2")
STATIONARY_VARIANTS = ("causal", "causal2")
FORMS = {"recursion": reference_predictions, "matrix": lsa_predictions}
assert tuple(FORMS) == FORM_NAMES
MEAN_OVER = {
    "context": "sequences x context positions",
    "query": "sequences x queries",
}


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

    Returns the tidy table. Raises UserError before anything is written when ``out`` is not
    this command's folder (another command's, other settings, a file, not writable) or when
    a step size diverges on the sampled data. The same config gives byte-identical files.
    """
    if out is not None:
        ResultFolder(Path(out), COMMAND, config).check()
    # one thread: these tensors are small, so threading costs more than it saves
    with torch_threads(1), _memory_is_a_user_error(config):
        table, contraction = compute_curves(config)
    if out is not None:
        write_results(Path(out), config, table, contraction, figures=figures)
    return table


@contextmanager
def _memory_is_a_user_error(config: LSAConfig) -> Iterator[None]:
    """Sizes too large for this machine's memory: one line naming them, not a traceback."""
    try:
        yield
    except (MemoryError, torch.OutOfMemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "allocate" not in str(err):
            raise
        raise UserError(
            f"not enough memory for d={config.d}, n_sequences={config.n_sequences}, "
            f"n_context={config.n_context}, n_queries={config.n_queries}, "
            f"max_context={config.stationary_max_context}; use smaller sizes"
        ) from None


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
    """Claim ``out`` (config.json, with how each panel averages), then results.csv and
    figure2/figure4 PNG + PDF."""
    ResultFolder(out, COMMAND, config).claim(
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
    write_csv(out / "results.csv", table)
    if figures:
        from icl_interp.lsa.plots import FIGURES, plot_lsa_figure

        for figure in FIGURES:
            write_figure(out / figure, plot_lsa_figure(table, figure))


def run(args: argparse.Namespace) -> int:
    run_experiment(config_from_args(args), args.out, figures=not args.no_figures)
    figures = "" if args.no_figures else ", figure2.png/pdf, figure4.png/pdf"
    print(f"wrote {args.out}/results.csv, config.json{figures}")
    return 0
