"""The ICL-vs-GD page, built from an archive of units alone (``analyses/icl_gd_report.py --report-only``).

It follows ``docs/analysis_plan.md``: the answer per model first (primary endpoint, interval,
Holm-adjusted p-value, the one claim it allows), then the declared families, the controls
ladder per cell, the stratification by whether ICL beats zero-shot, the learning rates and
their sensitivity, accuracies, progress and wall times. Tables and figures are rebuilt byte for
byte from the same archive.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from icl_interp.errors import UserError
from icl_interp.lm.evidence import (
    FAMILY_1,
    FAMILY_2,
    ICL_GAIN,
    MARGIN,
    PRIMARY,
    Contrast,
    cell_estimates,
    family_tests,
    pooled,
)
from icl_interp.lm.report import layer_reduced, markdown_table
from icl_interp.results import file_stem, write_figure, write_text
from icl_interp.stats import describe, estimate, format_p, verdict

MODELS = ("gemma-3-270m", "smollm2-135m", "qwen2.5-coder-0.5b")  # the plan's, in its order
MASKS = ("causal", "prefix")
LADDER = (  # (column, metric, method): the controls ladder of a cell, null to ceiling
    ("Gaussian null", "simaou_gaussian", "none"),
    ("U[0,1) baseline", "simaou_random", "none"),
    ("GD floor", "simaou", "mismatched"),
    ("LCGD floor", "simaou", "mismatched_lcgd"),
    ("GD", "simaou", "gd"),
    ("LCGD", "simaou", "lcgd"),
    ("untrained", "simaou", "untrained"),
    ("ICL shuffled labels", "simaou", "icl_shuffled"),
    ("ceiling", "simaou", "icl_vs_icl"),
    ("demo GD", "simaou_demo", "gd"),
    ("demo LCGD", "simaou_demo", "lcgd"),
    ("label GD", "simaou_label", "gd"),
    ("label LCGD", "simaou_label", "lcgd"),
)


def load_archive(archive: Path) -> dict[str, Any]:
    """Every archived unit: per-layer metrics, records, sweeps and sensitivity tables."""
    cells = sorted(p for p in archive.glob("*/*") if p.is_dir())
    metrics, records, sweeps, sensitivity = [], [], [], []
    for cell in cells:
        for path in sorted(cell.glob("seed*.metrics.csv.gz")):
            stem = path.name.removesuffix(".metrics.csv.gz")
            metrics.append(pd.read_csv(path))
            records.append(json.loads((cell / f"{stem}.json").read_text(encoding="utf-8")))
            if (cell / f"{stem}.lr_sweep.csv").exists():
                sweeps.append(pd.read_csv(cell / f"{stem}.lr_sweep.csv"))
                sensitivity.append(pd.read_csv(cell / f"{stem}.lr_sensitivity.csv.gz"))

    def joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return {
        "metrics": joined(metrics),
        "records": records,
        "sweeps": joined(sweeps),
        "sensitivity": joined(sensitivity),
    }


def plan_commit(plan: Path) -> str:
    """The commit that added the analysis plan (short hash), or a note if git cannot say."""
    try:
        out = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%h", "--", plan.name],
            cwd=plan.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = []
    return out[-1] if out else "(not in a git checkout)"


def answer_lines(tests: pd.DataFrame) -> list[str]:
    """The page's opening: one quotable sentence per model (primary endpoint, causal mask)."""
    lines = []
    primary = tests[(tests["contrast"] == PRIMARY.name) & (tests["mask"] == "causal")]
    for row in primary.itertuples():
        result = row.pooled
        if result is None:
            lines.append(f"- **{row.model}**: no complete draw archived yet.")
            continue
        e = result.estimate
        claim = verdict(e, row.p_holm, ("LCGD", "GD"))
        caution = " Fewer than 5 complete draws: no conclusion (plan)." if e.n < 5 else ""
        interval = " (95% t-interval over draws)" if e.n > 1 else ""
        lines.append(
            f"- **{row.model}** (data sets: {', '.join(result.datasets)}; complete draws: {e.n}): "
            f"demonstration-specific SimAOU, LCGD - GD = {describe(e)}{interval}, "
            f"Holm-adjusted p = {format_p(row.p_holm)}: **{claim}**.{caution}"
        )
    return lines


