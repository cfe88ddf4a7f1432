"""Order sensitivity of a trained synthetic-task transformer, per layer (definition:
:mod:`icl_interp.order`).

Each sequence draws one task (its own weights), P context sets of ``n_context`` points and one
set of queries, from stream ``ORDER_STREAM`` of the run's seed (never used in training or
evaluation). The readouts are the query predictions of every layer's probe and of the model's
read-out. Across orders: context set 0 under P seeded permutations; across sets (the scale):
the P context sets. Vector readouts (classification) average their output dimensions.

The model has no position embeddings, so under the prefix mask a permuted context only
permutes the keys of each attention sum: prefix models are order-invariant by construction
(to float32 error, any weights), and the prefix rows are a check of the instrument. Under the
causal mask layer 1 is order-free too (queries read the embedded context in one sum); order
enters from layer 2 on.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from icl_interp.order import order_sensitivity, seeded_permutations
from icl_interp.synthetic.model import SyntheticTransformer
from icl_interp.synthetic.tasks import SyntheticTask, make_tokens

ORDER_STREAM = 4
STATISTICS = ("across_orders", "across_sets")


def order_tokens(
    task: SyntheticTask,
    n_sequences: int,
    n_draws: int,
    *,
    n_context: int,
    n_queries: int,
    d_x: int,
    seed: int,
    order_seed: int = 0,
) -> dict[str, Float[Tensor, "draw seq pos d_token"]]:
    """Tokens of every draw: ``across_orders`` (set 0 permuted) and ``across_sets``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + ORDER_STREAM)
    x, y = task.sample(n_sequences, n_draws * n_context + n_queries, d_x, generator)
    split = n_draws * n_context
    sets_x = x[:, :split].unflatten(1, (n_draws, n_context)).transpose(0, 1)
    sets_y = y[:, :split].unflatten(1, (n_draws, n_context)).transpose(0, 1)
    orders = seeded_permutations(n_context, n_draws, order_seed)
    contexts = {
        "across_orders": (
            sets_x[0][:, orders].transpose(0, 1),
            sets_y[0][:, orders].transpose(0, 1),
        ),
        "across_sets": (sets_x, sets_y),
    }
    query_x = x[None, :, split:].expand(n_draws, -1, -1, -1)
    query_y = y[None, :, split:].expand(n_draws, -1, -1, -1)
    return {
        statistic: make_tokens(
            torch.cat([cx, query_x], dim=2).flatten(0, 1),
            torch.cat([cy, query_y], dim=2).flatten(0, 1),
            n_queries,
        ).unflatten(0, (n_draws, n_sequences))
        for statistic, (cx, cy) in contexts.items()
    }


@torch.no_grad()
def probe_order_sensitivity(
    model: SyntheticTransformer,
    task: SyntheticTask,
    *,
    n_sequences: int = 64,
    n_draws: int = 8,
    seed: int = 0,
    order_seed: int = 0,
) -> list[dict[str, Any]]:
    """Tidy rows (readout, layer, statistic, value): per probe layer (1..L) and the read-out
    (layer L), the order sensitivity and its across-sets scale over ``n_draws`` draws."""
    cfg = model.cfg
    tokens = order_tokens(
        task,
        n_sequences,
        n_draws,
        n_context=cfg.n_context,
        n_queries=cfg.n_queries,
        d_x=cfg.d_x,
        seed=seed,
        order_seed=order_seed,
    )
    device = next(model.parameters()).device
    rows = []
    for statistic, draws in tokens.items():
        output, probes = model.predict_queries(draws.flatten(0, 1).to(device))
        readouts = torch.cat([probes, output[None]]).unflatten(1, (n_draws, n_sequences))
        values = order_sensitivity(readouts.transpose(0, 1).cpu()).tolist()
        names = [("probe", layer + 1) for layer in range(cfg.n_layers)] + [("model", cfg.n_layers)]
        rows += [
            {
                "readout": readout,
                "layer": layer,
                "statistic": statistic,
                "value": value,
                "n_draws": n_draws,
                "n_sequences": n_sequences,
            }
            for (readout, layer), value in zip(names, values, strict=True)
        ]
    return rows


def order_summary(table: Any) -> Any:
    """Beside Table 1: per task x mask x sharing, the read-out's order sensitivity, its
    across-sets scale and their ratio, each the mean over seeds (with the number of seeds);
    rows in Table 1's order (PrefixLM-SL, CausalLM-SL, PrefixLM-UL, CausalLM-UL)."""
    model_rows = table[table["readout"] == "model"]
    wide = model_rows.pivot_table(
        index=["task", "mask", "sharing", "seed"], columns="statistic", values="value"
    ).reset_index()
    wide["ratio"] = wide["across_orders"] / wide["across_sets"]
    summary = wide.groupby(["task", "mask", "sharing"], sort=False).agg(
        across_orders=("across_orders", "mean"),
        across_sets=("across_sets", "mean"),
        ratio=("ratio", "mean"),
        n_seeds=("seed", "nunique"),
    )
    summary = summary.reset_index()
    rank = {"prefix": 0, "causal": 1}
    keys = summary["mask"].map(lambda mask: rank.get(mask, len(rank)))
    order = summary.assign(_rank=keys).sort_values(["task", "sharing", "_rank"], kind="stable")
    return order.drop(columns="_rank").reset_index(drop=True)


def order_summary_markdown(summary: Any) -> str:
    """``order_summary`` as a Markdown table, one row per variant (e.g. PrefixLM-SL)."""
    lines = [
        "| task | variant | var across orders | var across sets | ratio | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples(index=False):
        variant = f"{'PrefixLM' if row.mask == 'prefix' else row.mask.capitalize() + 'LM'}"
        lines.append(
            f"| {row.task} | {variant}-{row.sharing} | {row.across_orders:.3g} | "
            f"{row.across_sets:.3g} | {row.ratio:.3g} | {row.n_seeds} |"
        )
    return "\n".join(lines) + "\n"
