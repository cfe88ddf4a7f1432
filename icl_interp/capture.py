"""Per-layer capture at each example's last query position (what the metrics need, nothing more)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class Capture:
    """One condition's activations for a list of test examples (CPU, detached, float32).

    ``layer`` indexes transformer blocks 0..n_layers-1. ``attn_logits[e]`` holds, for
    example ``e``, the scaled q.k scores before mask and softmax from the last position
    to the query's own tokens (BOS and demonstration tokens excluded), per head.
    """

    resid: Float[Tensor, "example layer d_model"]
    attn_out: Float[Tensor, "example layer d_model"]
    attn_logits: list[Float[Tensor, "layer head query_tok"]]
    label_logits: Float[Tensor, "example label"]
    layer_label_logits: Float[Tensor, "example layer label"]
    labels: Int[Tensor, " example"]
    meta: dict[str, Any] = field(default_factory=dict)
