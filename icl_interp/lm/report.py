"""Reports for ``icl-interp compare``: summary tables, bootstrap intervals and the headline.

Everything here reads tidy tables (``metrics.csv``: per layer; ``bootstrap.csv``: layer-reduced
values on resampled test examples), so a notebook can rebuild any report from a results folder.

Intervals are 95% percentile intervals of a two-level bootstrap: each replicate draws the
seeds with replacement and, within each seed's unit, the test examples with replacement (the
unit's replicate r), then averages. With one seed it is a bootstrap over test examples only.
The paired difference of two methods (LCGD - GD) is taken within each replicate, so both
methods see the same resampled examples.
"""

from __future__ import annotations

import textwrap
import warnings
from typing import Any

import numpy as np
import pandas as pd

from icl_interp.lm.conditions import METHODS, method_names
from icl_interp.lm.metrics import METRICS, metric_names
from icl_interp.lm.metrics.core import NO_METHOD

KEYS = ["model", "data", "seed", "mask", "method", "metric"]
LEVEL = 0.95


def layer_reduced(table: pd.DataFrame) -> pd.DataFrame:
    """One value per model x data x seed x mask x method x metric: mean over layers, or the
    last layer for metrics registered with ``over_layers="last"``."""
    keys = ["model", "data", "seed", "mask", "method", "metric"]
    over = table["metric"].map(
        lambda name: METRICS.get(name).over_layers if name in METRICS else "mean"
    )
    mean = table[over == "mean"].groupby(keys, as_index=False)["value"].mean()
    last_rows = table[over == "last"]
    last = last_rows[last_rows["layer"] == last_rows.groupby(keys)["layer"].transform("max")]
    return pd.concat([mean, last[[*keys, "value"]]], ignore_index=True)


