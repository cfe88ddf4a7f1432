"""Closed-form reference algorithms that the constructed LSA stack should reproduce.

Context inputs ``x`` are ``[batch, n, d]`` (row j is x_j), labels ``y`` are ``[batch, n]``.
Weights are row vectors, predictions ``w . x``. Layer 0 is the initial weight ``w0``.

- :func:`gd_weights`: full-batch GD, w <- w + (eta/n) sum_i (y_i - w x_i) x_i (eq. 3).
- :func:`causal_gd_weights`: per-position weights w_j <- w_j + s_j sum_{i<=j} (y_i - w_i x_i) x_i
  with s_j = eta/n (causalLM, eq. 10) or eta/j (causalLM2, eq. 18).
- :func:`online_gd_weights`: online GD with step 1/|x_{j+1}|^2, optionally shrinking
  w_j by j/(j+1) first (Props. 5 and 8).
"""

from __future__ import annotations

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from icl_interp.lsa.model import LSA_VARIANTS


def gd_weights(
    x: Float[Tensor, "batch n d"],
    y: Float[Tensor, "batch n"],
    *,
    eta: float,
    n_layers: int,
    w0: Float[Tensor, " d"] | None = None,
) -> Float[Tensor, "layer batch d"]:
    """Full-batch gradient descent on the context (eq. 3); ``layer`` runs 0..n_layers."""
    batch, n, d = x.shape
    w = x.new_zeros(batch, d) if w0 is None else w0.to(x).expand(batch, d).clone()
    history = [w]
    for _ in range(n_layers):
        residuals = y - (w[:, None] * x).sum(-1)
        w = w + (eta / n) * (residuals[..., None] * x).sum(1)
        history.append(w)
    return torch.stack(history)


def position_steps(n: int, *, eta: float, per_position_step: bool, like: Tensor) -> Tensor:
    """Step size of each context position: eta/n (causalLM) or eta/j (causalLM2), j = 1..n."""
    if per_position_step:
        return eta / torch.arange(1, n + 1, dtype=like.dtype, device=like.device)
    return torch.full((n,), eta / n, dtype=like.dtype, device=like.device)


def causal_gd_weights(
    x: Float[Tensor, "batch n d"],
    y: Float[Tensor, "batch n"],
    *,
    eta: float,
    n_layers: int,
    per_position_step: bool = False,
    w0: Float[Tensor, " d"] | None = None,
) -> Float[Tensor, "layer batch n d"]:
    """Per-position weights w_j of causalLM (eq. 10) or causalLM2 (eq. 18), all positions at once."""
    batch, n, d = x.shape
    steps = position_steps(n, eta=eta, per_position_step=per_position_step, like=x)
    w = x.new_zeros(batch, n, d) if w0 is None else w0.to(x).expand(batch, n, d).clone()
    history = [w]
    for _ in range(n_layers):
        residuals = y - (w * x).sum(-1)
        gradient_sums = torch.cumsum(residuals[..., None] * x, dim=1)
        w = w + steps[:, None] * gradient_sums
        history.append(w)
    return torch.stack(history)


def reference_predictions(
    variant: str,
    x: Float[Tensor, "batch pos d"],
    y_context: Float[Tensor, "batch n_context"],
    *,
    eta: float,
    n_layers: int,
    w0: Float[Tensor, " d"] | None = None,
) -> Float[Tensor, "layer batch pos"]:
    """Predictions of the closed-form recursion on context + queries, per layer.

    prefix: every position uses the GD weight w^(l). causal/causal2: context position j
    uses w_j^(l); every (isolated) query uses w_n^(l), the weight of the last context token.
    """
    spec = LSA_VARIANTS.get(variant)
    n_context = y_context.shape[1]
    x_context = x[:, :n_context]
    if spec.mask_kind == "prefix":
        w = gd_weights(x_context, y_context, eta=eta, n_layers=n_layers, w0=w0)
        return einsum(w, x, "layer batch d, batch pos d -> layer batch pos")
    w = causal_gd_weights(
        x_context,
        y_context,
        eta=eta,
        n_layers=n_layers,
        per_position_step=spec.per_position_step,
        w0=w0,
    )
    context = (w * x_context).sum(-1)
    queries = einsum(w[:, :, -1], x[:, n_context:], "layer batch d, batch q d -> layer batch q")
    return torch.cat([context, queries], dim=-1)


def online_gd_weights(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"], *, shrink: bool = False
) -> Float[Tensor, "batch n d"]:
    """w_{j+1} = v_j - (v_j . x_{j+1} - y_{j+1}) x_{j+1} / |x_{j+1}|^2 from w_0 = 0.

    v_j = w_j (Prop. 5) or, with ``shrink``, v_j = j/(j+1) w_j (Prop. 8). Row j-1 of the
    result is w_j, the weight after seeing j examples. Sequential over positions by nature.
    """
    batch, n, d = x.shape
    w = x.new_zeros(batch, d)
    history = []
    for j in range(n):
        if shrink:
            w = w * (j / (j + 1))
        x_next = x[:, j]
        residual = (w * x_next).sum(-1) - y[:, j]
        w = w - (residual / x_next.pow(2).sum(-1))[:, None] * x_next
        history.append(w)
    return torch.stack(history, dim=1)
