import pytest
import torch

from icl_interp.errors import UserError
from icl_interp.masks import (
    MASKS,
    MaskKind,
    additive_mask,
    build_mask,
    masked_softmax,
    register_mask,
)


def test_causal_is_lower_triangular() -> None:
    m = build_mask("causal", 5)
    assert torch.equal(m, torch.tril(torch.ones(5, 5, dtype=torch.bool)))


def test_prefix_block_is_bidirectional_then_causal() -> None:
    m = build_mask("prefix", 5, n_prefix=3)
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)


@pytest.mark.parametrize("kind", ["causal", "prefix"])
def test_isolated_queries_see_all_context_and_nothing_else(kind: str) -> None:
    n_ctx, n_q = 4, 3
    m = build_mask(kind, n_ctx + n_q, n_queries=n_q, isolate_queries=True)
    assert m[n_ctx:, :n_ctx].all()
    assert not m[n_ctx:, n_ctx:].any(), "a query saw itself or another query"
    assert not m[:n_ctx, n_ctx:].any(), "a context position saw a query"
    ctx = m[:n_ctx, :n_ctx]
    if kind == "causal":
        assert torch.equal(ctx, torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)))
    else:
        assert ctx.all()


def test_sliding_window_limits_distance_both_ways() -> None:
    m = build_mask("prefix", 6, n_prefix=6, sliding_window=2)
    assert torch.equal(m, (torch.arange(6)[:, None] - torch.arange(6)[None, :]).abs() < 2)


def test_masked_scores_are_minus_inf_and_pattern_exact_zero() -> None:
    m = build_mask("causal", 4)
    scores = torch.randn(2, 4, 4)
    add = additive_mask(m)
    assert torch.isneginf(add[~m]).all() and (add[m] == 0).all()
    pattern = masked_softmax(scores, m.expand(2, 4, 4))
    assert (pattern[..., ~m] == 0).all()
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, 4))


def test_row_with_no_allowed_key_is_zero_not_nan() -> None:
    m = torch.zeros(2, 2, dtype=torch.bool)
    assert (masked_softmax(torch.randn(2, 2), m) == 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "causal", "seq_len": 0},
        {"kind": "prefix", "seq_len": 3, "n_prefix": 4},
        {"kind": "causal", "seq_len": 3, "n_queries": 4},
        {"kind": "causal", "seq_len": 3, "sliding_window": 0},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_mask(**kwargs)


def test_unknown_kind_is_a_user_error_listing_the_kinds() -> None:
    with pytest.raises(UserError, match="valid mask kinds: causal, prefix"):
        build_mask("bogus", 3)


def test_a_registered_kind_is_built_like_the_others() -> None:
    """A mask kind is one registration: its rule, then the shared modifiers (window, queries)."""
    # strictly past, except that the first token (which has no past) sees itself: a kind that
    # left position 0 with no key would be refused (tests/core/test_reliability_round3.py)
    rule = lambda q, k, n: (k < q) | ((q == 0) & (k == 0))  # noqa: E731
    register_mask(MaskKind("past_only", "strictly past", "PastLM", rule))
    try:
        mask = build_mask("past_only", 4, sliding_window=2)
        expected = torch.tensor(
            [[1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool
        )
        assert torch.equal(mask, expected)
    finally:
        MASKS.remove("past_only")
