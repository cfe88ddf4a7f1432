"""LSA matrix form vs closed-form GD: Propositions 1, 2, 6 and the causalLM2 model (eq. 18).

Every comparison is float64 with an absolute tolerance of 1e-10 on O(1)-O(10) values.
"""

from __future__ import annotations

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lsa.model import (
    LSA_VARIANTS,
    LSALayer,
    LSAModel,
    gd_construction,
    lsa_predictions,
    make_tokens,
)
from icl_interp.lsa.reference import causal_gd_weights, gd_weights, reference_predictions
from icl_interp.masks import build_mask
from tests.helpers import assert_close

TOL = 1e-10


def regression_batch(
    batch: int = 5, n: int = 12, n_queries: int = 7, d: int = 4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ U(-1, 1)^d (context then queries) and y = w . x, float64."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n + n_queries, d, generator=generator, dtype=torch.float64) * 2 - 1
    w = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    return x, torch.einsum("bpd,bd->bp", x, w)


def run_stack(variant: str, x, y_context, *, eta, n_layers, w0=None):
    """States of the constructed LSA stack (layer 0 = input) and its input tokens."""
    spec = LSA_VARIANTS.get(variant)
    n = y_context.shape[1]
    layer = gd_construction(
        x.shape[-1], eta=eta, n_context=n, w0=w0, per_position_step=spec.per_position_step
    )
    mask = build_mask(spec.mask_kind, x.shape[1], n_queries=x.shape[1] - n, isolate_queries=True)
    tokens = make_tokens(x, y_context)
    return LSAModel([layer] * n_layers)(tokens, mask), tokens


def test_construction_matrices_are_eq5() -> None:
    """K = Q = [[I, 0], [0, 0]], V = [[0, 0], [w0, -1]], P = (eta/n) I (eq. 5)."""
    w0 = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    layer = gd_construction(3, eta=1.6, n_context=40, w0=w0)
    reads_x = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    value = torch.zeros(4, 4, dtype=torch.float64)
    value[3] = torch.tensor([0.5, -2.0, 3.0, -1.0])
    assert_close(layer.key, reads_x, atol=0, what="K")
    assert_close(layer.query, reads_x, atol=0, what="Q")
    assert_close(layer.value, value, atol=0, what="V")
    assert_close(layer.projection, 0.04 * torch.eye(4, dtype=torch.float64), atol=1e-15, what="P")
    assert not layer.normalize_by_attended


def test_layer_matches_eq1_written_as_a_loop_for_random_weights_and_any_mask() -> None:
    """The batched layer equals z_j + P V sum_{i allowed(j)} z_i (z_i^T K^T Q z_j), token by token."""
    generator = torch.Generator().manual_seed(1)
    d1, pos = 5, 9
    key, query, value, projection = (
        torch.randn(d1, d1, generator=generator, dtype=torch.float64) for _ in range(4)
    )
    tokens = torch.randn(3, pos, d1, generator=generator, dtype=torch.float64)
    for normalize in (False, True):
        layer = LSALayer(key, query, value, projection, normalize_by_attended=normalize)
        for mask in (
            build_mask("causal", pos),
            build_mask("prefix", pos, n_prefix=4),
            build_mask("causal", pos, n_queries=3, isolate_queries=True),
            build_mask("prefix", pos, n_queries=3, isolate_queries=True),
            build_mask("causal", pos, sliding_window=3),
        ):
            expected = tokens.clone()
            for b in range(tokens.shape[0]):
                for j in range(pos):
                    total = torch.zeros(d1, dtype=torch.float64)
                    for i in range(pos):
                        if mask[j, i]:
                            total += tokens[b, i] * (tokens[b, i] @ key.T @ query @ tokens[b, j])
                    scale = max(int(mask[j].sum()), 1) if normalize else 1
                    expected[b, j] += projection @ value @ total / scale
            assert_close(layer(tokens, mask), expected, atol=TOL, what=f"normalize={normalize}")


@pytest.mark.parametrize("n_layers", [1, 3, 25])
def test_prop1_prefix_lsa_label_slot_is_gd_residual(n_layers: int) -> None:
    """Prop. 1: layer l outputs (x_j, y_j - w^(l) x_j) on context, (x_q, -w^(l) x_q) on queries."""
    x, y = regression_batch()
    n = 12
    states, tokens = run_stack("prefix", x, y[:, :n], eta=0.9, n_layers=n_layers)
    w = gd_weights(x[:, :n], y[:, :n], eta=0.9, n_layers=n_layers)
    label_in = tokens[..., -1]
    expected = label_in - torch.einsum("lbd,bpd->lbp", w, x)
    assert_close(states[..., -1], expected, atol=TOL, what="delta_j^(l)")
    assert_close(states[..., :-1], tokens[..., :-1].expand_as(states[..., :-1]), atol=0, what="x_j")


def test_prop2_causal_lsa_label_slot_is_per_position_gd_residual() -> None:
    """Prop. 2: causal layer l outputs y_j - w_j^(l) x_j (eq. 10); queries read w_n^(l)."""
    x, y = regression_batch()
    n = 12
    states, _ = run_stack("causal", x, y[:, :n], eta=0.9, n_layers=20)
    w = causal_gd_weights(x[:, :n], y[:, :n], eta=0.9, n_layers=20)
    context = y[:, :n] - torch.einsum("lbnd,bnd->lbn", w, x[:, :n])
    queries = -torch.einsum("lbd,bqd->lbq", w[:, :, -1], x[:, n:])
    assert_close(states[..., :n, -1], context, atol=TOL, what="context delta_j^(l)")
    assert_close(states[..., n:, -1], queries, atol=TOL, what="query delta^(l)")


@pytest.mark.parametrize("variant", ["prefix", "causal"])
def test_prop6_nonzero_w0_shifts_the_residual_by_w0(variant: str) -> None:
    """Prop. 6: with V = [[0,0],[w0,-1]], delta_j^(l) = y_j - (w^(l) - w0) x_j, GD started at w0."""
    x, y = regression_batch(seed=2)
    n = 12
    w0 = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    states, tokens = run_stack(variant, x, y[:, :n], eta=0.7, n_layers=15, w0=w0)
    if variant == "prefix":
        w = gd_weights(x[:, :n], y[:, :n], eta=0.7, n_layers=15, w0=w0)
        w_per_position = w[:, :, None].expand(-1, -1, x.shape[1], -1)
    else:
        w_context = causal_gd_weights(x[:, :n], y[:, :n], eta=0.7, n_layers=15, w0=w0)
        w_queries = w_context[:, :, -1:].expand(-1, -1, x.shape[1] - n, -1)
        w_per_position = torch.cat([w_context, w_queries], dim=2)
    expected = tokens[..., -1] - torch.einsum("lbpd,bpd->lbp", w_per_position - w0, x)
    assert_close(states[..., -1], expected, atol=TOL, what=f"{variant} delta with w0")
    predictions = lsa_predictions(variant, x, y[:, :n], eta=0.7, n_layers=15, w0=w0)
    assert_close(
        predictions,
        torch.einsum("lbpd,bpd->lbp", w_per_position, x),
        atol=TOL,
        what="read-out y~ = w^(l) x",
    )


@pytest.mark.parametrize("variant", ["prefix", "causal", "causal2"])
@pytest.mark.parametrize("with_w0", [False, True])
def test_matrix_form_agrees_with_closed_form_recursion(variant: str, with_w0: bool) -> None:
    """Explicit K,Q,V,P stack == closed-form recursion (eq. 3 / 10 / 18) to 1e-10, float64."""
    x, y = regression_batch(batch=6, n=15, n_queries=9, d=5, seed=3)
    w0 = torch.linspace(-1, 1, 5, dtype=torch.float64) if with_w0 else None
    eta = 0.05 if variant == "causal2" else 1.0
    matrix = lsa_predictions(variant, x, y[:, :15], eta=eta, n_layers=30, w0=w0)
    recursion = reference_predictions(variant, x, y[:, :15], eta=eta, n_layers=30, w0=w0)
    assert matrix.shape == (31, 6, 24)
    assert_close(matrix, recursion, atol=TOL, what=f"{variant} matrix vs recursion")


def test_causal2_model_uses_step_eta_over_j() -> None:
    """Appendix C: normalising row j by its j attended keys gives w_j <- w_j + (eta/j) sum_{i<=j} ... (eq. 18)."""
    x, y = regression_batch(seed=4)
    n = 12
    states, _ = run_stack("causal2", x, y[:, :n], eta=0.1, n_layers=10)
    w = causal_gd_weights(x[:, :n], y[:, :n], eta=0.1, n_layers=10, per_position_step=True)
    assert_close(
        states[..., :n, -1],
        y[:, :n] - torch.einsum("lbnd,bnd->lbn", w, x[:, :n]),
        atol=TOL,
        what="causal2 context residuals",
    )
    one_step = causal_gd_weights(x[:, :n], y[:, :n], eta=0.1, n_layers=1, per_position_step=True)
    by_hand = (0.1 / 3) * (y[:, :3, None] * x[:, :3]).sum(1)
    assert_close(one_step[1, :, 2], by_hand, atol=1e-14, what="w_3 after one step, eta/3")


def test_batched_run_equals_each_sequence_alone() -> None:
    """Vectorised over the batch: sequence b's predictions do not depend on the other sequences."""
    x, y = regression_batch(batch=4)
    batched = lsa_predictions("causal", x, y[:, :12], eta=0.9, n_layers=8)
    for b in range(4):
        alone = lsa_predictions("causal", x[b : b + 1], y[b : b + 1, :12], eta=0.9, n_layers=8)
        assert_close(batched[:, b : b + 1], alone, atol=1e-12, what=f"sequence {b}")


def test_float32_runs_and_tracks_float64() -> None:
    """float32 capable: same predictions as float64 to 1e-4 over 20 layers."""
    x, y = regression_batch()
    double = lsa_predictions("prefix", x, y[:, :12], eta=0.9, n_layers=20)
    single = lsa_predictions("prefix", x.float(), y[:, :12].float(), eta=0.9, n_layers=20)
    assert single.dtype == torch.float32
    assert_close(single.double(), double, atol=1e-4, what="float32 vs float64")


def test_query_label_slot_is_never_read() -> None:
    """Isolated queries do not attend to themselves: a junk label in a query slot changes nothing else."""
    x, y = regression_batch()
    n = 12
    spec_layer = gd_construction(4, eta=0.9, n_context=n)
    mask = build_mask("causal", x.shape[1], n_queries=x.shape[1] - n, isolate_queries=True)
    clean = make_tokens(x, y[:, :n])
    junk = clean.clone()
    junk[:, n:, -1] = 100.0
    model = LSAModel([spec_layer] * 5)
    difference = model(junk, mask)[..., -1] - model(clean, mask)[..., -1]
    assert_close(difference[..., :n], torch.zeros_like(difference[..., :n]), atol=0, what="context")
    assert_close(difference[..., n:], torch.full_like(difference[..., n:], 100.0), atol=1e-12)


def test_unknown_variant_lists_valid_names() -> None:
    x, y = regression_batch()
    with pytest.raises(UserError, match="causal, causal2, prefix"):
        lsa_predictions("bidirectional", x, y[:, :12], eta=0.9, n_layers=1)
