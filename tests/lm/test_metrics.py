"""Every metric on small hand-computed inputs (values, not shapes)."""

from __future__ import annotations

import math

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lm.metrics import METRICS, Conditions, compute_metrics, register_metric
from icl_interp.lm.record import Capture
from tests.helpers import assert_close


def make_capture(
    attn_out: list | None = None,
    attn_logits: list | None = None,
    layer_label_logits: list | None = None,
    labels: list | None = None,
    *,
    n_examples: int = 2,
    n_layers: int = 2,
) -> Capture:
    """A Capture with the given fields; the rest filled with ones of matching shape."""
    out = (
        torch.tensor(attn_out, dtype=torch.float32)
        if attn_out
        else torch.ones(n_examples, n_layers, 2)
    )
    n_examples, n_layers = out.shape[0], out.shape[1]
    logits = (
        [torch.tensor(a, dtype=torch.float32) for a in attn_logits]
        if attn_logits
        else [torch.ones(n_layers, 1, 2) for _ in range(n_examples)]
    )
    layer_labels = (
        torch.tensor(layer_label_logits, dtype=torch.float32)
        if layer_label_logits
        else torch.zeros(n_examples, n_layers, 2)
    )
    return Capture(
        resid=torch.zeros_like(out),
        attn_out=out,
        attn_logits=logits,
        label_logits=layer_labels[:, -1],
        layer_label_logits=layer_labels,
        labels=torch.tensor(labels if labels else [0] * n_examples),
    )


def test_simaou_hand_computed() -> None:
    # layer 0: e0 ICL and FT updates are both (-1, 1) -> cos 1; e1 updates (-1, 1) vs (-1, -1) -> 0.
    # layer 1: e0 ICL update (-2, 0) vs FT update (1/sqrt2 - 1, 1/sqrt2), 67.5 deg apart -> cos 67.5;
    #          e1 ICL equals ZSL, so its update is 0 and the cosine is 0 by convention.
    zsl = make_capture([[[1, 0], [2, 0]], [[1, 0], [0, 1]]])
    icl = make_capture([[[0, 1], [-1, 0]], [[0, 1], [0, 5]]])
    ft = make_capture([[[0, 2], [1, 1]], [[0, -3], [1, 0]]])
    value = METRICS.get("simaou")(Conditions(zsl=zsl, icl=icl, ft=ft))
    expected = torch.tensor([0.5, math.cos(math.radians(67.5)) / 2])
    assert_close(value, expected, atol=1e-6, what="SimAOU per layer")


def test_simaou_depends_on_directions_only() -> None:
    zsl = make_capture([[[3, 4]]])
    icl = make_capture([[[4, 3]]])
    # FT output (8, 6) has the ICL output's direction (norm does not matter): cos = 1.
    same = METRICS.get("simaou")(Conditions(zsl=zsl, icl=icl, ft=make_capture([[[8, 6]]])))
    assert_close(same, torch.tensor([1.0]), atol=1e-6, what="FT direction == ICL direction")
    # ĥ_ZSL = (.6, .8), ĥ_ICL = (.8, .6): ICL update (.2, -.2). ĥ_FT = (0, 1): FT update (-.6, .2)
    # cos = (-.12 - .04) / (sqrt(.08) * sqrt(.4)) = -.16 / sqrt(.032)
    value = METRICS.get("simaou")(Conditions(zsl=zsl, icl=icl, ft=make_capture([[[0, 1]]])))
    assert_close(value, torch.tensor([-0.16 / math.sqrt(0.032)]), atol=1e-6, what="SimAOU")


