"""Propositions 3, 4, 5, 7 and 8: stationary points and linear convergence rates, numerically.

Coefficients a_ij (w_j = sum_i a_ij x_i) are recovered from the weights by least squares on
n <= d linearly independent inputs, so the tests do not reuse the code that made them.
"""

from __future__ import annotations

import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.lsa.reference import causal_gd_weights, gd_weights, online_gd_weights
from icl_interp.lsa.stationary import (
    causal2_stationary_coefficients,
    causal2_stationary_weights,
    causal_stationary_coefficients,
    causal_stationary_weights,
    check_step_size,
    contraction_factor,
    iteration_matrix,
    largest_stable_eta,
    least_squares_weights,
    s_matrix,
    upper_gram,
)
from tests.helpers import assert_close


def regression(batch: int, n: int, d: int, *, seed: int, mu_x: float = 0.0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, n, d, generator=generator, dtype=torch.float64) * 2 - 1 + mu_x
    w = torch.randn(batch, d, generator=generator, dtype=torch.float64)
    return x, torch.einsum("bnd,bd->bn", x, w), w


def coefficients_of(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A[..., i, j] with w_j = sum_i A_ij x_i (exact when the n <= d inputs are independent)."""
    basis = x.mT.expand(*w.shape[:-2], *x.mT.shape[-2:])
    return torch.linalg.lstsq(basis, w.mT).solution


def observed_rate(errors: torch.Tensor, window: int) -> torch.Tensor:
    """Per-layer error factor over the last ``window`` layers: (|e_L| / |e_{L-window}|)^(1/window)."""
    norms = errors.flatten(start_dim=2).norm(dim=-1)
    return (norms[-1] / norms[-1 - window]) ** (1 / window)


def test_prop3_prefix_stationary_point_is_least_squares_and_rate_is_exact() -> None:
    """Prop. 3: y X^T = w* X X^T; w^(l) - w* = (w^(l-1) - w*)(I - eta/n X X^T) (tol 1e-10)."""
    x, y, w_true = regression(6, 20, 4, seed=0)
    w_star = least_squares_weights(x, y)
    normal_lhs = torch.einsum("bn,bnd->bd", y, x)
    normal_rhs = torch.einsum("bd,bnd,bne->be", w_star, x, x)
    assert_close(normal_rhs, normal_lhs, atol=1e-10, what="normal equations")
    assert_close(w_star, w_true, atol=1e-10, what="noiseless labels, n >= d: w* = w")
    w = gd_weights(x, y, eta=1.0, n_layers=40)
    m = iteration_matrix("prefix", x, eta=1.0)
    errors = w - w_star
    predicted = torch.einsum("lbd,bde->lbe", errors[:-1], m)
    assert_close(errors[1:], predicted, atol=1e-10, what="one-step error recursion")


def test_prop3_observed_linear_rate_equals_contraction_factor() -> None:
    """Prop. 3: |w^(l) - w*| shrinks by the spectral radius of I - eta/n X X^T per layer (rtol 1e-3).

    Shrinking coordinate 0 separates the smallest eigenvalue of X X^T from the rest, so the
    slowest direction dominates well before the error reaches rounding level.
    """
    x, _, w_true = regression(6, 20, 4, seed=1)
    x[..., 0] *= 0.3
    y = torch.einsum("bnd,bd->bn", x, w_true)
    w = gd_weights(x, y, eta=1.0, n_layers=200)
    rate = observed_rate((w - least_squares_weights(x, y))[:, :, None], window=50)
    assert_close(rate, contraction_factor("prefix", x, eta=1.0), atol=0, rtol=1e-3, what="rate")


def test_prop4_causal_coefficients_do_not_depend_on_j() -> None:
    """Prop. 4: w_j^(l) = sum_{i<=j} a_i^(l) x_i, i.e. a_ij = a_ii for every j >= i (tol 1e-9)."""
    x, y, _ = regression(4, 6, 9, seed=2)
    w = causal_gd_weights(x, y, eta=2.0, n_layers=12)
    a = coefficients_of(w, x)
    diagonal = torch.diagonal(a, dim1=-2, dim2=-1)
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool))
    expected = torch.where(upper, diagonal[..., :, None].expand_as(a), torch.zeros_like(a))
    assert_close(a, expected, atol=1e-9, what="a_ij = a_ii (j >= i), 0 (j < i)")


def test_prop4_causal_stationary_point_and_rate() -> None:
    """Prop. 4: y = a* T; a^(l) - a* = (a^(l-1) - a*)(I - eta/n T); w_j^(l) -> w_j* (tol 1e-9)."""
    x, y, _ = regression(4, 6, 9, seed=3)
    t = upper_gram(x)
    assert_close(t, torch.triu(x @ x.mT), atol=0, what="T")
    a_star = causal_stationary_coefficients(x, y)
    assert_close(torch.einsum("bi,bij->bj", a_star, t), y, atol=1e-10, what="y = a* T")
    w = causal_gd_weights(x, y, eta=2.0, n_layers=400)
    a = torch.diagonal(coefficients_of(w, x), dim1=-2, dim2=-1)
    errors = a - a_star
    step = iteration_matrix("causal", x, eta=2.0)
    assert_close(step, torch.eye(6, dtype=torch.float64) - (2.0 / 6) * t, atol=1e-15)
    predicted = torch.einsum("lbi,bij->lbj", errors[:-1], step)
    assert_close(errors[1:], predicted, atol=1e-9, what="coefficient error recursion")
    assert_close(w[-1], causal_stationary_weights(x, y), atol=1e-9, what="w_j^(400) -> w_j*")


def test_prop4_observed_linear_rate_equals_contraction_factor() -> None:
    """Prop. 4: coefficient errors shrink by max_j |1 - eta/n |x_j|^2| per layer (rtol 1e-3).

    A short x_3 makes its factor the clear maximum (the slowest coefficient).
    """
    x, _, w_true = regression(4, 6, 9, seed=4)
    x[:, 2] *= 0.4
    y = torch.einsum("bnd,bd->bn", x, w_true)
    w = causal_gd_weights(x, y, eta=1.0, n_layers=150)
    a = torch.diagonal(coefficients_of(w, x), dim1=-2, dim2=-1)
    rate = observed_rate((a - causal_stationary_coefficients(x, y))[:, :, None], window=50)
    expected = (1 - (1.0 / 6) * x.pow(2).sum(-1)).abs().amax(-1)
    assert_close(contraction_factor("causal", x, eta=1.0), expected, atol=1e-15)
    assert_close(rate, expected, atol=0, rtol=1e-3, what="observed rate")


@pytest.mark.parametrize("mu_x", [0.0, 2.0])
def test_prop5_causal_stationary_points_follow_online_gd(mu_x: float) -> None:
    """Prop. 5: w_{j+1}* = w_j* - grad L_j(w_j*) / |x_{j+1}|^2, from forward substitution (tol 1e-10)."""
    x, y, _ = regression(8, 60, 5, seed=5, mu_x=mu_x)
    online = online_gd_weights(x, y)
    assert_close(causal_stationary_weights(x, y), online, atol=1e-10, what="w_j* vs online GD")
    first = y[:, 0, None] * x[:, 0] / x[:, 0].pow(2).sum(-1, keepdim=True)
    assert_close(online[:, 0], first, atol=1e-14, what="w_1 = y_1 x_1 / |x_1|^2")


def test_causal_stationary_point_is_not_least_squares_but_interpolates_each_new_point() -> None:
    """Sec. 4.2: w_n* != w* on the same context, yet w_j* x_j = y_j (each online step fits its point)."""
    x, y, w_true = regression(8, 30, 5, seed=6, mu_x=1.0)
    w_causal = causal_stationary_weights(x, y)
    assert_close(torch.einsum("bnd,bnd->bn", w_causal, x), y, atol=1e-10, what="w_j* . x_j")
    gap = (w_causal[:, -1] - least_squares_weights(x, y)).norm(dim=-1)
    assert bool((gap > 1e-3).all()), f"causal stationary point equals least squares: {gap}"
    assert_close(least_squares_weights(x, y), w_true, atol=1e-10, what="prefix w* = w")


def test_prop7_causal2_coefficients_scale_as_one_over_j() -> None:
    """Prop. 7: eq. 18 keeps a_ij = a_i / j for j >= i, i.e. j a_ij does not depend on j (tol 1e-9)."""
    x, y, _ = regression(4, 6, 9, seed=7)
    w = causal_gd_weights(x, y, eta=0.2, n_layers=12, per_position_step=True)
    a = coefficients_of(w, x)
    scaled = a * torch.arange(1, 7, dtype=torch.float64)
    diagonal = torch.diagonal(scaled, dim1=-2, dim2=-1)
    upper = torch.triu(torch.ones(6, 6, dtype=torch.bool))
    expected = torch.where(upper, diagonal[..., :, None].expand_as(a), torch.zeros_like(a))
    assert_close(scaled, expected, atol=1e-9, what="j a_ij = a_i")


def test_prop7_causal2_stationary_point_and_rate() -> None:
    """Prop. 7: y = a* S, S_ij = x_i.x_j / j; a^(l) - a* = (a^(l-1) - a*)(I - eta S) (tol 1e-9).

    The observed rate is the spectral radius of I - eta S (rtol 1e-3); a short last input
    makes its factor the clear maximum.
    """
    x, _, w_true = regression(4, 6, 9, seed=8)
    x[:, -1] *= 0.5
    y = torch.einsum("bnd,bd->bn", x, w_true)
    s = s_matrix(x)
    assert_close(s, torch.triu(x @ x.mT) / torch.arange(1, 7, dtype=torch.float64), atol=0)
    a_star = causal2_stationary_coefficients(x, y)
    assert_close(torch.einsum("bi,bij->bj", a_star, s), y, atol=1e-10, what="y = a* S")
    w = causal_gd_weights(x, y, eta=0.2, n_layers=200, per_position_step=True)
    positions = torch.arange(1, 7, dtype=torch.float64)
    a = torch.diagonal(coefficients_of(w, x), dim1=-2, dim2=-1) * positions
    errors = a - a_star
    predicted = torch.einsum("lbi,bij->lbj", errors[:-1], iteration_matrix("causal2", x, eta=0.2))
    assert_close(errors[1:], predicted, atol=1e-9, what="coefficient error recursion")
    rate = observed_rate(errors[:, :, None], window=50)
    expected = (1 - 0.2 * x.pow(2).sum(-1) / positions).abs().amax(-1)
    assert_close(rate, expected, atol=0, rtol=1e-3, what="observed rate")


@pytest.mark.parametrize("mu_x", [0.0, 2.0])
def test_prop8_causal2_stationary_points_follow_shrunk_online_gd(mu_x: float) -> None:
    """Prop. 8: w_{j+1}* = v_j - grad L_j(v_j) / |x_{j+1}|^2 with v_j = j/(j+1) w_j* (tol 1e-10)."""
    x, y, _ = regression(8, 60, 5, seed=9, mu_x=mu_x)
    assert_close(
        causal2_stationary_weights(x, y),
        online_gd_weights(x, y, shrink=True),
        atol=1e-10,
        what="causal2 w_j* vs shrunk online GD",
    )


@pytest.mark.parametrize("variant", ["prefix", "causal", "causal2"])
def test_largest_stable_eta_separates_convergence_from_divergence(variant: str) -> None:
    """Just below the limit the iteration contracts (factor < 1); just above it blows up."""
    x, y, _ = regression(1, 8, 3, seed=10)
    limit = float(largest_stable_eta(variant, x))
    per_position = variant == "causal2"
    for eta, should_converge in ((0.98 * limit, True), (1.02 * limit, False)):
        assert (float(contraction_factor(variant, x, eta=eta)) < 1) == should_converge
        if variant == "prefix":
            w = gd_weights(x, y, eta=eta, n_layers=3000)
            error = (w[-1] - least_squares_weights(x, y)).norm()
        else:
            w = causal_gd_weights(x, y, eta=eta, n_layers=3000, per_position_step=per_position)
            target = causal2_stationary_weights if per_position else causal_stationary_weights
            error = (w[-1] - target(x, y)).norm()
        assert (float(error) < 1e-6) == should_converge, f"eta={eta:.4g}: error {float(error):.3g}"
        if should_converge:
            check_step_size(variant, x, eta=eta)
        else:
            paper_name = {"prefix": "prefixLM", "causal": "causalLM", "causal2": "causalLM2"}
            with pytest.raises(UserError, match=f"diverges for {paper_name[variant]} "):
                check_step_size(variant, x, eta=eta)
