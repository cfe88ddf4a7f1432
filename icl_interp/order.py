"""Order sensitivity: how much a layer's readout moves when only the demonstrations' order does.

One definition for every level of the toolkit (LSA, synthetic transformers, pretrained LMs;
docs/order_and_task_vectors.md). Take one demonstration set and P seeded permutations of it;
run every query after each ordering and read out, per layer, the prediction (the query
prediction for regression, the true label's logit-lens probability for LMs). The order
sensitivity of a layer is the mean over queries of the variance across the P orders of that
readout. Its scale is the same statistic with the P orders replaced by P different
demonstration sets (same task, same queries): :func:`order_sensitivity` computes both, the
leading axis saying which.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def order_sensitivity(
    readouts: Float[Tensor, "draw layer *query"],
) -> Float[Tensor, " layer"]:
    """Per layer, the mean over queries of the variance across draws (axis 0) of the readout.

    ``draw`` indexes the P orders of one demonstration set (order sensitivity) or P different
    demonstration sets (its scale). Variance with Bessel's correction (divide by P - 1),
    computed in float64; trailing axes (queries, sequences, output dimensions of a vector
    readout) are all averaged.
    """
    if readouts.shape[0] < 2:
        raise ValueError(f"need at least 2 draws along axis 0, got {readouts.shape[0]}")
    variance = readouts.double().var(dim=0, correction=1)
    return variance.flatten(start_dim=1).mean(dim=1)


def seeded_permutations(n: int, count: int, seed: int) -> Int[Tensor, "order n"]:
    """``count`` permutations of ``range(n)`` from one seed; the first is the identity."""
    if n < 1 or count < 1:
        raise ValueError(f"need n >= 1 and count >= 1, got n={n}, count={count}")
    generator = torch.Generator().manual_seed(seed)
    rest = [torch.randperm(n, generator=generator) for _ in range(count - 1)]
    return torch.stack([torch.arange(n), *rest])
