"""Inference over replicates on hand-computable inputs."""

from __future__ import annotations

import math

import pytest

from icl_interp.stats import describe, estimate, format_p, holm, verdict


def test_t_interval_and_test_hand_computed() -> None:
    # mean 2, sd 1, se 1/sqrt(3); t(0.975, df 2) = 4.302653; t = 2 sqrt(3) = 3.4641 -> p 0.07418
    e = estimate([1.0, 2.0, 3.0])
    assert (e.mean, e.n, e.sd) == (2.0, 3, 1.0)
    half = 4.302653 / math.sqrt(3)
    assert e.low == pytest.approx(2 - half, abs=1e-5) and e.high == pytest.approx(
        2 + half, abs=1e-5
    )
    assert e.p == pytest.approx(0.07418, abs=1e-4)
    assert e.se == pytest.approx(1 / math.sqrt(3)) and estimate([0.5]).se is None


def test_t_quantiles_match_the_printed_table() -> None:
    # half-width / se = t(0.975, n - 1): 12.706 (df 1), 2.228 (df 10)
    two = estimate([0.0, 1.0])
    assert (two.high - two.mean) / two.se == pytest.approx(12.706, abs=1e-3)  # type: ignore[operator]
    eleven = estimate([float(i) for i in range(11)])
    assert (eleven.high - eleven.mean) / eleven.se == pytest.approx(2.228, abs=1e-3)  # type: ignore[operator]


def test_equivalence_needs_the_interval_inside_the_margin() -> None:
    tight = estimate([0.01, -0.01, 0.0, 0.005, -0.005], margin=0.05)
    assert tight.p_equivalent is not None and tight.p_equivalent < 0.05
    assert verdict(tight, 1.0, ("LCGD", "GD")) == "equivalent within ±0.05"
    wide = estimate([0.2, -0.2, 0.1, -0.1], margin=0.05)
    assert wide.p_equivalent is not None and wide.p_equivalent > 0.05
    assert verdict(wide, 1.0, ("LCGD", "GD")).startswith("inconclusive (detectable effect ±")
    assert verdict(estimate([0.3, 0.31, 0.29]), 0.001, ("LCGD", "GD")) == "LCGD higher"
    assert verdict(estimate([-0.3, -0.31, -0.29]), 0.001, ("LCGD", "GD")) == "GD higher"


def test_detectable_effect_matches_the_normal_approximation_for_many_replicates() -> None:
    values = [(-1.0) ** i for i in range(400)]  # sd ~ 1, n = 400
    e = estimate(values)
    expected = (1.959964 + 0.841621) * e.sd / math.sqrt(400)  # type: ignore[operator]
    assert e.detectable == pytest.approx(expected, rel=0.01)


def test_holm_hand_computed_and_padded_to_the_declared_family() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, 0.04, None, 0.03], family_size=4) == [
        pytest.approx(0.04), pytest.approx(0.09), None, pytest.approx(0.09),
    ]  # fmt: skip


def test_one_replicate_has_no_interval_and_says_so() -> None:
    e = estimate([0.25, float("nan")])
    assert e.n == 1 and e.low is None and e.p is None and e.detectable is None
    assert describe(e) == "+0.250 (n = 1, no interval)"
    assert verdict(e, None, ("LCGD", "GD")) == "one replicate (1): no test"
    assert format_p(None) == "–" and format_p(0.0004) == "<0.001" and format_p(0.0123) == "0.012"
    with pytest.raises(ValueError, match="at least one finite value"):
        estimate([float("nan")])


def test_the_mixed_model_check_needs_two_draws() -> None:
    import pandas as pd

    from icl_interp.lm.evidence import _mixed_model

    one_draw = pd.DataFrame(
        {"data": ["a", "b", "c", "d"], "seed": 0, "value": [0.1, 0.2, 0.1, 0.3]}
    )
    assert _mixed_model(one_draw) is None
    two = pd.DataFrame(
        {
            "data": list("abcd") * 2,
            "seed": [0] * 4 + [1] * 4,
            "value": [0.1, 0.2, 0.1, 0.3, 0.2, 0.1, 0.2, 0.2],
        }
    )
    fitted = _mixed_model(two)
    assert fitted is not None and fitted[1] <= fitted[0] <= fitted[2]