def summary_columns(metrics: list[str], methods: list[str]) -> list[tuple[str, str, str]]:
    """(column label, metric, method) of the summary, read from the registries: per-layer-mean
    metrics first, then last-layer ones, each in registration order; a metric that reads the
    finetuned model gets one column per method ("SimAOU GD"), the others one ("SimAOU random")."""
    order = metric_names()
    chosen = sorted(
        (METRICS.get(name) for name in metrics),
        key=lambda m: (m.over_layers == "last", order.index(m.name)),
    )
    columns = []
    for metric in chosen:
        if metric.per_method:
            columns += [
                (f"{metric.label} {METHODS.get(method).label}", metric.name, method)
                for method in methods
            ]
        else:
            columns.append((metric.label, metric.name, NO_METHOD))
    return columns


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Rows model x mask x data (plus a per-model/mask mean row); columns ``summary_columns``."""
    reduced = layer_reduced(table)
    per_data = reduced.groupby(["model", "mask", "method", "metric", "data"], as_index=False)[
        "value"
    ].mean()
    registered = [name for name in dict.fromkeys(table["metric"]) if name in METRICS]
    methods = [name for name in method_names() if name in set(table["method"])]
    columns = {}
    for label, metric, method in summary_columns(registered, methods):
        chosen = per_data[(per_data["metric"] == metric) & (per_data["method"] == method)]
        if not chosen.empty:
            columns[label] = chosen.set_index(["model", "mask", "data"])["value"]
    wide = pd.DataFrame(columns)
    means = wide.groupby(level=["model", "mask"]).mean()
    means.index = pd.MultiIndex.from_tuples(
        [(model, mask, "mean") for model, mask in means.index], names=wide.index.names
    )
    return (
        pd.concat([wide, means])
        .sort_index(level=["model", "mask"], sort_remaining=False)
        .reset_index()
    )


def summary_markdown(
    summary: pd.DataFrame,
    seeds: list[int],
    n_test_requested: int,
    n_test: dict[str, int] | None = None,
    bounds: pd.DataFrame | None = None,
) -> str:
    """The summary table as Markdown, each value with its 95% interval when ``bounds``
    (``intervals``) are given; ``n_test``: test examples used per data set."""
    counts = ", ".join(f"{data} {n}" for data, n in sorted((n_test or {}).items()))
    used = f" (used: {counts})" if counts else ""
    parts = [
        "# ICL vs GD: summary",
        "",
        f"Mean over layers (accuracy and Recall2FTP: last layer) and over seeds {seeds}; "
        f"up to {n_test_requested} test examples per data set{used}. Rows: data sets; "
        "'mean' = mean over data sets.",
    ]
    if bounds is not None:
        parts.append(
            f"Brackets: {LEVEL:.0%} bootstrap interval (seeds and test examples resampled; "
            "see icl_interp/lm/report.py)."
        )
    columns = {
        label: (metric, method)
        for label, metric, method in summary_columns(metric_names(), method_names())
    }
    lookup = (
        None
        if bounds is None
        else bounds.set_index(["model", "mask", "data", "method", "metric"])[["low", "high"]]
    )
    for (model, mask), block in summary.groupby(["model", "mask"], sort=False):
        parts += ["", f"## {model}, ICL mask: {mask}", ""]
        shown = block.drop(columns=["model", "mask"]).astype(object)
        if lookup is not None:
            for row in shown.index:
                data = shown.at[row, "data"]
                for label in shown.columns[1:]:
                    metric, method = columns[label]
                    key = (model, mask, data, method, metric)
                    if key in lookup.index and shown.at[row, label] == shown.at[row, label]:
                        low, high = lookup.loc[key]
                        shown.at[row, label] = f"{shown.at[row, label]:.3f} [{low:.3f}, {high:.3f}]"
        parts.append(markdown_table(shown))
    return "\n".join(parts) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """``frame`` as a Markdown pipe table: floats to 3 decimals, everything else as ``str``."""

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.3f}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# --------------------------------------------------------------------------- intervals


def bootstrap_distribution(
    bootstrap: pd.DataFrame, *, seed: int = 0, mean_over_data: bool = False
) -> pd.DataFrame:
    """Replicate values of each model x mask x method x metric (x data unless
    ``mean_over_data``), seeds resampled with replacement within every replicate.

    ``bootstrap`` has the columns of ``KEYS`` plus ``replicate`` and ``value``.
    """
    rng = np.random.default_rng(seed)
    wide = bootstrap.pivot_table(
        index=["model", "mask", "method", "metric", "data", "replicate"],
        columns="seed",
        values="value",
        aggfunc="first",
    )
    seeds = wide.columns.to_numpy()
    replicates = sorted(bootstrap["replicate"].unique())
    draws = {r: rng.choice(len(seeds), size=len(seeds), replace=True) for r in replicates}
    values = wide.to_numpy()
    chosen = np.array([draws[r] for r in wide.index.get_level_values("replicate")])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (Recall2FTP 0/0) stay NaN
        resampled = np.nanmean(np.take_along_axis(values, chosen, axis=1), axis=1)
    frame = wide.index.to_frame(index=False).assign(value=resampled)
    if mean_over_data:
        frame = frame.groupby(["model", "mask", "method", "metric", "replicate"], as_index=False)[
            "value"
        ].mean()
        frame["data"] = "mean"
    return frame


def intervals(bootstrap: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Columns model, mask, data, method, metric, low, high (per data set and 'mean')."""
    frames = [
        bootstrap_distribution(bootstrap, seed=seed),
        bootstrap_distribution(bootstrap, seed=seed, mean_over_data=True),
    ]
    replicates = pd.concat(frames, ignore_index=True)
    tail = (1 - LEVEL) / 2
    grouped = replicates.groupby(["model", "mask", "data", "method", "metric"])["value"]
    return (
        grouped.quantile([tail, 1 - tail]).unstack().set_axis(["low", "high"], axis=1).reset_index()
    )


