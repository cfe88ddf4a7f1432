"""Synthetic in-context tasks (paper 2308.06912, section 5.2) and their token layout.

Every sequence draws its own task weights ``w ~ N(0, I)`` and points
``x ~ U(-1, 1)^d``. The first ``n_context`` points become tokens ``[x, y]``, the
last ``n_queries`` become query tokens ``[x, 0]`` whose labels the model predicts.

- ``linear``: ``y = w.x``.
- ``nonlinear``: ``y = sigmoid(w.x) - 0.5`` (the authors' code subtracts 0.5).
- ``classification``: three ``w_c``; ``y = onehot(argmax_c w_c.x)``, trained with L2.

Regression is scored by the squared error of each query, classification by the
error rate in percent (argmax of the prediction against the true class). Each task
names its trivial baseline, a prediction that ignores the context: 0 for regression
(the labels' mean), the most frequent class of the scored sequences for classification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from icl_interp.registry import Registry


@dataclass(frozen=True)
class SyntheticTask:
    """A task family: how to draw labelled points, and how to score query predictions."""

    name: str
    d_y: int
    error_name: str
    label: Callable[[Float[Tensor, "seq point d_x"], torch.Generator], Tensor]
    error: Callable[[Tensor, Tensor], Tensor]
    trivial: Callable[[Tensor], Tensor]

    def sample(
        self, n_sequences: int, n_points: int, d_x: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "seq point d_x"], Float[Tensor, "seq point d_y"]]:
        """Draw ``n_sequences`` sequences of ``n_points`` points, each with its own weights."""
        x = torch.rand(n_sequences, n_points, d_x, generator=generator) * 2 - 1
        return x, self.label(x, generator)


TASKS: Registry[SyntheticTask] = Registry("task")


def squared_error(
    pred: Float[Tensor, "*batch d_y"], target: Float[Tensor, "*batch d_y"]
) -> Float[Tensor, "*batch"]:
    return (pred - target).pow(2).sum(-1)


def misclassified_percent(
    pred: Float[Tensor, "*batch d_y"], target: Float[Tensor, "*batch d_y"]
) -> Float[Tensor, "*batch"]:
    return 100.0 * (pred.argmax(-1) != target.argmax(-1)).float()


def predict_zero(targets: Float[Tensor, "*batch d_y"]) -> Float[Tensor, "*batch d_y"]:
    return torch.zeros_like(targets)


def predict_most_frequent_class(
    targets: Float[Tensor, "*batch d_y"],
) -> Float[Tensor, "*batch d_y"]:
    """The one class that is right most often on ``targets`` (one-hot), for every query."""
    counts = targets.reshape(-1, targets.shape[-1]).sum(0)
    best = torch.nn.functional.one_hot(counts.argmax(), targets.shape[-1]).to(targets.dtype)
    return best.expand_as(targets)


def least_squares_prediction(
    context_x: Float[Tensor, "seq context d_x"],
    context_y: Float[Tensor, "seq context d_y"],
    query_x: Float[Tensor, "seq query d_x"],
    ridge: float = 1e-6,
) -> Float[Tensor, "seq query d_y"]:
    """Least squares (ridge ``ridge``, float64) fitted to each sequence's context, applied to its queries.

    A reference, not a bound: optimal for noise-free linear regression with more context
    points than dimensions; a linear fit for the other tasks (classification: fit the
    one-hot labels, predict the argmax).
    """
    x, y = context_x.double(), context_y.double()
    gram = x.transpose(1, 2) @ x + ridge * torch.eye(x.shape[-1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, x.transpose(1, 2) @ y)
    return (query_x.double() @ weights).to(context_y.dtype)


def _linear_logit(
    x: Float[Tensor, "seq point d_x"], generator: torch.Generator, n_out: int
) -> Tensor:
    w = torch.randn(x.shape[0], n_out, x.shape[-1], generator=generator)
    return einsum(x, w, "seq point d_x, seq out d_x -> seq point out")


def _linear(x: Float[Tensor, "seq point d_x"], generator: torch.Generator) -> Tensor:
    return _linear_logit(x, generator, 1)


def _nonlinear(x: Float[Tensor, "seq point d_x"], generator: torch.Generator) -> Tensor:
    return torch.sigmoid(_linear_logit(x, generator, 1)) - 0.5


N_CLASSES = 3


def _classification(x: Float[Tensor, "seq point d_x"], generator: torch.Generator) -> Tensor:
    logits = _linear_logit(x, generator, N_CLASSES)
    return torch.nn.functional.one_hot(logits.argmax(-1), N_CLASSES).to(x.dtype)


TASKS.add("linear", SyntheticTask("linear", 1, "query MSE", _linear, squared_error, predict_zero))
TASKS.add(
    "nonlinear",
    SyntheticTask("nonlinear", 1, "query MSE", _nonlinear, squared_error, predict_zero),
)
TASKS.add(
    "classification",
    SyntheticTask(
        "classification",
        N_CLASSES,
        "query error %",
        _classification,
        misclassified_percent,
        predict_most_frequent_class,
    ),
)


def make_tokens(
    x: Float[Tensor, "seq point d_x"], y: Float[Tensor, "seq point d_y"], n_queries: int
) -> Float[Tensor, "seq point d_token"]:
    """Tokens ``[x, y]`` for context points and ``[x, 0]`` for the last ``n_queries`` points."""
    y_shown = y.clone()
    y_shown[:, y.shape[1] - n_queries :] = 0
    return torch.cat([x, y_shown], dim=-1)


@dataclass
class SyntheticData:
    """A fixed pool of sequences: tokens to feed the model and the query labels to predict."""

    tokens: Float[Tensor, "seq point d_token"]
    query_targets: Float[Tensor, "seq query d_y"]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> SyntheticData:
        return SyntheticData(self.tokens.to(device), self.query_targets.to(device))


TRAIN_STREAM, EVAL_STREAM, FRESH_STREAM, VALIDATION_STREAM = 0, 1, 2, 3


def make_dataset(
    task: SyntheticTask,
    n_sequences: int,
    *,
    n_context: int,
    n_queries: int,
    d_x: int,
    seed: int,
    stream: int,
) -> SyntheticData:
    """The pool for ``(seed, stream)``: training and evaluation use different streams."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + stream)
    x, y = task.sample(n_sequences, n_context + n_queries, d_x, generator)
    return SyntheticData(make_tokens(x, y, n_queries), y[:, n_context:].clone())
