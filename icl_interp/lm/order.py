"""Order sensitivity of ICL in a pretrained LM, per layer (definition: :mod:`icl_interp.order`).

The readout is the true label's probability from the logit lens at the last query position
(softmax over the data set's label tokens, ``icl_interp.lm.capture``). Across orders: the
demonstrations of one ``PromptSet`` (as packed) under P seeded permutations; across sets (the
scale): P demonstration sets with the same queries, the first being the ``PromptSet``'s own.
Every prompt runs under one mask kind; under the prefix mask the demonstrations attend to
each other bidirectionally, but positions still differ, so prefix ICL in an LM is not
order-invariant by construction (unlike the LSA and the synthetic models).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float

from icl_interp.lm.capture import capture
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
    """Tidy rows (mask, layer, statistic, value, n_draws): per layer, the order sensitivity of
    ``prompts``' demonstrations and its scale over ``prompts`` + ``other_sets``."""
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
        readouts = _readouts(model, tokenizer, spec, demo_sets, prompts, mask, batch_size)
        rows += [
            {"mask": mask, "layer": layer, "statistic": statistic, "value": value,
             "n_draws": len(demo_sets), "n": prompts.n_examples}
            for layer, value in enumerate(order_sensitivity(readouts).tolist())
        ]  # fmt: skip
    return rows
