"""Order sensitivity, a known-answer check of the instrument: prefixLM ICL (full-batch GD) is
order-invariant to float precision, causalLM ICL (per-position GD) is not.

Float64 throughout. Prefix: every query prediction of every layer agrees across 6 orders to
1e-12 (values are O(1)). Causal and causal2: from layer 2 on they differ by more than 1e-3
(layer 1, one step from w = 0, reads a plain sum of the context), and the order variance
stays below the across-sets scale.
"""

from __future__ import annotations

import pytest
import torch

from icl_interp.lsa.config import LSAConfig
from icl_interp.lsa.order import order_sensitivity_rows, permuted, query_readouts
from icl_interp.order import order_sensitivity, seeded_permutations


def _context(n: int = 12, d: int = 4, batch: int = 5, n_queries: int = 7):
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, n + n_queries, d, generator=generator, dtype=torch.float64) * 2 - 1
    w = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    y = torch.einsum("bpd,bd->bp", x, w)
    return x[:, :n], y[:, :n], x[:, n:]


@pytest.mark.parametrize("form", ["matrix", "recursion"])
def test_prefix_is_order_invariant_and_causal_is_not(form: str) -> None:
    x, y, x_query = _context()
    orders_x, orders_y = permuted(x, y, seeded_permutations(x.shape[1], 6, seed=1))
    spread = {}
    for variant, eta in (("prefix", 1.0), ("causal", 1.0), ("causal2", 0.1)):
        readouts = query_readouts(
            variant, orders_x, orders_y, x_query, eta=eta, n_layers=8, form=form
        )
        spread[variant] = (readouts - readouts[:1]).abs().amax(dim=(0, 2, 3))
        assert readouts.abs().max() < 100
    assert float(spread["prefix"].max()) < 1e-12, spread["prefix"]
    for variant in ("causal", "causal2"):
        # layer 1 is one step from w = 0: a sum over the context, order-free in both forms
        assert float(spread[variant][:2].max()) < 1e-12
        assert float(spread[variant][2:].min()) > 1e-3, (variant, spread[variant])


def test_order_sensitivity_rows_on_small_paper_like_settings() -> None:
    config = LSAConfig(d=4, n_context=12, n_queries=10, n_sequences=6, n_layers=6, eta=1.0)
    rows = order_sensitivity_rows(config, n_orders=4, seed=0)
    by = {(r["variant"], r["statistic"], r["layer"]): r["value"] for r in rows}
    assert len(rows) == 3 * 2 * 7
    for layer in range(1, 7):
        assert by[("prefix", "across_orders", layer)] < 1e-24
        assert by[("prefix", "across_sets", layer)] > 1e-3
        for variant in ("causal", "causal2"):
            if layer < 2:
                continue
            assert by[(variant, "across_orders", layer)] > 1e-6
            assert by[(variant, "across_orders", layer)] < by[(variant, "across_sets", layer)]


def test_order_sensitivity_definition_by_hand() -> None:
    readouts = torch.tensor([[[1.0, 2.0]], [[3.0, 2.0]], [[5.0, 2.0]]])  # draw layer query
    assert torch.equal(order_sensitivity(readouts), torch.tensor([2.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        order_sensitivity(readouts[:1])
    orders = seeded_permutations(5, 3, seed=0)
    assert torch.equal(orders[0], torch.arange(5))
    assert torch.equal(orders.sort(dim=1).values, torch.arange(5).expand(3, 5))
    assert torch.equal(orders, seeded_permutations(5, 3, seed=0))