def test_simaou_random_sign_in_one_dimension_and_near_zero_for_symmetric_updates() -> None:
    # d = 1: ĥ is +-1, so the ICL update is +-2 or 0, and r in (0, 1) is positive: cos = sign.
    # e0 update +2 -> 1; e1 update 0 -> 0; mean 0.5.
    up = Conditions(
        zsl=make_capture([[[-1.0]], [[-2.0]]]),
        icl=make_capture([[[1.0]], [[-3.0]]]),
        ft=make_capture([[[1.0]], [[1.0]]]),
    )
    assert_close(METRICS.get("simaou_random")(up), torch.tensor([0.5]), atol=1e-6, what="+1 and 0")
    down = Conditions(
        zsl=make_capture([[[1.0]], [[1.0]]]),
        icl=make_capture([[[-1.0]], [[-1.0]]]),
        ft=make_capture([[[1.0]], [[1.0]]]),
    )
    assert_close(METRICS.get("simaou_random")(down), torch.tensor([-1.0]), atol=1e-6, what="-1")
    # Updates with symmetric +-1 signs against r ~ U[0,1)^d: E[cos] = 0, std ~ 1/sqrt(d * examples).
    generator = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, (64, 1, 512), generator=generator).float() * 2 - 1
    base = torch.zeros(64, 1, 512)
    base[..., 0] = 1000.0
    symmetric = Conditions(
        zsl=make_capture(base.tolist()),
        icl=make_capture((base + signs).tolist()),
        ft=make_capture(base.tolist()),
        seed=3,
    )
    value = METRICS.get("simaou_random")(symmetric)
    assert abs(float(value)) < 0.05
    again = METRICS.get("simaou_random")(symmetric)
    assert torch.equal(value, again), "same seed must give the same random baseline"


SIMAM_ZSL = [
    [[[1, 0], [1, 1]]],  # example 0: 1 layer, 2 heads, 2 query tokens
    [[[0, 0, 1], [1, 2, 2]]],  # example 1: 3 query tokens
]
SIMAM_ICL = [
    [[[1, 1], [1, 0]]],
    [[[1, 2, 2], [1, 2, 2]]],
]
SIMAM_FT = [
    [[[2, 2], [0, 1]]],
    [[[2, 1, -2], [2, 4, 4]]],
]


def simam_conditions() -> Conditions:
    return Conditions(
        zsl=make_capture([[[1, 0]], [[1, 0]]], SIMAM_ZSL),
        icl=make_capture([[[1, 0]], [[1, 0]]], SIMAM_ICL),
        ft=make_capture([[[1, 0]], [[1, 0]]], SIMAM_FT),
    )


def test_simam_hand_computed() -> None:
    # e0: head0 cos((1,1),(2,2)) = 1, head1 cos((1,0),(0,1)) = 0 -> 0.5
    # e1: head0 cos((1,2,2),(2,1,-2)) = 0, head1 cos((1,2,2),(2,4,4)) = 1 -> 0.5
    value = METRICS.get("simam")(simam_conditions())
    assert_close(value, torch.tensor([0.5]), atol=1e-6, what="SimAM")


def test_simam_zsl_hand_computed() -> None:
    # e0: head0 cos((1,1),(1,0)) = 1/sqrt2, head1 cos((1,0),(1,1)) = 1/sqrt2 -> 1/sqrt2
    # e1: head0 cos((1,2,2),(0,0,1)) = 2/3, head1 = 1 -> 5/6
    value = METRICS.get("simam_zsl")(simam_conditions())
    assert_close(value, torch.tensor([(1 / math.sqrt(2) + 5 / 6) / 2]), atol=1e-6, what="ZSL SimAM")


def test_simam_delta_hand_computed() -> None:
    # e0: head0 ICL-ZSL (0,1), FT-ZSL (1,2): 2/sqrt5; head1 (0,-1) vs (-1,0): 0 -> 1/sqrt5
    # e1: head0 (1,2,1) vs (2,1,-3): (2+2-3)/(sqrt6 sqrt14) = 1/sqrt84; head1 (0,0,0) vs (1,2,2): 0
    expected = (1 / math.sqrt(5) + 1 / (2 * math.sqrt(84))) / 2
    value = METRICS.get("simam_delta")(simam_conditions())
    assert_close(value, torch.tensor([expected]), atol=1e-6, what="SimAM∆")


def label_capture(predictions: list[list[int]], labels: list[int]) -> Capture:
    """Label-word logits whose per-layer argmax is ``predictions[example][layer]``."""
    logits = [[[1.0 if c == p else 0.0 for c in range(3)] for p in row] for row in predictions]
    return make_capture(
        attn_out=[[[1.0, 0.0]] * len(predictions[0])] * len(predictions),
        attn_logits=[[[[1.0]]] * len(predictions[0])] * len(predictions),
        layer_label_logits=logits,
        labels=labels,
    )


