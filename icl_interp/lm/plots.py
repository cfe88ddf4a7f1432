"""Seaborn figures for ``icl-interp compare``: per-layer metric curves and attention heatmaps.

Both read the tidy tables the compare run writes (``metrics.csv``, ``attention.csv``), so a
notebook can redraw them from a results folder without re-running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from icl_interp.lm.conditions import METHODS
from icl_interp.lm.metrics import METRICS
from icl_interp.results import file_stem, write_figure


def curve_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The rows drawn as per-layer curves, read from the metric registry: every per-layer-mean
    metric that reads the finetuned model, one curve per method, in its own panel; each
    control (``baseline_for``) as a curve in the panel of the metric it is a baseline for."""
    registered = [METRICS.get(name) for name in dict.fromkeys(table["metric"]) if name in METRICS]
    panels = {m.name: m.label for m in registered if m.over_layers == "mean" and m.per_method}
    frames = []
    for metric in registered:
        rows = table[table["metric"] == metric.name]
        if metric.name in panels:
            labels = rows["method"].map(lambda name: METHODS.get(name).label)
            frames.append(rows.assign(panel=metric.label, curve=labels))
        elif metric.baseline_for in panels:
            frames.append(rows.assign(panel=panels[metric.baseline_for], curve=metric.label))
    frame = pd.concat(frames, ignore_index=True)
    frame["ICL mask"] = frame["mask"]
    return frame


def plot_layer_curves(table: pd.DataFrame, model: str) -> Any:
    """Per-layer curves (mean over seeds, band = 95% CI across seeds): rows = data sets,
    columns = metrics; hue = GD / LCGD / untrained / baselines, line style = ICL mask."""
    frame = curve_frame(table[table["model"] == model])
    grid = sns.relplot(
        data=frame,
        x="layer",
        y="value",
        hue="curve",
        hue_order=list(dict.fromkeys(frame["curve"])),
        style="ICL mask",
        row="data",
        col="panel",
        col_order=list(dict.fromkeys(frame["panel"])),
        kind="line",
        errorbar=("ci", 95),
        seed=0,
        height=2.4,
        aspect=1.3,
        facet_kws={"sharey": False, "margin_titles": True},
    )
    grid.set_titles(row_template="{row_name}", col_template="{col_name}")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.set_axis_labels("layer", "")
    grid.figure.suptitle(f"{model}: ICL vs finetuning, per layer", y=1.02)
    return grid.figure


def plot_attention_heatmaps(
    attention: pd.DataFrame, *, model: str, data: str, seed: int, example: int, columns: int = 3
) -> Any:
    """Attention logits (pre-softmax) from the last query position to the query's own tokens:
    one panel per condition (shared colour scale, 1st-99th percentile), rows = layer x head,
    columns = query tokens."""
    rows = attention[
        (attention["model"] == model)
        & (attention["data"] == data)
        & (attention["seed"] == seed)
        & (attention["example"] == example)
    ]
    conditions = list(dict.fromkeys(rows["condition"]))
    tokens = rows.drop_duplicates("position").sort_values("position")["token"].tolist()
    n_rows = rows[["layer", "head"]].drop_duplicates().shape[0]
    vmin, vmax = rows["logit"].quantile([0.01, 0.99]).tolist()
    n_cols = min(columns, len(conditions))
    n_grid_rows = -(-len(conditions) // n_cols)
    fig, axes = plt.subplots(
        n_grid_rows,
        n_cols,
        figsize=(n_cols * (1.2 + 0.16 * len(tokens)), n_grid_rows * (1.2 + 0.11 * n_rows)),
        squeeze=False,
    )
    for index, ax in enumerate(axes.flat):
        if index >= len(conditions):
            ax.axis("off")
            continue
        condition = conditions[index]
        grid = rows[rows["condition"] == condition].pivot_table(
            index=["layer", "head"], columns="position", values="logit"
        )
        image = ax.imshow(
            grid.to_numpy(), aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax,
            interpolation="nearest",
        )  # fmt: skip
        # imshow, not sns.heatmap: that redraws the whole figure per panel to test its labels
        ax.set_xticks(range(grid.shape[1]), labels=[tokens[p] for p in grid.columns])
        ax.set_yticks(range(grid.shape[0]), labels=[f"L{la} H{he}" for la, he in grid.index])
        ax.grid(False)
        fig.colorbar(image, ax=ax)
        ax.set_title(condition)
        ax.set_xlabel("query token")
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
        ax.tick_params(axis="y", labelsize=4)
    fig.suptitle(f"{model} / {data} / seed {seed} / example {example}: attention logits")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def plot_lr_sweep(sweep: pd.DataFrame, model: str) -> Any:
    """Validation accuracy vs learning rate per finetuning (columns = data sets, one line per
    seed), the chosen lr circled, the unchanged model's zero-shot accuracy dashed."""
    rows = sweep[sweep["model"] == model]
    grid = sns.relplot(
        data=rows, x="lr", y="val_accuracy", hue="finetuning", units="seed", estimator=None,
        col="data", kind="line", marker="o", height=2.6, aspect=1.2,
    )  # fmt: skip
    for data, ax in grid.axes_dict.items():
        chosen = rows[(rows["data"] == data) & rows["chosen"].astype(bool)]
        ax.scatter(chosen["lr"], chosen["val_accuracy"], s=90, facecolors="none", edgecolors="k")
        for value in rows[rows["data"] == data]["zero_shot_accuracy"].unique():
            ax.axhline(value, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
    grid.set_axis_labels("learning rate", "validation accuracy")
    grid.figure.suptitle(
        f"{model}: lr chosen on validation data (circled; dashed: zero-shot)", y=1.03
    )
    return grid.figure


def write_compare_figures(
    table: pd.DataFrame,
    attention: pd.DataFrame,
    folder: Path,
    lr_sweep: pd.DataFrame | None = None,
) -> list[Path]:
    """Write every compare figure (PNG + PDF) into ``folder``; returns the files written."""
    written: list[Path] = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        written += _write_figures(table, attention, folder)
        for model in [] if lr_sweep is None else sorted(lr_sweep["model"].unique()):
            fig = plot_lr_sweep(lr_sweep, model)
            written += write_figure(folder / f"lr_sweep__{_safe(model)}", fig)
            plt.close(fig)
    return written


def _write_figures(table: pd.DataFrame, attention: pd.DataFrame, folder: Path) -> list[Path]:
    written: list[Path] = []
    for model in sorted(table["model"].unique()):
        fig = plot_layer_curves(table, model)
        written += write_figure(folder / f"layer_curves__{_safe(model)}", fig)
        plt.close(fig)
    keys = attention[["model", "data", "seed", "example"]].drop_duplicates()
    for model, data, seed, example in keys.itertuples(index=False):
        fig = plot_attention_heatmaps(
            attention, model=model, data=data, seed=int(seed), example=int(example)
        )
        stem = f"attention__{_safe(model)}__{data}__seed{seed}__ex{example}"
        written += write_figure(folder / stem, fig)
        plt.close(fig)
    return written


def _safe(name: str) -> str:
    return file_stem(name)
