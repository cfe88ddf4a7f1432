"""Stationary points of the three LSA learners and their linear convergence rates.

Context inputs ``x`` are ``[batch, n, d]`` (row j is x_j), labels ``y`` are ``[batch, n]``.
In the paper's notation X = (x_1, ..., x_n) is d x n, so its X X^T is ``x^T x`` here.

- prefixLM (Prop. 3): w* solves y X^T = w* X X^T; the minimum-norm least-squares solution
  is the one GD reaches from w0 = 0. Iteration matrix I - (eta/n) X X^T.
- causalLM (Prop. 4): w_j* = sum_{i<=j} a_i* x_i with y = a* T, T the upper-triangular Gram
  matrix T_ij = x_i . x_j (i <= j). Iteration matrix I - (eta/n) T.
- causalLM2 (Prop. 7): w_j* = (1/j) sum_{i<=j} a_i* x_i with y = a* S, S_ij = x_i . x_j / j.
  Iteration matrix I - eta S.
y = a* T is lower-triangular in a*, so a* comes from forward substitution
(``solve_triangular``), vectorised over the batch.
"""

from __future__ import annotations

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from icl_interp.errors import UserError
from icl_interp.lsa.model import LSA_VARIANTS


def least_squares_weights(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch d"]:
    """Minimum-norm solution of y X^T = w* X X^T (prefixLM stationary point, Prop. 3)."""
    return einsum(torch.linalg.pinv(x), y, "batch d n, batch n -> batch d")


def upper_gram(x: Float[Tensor, "batch n d"]) -> Float[Tensor, "batch n n"]:
    """T of Prop. 4: T_ij = x_i . x_j for i <= j, zero below the diagonal."""
    return (x @ x.mT).triu_()


def s_matrix(x: Float[Tensor, "batch n d"]) -> Float[Tensor, "batch n n"]:
    """S of Prop. 7: T with column j divided by j."""
    n = x.shape[1]
    return upper_gram(x).div_(torch.arange(1, n + 1, dtype=x.dtype, device=x.device))


def _solve_row_system(
    upper: Float[Tensor, "batch n n"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n"]:
    """a with y = a U for upper-triangular U (forward substitution, a_1 first)."""
    solution = torch.linalg.solve_triangular(upper, y[..., None, :], upper=True, left=False)
    return solution[..., 0, :]


def causal_stationary_coefficients(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n"]:
    """a* with y = a* T (Prop. 4): a_j* = (y_j - sum_{i<j} a_i* x_i . x_j) / |x_j|^2."""
    return _solve_row_system(upper_gram(x), y)


def causal2_stationary_coefficients(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n"]:
    """a* with y = a* S (Prop. 7)."""
    return _solve_row_system(s_matrix(x), y)


def causal_stationary_weights(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n d"]:
    """w_j* = sum_{i<=j} a_i* x_i for j = 1..n (row j-1); the query uses the last row."""
    coefficients = causal_stationary_coefficients(x, y)
    return torch.cumsum(coefficients[..., None] * x, dim=1)


def causal2_stationary_weights(
    x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n d"]:
    """w_j* = (1/j) sum_{i<=j} a_i* x_i with a* from the S matrix (Prop. 7)."""
    n = x.shape[1]
    coefficients = causal2_stationary_coefficients(x, y)
    counts = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
    return torch.cumsum(coefficients[..., None] * x, dim=1) / counts[:, None]


def stationary_weights(
    variant: str, x: Float[Tensor, "batch n d"], y: Float[Tensor, "batch n"]
) -> Float[Tensor, "batch n d"]:
    """Per-position stationary weights; for prefix every position holds the least-squares w*."""
    spec = LSA_VARIANTS.get(variant)
    if spec.mask_kind == "prefix":
        return least_squares_weights(x, y)[:, None].expand_as(x)
    if spec.per_position_step:
        return causal2_stationary_weights(x, y)
    return causal_stationary_weights(x, y)


def iteration_matrix(
    variant: str, x: Float[Tensor, "batch n d"], *, eta: float
) -> Float[Tensor, "batch m m"]:
    """M with (iterate - stationary)^(l) = (iterate - stationary)^(l-1) M (Props. 3, 4, 7).

    prefix: m = d (weights); causal and causal2: m = n (coefficients a).
    """
    spec = LSA_VARIANTS.get(variant)
    n, d = x.shape[1], x.shape[2]
    if spec.mask_kind == "prefix":
        gram = einsum(x, x, "batch n d1, batch n d2 -> batch d1 d2")
        return torch.eye(d, dtype=x.dtype, device=x.device) - (eta / n) * gram
    step_matrix = eta * s_matrix(x) if spec.per_position_step else (eta / n) * upper_gram(x)
    return torch.eye(n, dtype=x.dtype, device=x.device) - step_matrix


def contraction_factor(
    variant: str, x: Float[Tensor, "batch n d"], *, eta: float
) -> Float[Tensor, " batch"]:
    """Spectral radius of the iteration matrix: the asymptotic per-layer error factor.

    T and S are triangular, so their eigenvalues are the diagonal; X X^T is symmetric.
    For prefix with n < d the zero eigenvalues of X X^T give a factor of exactly 1 on
    directions the context cannot see (errors there neither grow nor shrink).
    """
    spec = LSA_VARIANTS.get(variant)
    if spec.mask_kind == "prefix":
        eigenvalues = torch.linalg.eigvalsh(iteration_matrix(variant, x, eta=eta))
    else:
        eigenvalues = torch.diagonal(iteration_matrix(variant, x, eta=eta), dim1=-2, dim2=-1)
    return eigenvalues.abs().amax(dim=-1)


def largest_stable_eta(variant: str, x: Float[Tensor, "batch n d"]) -> Float[Tensor, " batch"]:
    """The eta at which the iteration stops contracting: every step must satisfy step * lambda < 2.

    prefix: 2n / lambda_max(X X^T); causal: 2n / max_j |x_j|^2; causal2: 2 / max_j |x_j|^2 / j.
    """
    spec = LSA_VARIANTS.get(variant)
    n = x.shape[1]
    if spec.mask_kind == "prefix":
        gram = einsum(x, x, "batch n d1, batch n d2 -> batch d1 d2")
        return 2 * n / torch.linalg.eigvalsh(gram)[..., -1]
    squared_norms = x.pow(2).sum(-1)
    if spec.per_position_step:
        positions = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
        return 2 / (squared_norms / positions).amax(dim=-1)
    return 2 * n / squared_norms.amax(dim=-1)


def check_step_size(variant: str, x: Float[Tensor, "batch n d"], *, eta: float) -> None:
    """Raise UserError when eta makes the ``variant`` iteration diverge on any sequence."""
    limits = largest_stable_eta(variant, x)
    if bool((eta < limits).all()):
        return
    n_bad = int((eta >= limits).sum())
    condition = {
        "prefix": "eta/n * lambda_max(X X^T) < 2 (spectral radius of I - eta/n X X^T below 1)",
        "causal": "eta/n * max_j |x_j|^2 < 2 (spectral radius of I - eta/n T below 1)",
        "causal2": "eta/j * |x_j|^2 < 2 for every j (spectral radius of I - eta S below 1)",
    }[variant]
    raise UserError(
        f"eta={eta:g} diverges for {LSA_VARIANTS.get(variant).paper_name} on {n_bad} of {x.shape[0]} sequences: "
        f"it needs {condition}; the largest stable eta here is {float(limits.min()):.4g}"
    )