def test_accuracy_per_layer_and_condition() -> None:
    labels = [0, 1, 2, 2]
    zsl = label_capture([[0, 0], [0, 0], [0, 0], [0, 2]], labels)  # layer 0: 1/4, layer 1: 2/4
    icl = label_capture([[0, 0], [1, 1], [2, 2], [2, 1]], labels)  # 4/4, 3/4
    ft = label_capture([[1, 0], [1, 1], [0, 2], [0, 2]], labels)  # 1/4, 4/4
    c = Conditions(zsl=zsl, icl=icl, ft=ft)
    assert_close(METRICS.get("accuracy_zsl")(c), torch.tensor([0.25, 0.5]), atol=0, what="ZSL")
    assert_close(METRICS.get("accuracy_icl")(c), torch.tensor([1.0, 0.75]), atol=0, what="ICL")
    assert_close(METRICS.get("accuracy_ft")(c), torch.tensor([0.25, 1.0]), atol=0, what="FT")


def test_recall2ftp_hand_computed() -> None:
    labels = [0, 0, 0, 0, 0]
    # last layer: ZSL wrong on e0..e3; FT right on e0, e1, e2 (and e4, where ZSL is right);
    # ICL right on e0, e1 -> 100 * 2 / 3. Layer 0: FT never fixes a ZSL error -> 0/0 = NaN.
    zsl = label_capture([[1, 1], [1, 1], [1, 1], [1, 1], [0, 0]], labels)
    ft = label_capture([[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]], labels)
    icl = label_capture([[0, 0], [0, 0], [0, 1], [0, 0], [0, 1]], labels)
    value = METRICS.get("recall2ftp")(Conditions(zsl=zsl, icl=icl, ft=ft))
    assert math.isnan(float(value[0]))
    assert_close(value[1:], torch.tensor([200 / 3]), atol=1e-4, what="Recall2FTP last layer")


def test_compute_metrics_table_and_summary_reduction() -> None:
    table = compute_metrics(simam_conditions(), ["simam", "accuracy_icl"])
    assert list(table.columns) == ["metric", "layer", "value"]
    assert table.set_index("metric").loc["simam", "value"] == pytest.approx(0.5, abs=1e-6)
    assert METRICS.get("simam").over_layers == "mean"
    assert METRICS.get("recall2ftp").over_layers == "last"


def test_adding_a_metric_is_one_decorated_function() -> None:
    name = "test_only_norm_ratio"

    @register_metric(name)
    def norm_ratio(c: Conditions) -> torch.Tensor:
        """|h_ICL| / |h_ZSL|, mean over examples."""
        return (c.icl.attn_out.norm(dim=-1) / c.zsl.attn_out.norm(dim=-1)).mean(dim=0)

    try:
        c = Conditions(
            zsl=make_capture([[[3, 4]]]), icl=make_capture([[[6, 8]]]), ft=make_capture([[[1, 0]]])
        )
        table = compute_metrics(c, [name])
        assert table["value"].tolist() == pytest.approx([2.0])
    finally:
        METRICS._items.pop(name)


def test_unknown_metric_and_misaligned_captures_are_rejected() -> None:
    with pytest.raises(UserError, match="valid metrics: accuracy_ft"):
        METRICS.get("simaoo")
    with pytest.raises(ValueError, match="same examples"):
        Conditions(
            zsl=make_capture([[[1, 0]]]),
            icl=make_capture([[[1, 0]], [[1, 0]]]),
            ft=make_capture([[[1, 0]]]),
        )
    with pytest.raises(ValueError, match="labels differ"):
        Conditions(
            zsl=make_capture([[[1, 0]]], labels=[0]),
            icl=make_capture([[[1, 0]]], labels=[1]),
            ft=make_capture([[[1, 0]]], labels=[0]),
        )


def test_simaou_gaussian_is_a_zero_mean_null_and_seeded() -> None:
    # d = 1 with an all-positive ICL update: the U[0,1) baseline says +1, the Gaussian one
    # is +1 or -1 per example, about half each, so its mean is near 0.
    n = 400
    up = Conditions(zsl=make_capture([[[-1.0]]] * n), icl=make_capture([[[1.0]]] * n), seed=5)
    assert_close(METRICS.get("simaou_random")(up), torch.tensor([1.0]), atol=1e-6, what="U[0,1)")
    gaussian = METRICS.get("simaou_gaussian")(up)
    assert abs(float(gaussian)) < 3 / math.sqrt(n), "a zero-mean null"
    assert torch.equal(gaussian, METRICS.get("simaou_gaussian")(up)), "seeded"


