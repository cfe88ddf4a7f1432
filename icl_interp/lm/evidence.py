"""ICL vs GD as evidence: contrasts per demonstration draw, pooled estimates, the declared tests.

Reads the per-unit metric rows of an archive of ``compare`` units (one unit = model x data set
x demonstration draw) and answers the analysis plan's questions with the draw as the unit of
replication (``icl_interp.stats``). A ``Contrast`` is a per-unit difference of two layer-mean
metric values (or one value against 0); its per-cell estimate is over the cell's draws, its
pooled estimate over the per-draw means across a model's data sets (only draws that every
data set of the model has), and a mixed model with a random intercept per data set checks the
pooled one.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from icl_interp.stats import Estimate, estimate, holm

MARGIN = 0.05  # the equivalence margin of the plan, in cosine units


@dataclass(frozen=True)
class Contrast:
    """``metric`` of ``first`` minus ``second_metric`` (default ``metric``) of ``second``, per
    unit; with ``second=None``, ``metric`` of ``first`` against 0."""

    name: str
    label: str
    metric: str
    first: str
    second: str | None = None
    second_metric: str | None = None

    def unit_values(self, values: pd.DataFrame) -> pd.DataFrame:
        """Per model x data x seed x mask: the contrast's value (units lacking it left out)."""
        keys = ["model", "data", "seed", "mask"]
        first = _pick(values, self.metric, self.first)
        if self.second is None:
            return first.rename("value").reset_index()
        second = _pick(values, self.second_metric or self.metric, self.second)
        both = pd.concat([first.rename("a"), second.rename("b")], axis=1, join="inner")
        return (both["a"] - both["b"]).rename("value").reset_index()[[*keys, "value"]]


def _pick(values: pd.DataFrame, metric: str, method: str) -> pd.Series:
    rows = values[(values["metric"] == metric) & (values["method"] == method)]
    return rows.set_index(["model", "data", "seed", "mask"])["value"]


PRIMARY = Contrast(
    "demo_simaou_lcgd_gd", "demo-specific SimAOU, LCGD - GD", "simaou_demo", "lcgd", "gd"
)
FAMILY_1 = (
    PRIMARY,
    Contrast(
        "demo_simam_lcgd_gd", "demo-specific SimAM∆, LCGD - GD", "simam_delta_demo", "lcgd", "gd"
    ),
)
FAMILY_2 = (
    Contrast("demo_simaou_gd", "demo-specific SimAOU of GD", "simaou_demo", "gd"),
    Contrast("demo_simaou_lcgd", "demo-specific SimAOU of LCGD", "simaou_demo", "lcgd"),
    Contrast("simaou_lcgd_gd", "SimAOU, LCGD - GD", "simaou", "lcgd", "gd"),
    Contrast("simaou_gd_floor", "SimAOU of GD - its floor", "simaou", "gd", "mismatched"),
    Contrast(
        "simaou_lcgd_floor", "SimAOU of LCGD - its floor", "simaou", "lcgd", "mismatched_lcgd"
    ),
    Contrast("label_simaou_gd", "label-specific SimAOU of GD", "simaou_label", "gd"),
    Contrast("label_simaou_lcgd", "label-specific SimAOU of LCGD", "simaou_label", "lcgd"),
    Contrast(
        "label_simaou_lcgd_gd", "label-specific SimAOU, LCGD - GD", "simaou_label", "lcgd", "gd"
    ),
)
ICL_GAIN = Contrast(
    "icl_gain", "ICL - zero-shot accuracy", "accuracy_icl", "none", "none", "accuracy_zsl"
)


@dataclass(frozen=True)
class Pooled:
    """A contrast pooled over a model's data sets: the estimate over per-draw means, the data
    sets and draws it used, and the mixed-model check (mean, low, high; None if it failed)."""

    estimate: Estimate
    datasets: tuple[str, ...]
    draws: tuple[int, ...]
    mixed: tuple[float, float, float] | None


def complete_draws(units: pd.DataFrame, model: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A model's data sets and the draws that every one of them has (``units``: model, data,
    seed rows)."""
    rows = units[units["model"] == model]
    datasets = tuple(sorted(rows["data"].unique()))
    per_data = [set(rows.loc[rows["data"] == data, "seed"]) for data in datasets]
    draws = set.intersection(*per_data) if per_data else set()
    return datasets, tuple(sorted(int(d) for d in draws))


def pooled(values: pd.DataFrame, model: str, mask: str, margin: float = MARGIN) -> Pooled | None:
    """``values`` (a contrast's unit values) of ``model`` under ``mask``, pooled: per draw the
    mean over data sets, over the draws every data set has; None when there is none."""
    rows = values[(values["model"] == model) & (values["mask"] == mask)]
    if rows.empty:
        return None
    datasets, draws = complete_draws(rows, model)
    if not draws:
        return None
    kept = rows[rows["seed"].isin(draws)]
    per_draw = kept.groupby("seed")["value"].mean()
    return Pooled(estimate(per_draw.tolist(), margin), datasets, draws, _mixed_model(kept))


def _mixed_model(rows: pd.DataFrame) -> tuple[float, float, float] | None:
    """Intercept and its 95% interval of value ~ 1 with a random intercept per data set; None
    below two draws (with one draw per data set the data-set intercepts and the residual cannot
    be told apart, and the fit's interval is an artefact)."""
    if rows["data"].nunique() < 2 or rows["seed"].nunique() < 2 or len(rows) < 4:
        return None
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit = smf.mixedlm("value ~ 1", rows, groups=rows["data"]).fit(reml=True)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            return None
    low, high = fit.conf_int().loc["Intercept"]
    return float(fit.params["Intercept"]), float(low), float(high)


def cell_estimates(values: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    """Per model x data x mask: the ``Estimate`` over the cell's draws (column ``estimate``)."""
    rows = []
    for (model, data, mask), group in values.groupby(["model", "data", "mask"], sort=True):
        rows.append(
            {
                "model": model,
                "data": data,
                "mask": mask,
                "estimate": estimate(group["value"].tolist(), margin),
            }
        )
    return pd.DataFrame(rows, columns=["model", "data", "mask", "estimate"])


def family_tests(
    values: pd.DataFrame,
    contrasts: Sequence[Contrast],
    models: Sequence[str],
    masks: Sequence[str],
    margin: float = MARGIN,
) -> pd.DataFrame:
    """One row per contrast x model x mask of the declared family (all of them, whether or not
    the archive has the units yet): the pooled result and its Holm-adjusted p-value over the
    whole family (missing members count as p = 1)."""
    rows: list[dict[str, Any]] = []
    for contrast in contrasts:
        unit = contrast.unit_values(values)
        for model in models:
            for mask in masks:
                rows.append(
                    {
                        "contrast": contrast.name,
                        "label": contrast.label,
                        "model": model,
                        "mask": mask,
                        "pooled": pooled(unit, model, mask, margin),
                    }
                )
    p = [row["pooled"].estimate.p if row["pooled"] is not None else None for row in rows]
    tests = pd.DataFrame(rows)
    tests["p_holm"] = pd.Series(holm(p, family_size=len(rows)), dtype=object)  # None stays None
    return tests
