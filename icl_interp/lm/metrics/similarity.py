"""Similarity of ICL and finetuning (docs/definitions.md): SimAOU, SimAM, SimAM∆, their
baselines, and the demonstration- and label-specific forms that keep only what depends on the
demonstrations.

All values are per layer, mean over test examples. ``h`` is the attention output at the
query's last position; ``A`` the per-head attention logits (scaled q.k before mask and
softmax) from that position to the query's own tokens. The specific forms replace the
zero-shot reference by a second ICL / finetuning run: on a disjoint demonstration draw B
(``_demo``) or on A's inputs with permuted labels (``_label``). A shift that does not depend
on the demonstrations cancels in both differences, so it scores 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from icl_interp.lm.metrics.core import Conditions, register_metric
from icl_interp.lm.record import Capture


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
    """Random SimAOU = mean_e cos(ĥ_ICL - ĥ_ZSL, r), r ~ U[0,1)^d drawn per example and layer
    (the reference implementation's baseline: r is all-positive, so this is not a zero-mean
    null; ``simaou_gaussian`` is)."""
    icl_update = _update_direction(c.icl.attn_out, c.zsl.attn_out)
    generator = torch.Generator().manual_seed(c.seed)
    random_update = torch.rand(icl_update.shape, generator=generator, dtype=icl_update.dtype)
    return _cosine(icl_update, random_update).mean(dim=0)


@register_metric(
    "simaou_gaussian", label="SimAOU Gaussian null", uses=("zsl", "icl"), baseline_for="simaou"
)
def simaou_gaussian(c: Conditions) -> Float[Tensor, " layer"]:
    """Zero-mean null = mean_e cos(ĥ_ICL - ĥ_ZSL, g), g ~ N(0, I_d) drawn per example and layer
    (expected 0, spread about 1/sqrt(d) per example)."""
    icl_update = _update_direction(c.icl.attn_out, c.zsl.attn_out)
    generator = torch.Generator().manual_seed(c.seed)
    random_update = torch.randn(icl_update.shape, generator=generator, dtype=icl_update.dtype)
    return _cosine(icl_update, random_update).mean(dim=0)


def _with_reference(c: Conditions, reference: str) -> tuple[Capture, Capture, Capture]:
    """FT on A, and ICL and FT on the reference set (``other``: B; ``shuffled``: A')."""
    icl_ref, ft_ref = getattr(c, f"icl_{reference}"), getattr(c, f"ft_{reference}")
    assert c.ft is not None and icl_ref is not None and ft_ref is not None
    return c.ft, icl_ref, ft_ref


def _specific_simaou(c: Conditions, reference: str) -> Float[Tensor, " layer"]:
    """mean_e cos(ĥ_ICL - ĥ_ICL_ref, ĥ_FT - ĥ_FT_ref) per layer."""
    ft, icl_ref, ft_ref = _with_reference(c, reference)
    icl_update = _update_direction(c.icl.attn_out, icl_ref.attn_out)
    return _cosine(icl_update, _update_direction(ft.attn_out, ft_ref.attn_out)).mean(dim=0)


@register_metric(
    "simaou_demo", label="SimAOU demo-specific", uses=("icl", "ft", "icl_other", "ft_other")
)
def simaou_demo(c: Conditions) -> Float[Tensor, " layer"]:
    """Demonstration-specific SimAOU = mean_e cos(ĥ_ICL(A) - ĥ_ICL(B), ĥ_FT(A) - ĥ_FT(B)):
    does finetuning respond to the change from draw B to draw A as ICL does?"""
    return _specific_simaou(c, "other")


@register_metric(
    "simaou_label",
    label="SimAOU label-specific",
    uses=("icl", "ft", "icl_shuffled", "ft_shuffled"),
)
def simaou_label(c: Conditions) -> Float[Tensor, " layer"]:
    """Label-specific SimAOU = mean_e cos(ĥ_ICL(A) - ĥ_ICL(A'), ĥ_FT(A) - ĥ_FT(A')), A' = A's
    inputs with permuted labels: what ICL and finetuning do because of the labels."""
    return _specific_simaou(c, "shuffled")


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


def _specific_simam_delta(c: Conditions, reference: str) -> Float[Tensor, " layer"]:
    """mean_e mean_head cos(A_ICL - A_ICL_ref, A_FT - A_FT_ref) per layer."""
    ft, icl_ref, ft_ref = _with_reference(c, reference)
    logits = zip(
        c.icl.attn_logits, icl_ref.attn_logits, ft.attn_logits, ft_ref.attn_logits, strict=True
    )
    return _mean_head_cosine([(a - a_ref, f - f_ref) for a, a_ref, f, f_ref in logits])


@register_metric(
    "simam_delta_demo", label="SimAM∆ demo-specific", uses=("icl", "ft", "icl_other", "ft_other")
)
def simam_delta_demo(c: Conditions) -> Float[Tensor, " layer"]:
    """Demonstration-specific SimAM∆ = mean_e mean_head cos(A_ICL(A) - A_ICL(B),
    A_FT(A) - A_FT(B)) (logits over the query's own tokens, the same in every run)."""
    return _specific_simam_delta(c, "other")


@register_metric(
    "simam_delta_label",
    label="SimAM∆ label-specific",
    uses=("icl", "ft", "icl_shuffled", "ft_shuffled"),
)
def simam_delta_label(c: Conditions) -> Float[Tensor, " layer"]:
    """Label-specific SimAM∆ = mean_e mean_head cos(A_ICL(A) - A_ICL(A'), A_FT(A) - A_FT(A'))."""
    return _specific_simam_delta(c, "shuffled")