def _specific(icl_a, icl_b, ft_a, ft_b, reference: str = "other") -> Conditions:
    zsl = make_capture([[[1.0, 0.0, 0.0]]])
    return Conditions(
        zsl=zsl,
        icl=make_capture(icl_a),
        ft=make_capture(ft_a),
        **{f"icl_{reference}": make_capture(icl_b), f"ft_{reference}": make_capture(ft_b)},
    )


@pytest.mark.parametrize(
    ("metric", "reference"), [("simaou_demo", "other"), ("simaou_label", "shuffled")]
)
def test_specific_simaou_known_answers(metric: str, reference: str) -> None:
    fn = METRICS.get(metric)
    # Identical differences: FT moves from B to A exactly as ICL does -> 1.
    same = _specific([[[1, 1, 0]]], [[[1, -1, 0]]], [[[1, 1, 0]]], [[[1, -1, 0]]], reference)
    assert_close(fn(same), torch.tensor([1.0]), atol=1e-6, what="identical differences")
    # ĥ differences (0, 1.41, 0) vs (0, 0, 2): orthogonal -> 0.
    orthogonal = _specific([[[1, 1, 0]]], [[[1, -1, 0]]], [[[0, 0, 1]]], [[[0, 0, -1]]], reference)
    assert_close(fn(orthogonal), torch.tensor([0.0]), atol=1e-6, what="orthogonal differences")
    # FT shifted away from ZSL by the same amount whichever demonstrations: no specific part -> 0,
    # although the plain SimAOU of the same captures is far from 0.
    shift = _specific([[[1, 1, 0]]], [[[1, -1, 0]]], [[[1, 1, 0]]], [[[1, 1, 0]]], reference)
    assert_close(fn(shift), torch.tensor([0.0]), atol=1e-6, what="demonstration-independent FT")
    assert float(METRICS.get("simaou")(shift)) > 0.9


@pytest.mark.parametrize(
    ("metric", "reference"), [("simam_delta_demo", "other"), ("simam_delta_label", "shuffled")]
)
def test_specific_simam_delta_known_answers(metric: str, reference: str) -> None:
    def conditions(icl_a, icl_b, ft_a, ft_b) -> Conditions:
        out = [[[1.0, 0.0]]]
        return Conditions(
            zsl=make_capture(out, [[[[0.0, 0.0]]]]),
            icl=make_capture(out, [icl_a]),
            ft=make_capture(out, [ft_a]),
            **{
                f"icl_{reference}": make_capture(out, [icl_b]),
                f"ft_{reference}": make_capture(out, [ft_b]),
            },
        )

    fn = METRICS.get(metric)
    # 1 layer, 1 head, 2 query tokens. A - B of ICL (1, -1), of FT (2, -2): cos 1.
    same = conditions([[[2.0, 0.0]]], [[[1.0, 1.0]]], [[[3.0, 0.0]]], [[[1.0, 2.0]]])
    assert_close(fn(same), torch.tensor([1.0]), atol=1e-6, what="parallel differences")
    # FT difference (1, 1) against ICL's (1, -1): 0.
    orthogonal = conditions([[[2.0, 0.0]]], [[[1.0, 1.0]]], [[[2.0, 2.0]]], [[[1.0, 1.0]]])
    assert_close(fn(orthogonal), torch.tensor([0.0]), atol=1e-6, what="orthogonal differences")


def test_specific_metrics_apply_only_where_their_captures_exist() -> None:
    plain = Conditions(zsl=make_capture(), icl=make_capture(), ft=make_capture())
    table = compute_metrics(plain, ["simaou", "simaou_demo", "simam_delta_label"])
    assert set(table["metric"]) == {"simaou"}, "no draw B or A': no specific value"
    with pytest.raises(ValueError, match="needs the captures ft_other, icl_other"):
        METRICS.get("simaou_demo")(plain)
