"""The ICL-vs-GD evidence layer on constructed unit values whose answers are hand-computable:
contrasts per unit, complete draws, the pooled estimate over draws, its mixed-model check and
the declared family's Holm adjustment."""

from __future__ import annotations

import itertools
import math

import pandas as pd
import pytest

from icl_interp.lm.evidence import (
    FAMILY_1,
    PRIMARY,
    Contrast,
    cell_estimates,
    complete_draws,
    family_tests,
    pooled,
)


def _values(rows: list[tuple[str, int, str, float]], model: str = "m") -> pd.DataFrame:
    """Metric rows (data, seed, method, value) of ``model``, causal mask, demo-specific SimAOU."""
    return pd.DataFrame(
        [
            {
                "model": model,
                "data": data,
                "seed": seed,
                "mask": "causal",
                "metric": "simaou_demo",
                "method": method,
                "value": value,
            }
            for data, seed, method, value in rows
        ]  # fmt: skip
    )


def test_a_contrast_is_a_per_unit_difference_over_units_that_have_both() -> None:
    values = _values([("a", 0, "lcgd", 0.5), ("a", 0, "gd", 0.2), ("a", 1, "lcgd", 0.4)])
    diff = PRIMARY.unit_values(values)
    assert diff[["data", "seed"]].values.tolist() == [["a", 0]]  # draw 1 has no GD
    assert diff["value"].tolist() == pytest.approx([0.3])
    against_zero = Contrast("x", "x", "simaou_demo", "lcgd").unit_values(values)
    assert against_zero["value"].tolist() == [0.5, 0.4]


def test_complete_draws_are_those_every_data_set_has() -> None:
    units = pd.DataFrame({"model": "m", "data": ["a", "a", "a", "b", "b"], "seed": [0, 1, 2, 0, 1]})
    assert complete_draws(units, "m") == (("a", "b"), (0, 1))
    assert complete_draws(units, "other") == ((), ())


def test_pooled_is_the_t_interval_of_per_draw_means_over_complete_draws() -> None:
    # per-draw means over data sets a, b: draw 0 (0.1 + 0.3) / 2 = 0.2, draw 1 (0.3 + 0.5) / 2
    # = 0.4; draw 2 (a only) is left out. Mean 0.3, sd 0.1414, se 0.1, t(0.975, 1) = 12.706.
    gd = [("a", 0, "gd", 0.0), ("a", 1, "gd", 0.0), ("a", 2, "gd", 0.0), ("b", 0, "gd", 0.0),
          ("b", 1, "gd", 0.0)]  # fmt: skip
    lcgd = [("a", 0, "lcgd", 0.1), ("a", 1, "lcgd", 0.3), ("a", 2, "lcgd", 0.9),
            ("b", 0, "lcgd", 0.3), ("b", 1, "lcgd", 0.5)]  # fmt: skip
    result = pooled(PRIMARY.unit_values(_values(gd + lcgd)), "m", "causal")
    assert result is not None
    assert (result.datasets, result.draws) == (("a", "b"), (0, 1))
    e = result.estimate
    assert (e.mean, e.n) == (pytest.approx(0.3), 2)
    assert e.sd == pytest.approx(math.sqrt(0.02))
    assert (e.high - e.low) / 2 == pytest.approx(12.706 * 0.1, abs=1e-3)  # type: ignore[operator]
    assert pooled(PRIMARY.unit_values(_values(gd + lcgd)), "m", "prefix") is None


def test_the_mixed_model_intercept_is_the_grand_mean_of_a_balanced_design() -> None:
    # A balanced design (every data set has every draw): the random-intercept model's
    # intercept is the grand mean, which is the pooled estimate's mean.
    offsets = {"a": 0.0, "b": 0.2, "c": -0.1}
    noise = [0.03, -0.02, 0.05, -0.04, 0.01, 0.0]
    rows = [
        (data, seed, "lcgd", 0.1 + offsets[data] + noise[(seed + i) % 6])
        for (i, data), seed in itertools.product(enumerate(offsets), range(6))
    ]
    rows += [(data, seed, "gd", 0.0) for data, seed in itertools.product(offsets, range(6))]
    result = pooled(PRIMARY.unit_values(_values(rows)), "m", "causal")
    assert result is not None and result.mixed is not None
    mean, low, high = result.mixed
    assert mean == pytest.approx(result.estimate.mean, abs=1e-6)
    assert low < mean < high


def test_one_draw_has_no_mixed_model_and_cells_are_per_data_set() -> None:
    rows = [("a", 0, "lcgd", 0.2), ("a", 0, "gd", 0.1), ("b", 0, "lcgd", 0.3), ("b", 0, "gd", 0.0)]
    unit = PRIMARY.unit_values(_values(rows))
    result = pooled(unit, "m", "causal")
    assert result is not None and result.mixed is None and result.estimate.n == 1
    cells = cell_estimates(unit)
    assert cells["data"].tolist() == ["a", "b"]
    assert [e.mean for e in cells["estimate"]] == pytest.approx([0.1, 0.3])


def test_the_family_counts_members_not_yet_archived_as_p_one() -> None:
    # Five draws of one model and mask, SimAOU only: 2 contrasts x 2 models x 2 masks = 8
    # members, one with a p-value; Holm multiplies the smallest p by the family size.
    rows = [("a", s, "lcgd", 0.1 + 0.01 * s) for s in range(5)]
    rows += [("a", s, "gd", 0.0) for s in range(5)]
    tests = family_tests(_values(rows), FAMILY_1, ["m", "absent"], ["causal", "prefix"])
    assert len(tests) == 8 and tests["pooled"].notna().sum() == 1
    first = tests.iloc[0]
    assert (first["model"], first["mask"]) == ("m", "causal")
    assert first["p_holm"] == pytest.approx(min(1.0, 8 * first["pooled"].estimate.p))
    assert tests["p_holm"].iloc[1:].tolist() == [None] * 7  # no test, not NaN
