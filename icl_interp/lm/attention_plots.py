"""Figures and token views of where the query reads in the prompt (``prompt_attention.csv``).

Every function reads the tidy table ``icl_interp.lm.attention`` writes, so a notebook redraws
them from a results folder without a model:

- ``plot_segment_mass``: attention mass of the last position on BOS, each demonstration and
  the query, per layer (mean over heads and examples), one panel per ICL mask and one for the
  difference between the first two masks;
- ``plot_role_mass``: mass on label tokens, demonstration inputs, separators, BOS and the query
  vs layer, line style = condition;
- ``plot_difference_maps``: ICL - ZSL and GD - ZSL (each finetuned model) over the query's own
  tokens, the inputs of SimAM∆, side by side on one diverging colour scale;
- ``plot_layer_heads``: the per-head view of ``plot_segment_mass`` for one layer;
- ``prompt_html``: the prompt's tokens coloured by attention for one layer and head (or the
  mean over heads), one block per condition side by side: the explorer notebook's view.

Difference panels always use one shared, symmetric, diverging colour scale. Functions return
figures (or HTML strings); the caller shows or saves them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_hex
from matplotlib.ticker import MaxNLocator

from icl_interp.lm.attention import segment_mass
from icl_interp.results import file_stem, write_figure

DIVERGING = "RdBu_r"
SEQUENTIAL = "viridis"


def select(table: pd.DataFrame, **where: Any) -> pd.DataFrame:
    """Rows of ``table`` whose columns equal the given values (``None`` = any)."""
    chosen = pd.Series(True, index=table.index)
    for column, value in where.items():
        if value is not None:
            chosen &= table[column] == value
    return table[chosen]


def icl_conditions(table: pd.DataFrame) -> list[str]:
    """The conditions whose prompts hold demonstrations, in table order."""
    has_demos = table.groupby("condition", sort=False)["demo"].max() >= 0
    return list(has_demos[has_demos].index)


def _segment_order(segments: Sequence[str]) -> list[str]:
    demos = sorted((s for s in set(segments) if s.startswith("demo_")), key=lambda s: int(s[5:]))
    return [s for s in ("bos", *demos, "query") if s in set(segments)]


def _segment_labels(table: pd.DataFrame, order: Sequence[str]) -> list[str]:
    labels = table[table["is_label"]].drop_duplicates("segment").set_index("segment")["token"]
    return [
        f"{s.removeprefix('demo_')} {labels[s].strip(' ▁Ġ')}" if s in labels else s for s in order
    ]


def _symmetric_limit(*frames: pd.DataFrame, quantile: float = 0.99) -> float:
    values = pd.concat([f.abs().stack() for f in frames])
    limit = float(values.quantile(quantile)) if len(values) else 0.0
    return limit if limit > 0 else 1.0


def _mass_grids(
    table: pd.DataFrame, index: str, conditions: Sequence[str]
) -> dict[str, pd.DataFrame]:
    mass = segment_mass(table[table["condition"].isin(conditions)], by=("segment",))
    mean = mass.groupby(["condition", index, "segment"], sort=False)["prob"].mean()
    order = _segment_order(mass["segment"].unique().tolist())
    return {c: mean[c].unstack("segment").reindex(columns=order) for c in conditions}


def _mass_figure(grids: dict[str, pd.DataFrame], labels: list[str], index: str, title: str) -> Any:
    """Panels side by side, rows = segments, columns = ``index`` (layer or head): one per
    condition on one sequential scale, then the second minus the first on a diverging one."""
    conditions = list(grids)
    panels = conditions + ([f"{conditions[1]} - {conditions[0]}"] if len(conditions) > 1 else [])
    first = grids[conditions[0]].T
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(len(panels) * (2.0 + 0.16 * first.shape[1]), max(2.6, 1.4 + 0.14 * len(labels))),
        squeeze=False,
        layout="constrained",
    )
    vmax = max(float(g.max().max()) for g in grids.values())
    difference = grids[conditions[1]].T - first if len(conditions) > 1 else None
    for ax, panel in zip(axes.flat, panels, strict=True):
        if panel in grids:
            sns.heatmap(
                grids[panel].T,
                ax=ax,
                cmap=SEQUENTIAL,
                vmin=0,
                vmax=vmax,
                cbar_kws={"label": "attention mass", "shrink": 0.6},
            )
        else:
            limit = _symmetric_limit(difference)  # type: ignore[arg-type]
            sns.heatmap(
                difference,
                ax=ax,
                cmap=DIVERGING,
                center=0,
                vmin=-limit,
                vmax=limit,
                cbar_kws={"label": "difference", "shrink": 0.6},
            )
        ax.set_title(panel)
        ax.set_yticks([i + 0.5 for i in range(len(labels))], labels, rotation=0, fontsize=6)
        ax.set_ylabel("segment (demonstration: index + label word)" if ax is axes[0, 0] else "")
        ax.set_xlabel(index)
        ax.tick_params(axis="x", labelsize=6, labelrotation=0)
    fig.suptitle(title)
    return fig


def plot_segment_mass(
    table: pd.DataFrame, *, conditions: Sequence[str] | None = None, **where: Any
) -> Any:
    """Attention mass of the last position on BOS, each demonstration (its input, label token
    and separator) and the query (rows) per layer (columns; mean over heads and examples); one panel per
    ICL condition (default: every condition with demonstrations) and their difference.
    ``where``: model=, data=, seed=, example= filters."""
    rows = select(table, **where)
    chosen = list(conditions) if conditions is not None else icl_conditions(rows)
    grids = _mass_grids(rows, "layer", chosen)
    labels = _segment_labels(rows, list(grids[chosen[0]].columns))
    return _mass_figure(grids, labels, "layer", _title(rows, "attention mass per segment"))


def plot_layer_heads(
    table: pd.DataFrame, layer: int, *, conditions: Sequence[str] | None = None, **where: Any
) -> Any:
    """``plot_segment_mass`` for one ``layer``, columns = heads (mean over examples)."""
    rows = select(table, layer=layer, **where)
    chosen = list(conditions) if conditions is not None else icl_conditions(rows)
    grids = _mass_grids(rows, "head", chosen)
    labels = _segment_labels(rows, list(grids[chosen[0]].columns))
    return _mass_figure(
        grids, labels, "head", _title(rows, f"layer {layer}: attention mass per head")
    )


def role_mass(table: pd.DataFrame) -> pd.DataFrame:
    """Mass per role (bos, input, label, separator, query) per condition x layer x head x
    example; the inputs of ``plot_role_mass``."""
    mass = segment_mass(table, by=("role",))
    names = {
        "input": "demonstration inputs",
        "label": "label tokens",
        "separator": "separators",
        "bos": "BOS",
        "query": "query",
    }
    return mass.assign(part=mass["role"].map(names))


def plot_role_mass(
    table: pd.DataFrame, *, conditions: Sequence[str] | None = None, **where: Any
) -> Any:
    """Mass on label tokens, demonstration inputs, separators, BOS and the query vs layer
    (mean over heads and examples, band = 95% CI over heads x examples); one panel per part,
    line style = condition (default: the ICL conditions)."""
    rows = select(table, **where)
    chosen = list(conditions) if conditions is not None else icl_conditions(rows)
    frame = role_mass(rows[rows["condition"].isin(chosen)])
    order = [
        p
        for p in ("label tokens", "demonstration inputs", "separators", "BOS", "query")
        if p in set(frame["part"])
    ]
    grid = sns.relplot(
        data=frame,
        x="layer",
        y="prob",
        col="part",
        col_order=order,
        hue="condition",
        hue_order=chosen,
        style="condition",
        kind="line",
        errorbar=("ci", 95),
        seed=0,
        height=2.3,
        aspect=1.1,
        facet_kws={"sharey": False},
    )
    grid.set_titles(col_template="{col_name}")
    grid.set_axis_labels("layer", "attention mass")
    for ax in grid.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    grid.figure.suptitle(_title(rows, "where the last position reads"), y=1.03)
    return grid.figure


def difference_grids(
    table: pd.DataFrame, *, value: str = "logit", head: int | None = None, baseline: str = "zsl"
) -> dict[str, pd.DataFrame]:
    """Per condition other than ``baseline``: (condition - baseline) of ``value`` over the
    query's own tokens (columns = position in the query), rows = layers; one ``head`` or the
    mean over heads. One example: filter ``table`` first."""
    rows = select(table[table["query_position"] >= 0], head=head)
    if rows["example"].nunique() > 1:
        raise ValueError("difference maps are per example; select one example first")
    mean = rows.groupby(["condition", "layer", "query_position"], sort=False)[value].mean()
    base = mean[baseline].unstack("query_position")
    return {
        condition: mean[condition].unstack("query_position") - base
        for condition in dict.fromkeys(rows["condition"])
        if condition != baseline
    }


def plot_difference_maps(
    table: pd.DataFrame,
    *,
    example: int = 0,
    value: str = "logit",
    head: int | None = None,
    columns: int = 2,
    **where: Any,
) -> Any:
    """ICL - ZSL (each mask) and GD - ZSL (each finetuned model) over the query's own tokens,
    rows = layers (mean over heads, or one ``head``); one shared diverging colour scale
    (symmetric, 99th percentile of |difference|). With ``value="logit"`` (pre-mask scaled q.k)
    these are the per-head inputs of SimAM∆."""
    rows = select(table, example=example, **where)
    grids = difference_grids(rows, value=value, head=head)
    tokens = (
        rows[(rows["condition"] == "zsl") & (rows["query_position"] >= 0)]
        .drop_duplicates("query_position")
        .sort_values("query_position")["token"]
        .tolist()
    )
    limit = _symmetric_limit(*grids.values())
    n_cols = min(columns, len(grids))
    n_rows = -(-len(grids) // n_cols)
    first = next(iter(grids.values()))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(
            n_cols * (1.5 + 0.17 * first.shape[1]),
            n_rows * max(2.2, 1.2 + 0.2 * first.shape[0]),
        ),
        squeeze=False,
        layout="constrained",
    )
    for ax, (condition, grid) in zip(axes.flat, grids.items(), strict=False):
        sns.heatmap(grid, ax=ax, cmap=DIVERGING, center=0, vmin=-limit, vmax=limit, cbar=False)
        ax.set_title(f"{condition} - zsl")
        ax.set_xticks([i + 0.5 for i in range(len(tokens))], tokens, rotation=90, fontsize=6)
        ax.set_xlabel("query token")
        ax.set_ylabel("layer")
        ax.tick_params(axis="y", labelsize=6, labelrotation=0)
    for ax in list(axes.flat)[len(grids) :]:
        ax.axis("off")
    shared = ScalarMappable(norm=Normalize(-limit, limit), cmap=DIVERGING)
    fig.colorbar(
        shared, ax=axes.ravel().tolist(), label=f"{value} difference (shared scale)", shrink=0.8
    )
    which = "mean over heads" if head is None else f"head {head}"
    fig.suptitle(_title(rows, f"{value} over the query tokens, minus zero-shot ({which})"))
    return fig


def _title(rows: pd.DataFrame, what: str) -> str:
    parts = [str(v) for c in ("model", "data") if c in rows for v in rows[c].unique()[:1]]
    examples = sorted(rows["example"].unique()) if "example" in rows else []
    suffix = f", example {examples[0]}" if len(examples) == 1 else f", {len(examples)} examples"
    return f"{' / '.join(parts)}: {what}{suffix}"


# --------------------------------------------------------------------------- token view


def prompt_html(
    table: pd.DataFrame,
    *,
    example: int,
    layer: int,
    head: int | None = None,
    conditions: Sequence[str] | None = None,
    value: str = "prob",
    **where: Any,
) -> str:
    """The prompt's tokens coloured by the last position's attention (``value``; one ``head``
    or the mean over heads), one column per condition side by side (default: the ICL
    conditions), on one colour scale; label tokens are boxed, forbidden keys struck through.
    Plain HTML with inline styles: it renders offline and in saved notebooks."""
    rows = select(table, example=example, layer=layer, head=head, **where)
    chosen = list(conditions) if conditions is not None else icl_conditions(rows)
    per_key = rows.groupby(["condition", "position"], sort=True).agg(
        value=(value, "mean"),
        token=("token", "first"),
        segment=("segment", "first"),
        is_label=("is_label", "first"),
        allowed=("allowed", "any"),
    )
    shown = per_key.loc[chosen]
    norm = Normalize(vmin=0.0, vmax=max(float(shown["value"].quantile(0.99)), 1e-9))
    cmap = plt.get_cmap("Reds")
    blocks = []
    for condition in chosen:
        spans, previous = [], None
        for _, key in per_key.loc[condition].iterrows():
            if previous is not None and key["segment"] != previous:
                spans.append("<br>")
            previous = key["segment"]
            level = norm(key["value"])
            colour = to_hex(cmap(float(min(level, 1.0))))
            text_colour = "white" if level > 0.6 else "black"
            style = f"background:{colour};color:{text_colour};padding:0 1px;"
            if key["is_label"]:
                style += "outline:1px solid #333;"
            if not key["allowed"]:
                style += "text-decoration:line-through;color:#999;"
            token = html.escape(str(key["token"]).replace("▁", " ").replace("Ġ", " "))
            tip = html.escape(f"{key['segment']}: {value}={key['value']:.4f}")
            spans.append(f'<span title="{tip}" style="{style}">{token}</span>')
        blocks.append(
            f'<div style="flex:1;min-width:0;font-family:monospace;font-size:11px;'
            f'line-height:1.6"><b>{html.escape(condition)}</b><br>{"".join(spans)}</div>'
        )
    which = "mean over heads" if head is None else f"head {head}"
    caption = (
        f"<p>example {example}, layer {layer}, {which}: {value} of the last position "
        f"(colour scale 0 to {norm.vmax:.3g}; boxed = label token; struck = key forbidden)</p>"
    )
    return caption + '<div style="display:flex;gap:16px">' + "".join(blocks) + "</div>"


# --------------------------------------------------------------------------- files


def write_attention_figures(
    table: pd.DataFrame,
    folder: Path,
    *,
    layer: int | None = None,
    formats: Sequence[str] = ("png",),
) -> list[Path]:
    """Segment mass, role mass, difference maps (first example) and the per-head view of
    ``layer`` (default: the middle layer) for every model x data x seed of ``table``."""
    written: list[Path] = []
    keys = table[["model", "data", "seed"]].drop_duplicates()
    with sns.axes_style("white"), sns.plotting_context("paper"):
        for model, data, seed in keys.itertuples(index=False):
            rows = select(table, model=model, data=data, seed=seed)
            chosen = layer if layer is not None else int(rows["layer"].max()) // 2
            stem = f"{_safe(model)}__{data}__seed{seed}"
            figures = {
                "segment_mass": plot_segment_mass(rows),
                "role_mass": plot_role_mass(rows),
                "difference_maps": plot_difference_maps(rows, example=int(rows["example"].min())),
                f"heads_layer{chosen}": plot_layer_heads(rows, chosen),
            }
            for name, fig in figures.items():
                written += write_figure(
                    folder / f"prompt_attention_{name}__{stem}", fig, formats=tuple(formats)
                )
                plt.close(fig)
    return written


def _safe(name: str) -> str:
    return file_stem(name)
