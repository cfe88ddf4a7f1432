"""Report statistics on hand-made tables: layer reduction, bootstrap intervals, paired
differences, the headline's width; the second demonstration draw of the controls."""

from __future__ import annotations

import pandas as pd
import pytest

from icl_interp.lm.data import Example, make_prompt_sets, tiny_tokenizer
from icl_interp.lm.report import headline, intervals, paired_difference


def metrics_table(gd: float, lcgd: float, seeds: tuple[int, ...] = (0,)) -> pd.DataFrame:
    rows = [
        ("m", "mr", seed, "causal", method, layer, "simaou", value + 0.01 * layer)
        for seed in seeds
        for method, value in (("gd", gd), ("lcgd", lcgd))
        for layer in range(2)
    ]
    return pd.DataFrame(
        rows, columns=["model", "data", "seed", "mask", "method", "layer", "metric", "value"]
    )


def bootstrap_table(values: dict[str, list[float]], seeds: tuple[int, ...] = (0,)) -> pd.DataFrame:
    rows = [
        ("m", "mr", seed, "causal", method, "simaou", replicate, value)
        for seed in seeds
        for method, series in values.items()
        for replicate, value in enumerate(series)
    ]
    columns = ["model", "data", "seed", "mask", "method", "metric", "replicate", "value"]
    return pd.DataFrame(rows, columns=columns)


def test_interval_is_the_percentile_interval_of_the_replicates() -> None:
    replicates = bootstrap_table({"gd": [r / 100 for r in range(101)]})
    bounds = intervals(replicates).set_index("data")
    assert bounds.loc["mr", "low"] == pytest.approx(0.025)
    assert bounds.loc["mr", "high"] == pytest.approx(0.975)
    assert bounds.loc["mean", "low"] == pytest.approx(0.025)  # one data set: mean = itself


def test_paired_difference_is_taken_within_replicates() -> None:
    """Both methods move together across replicates; their difference is constant."""
    shared = [r / 10 for r in range(10)]
    replicates = bootstrap_table({"gd": shared, "lcgd": [v + 0.1 for v in shared]})
    result = paired_difference(metrics_table(0.2, 0.3), replicates, "simaou", "lcgd", "gd")
    row = result.set_index("data").loc["mr"]
    assert row["difference"] == pytest.approx(0.1)
    assert row["low"] == pytest.approx(0.1) and row["high"] == pytest.approx(0.1)
    assert bool(row["excludes_0"])


def test_an_interval_straddling_zero_is_not_marked() -> None:
    replicates = bootstrap_table({"gd": [0.0] * 10, "lcgd": [(-1) ** r * 0.1 for r in range(10)]})
    result = paired_difference(metrics_table(0.2, 0.2), replicates, "simaou", "lcgd", "gd")
    assert not result["excludes_0"].any()


def test_headline_fits_in_100_columns() -> None:
    seeds = (0, 1, 2)
    replicates = bootstrap_table({"gd": [0.2] * 5, "lcgd": [0.3] * 5}, seeds)
    text = headline(metrics_table(0.2, 0.3, seeds), replicates)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "+0.100 [+0.100, +0.100]" in text and "*" not in text


def test_every_method_in_the_table_reaches_the_headline_in_blocks_that_fit() -> None:
    from icl_interp.lm.conditions import METHODS, Method

    names = [
        "untrained",
        "mismatched",
        "mismatched_lcgd",
        "icl_vs_icl",
        "shuffled_gd",
        "shuffled_lcgd",
    ]
    METHODS.add("my_probe", Method("my_probe", "my probe", None))
    try:
        table = metrics_table(0.2, 0.3)
        extra = [
            table[table["method"] == "gd"].assign(method=name) for name in [*names, "my_probe"]
        ]
        text = headline(pd.concat([table, *extra]), bootstrap_table({"gd": [0.2], "lcgd": [0.3]}))
    finally:
        METHODS.remove("my_probe")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert "my_prob" in text and "my_prob = my probe" in text  # the registry's column and label
    assert all(METHODS.get(n).column in text for n in names)
    assert sum(line.startswith("data") for line in lines) == 2  # a second block of columns


def test_the_second_demonstration_draw_is_disjoint_and_shares_the_queries() -> None:
    tokenizer = tiny_tokenizer()
    spec, first, second, provenance = make_prompt_sets(
        tokenizer, "mr", n_test=5, seed=0, k=4, source="package", other_draw=True
    )
    assert second is not None and second.k_used == first.k_used == 4
    keys = {ex.content_key for ex in first.demonstrations}
    other = {ex.content_key for ex in second.demonstrations}
    queries = {ex.content_key for ex in first.queries}
    assert not keys & other and not (keys | other) & queries
    assert second.queries == first.queries and provenance.other_k_used == 4
    assert isinstance(first.demonstrations[0], Example)
