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

from collections.abc import Callable, Sequence
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


def _sensitivity_rows(
    tokenizer: Any,
    spec: Any,
    prompts: PromptSet,
    other_sets: Sequence[Sequence[Example]],
    n_orders: int,
    order_seed: int,
    read: Callable[[PromptSet], Capture],
    tags: dict[str, Any],
) -> list[dict[str, Any]]:
    """Per statistic (P orders of ``prompts``' demonstrations; the sets) and layer, the spread
    of the true-label probability that ``read`` captures from each draw's prompts (same
    queries); rows start with ``tags``."""
    if not other_sets:
        raise ValueError("the across-sets scale needs at least one other demonstration set")
    base = list(prompts.demonstrations)
    orders = seeded_permutations(len(base), n_orders, order_seed)
    draws: dict[str, list[Sequence[Example]]] = {
        "across_orders": [[base[i] for i in order.tolist()] for order in orders],
        "across_sets": [base, *other_sets],
    }
    rows = []
    for statistic, demo_sets in draws.items():
        readouts = torch.stack(
            [
                true_label_probability(
                    read(build_prompts(tokenizer, spec, demos, prompts.queries, max_len=None))
                ).T
                for demos in demo_sets
            ]
        )
        rows += [
            {**tags, "layer": layer, "statistic": statistic, "value": value,
             "n_draws": len(demo_sets), "n": prompts.n_examples}
            for layer, value in enumerate(order_sensitivity(readouts).tolist())
        ]  # fmt: skip
    return rows


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

    def read(built: PromptSet) -> Capture:
        return capture(
            model, built.prefix_ids, built.query_ids, built.labels, built.label_token_ids,
            mask=mask, batch_size=batch_size, desc=f"order {mask}",
        )  # fmt: skip

    return _sensitivity_rows(
        tokenizer, spec, prompts, other_sets, n_orders, order_seed, read,
        {"method": "icl", "mask": mask},
    )  # fmt: skip


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

    def read(built: PromptSet) -> Capture:
        tuned = finetune(model, built.demo_ids, method=method, lr=lr, params=params, seed=seed)
        return capture_condition(
            tuned, built, ZERO_SHOT, batch_size=batch_size, desc=f"order {method}"
        )

    return _sensitivity_rows(
        tokenizer, spec, prompts, other_sets, n_orders, order_seed, read,
        {"method": method, "mask": "causal"},
    )  # fmt: skip
