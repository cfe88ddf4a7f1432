import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.synthetic.tasks import (
    EVAL_STREAM,
    TASKS,
    TRAIN_STREAM,
    make_dataset,
    make_tokens,
    misclassified_percent,
    squared_error,
)
from tests.helpers import assert_close


def _draw_same(n_seq: int, n_pts: int, d: int, n_out: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_seq, n_pts, d, generator=g) * 2 - 1
    w = torch.randn(n_seq, n_out, d, generator=g)
    return x, w


def test_linear_labels_are_w_dot_x() -> None:
    x, y = TASKS.get("linear").sample(3, 5, 4, torch.Generator().manual_seed(7))
    x_ref, w = _draw_same(3, 5, 4, 1, 7)
    assert_close(x, x_ref, atol=0, what="x")
    expected = torch.stack([x_ref[s] @ w[s, 0] for s in range(3)])[..., None]
    assert_close(y, expected, atol=1e-6, what="y = w.x")
    assert x.min() >= -1 and x.max() <= 1


def test_nonlinear_labels_are_centred_sigmoid() -> None:
    _, y = TASKS.get("nonlinear").sample(2, 6, 3, torch.Generator().manual_seed(1))
    x_ref, w = _draw_same(2, 6, 3, 1, 1)
    expected = torch.sigmoid(torch.stack([x_ref[s] @ w[s, 0] for s in range(2)]))[..., None] - 0.5
    assert_close(y, expected, atol=1e-6, what="sigmoid(w.x) - 0.5")


def test_classification_labels_are_one_hot_argmax() -> None:
    _, y = TASKS.get("classification").sample(2, 8, 5, torch.Generator().manual_seed(3))
    x_ref, w = _draw_same(2, 8, 5, 3, 3)
    classes = torch.stack([(x_ref[s] @ w[s].T).argmax(-1) for s in range(2)])
    assert torch.equal(y.argmax(-1), classes)
    assert torch.equal(y.sum(-1), torch.ones(2, 8))
    assert y.shape == (2, 8, 3)


def test_tokens_hide_query_labels_only() -> None:
    x = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)
    y = torch.ones(2, 5, 1)
    tokens = make_tokens(x, y, n_queries=2)
    assert torch.equal(tokens[..., :2], x)
    assert torch.equal(tokens[:, :3, 2], torch.ones(2, 3))
    assert torch.equal(tokens[:, 3:, 2], torch.zeros(2, 2))
    assert torch.equal(y, torch.ones(2, 5, 1)), "labels must not be modified in place"


def test_dataset_is_seeded_and_streams_differ() -> None:
    task = TASKS.get("linear")
    kw = {"n_context": 4, "n_queries": 2, "d_x": 3, "seed": 5}
    a = make_dataset(task, 6, stream=TRAIN_STREAM, **kw)
    b = make_dataset(task, 6, stream=TRAIN_STREAM, **kw)
    c = make_dataset(task, 6, stream=EVAL_STREAM, **kw)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.query_targets, b.query_targets)
    assert not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == (6, 6, 4) and a.query_targets.shape == (6, 2, 1)


def test_errors_by_hand() -> None:
    pred = torch.tensor([[1.0], [3.0]])
    target = torch.tensor([[0.0], [1.0]])
    assert_close(
        squared_error(pred, target), torch.tensor([1.0, 4.0]), atol=0, what="squared error"
    )
    pred = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]])
    target = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert_close(
        misclassified_percent(pred, target), torch.tensor([0.0, 100.0]), atol=0, what="error %"
    )


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(UserError, match="classification, linear, nonlinear"):
        TASKS.get("logistic")
