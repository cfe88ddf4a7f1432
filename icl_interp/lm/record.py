"""``Capture``: what one condition's run recorded (a plain record: torch and jaxtyping only).

The metrics read captures without importing transformer-lens or transformers, so saved
captures can be analysed anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class Capture:
    """One condition's activations for a list of test examples (CPU, detached, float32).

    ``layer`` indexes transformer blocks 0..n_layers-1. ``attn_out`` is the attention module's
    output (after its output projection, before any post-attention norm). ``attn_logits[e]``
    holds, for example ``e``, the scaled q.k scores before mask and softmax from the last
    position to the query's own tokens (BOS and demonstration tokens excluded), per head.
    ``layer_label_logits`` is the logit lens of each block's output on the label words; its
    last layer is ``label_logits``, the model's own output.
    """

    resid: Float[Tensor, "example layer d_model"]
    attn_out: Float[Tensor, "example layer d_model"]
    attn_logits: list[Float[Tensor, "layer head _query_tok"]]
    label_logits: Float[Tensor, "example label"]
    layer_label_logits: Float[Tensor, "example layer label"]
    labels: Int[Tensor, " example"]
    meta: dict[str, Any] = field(default_factory=dict)


def select_examples(capture: Capture, index: Int[Tensor, " n"]) -> Capture:
    """The capture restricted to examples ``index`` (in that order, repeats allowed)."""
    return Capture(
        resid=capture.resid[index],
        attn_out=capture.attn_out[index],
        attn_logits=[capture.attn_logits[int(i)] for i in index],
        label_logits=capture.label_logits[index],
        layer_label_logits=capture.layer_label_logits[index],
        labels=capture.labels[index],
        meta=capture.meta,
    )
