"""Order sensitivity of the constructed LSA, per layer (definition: :mod:`icl_interp.order`).

Each sequence draws one task ``w``, P context sets of ``n_context`` points and one set of
queries. The readout is the query prediction of each layer. Across orders: context set 0
under P seeded permutations. Across sets (the scale): the P context sets in their drawn
order. PrefixLM ICL is full-batch GD, whose iterates are sums over the context and so do not
depend on its order (to float error); causalLM ICL is per-position GD, whose query weight
w_n depends on which example came when. Layer 1 (one step from w = 0) is a plain sum of the
context for every variant, so order enters from layer 2 on.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from icl_interp.lsa.config import LSAConfig
from icl_interp.lsa.experiment import FORMS, LAYER_VARIANTS, child_generators
from icl_interp.lsa.stationary import check_step_size
from icl_interp.order import order_sensitivity, seeded_permutations

STATISTICS = ("across_orders", "across_sets")


def query_readouts(
    variant: str,
    x_context: Float[Tensor, "draw batch n d"],
    y_context: Float[Tensor, "draw batch n"],
    x_query: Float[Tensor, "batch query d"],
    *,
    eta: float,
    n_layers: int,
    form: str = "recursion",
) -> Float[Tensor, "draw layer batch query"]:
    """Per layer, the query predictions after each of the ``draw`` contexts (one batched run)."""
    draws, batch = x_context.shape[:2]
    x = torch.cat([x_context, x_query.expand(draws, *x_query.shape)], dim=2)
    predictions = FORMS[form](
        variant, x.flatten(0, 1), y_context.flatten(0, 1), eta=eta, n_layers=n_layers
    )
    queries = predictions[..., x_context.shape[2] :]
    return queries.unflatten(1, (draws, batch)).transpose(0, 1)


def permuted(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"], orders: Int[Tensor, "order n"]
) -> tuple[Float[Tensor, "order batch n d"], Float[Tensor, "order batch n"]]:
    """The same context in each of ``orders`` (every sequence reordered alike)."""
    return x[:, orders].transpose(0, 1), y[:, orders].transpose(0, 1)


def order_sensitivity_rows(
    config: LSAConfig, *, n_orders: int = 8, seed: int = 0
) -> list[dict[str, Any]]:
    """Tidy rows: per variant and layer, the order sensitivity and its across-sets scale.

    Uses ``config``'s sizes, step sizes, dtype and form (mu_x = ``layer_mu_x``); ``n_orders``
    is P for both statistics. Raises UserError when a step size diverges on a context set.
    """
    if n_orders < 2:
        raise ValueError(f"n_orders must be >= 2, got {n_orders}")
    n, d = config.n_context, config.d
    (generator,) = child_generators(config.seed, 1)
    points = n_orders * n + config.n_queries
    x = torch.rand(config.n_sequences, points, d, generator=generator, dtype=torch.float64)
    w = torch.randn(config.n_sequences, d, generator=generator, dtype=torch.float64)
    x = (x * 2 - 1 + config.layer_mu_x).to(config.torch_dtype)
    y = torch.einsum("bpd,bd->bp", x, w.to(config.torch_dtype))
    sets_x = x[:, : n_orders * n].unflatten(1, (n_orders, n)).transpose(0, 1)
    sets_y = y[:, : n_orders * n].unflatten(1, (n_orders, n)).transpose(0, 1)
    x_query = x[:, n_orders * n :]
    orders_x, orders_y = permuted(sets_x[0], sets_y[0], seeded_permutations(n, n_orders, seed))
    rows = []
    for variant in LAYER_VARIANTS:
        eta = config.eta_for(variant)
        check_step_size(variant, sets_x.flatten(0, 1), eta=eta)
        draws = {"across_orders": (orders_x, orders_y), "across_sets": (sets_x, sets_y)}
        for statistic, (cx, cy) in draws.items():
            readouts = query_readouts(
                variant, cx, cy, x_query, eta=eta, n_layers=config.n_layers, form=config.form
            )
            values = order_sensitivity(readouts.flatten(2))
            rows += [
                {
                    "variant": variant,
                    "statistic": statistic,
                    "layer": layer,
                    "value": float(value),
                    "n_draws": n_orders,
                    "eta": eta,
                    "n_context": n,
                    "form": config.form,
                }
                for layer, value in enumerate(values.tolist())
            ]
    return rows
