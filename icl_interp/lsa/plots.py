"""Seaborn figures for the LSA experiment: one row of three panels per paper figure."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

PANEL_TITLES = {
    "context_mse_vs_layer": "context MSE",
    "query_mse_vs_layer": "query MSE",
    "stationary_query_mse_vs_n": "stationary point, query MSE",
}
FIGURES: dict[str, dict[str, Any]] = {
    "figure2": {
        "title": "Figure 2: prefixLM vs causalLM (step eta/n)",
        "layer_variants": ("prefix", "causal"),
        "stationary_variant": "causal",
    },
    "figure4": {
        "title": "Figure 4: causalLM2 (step eta/j), causalLM for reference",
        "layer_variants": ("causal", "causal2"),
        "stationary_variant": "causal2",
    },
}


def plot_lsa_figure(table: pd.DataFrame, figure: str) -> Figure:
    """Left: context MSE vs layer; middle: query MSE vs layer; right: stationary query MSE vs n.

    A pyplot-free ``Figure`` (no global state): save it with ``write_figure``.
    """
    spec = FIGURES[figure]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(wspace=0.28, top=0.84)
    for ax, panel in zip(axes, PANEL_TITLES, strict=True):
        data = table[table["panel"] == panel]
        if panel == "stationary_query_mse_vs_n":
            data = data[data["variant"] == spec["stationary_variant"]]
            data = data.assign(mu_x=data["mu_x"].map(lambda mu: f"{mu:g}"))
            sns.lineplot(data=data, x="n_context", y="value", hue="mu_x", ax=ax, palette="viridis")
            ax.set_xlabel("context examples n")
            ax.legend(title=f"{spec['stationary_variant']}, mu_x")
        else:
            data = data[data["variant"].isin(spec["layer_variants"])]
            data = data.assign(variant=data["variant"] + data["eta"].map(lambda e: f" (eta={e:g})"))
            sns.lineplot(data=data, x="layer", y="value", hue="variant", ax=ax, marker=".")
            ax.set_xlabel("layer")
            ax.legend(title=None)
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if math.log10(high / low) >= 2:
            ax.yaxis.set_minor_locator(NullLocator())
        ax.set_ylabel("MSE")
        ax.set_title(PANEL_TITLES[panel])
    fig.suptitle(spec["title"])
    return fig
