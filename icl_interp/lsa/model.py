"""Linear self-attention (LSA) in matrix form, with the paper's gradient-descent construction.

Tokens are the rows ``z_j = (x_j, y_j)`` of a ``[batch, pos, d + 1]`` tensor: ``n``
context tokens then query tokens ``(x_q, 0)``. One layer computes (paper eq. 1/2)

    z_j <- z_j + P V sum_{i in allowed(j)} z_i (z_i^T K^T Q z_j)

with ``allowed`` given by a boolean mask from :func:`icl_interp.masks.build_mask`.
:func:`gd_construction` builds K = Q = [[I, 0], [0, 0]], V = [[0, 0], [w0, -1]],
P = (eta / n) I (eq. 5). With ``normalize_by_attended`` the attention sum of row j is
divided by the number of keys row j may attend to and P = eta I, which turns the
causal step eta/n into eta/j (causalLM2, appendix C).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor, nn

from icl_interp.masks import build_mask
from icl_interp.registry import Registry


@dataclass(frozen=True)
class LSAVariant:
    """How context tokens see each other and how the step size is normalised."""

    name: str
    paper_name: str
    mask_kind: str
    per_position_step: bool
    description: str


LSA_VARIANTS: Registry[LSAVariant] = Registry("LSA variant")
for _variant in (
    LSAVariant(
        "prefix", "prefixLM", "prefix", False, "prefixLM: full-batch GD, step eta/n (eq. 3)"
    ),
    LSAVariant(
        "causal", "causalLM", "causal", False, "causalLM: per-position GD, step eta/n (eq. 10)"
    ),
    LSAVariant(
        "causal2", "causalLM2", "causal", True, "causalLM2: per-position GD, step eta/j (eq. 18)"
    ),
):
    LSA_VARIANTS.add(_variant.name, _variant)


class LSALayer(nn.Module):
    """One linear self-attention layer with explicit K, Q, V, P (float64 capable)."""

    key: Tensor
    query: Tensor
    value: Tensor
    projection: Tensor

    def __init__(
        self,
        key: Float[Tensor, "d1 d1"],
        query: Float[Tensor, "d1 d1"],
        value: Float[Tensor, "d1 d1"],
        projection: Float[Tensor, "d1 d1"],
        *,
        normalize_by_attended: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("key", key)
        self.register_buffer("query", query)
        self.register_buffer("value", value)
        self.register_buffer("projection", projection)
        self.normalize_by_attended = normalize_by_attended

    def forward(
        self, tokens: Float[Tensor, "batch pos d1"], mask: Bool[Tensor, "pos pos"]
    ) -> Float[Tensor, "batch pos d1"]:
        keys = tokens @ self.key.T
        queries = tokens @ self.query.T
        values = tokens @ self.value.T
        scores = einsum(queries, keys, "batch q e, batch k e -> batch q k")
        scores = scores * mask.to(scores.dtype)
        if self.normalize_by_attended:
            n_attended = mask.sum(dim=-1).clamp(min=1).to(scores.dtype)
            scores = scores / n_attended[:, None]
        attended = einsum(scores, values, "batch q k, batch k e -> batch q e")
        return tokens + attended @ self.projection.T


class LSAModel(nn.Module):
    """A stack of LSA layers; returns the residual stream after every layer."""

    def __init__(self, layers: Sequence[LSALayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self, tokens: Float[Tensor, "batch pos d1"], mask: Bool[Tensor, "pos pos"]
    ) -> Float[Tensor, "layer batch pos d1"]:
        """Stack of the input (layer 0) and the output of each of the layers."""
        states = [tokens]
        for layer in self.layers:
            states.append(layer(states[-1], mask))
        return torch.stack(states)


def gd_construction(
    d: int,
    *,
    eta: float,
    n_context: int,
    w0: Float[Tensor, " d"] | None = None,
    per_position_step: bool = False,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> LSALayer:
    """The layer of eq. 5 whose forward pass is one GD step on the context (any ``w0``).

    ``per_position_step=True`` gives causalLM2: P = eta I and each row's attention sum is
    divided by its number of attended keys (eta / j at context position j).
    """
    reads_x = torch.zeros(d + 1, d + 1, dtype=dtype, device=device)
    reads_x[:d, :d] = torch.eye(d, dtype=dtype, device=device)
    value = torch.zeros(d + 1, d + 1, dtype=dtype, device=device)
    if w0 is not None:
        value[d, :d] = w0.to(dtype=dtype, device=device)
    value[d, d] = -1.0
    step = eta if per_position_step else eta / n_context
    projection = step * torch.eye(d + 1, dtype=dtype, device=device)
    return LSALayer(
        reads_x, reads_x.clone(), value, projection, normalize_by_attended=per_position_step
    )


def make_tokens(
    x: Float[Tensor, "batch pos d"], y_context: Float[Tensor, "batch n_context"]
) -> Float[Tensor, "batch pos d1"]:
    """Tokens (x_j, y_j) for the context and (x_q, 0) for the queries (eq. 4)."""
    batch, pos, _ = x.shape
    labels = torch.zeros(batch, pos, 1, dtype=x.dtype, device=x.device)
    labels[:, : y_context.shape[1], 0] = y_context
    return torch.cat([x, labels], dim=-1)


def read_predictions(
    inputs: Float[Tensor, "batch pos d1"],
    states: Float[Tensor, "layer batch pos d1"],
    w0: Float[Tensor, " d"] | None = None,
) -> Float[Tensor, "layer batch pos"]:
    """Predictions y~_j = y_j - delta_j + w0 . x_j from the label slot (Props. 1, 2, 6).

    ``y_j`` is the input label slot (0 for queries), ``delta_j`` the slot after the layer.
    """
    predictions = inputs[..., -1] - states[..., -1]
    if w0 is not None:
        predictions = predictions + inputs[..., :-1] @ w0.to(inputs.dtype)
    return predictions


def lsa_predictions(
    variant: str,
    x: Float[Tensor, "batch pos d"],
    y_context: Float[Tensor, "batch n_context"],
    *,
    eta: float,
    n_layers: int,
    w0: Float[Tensor, " d"] | None = None,
) -> Float[Tensor, "layer batch pos"]:
    """Run the constructed LSA stack on context + isolated queries; predictions per layer.

    ``x`` holds the ``n_context`` context inputs followed by the query inputs. The mask
    is ``build_mask(variant.mask_kind, ..., isolate_queries=True)``; the same layer is
    applied ``n_layers`` times.
    """
    spec = LSA_VARIANTS.get(variant)
    batch, pos, d = x.shape
    n_context = y_context.shape[1]
    layer = gd_construction(
        d,
        eta=eta,
        n_context=n_context,
        w0=w0,
        per_position_step=spec.per_position_step,
        dtype=x.dtype,
        device=x.device,
    )
    mask = build_mask(
        spec.mask_kind,
        pos,
        n_queries=pos - n_context,
        isolate_queries=True,
        device=x.device,
    )
    tokens = make_tokens(x, y_context)
    states = LSAModel([layer] * n_layers)(tokens, mask)
    return read_predictions(tokens, states, w0)