def paired_difference(
    table: pd.DataFrame,
    bootstrap: pd.DataFrame,
    metric: str,
    first: str,
    second: str,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """``first - second`` of ``metric`` (e.g. LCGD - GD of SimAOU) per model x mask x data (and
    'mean'): the point difference, its 95% interval, and whether the interval excludes 0."""
    point = layer_reduced(table[table["metric"] == metric])
    point = point.groupby(["model", "mask", "data", "method"])["value"].mean().unstack("method")
    point_mean = point.groupby(level=["model", "mask"]).mean()
    point_mean.index = pd.MultiIndex.from_tuples(
        [(m, k, "mean") for m, k in point_mean.index], names=point.index.names
    )
    point = pd.concat([point, point_mean])
    chosen = bootstrap[(bootstrap["metric"] == metric) & bootstrap["method"].isin([first, second])]
    rows = []
    for mean_over_data in (False, True):
        dist = bootstrap_distribution(chosen, seed=seed, mean_over_data=mean_over_data)
        wide = dist.pivot_table(
            index=["model", "mask", "data", "replicate"], columns="method", values="value"
        )
        diff = (wide[first] - wide[second]).groupby(level=["model", "mask", "data"])
        tail = (1 - LEVEL) / 2
        rows.append(
            diff.quantile(tail)
            .rename("low")
            .to_frame()
            .join(diff.quantile(1 - tail).rename("high"))
        )
    bounds = pd.concat(rows)
    result = bounds.join((point[first] - point[second]).rename("difference"))
    result["excludes_0"] = (result["low"] > 0) | (result["high"] < 0)
    return result.reset_index()[
        ["model", "mask", "data", "difference", "low", "high", "excludes_0"]
    ]


def headline(table: pd.DataFrame, bootstrap: pd.DataFrame, *, width: int = 100) -> str:
    """The few numbers that answer "is ICL closer to LCGD than to GD here?", per model and
    ICL mask: SimAOU of every method in the table (registry order, with its controls), the
    demonstration-specific SimAOU where computed, and LCGD - GD with its interval. Columns that
    do not fit in ``width`` go to a further block."""
    reduced = layer_reduced(table[table["metric"] == "simaou"])
    point = reduced.groupby(["model", "mask", "data", "method"])["value"].mean().unstack("method")
    columns = {m: METHODS.get(m).column for m in method_names() if m in point}
    labels = {m: METHODS.get(m).label for m in columns}
    demo = layer_reduced(table[table["metric"] == "simaou_demo"])
    if not demo.empty:
        demo = demo.groupby(["model", "mask", "data", "method"])["value"].mean().unstack("method")
        point = point.join(demo.add_prefix("demo "))
        for m in method_names():
            if f"demo {m}" in point:
                columns[f"demo {m}"] = f"d{METHODS.get(m).column}"[:7]
                labels[f"demo {m}"] = f"demonstration-specific SimAOU of {METHODS.get(m).label}"
    lines = [
        "Is ICL closer to LCGD than to GD? SimAOU, mean over layers and seeds;",
        f"LCGD - GD with its {LEVEL:.0%} bootstrap interval over seeds and test queries.",
    ]
    diffs = None
    if {"gd", "lcgd"} <= set(point.columns):
        diffs = paired_difference(table, bootstrap, "simaou", "lcgd", "gd")
        diffs = diffs.set_index(["model", "mask", "data"])
    for (model, mask), block in point.groupby(level=["model", "mask"]):
        rows = [*block.iterrows(), ((model, mask, "mean"), block.mean())]
        cells: list[tuple[str, list[str]]] = [
            (f"{name:>8}", [f"{row[m]:>8.3f}" for _, row in rows]) for m, name in columns.items()
        ]
        if diffs is not None:
            interval = [diffs.loc[key] for key, _ in rows]
            cells.append(
                (
                    f"  {'LCGD-GD [95% interval]':<26}",
                    [
                        f"  {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
                        for d in interval
                    ],
                )
            )
        lines += ["", f"{model}, ICL mask {mask}:"]
        for part in _fitting(cells, width - 8):
            lines.append((f"{'data':<8}" + "".join(header for header, _ in part)).rstrip())
            lines += [
                f"{key[2]:<8}" + "".join(values[i] for _, values in part)
                for i, (key, _) in enumerate(rows)
            ]
    legend = ", ".join(f"{columns[m]} = {labels[m]}" for m in columns if columns[m] != labels[m])
    if legend:
        lines += ["", textwrap.fill(legend, width)]
    return "\n".join(lines)


def _fitting(cells: list[tuple[str, list[str]]], width: int) -> list[list[tuple[str, list[str]]]]:
    """``cells`` (header, values) packed left to right into blocks at most ``width`` wide."""
    blocks: list[list[tuple[str, list[str]]]] = [[]]
    used = 0
    for cell in cells:
        if blocks[-1] and used + len(cell[0]) > width:
            blocks.append([])
            used = 0
        blocks[-1].append(cell)
        used += len(cell[0])
    return blocks
