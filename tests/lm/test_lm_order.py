"""Order sensitivity in LMs on tiny models: the readout by hand, rows, and known answers (one
demonstration has one order: zero spread; more demonstrations under either mask: some)."""

from __future__ import annotations

import math

import pytest
import torch

from icl_interp.lm.data import Example, build_prompts, get_dataset
from icl_interp.lm.models import tiny_random_model
from icl_interp.lm.order import (
    finetune_order_sensitivity,
    lm_order_sensitivity,
    true_label_probability,
)
from icl_interp.lm.record import Capture
from tests.helpers import assert_close

TEXTS = ["a good film", "a bad movie", "it was great", "boring and dull", "fun story",
         "the worst plot", "very funny", "dull acting", "best movie", "awful story"]  # fmt: skip


def test_true_label_probability_by_hand() -> None:
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0]], [[1.0, 3.0], [0.0, 0.0]]])
    result = Capture(
        resid=torch.zeros(2, 2, 1), attn_out=torch.zeros(2, 2, 1), attn_logits=[],
        label_logits=logits[:, -1], layer_label_logits=logits, labels=torch.tensor([0, 1]),
    )  # fmt: skip
    sigmoid2 = 1 / (1 + math.exp(-2))
    expected = torch.tensor([[0.5, sigmoid2], [sigmoid2, 0.5]], dtype=torch.float64)
    assert_close(true_label_probability(result), expected, atol=1e-12, what="p(true)")


@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_lm_order_sensitivity_rows_and_known_answers(mask: str) -> None:
    model = tiny_random_model("qwen2")
    spec = get_dataset("mr")
    examples = [Example({"text": t}, i % 2) for i, t in enumerate(TEXTS)]
    queries = examples[6:]
    prompts = build_prompts(model.tokenizer, spec, examples[:4], queries, max_len=None)
    others = [examples[2:6], examples[1:5]]
    rows = lm_order_sensitivity(
        model, model.tokenizer, spec, prompts, others, mask=mask, n_orders=4
    )
    n_layers = model.cfg.n_layers
    assert len(rows) == 2 * n_layers
    value = {(r["statistic"], r["layer"]): r["value"] for r in rows}
    assert all(value[("across_orders", layer)] > 1e-12 for layer in range(n_layers))
    assert all(value[("across_sets", layer)] > 1e-12 for layer in range(n_layers))
    single = build_prompts(model.tokenizer, spec, examples[:1], queries, max_len=None)
    rows = lm_order_sensitivity(
        model, model.tokenizer, spec, single, [examples[1:2]], mask=mask, n_orders=3
    )
    assert all(r["value"] == 0.0 for r in rows if r["statistic"] == "across_orders")


@pytest.mark.parametrize("method", ["gd", "lcgd"])
def test_finetuning_order_sensitivity_rows_and_known_answers(method: str) -> None:
    """SGD with batch 1 depends on the order of its steps (spread > 0); one demonstration has
    one order, and identical finetunings give identical readouts (spread exactly 0)."""
    model = tiny_random_model("qwen2")
    spec = get_dataset("mr")
    examples = [Example({"text": t}, i % 2) for i, t in enumerate(TEXTS)]
    queries = examples[6:]
    prompts = build_prompts(model.tokenizer, spec, examples[:4], queries, max_len=None)
    rows = finetune_order_sensitivity(
        model, model.tokenizer, spec, prompts, [examples[2:6]], method=method, lr=0.5,
        n_orders=3,
    )  # fmt: skip
    assert len(rows) == 2 * model.cfg.n_layers
    assert {(r["method"], r["mask"]) for r in rows} == {(method, "causal")}
    orders = [r["value"] for r in rows if r["statistic"] == "across_orders"]
    assert max(orders) > 1e-9
    single = build_prompts(model.tokenizer, spec, examples[:1], queries, max_len=None)
    rows = finetune_order_sensitivity(
        model, model.tokenizer, spec, single, [examples[1:2]], method=method, lr=0.5,
        n_orders=3,
    )  # fmt: skip
    assert all(r["value"] == 0.0 for r in rows if r["statistic"] == "across_orders")
    assert any(r["value"] > 0.0 for r in rows if r["statistic"] == "across_sets")
