"""Similarity of ICL and finetuning (docs/definitions.md): SimAOU, SimAM, SimAM∆ and baselines.

All values are per layer, mean over test examples. ``h`` is the attention output at the
query's last position; ``A`` the per-head attention logits (scaled q.k before mask and
softmax) from that position to the query's own tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from icl_interp.lm.metrics.core import Conditions, register_metric


def _cosine(a: Tensor, b: Tensor) -> Tensor:
    return F.cosine_similarity(a, b, dim=-1, eps=1e-12)


def _update_direction(
    h: Float[Tensor, "example layer d_model"], h_zsl: Float[Tensor, "example layer d_model"]
) -> Float[Tensor, "example layer d_model"]:
    return F.normalize(h, dim=-1) - F.normalize(h_zsl, dim=-1)


@register_metric("simaou", label="SimAOU")
def simaou(c: Conditions) -> Float[Tensor, " layer"]:
    """SimAOU = mean_e cos(ĥ_ICL - ĥ_ZSL, ĥ_FT - ĥ_ZSL), with ĥ = h / |h|."""
    icl_update = _update_direction(c.icl.attn_out, c.zsl.attn_out)
    assert c.ft is not None
    ft_update = _update_direction(c.ft.attn_out, c.zsl.attn_out)
    return _cosine(icl_update, ft_update).mean(dim=0)


@register_metric("simaou_random", label="SimAOU random", uses=("zsl", "icl"), baseline_for="simaou")
def simaou_random(c: Conditions) -> Float[Tensor, " layer"]:
    """Random SimAOU = mean_e cos(ĥ_ICL - ĥ_ZSL, r), r ~ U[0,1)^d drawn per example and layer."""
    icl_update = _update_direction(c.icl.attn_out, c.zsl.attn_out)
    generator = torch.Generator().manual_seed(c.seed)
    random_update = torch.rand(icl_update.shape, generator=generator, dtype=icl_update.dtype)
    return _cosine(icl_update, random_update).mean(dim=0)


def _mean_head_cosine(pairs: list[tuple[Tensor, Tensor]]) -> Float[Tensor, " layer"]:
    """Mean over examples of (mean over heads of cos over query tokens)."""
    per_example = [_cosine(a, b).mean(dim=-1) for a, b in pairs]
    return torch.stack(per_example).mean(dim=0)


@register_metric("simam", label="SimAM", uses=("icl", "ft"))
def simam(c: Conditions) -> Float[Tensor, " layer"]:
    """SimAM = mean_e mean_head cos(A_ICL, A_FT)."""
    assert c.ft is not None
    return _mean_head_cosine(list(zip(c.icl.attn_logits, c.ft.attn_logits, strict=True)))


@register_metric("simam_zsl", label="SimAM ZSL", uses=("zsl", "icl"), baseline_for="simam")
def simam_zsl(c: Conditions) -> Float[Tensor, " layer"]:
    """ZSL SimAM (baseline) = mean_e mean_head cos(A_ICL, A_ZSL)."""
    return _mean_head_cosine(list(zip(c.icl.attn_logits, c.zsl.attn_logits, strict=True)))


@register_metric("simam_delta", label="SimAM∆")
def simam_delta(c: Conditions) -> Float[Tensor, " layer"]:
    """SimAM∆ = mean_e mean_head cos(A_ICL - A_ZSL, A_FT - A_ZSL)."""
    assert c.ft is not None
    return _mean_head_cosine(
        [
            (icl - zsl, ft - zsl)
            for icl, zsl, ft in zip(
                c.icl.attn_logits, c.zsl.attn_logits, c.ft.attn_logits, strict=True
            )
        ]
    )
