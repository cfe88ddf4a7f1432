"""Order sensitivity of ICL in a pretrained LM, per layer (definition: :mod:`icl_interp.order`).

The readout is the true label's probability from the logit lens at the last query position
(softmax over the data set's label tokens, ``icl_interp.lm.capture``). Across orders: the
demonstrations of one ``PromptSet`` (as packed) under P seeded permutations; across sets (the
scale): P demonstration sets with the same queries, the first being the ``PromptSet``'s own.
For ICL (``lm_order_sensitivity``) each order is one prompt; for a finetuning
(``finetune_order_sensitivity``: GD or layer-causal GD, one SGD step per demonstration) each
order is one finetuning order, read out zero-shot from the finetuned model.
Every prompt runs under one mask kind; under the prefix mask the demonstrations attend to
each other bidirectionally, but positions still differ, so prefix ICL in an LM is not
order-invariant by construction (unlike the LSA and the synthetic models).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float

from icl_interp.lm.capture import capture, capture_condition
from icl_interp.lm.conditions import ZERO_SHOT
from icl_interp.lm.data import Example, PromptSet, build_prompts
from icl_interp.lm.record import Capture
from icl_interp.order import order_sensitivity, seeded_permutations


def true_label_probability(result: Capture) -> Float[torch.Tensor, "example layer"]:
    """Per example and layer, the logit-lens probability of the true label among the labels."""
    probabilities = result.layer_label_logits.double().softmax(dim=-1)
    index = result.labels[:, None, None].expand(-1, probabilities.shape[1], 1)
    return probabilities.gather(-1, index)[..., 0]


def _readouts(
    model: Any, tokenizer: Any, spec: Any, demo_sets: Sequence[Sequence[Example]],
    prompts: PromptSet, mask: str, batch_size: int,
) -> Float[torch.Tensor, "draw layer example"]:  # fmt: skip
    readouts = []
    for demonstrations in demo_sets:
        built = build_prompts(tokenizer, spec, demonstrations, prompts.queries, max_len=None)
        result = capture(
            model, built.prefix_ids, built.query_ids, built.labels, built.label_token_ids,
            mask=mask, batch_size=batch_size, desc=f"order {mask}",
        )  # fmt: skip
        readouts.append(true_label_probability(result).T)
    return torch.stack(readouts)


def lm_order_sensitivity(
    model: Any,
    tokenizer: Any,
    spec: Any,
    prompts: PromptSet,
    other_sets: Sequence[Sequence[Example]],
    *,
    mask: str,
    n_orders: int = 8,
    order_seed: int = 0,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Tidy rows (method "icl", mask, layer, statistic, value, n_draws, n): per layer, the
    order sensitivity of ``prompts``' demonstrations and its scale over ``prompts`` +
    ``other_sets``."""
    draws = _draws(prompts, other_sets, n_orders, order_seed)
    rows = []
    for statistic, demo_sets in draws.items():
        readouts = _readouts(model, tokenizer, spec, demo_sets, prompts, mask, batch_size)
        rows += [
            {"method": "icl", "mask": mask, "layer": layer, "statistic": statistic,
             "value": value, "n_draws": len(demo_sets), "n": prompts.n_examples}
            for layer, value in enumerate(order_sensitivity(readouts).tolist())
        ]  # fmt: skip
    return rows


def _draws(
    prompts: PromptSet, other_sets: Sequence[Sequence[Example]], n_orders: int, order_seed: int
) -> dict[str, list[Sequence[Example]]]:
    """The demonstration lists of each statistic: P orders of ``prompts``' own, and the sets."""
    if not other_sets:
        raise ValueError("the across-sets scale needs at least one other demonstration set")
    base = list(prompts.demonstrations)
    orders = seeded_permutations(len(base), n_orders, order_seed)
    return {
        "across_orders": [[base[i] for i in order.tolist()] for order in orders],
        "across_sets": [base, *other_sets],
    }


def finetune_order_sensitivity(
    model: Any,
    tokenizer: Any,
    spec: Any,
    prompts: PromptSet,
    other_sets: Sequence[Sequence[Example]],
    *,
    method: str,
    lr: float,
    params: str = "kv",
    n_orders: int = 8,
    order_seed: int = 0,
    seed: int = 0,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """As ``lm_order_sensitivity`` for the finetuning ``method`` ("gd" | "lcgd"): each draw is
    the model finetuned on the demonstrations in that order (``icl_interp.lm.finetune``), read
    out zero-shot on the same queries; rows carry ``method`` and mask "causal" (finetuning and
    the zero-shot readout run under the causal mask)."""
    from icl_interp.lm.finetune import finetune

    rows = []
    for statistic, demo_sets in _draws(prompts, other_sets, n_orders, order_seed).items():
        readouts = []
        for demonstrations in demo_sets:
            built = build_prompts(tokenizer, spec, demonstrations, prompts.queries, max_len=None)
            tuned = finetune(model, built.demo_ids, method=method, lr=lr, params=params, seed=seed)
            result = capture_condition(
                tuned, built, ZERO_SHOT, batch_size=batch_size, desc=f"order {method}"
            )
            readouts.append(true_label_probability(result).T)
        rows += [
            {"method": method, "mask": "causal", "layer": layer, "statistic": statistic,
             "value": value, "n_draws": len(demo_sets), "n": prompts.n_examples}
            for layer, value in enumerate(order_sensitivity(torch.stack(readouts)).tolist())
        ]  # fmt: skip
    return rows