def family_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The pooled tests of a family as a table (estimate, interval, p, Holm, TOST, claim)."""
    rows = []
    for row in tests.itertuples():
        result = row.pooled
        if result is None:
            rows.append({"contrast": row.label, "model": row.model, "mask": row.mask,
                         "draws": 0, "estimate [95%]": "not yet archived"})  # fmt: skip
            continue
        e = result.estimate
        mixed = result.mixed
        rows.append(
            {
                "contrast": row.label,
                "model": row.model,
                "mask": row.mask,
                "draws": e.n,
                "estimate [95%]": describe(e),
                "p": format_p(e.p),
                "Holm p": format_p(row.p_holm),
                f"TOST ±{MARGIN:g} p": format_p(e.p_equivalent),
                "claim": verdict(e, row.p_holm, ("first", "second")),
                "mixed model [95%]": (
                    "–" if mixed is None else f"{mixed[0]:+.3f} [{mixed[1]:+.2f}, {mixed[2]:+.2f}]"
                ),
            }
        )
    return pd.DataFrame(rows).fillna("–")


def ladder_table(values: pd.DataFrame, mask: str) -> pd.DataFrame:
    """Per cell, every control of the SimAOU ladder: mean [95% t-interval] over its draws."""
    rows = []
    for (model, data), cell in values[values["mask"] == mask].groupby(["model", "data"]):
        row = {"model": model, "data": data, "draws": cell["seed"].nunique()}
        for column, metric, method in LADDER:
            chosen = cell[(cell["metric"] == metric) & (cell["method"] == method)]["value"]
            if len(chosen) > 1:
                row[column] = describe(estimate(chosen.tolist()))
            else:
                row[column] = f"{chosen.iloc[0]:+.3f}" if len(chosen) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def cell_contrast_table(values: pd.DataFrame, contrast: Contrast, mask: str) -> pd.DataFrame:
    """Per cell, a contrast's mean [95% t-interval] over the cell's draws, p and TOST p."""
    cells = cell_estimates(contrast.unit_values(values))
    cells = cells[cells["mask"] == mask]
    return pd.DataFrame(
        [
            {
                "model": r.model,
                "data": r.data,
                "draws": r.estimate.n,
                "estimate [95%]": describe(r.estimate),
                "p (unadjusted)": format_p(r.estimate.p),
                f"TOST ±{MARGIN:g} p": format_p(r.estimate.p_equivalent),
            }
            for r in cells.itertuples()
        ]
    )


def strata_table(values: pd.DataFrame) -> pd.DataFrame:
    """The primary contrast pooled within cells where ICL beats zero-shot (causal mask; the
    ICL gain's 95% interval above 0) and within the other cells, per model (descriptive)."""
    gains = cell_estimates(ICL_GAIN.unit_values(values))
    gains = gains[gains["mask"] == "causal"]
    helps = {
        (r.model, r.data)
        for r in gains.itertuples()
        if r.estimate.low is not None and r.estimate.low > 0
    }
    primary = PRIMARY.unit_values(values)
    primary["stratum"] = [
        "ICL helps" if (m, d) in helps else "ICL does not clearly help"
        for m, d in zip(primary["model"], primary["data"], strict=True)
    ]
    rows = []
    for (model, stratum), group in primary[primary["mask"] == "causal"].groupby(
        ["model", "stratum"]
    ):
        result = pooled(group, str(model), "causal")
        rows.append(
            {
                "model": model,
                "stratum": stratum,
                "data sets": " ".join(sorted(group["data"].unique())),
                "draws": 0 if result is None else result.estimate.n,
                "LCGD - GD [95%]": "–" if result is None else describe(result.estimate),
            }
        )
    return pd.DataFrame(rows)


def accuracy_table(values: pd.DataFrame, sweeps: pd.DataFrame) -> pd.DataFrame:
    """Final-layer accuracy per cell (mean over draws), with the flag of the plan: the chosen
    finetuning left validation accuracy exactly at zero-shot."""
    acc = values[values["metric"].str.startswith("accuracy")]
    rows = []
    for (model, data), cell in acc.groupby(["model", "data"]):
        causal = cell[cell["mask"] == "causal"]

        def mean(metric: str, method: str, rows: pd.DataFrame = causal) -> float:
            chosen_rows = rows[(rows["metric"] == metric) & (rows["method"] == method)]
            return round(float(chosen_rows["value"].mean()), 3)

        prefix = cell[cell["mask"] == "prefix"]
        row = {"model": model, "data": data, "draws": cell["seed"].nunique(),
               "ZSL": mean("accuracy_zsl", "none"), "ICL causal": mean("accuracy_icl", "none"),
               "ICL prefix": mean("accuracy_icl", "none", prefix),
               "GD": mean("accuracy_ft", "gd"), "LCGD": mean("accuracy_ft", "lcgd")}  # fmt: skip
        row["flag"] = "; ".join(
            f"{name} leaves validation accuracy at zero-shot"
            for name in ("gd", "lcgd")
            if name in unchanged_validation(sweeps, str(model), str(data))
        )
        rows.append(row)
    return pd.DataFrame(rows)


def unchanged_validation(sweeps: pd.DataFrame, model: str, data: str) -> set[str]:
    """Finetunings whose chosen lr leaves validation accuracy exactly at zero-shot."""
    if sweeps.empty:
        return set()
    rows = sweeps[(sweeps["model"] == model) & (sweeps["data"] == data) & sweeps["chosen"]]
    return {str(r.finetuning) for r in rows.itertuples() if r.val_accuracy == r.zero_shot_accuracy}


def lr_table(sweeps: pd.DataFrame, n_val: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Per cell and finetuning: the chosen lr, the grid swept, validation accuracy at the choice,
    its margin over the runner-up (in validation examples; ``n_val`` per model x data set),
    zero-shot validation accuracy, edge flags."""
    rows = []
    for (model, data, finetuning), group in sweeps.groupby(["model", "data", "finetuning"]):
        group = group.sort_values("lr")
        best = group[group["chosen"]].iloc[0]
        others = group[~group["chosen"]]["val_accuracy"].dropna()
        margin = (
            (best["val_accuracy"] - others.max()) * n_val[model, data]
            if len(others)
            else float("nan")
        )
        edge = (
            "lower" if best["lr"] == group["lr"].min()
            else "upper" if best["lr"] == group["lr"].max() else ""
        )  # fmt: skip
        rows.append({
            "model": model, "data": data, "finetuning": finetuning, "lr": f"{best['lr']:g}",
            "grid": " ".join(f"{v:g}" for v in group["lr"]),
            "val acc": round(float(best["val_accuracy"]), 3),
            "margin (examples)": "tie (loss)" if margin == 0 else f"{margin:.0f}",
            "zero-shot val acc": round(float(best["zero_shot_accuracy"]), 3),
            "edge after extensions": edge,
        })  # fmt: skip
    return pd.DataFrame(rows)


def by_lr(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity rows layer-reduced per lr (column ``lr`` instead of the one seed)."""
    reduced = layer_reduced(sensitivity.drop(columns="lr").assign(seed=sensitivity["lr"]))
    return reduced.rename(columns={"seed": "lr"})


def matched_table(sweeps: pd.DataFrame, values: pd.DataFrame) -> pd.DataFrame:
    """Per cell: each finetuning at the lr whose validation update size is closest (log ratio)
    to ICL's (causal mask), and the demonstration-specific SimAOU there (draw 0; ``values``:
    ``by_lr`` of the sensitivity tables)."""
    import numpy as np

    rows = []
    for (model, data), cell in sweeps.groupby(["model", "data"]):
        row: dict[str, Any] = {"model": model, "data": data}
        matched = {}
        for method in ("gd", "lcgd"):
            trials = cell[(cell["finetuning"] == method) & cell["update_norm"].notna()]
            if trials.empty:
                continue
            ratio = np.abs(np.log(trials["update_norm"] / trials["icl_update_norm_causal"]))
            lr = float(trials["lr"].iloc[int(np.argmin(ratio.to_numpy()))])
            at = values[(values["model"] == model) & (values["data"] == data)
                        & (values["lr"] == lr) & (values["method"] == method)
                        & (values["metric"] == "simaou_demo") & (values["mask"] == "causal")]  # fmt: skip
            matched[method] = float(at["value"].iloc[0]) if len(at) else float("nan")
            row[f"{method} matched lr"] = f"{lr:g}"
            row[f"{method} demo SimAOU"] = round(matched[method], 3)
        if len(matched) == 2:
            row["LCGD - GD at matched size"] = round(matched["lcgd"] - matched["gd"], 3)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_sensitivity(values: pd.DataFrame) -> Any:
    """Demonstration-specific SimAOU of GD and LCGD (causal mask, mean over layers) against
    the lr, per model (columns) and data set (hue), draw 0 (``values``: ``by_lr``)."""
    import seaborn as sns

    rows = values[(values["metric"] == "simaou_demo") & (values["mask"] == "causal")]
    rows = rows.rename(columns={"value": "demo-specific SimAOU"})
    grid = sns.relplot(
        data=rows, x="lr", y="demo-specific SimAOU", hue="data", style="method",
        col="model", kind="line", marker="o", height=3, aspect=1.2,
    )  # fmt: skip
    grid.set(xscale="log")
    return grid.figure


def _mean_seconds(rows: pd.DataFrame) -> str:
    return f"{rows['seconds'].mean():.0f}" if len(rows) else "–"


# the folders a recorded command line names, as a reader of a fresh checkout would give them
PORTABLE_FOLDERS = {
    "--data-dir": "../shared/data",
    "--archive": "docs/icl_vs_gd/units",
    "--out": "runs/icl_gd_report",
}


def command_line(argv: list[str]) -> str:
    """A recorded command line with the script's path relative to the checkout and the
    folders it names (``PORTABLE_FOLDERS``) as a fresh checkout has them, not as the machine
    that ran it had them."""
    script = argv[0]
    if "analyses/" in script:
        script = "analyses/" + script.split("analyses/")[-1]
    words = [script]
    for before, word in zip(argv, argv[1:], strict=False):
        words.append(PORTABLE_FOLDERS.get(before, word))
    return " ".join(words)


def write_page(archive: Path, doc: Path) -> str:
    """Build the page from ``archive`` into ``doc`` (figures beside it); return its Markdown."""
    data = load_archive(archive)
    if data["metrics"].empty:
        raise UserError(f"no archived unit under {archive}; run a lane first")
    values = layer_reduced(data["metrics"])
    sensitivity = None if data["sensitivity"].empty else by_lr(data["sensitivity"])
    models = [m for m in MODELS if m in set(values["model"])] + sorted(
        set(values["model"]) - set(MODELS)
    )
    links = _draw_figures(data, models, sensitivity, doc.parent / "figures" / "icl_vs_gd")
    parts = [
        *_answer_section(values, models, archive, doc),
        *(line for mask in MASKS for line in _mask_section(values, mask)),
        *_descriptive_section(data, values, sensitivity),
        *_provenance_section(data, links),
    ]
    markdown = "\n".join(parts) + "\n"
    write_text(doc, markdown)
    return markdown


def _draw_figures(
    data: dict[str, Any], models: list[str], sensitivity: pd.DataFrame | None, figures: Path
) -> list[str]:
    """Per-model layer curves (stale ones removed) and the lr-sensitivity figure; the curves'
    Markdown links."""
    from icl_interp.lm.plots import plot_layer_curves

    figures.mkdir(parents=True, exist_ok=True)
    drawn = {f"layer_curves__{file_stem(model)}.png" for model in models}
    for stale in figures.glob("layer_curves__*.png"):  # a model no longer in the archive
        if stale.name not in drawn:
            stale.unlink()
    links = []
    curves = data["metrics"][
        data["metrics"]["metric"].isin(["simaou", "simaou_demo", "simaou_gaussian"])
    ]
    for model in models:
        name = f"layer_curves__{file_stem(model)}"
        write_figure(figures / name, plot_layer_curves(curves, model), ("png",))
        links.append(f"![{name}](figures/icl_vs_gd/{name}.png)")
    if sensitivity is not None:
        write_figure(figures / "lr_sensitivity", plot_sensitivity(sensitivity), ("png",))
    return links


def _answer_section(values: pd.DataFrame, models: list[str], archive: Path, doc: Path) -> list[str]:
    """Title, method, the answer per model, progress, and the two test families."""
    f1 = family_tests(values, FAMILY_1, list(dict.fromkeys([*MODELS, *models])), MASKS)
    f2 = family_tests(values, FAMILY_2, models, MASKS)
    progress = (
        values.groupby(["model", "data"])["seed"]
        .agg(lambda s: " ".join(str(v) for v in sorted(s.unique())))
        .rename("draws archived")
        .reset_index()
    )
    return [
        "# ICL vs GD: is the similarity about these demonstrations?",
        "",
        f"Built by `analyses/icl_gd_report.py --report-only` from the units archived under "
        f"`{archive.as_posix()}` alone; it follows the [analysis plan](analysis_plan.md) "
        f"(added in commit `{plan_commit(doc.parent / 'analysis_plan.md')}`, before any unit "
        "was computed). The unit of replication is the demonstration draw; every interval is a "
        '95% t-interval over draws; no claim of "no difference" is made without an '
        f"equivalence test (TOST, margin ±{MARGIN:g} in cosine).",
        "",
        "## The answer, per model (primary endpoint, causal mask)",
        "",
        *answer_lines(f1),
        "",
        "Demonstration-specific SimAOU = cos(ĥ_ICL(A) - ĥ_ICL(B), ĥ_FT(A) - ĥ_FT(B)), mean over "
        "layers and test queries: does finetuning on A move the query's attention output away "
        "from its value on another draw B in the direction ICL does? It is 0 for any change "
        "that does not depend on which demonstrations were seen.",
        "",
        "## Progress: draws archived per cell",
        "",
        markdown_table(progress),
        "",
        "## Family 1 (Holm over all 12 declared tests; not-yet-archived ones count as p = 1)",
        "",
        markdown_table(family_table(f1)),
        "",
        "## Family 2: secondary endpoints (Holm within the family)",
        "",
        "`claim`: *first higher* means the contrast is above 0 (its first term higher).",
        "",
        markdown_table(family_table(f2)),
    ]


def _mask_section(values: pd.DataFrame, mask: str) -> list[str]:
    """The controls ladder and the primary contrast per cell, under ICL mask ``mask``."""
    return [
        "",
        f"## Controls ladder per cell, SimAOU, ICL mask {mask}",
        "",
        "Mean over layers; mean [95% t-interval] over the cell's draws (the mean alone for "
        "one draw). Floors: the same "
        "finetuning on a disjoint draw B; ceiling: ICL on B; demo / label: the "
        "demonstration- and label-specific forms; untrained and label-shuffled run on "
        "draws 0-4 only (plan).",
        "",
        markdown_table(ladder_table(values, mask)),
        "",
        f"### Per cell: {PRIMARY.label}, ICL mask {mask} (unadjusted)",
        "",
        markdown_table(cell_contrast_table(values, PRIMARY, mask)),
    ]


def _descriptive_section(
    data: dict[str, Any], values: pd.DataFrame, sensitivity: pd.DataFrame | None
) -> list[str]:
    """Strata, accuracy, and (with a sweep archived) the lrs and their sensitivity."""
    parts = [
        "",
        "## Stratified by whether ICL beats zero-shot (descriptive)",
        "",
        markdown_table(strata_table(values)),
        "",
        "## Accuracy (final layer, mean over draws)",
        "",
        markdown_table(accuracy_table(values, data["sweeps"])),
    ]
    if sensitivity is None:
        return parts
    n_val = {
        (r["model"], r["data"]): r["settings"]["n_val"]
        for r in data["records"]
        if r["lr_source"].startswith("swept")
    }
    return [
        *parts,
        "",
        "## Learning rates (draw 0's sweep, validation data only)",
        "",
        markdown_table(lr_table(data["sweeps"], n_val)),
        "",
        "## Learning-rate sensitivity and matched update size (draw 0, descriptive)",
        "",
        "![lr_sensitivity](figures/icl_vs_gd/lr_sensitivity.png)",
        "",
        markdown_table(matched_table(data["sweeps"], sensitivity)),
    ]


def _provenance_section(data: dict[str, Any], links: list[str]) -> list[str]:
    """Per-layer curves, wall time and the recorded commands."""
    times = pd.DataFrame(
        [{"model": r["model"], "data": r["data"], "seconds": r["seconds"]["unit"],
          "sweep": "lr sensitivity" in r["seconds"]} for r in data["records"]]
    )  # fmt: skip
    return [
        "",
        "## Per-layer curves",
        "",
        *links,
        "",
        "## Wall time",
        "",
        f"{len(times)} units, {times['seconds'].sum() / 3600:.1f} h of one-thread compute; "
        "per unit (s), sweep units / the others: "
        + "; ".join(
            f"{model} {_mean_seconds(g[g['sweep']])} / {_mean_seconds(g[~g['sweep']])}"
            for model, g in times.groupby("model")
        )
        + ".",
        "",
        "## Commands (as recorded with each unit)",
        "",
        *dict.fromkeys(f"    python {command_line(r['argv'])}" for r in data["records"]),
    ]
