"""Table 1 and Figure 3 of ``icl-interp synthetic`` from the tidy per-run results.

Each cell of Table 1 is the mean over seeds of a run's query error on its own
held-out sequences, ± the standard error over seeds (with one seed: ± the standard
error over that run's held-out sequences). Below the variants: the trivial baseline
(predict 0 for regression, the best single class for classification, on the same
held-out sequences) and the paired PrefixLM - CausalLM difference per sharing, with
a 95% Student-t interval over seeds (pairs share a seed: the same initialisation
seed, training sequences and held-out sequences).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from icl_interp.masks import MASKS, mask_names
from icl_interp.stats import estimate
from icl_interp.synthetic.config import SHARINGS, TASK_COLUMNS

TRIVIAL_LABEL = "trivial (0 / best class)"
BASELINE_LABELS = {"trivial": TRIVIAL_LABEL, "least_squares": "least squares on the context"}
PAIRED = ("prefix", "causal")


def paired_interval(differences: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the mean paired difference and its 95% t-interval over pairs
    (``icl_interp.stats``; NaN bounds for one pair)."""
    paired = estimate(differences.tolist())
    if paired.low is None or paired.high is None:
        return paired.mean, math.nan, math.nan
    return paired.mean, paired.low, paired.high


def variant_name(mask: str, sharing: str) -> str:
    return f"{MASKS.get(mask).short}-{sharing}"


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task (and the trivial baseline per task): mean, SE, which SE, seeds.

    Rows: variant, task, metric, n_seeds, mean, se, se_over ("seeds" or "sequences").
    """
    rows = []
    model = results[results["readout"] == "model"]
    order = {m: i for i, m in enumerate(dict.fromkeys([*PAIRED, *mask_names()]))}
    keys = sorted(
        model.groupby(["mask", "sharing"]).groups,
        key=lambda ms: (SHARINGS.index(ms[1]), order[ms[0]]),
    )
    groups = [
        (variant_name(m, s), model[(model["mask"] == m) & (model["sharing"] == s)]) for m, s in keys
    ]
    for readout, label in BASELINE_LABELS.items():
        baseline = results[results["readout"] == readout].drop_duplicates(["task", "seed"])
        if len(baseline):
            groups.append((label, baseline))
    for variant, group in groups:
        for task, cell in group.groupby("task", sort=False):
            n = len(cell)
            if n > 1:
                se, se_over = float(cell["value"].std(ddof=1)) / math.sqrt(n), "seeds"
            else:
                se, se_over = float(cell["se"].iloc[0]), "sequences"
            rows.append(
                {
                    "variant": variant,
                    "task": task,
                    "metric": cell["metric"].iloc[0],
                    "n_seeds": n,
                    "mean": float(cell["value"].mean()),
                    "se": se,
                    "se_over": se_over,
                }
            )
    return pd.DataFrame(rows)


def paired_differences(results: pd.DataFrame) -> pd.DataFrame:
    """PrefixLM - CausalLM per sharing x task, paired by seed, with a 95% t-interval over seeds.

    Rows: sharing, task, metric, n_seeds, mean_diff, ci_low, ci_high, excludes_zero, and
    detectable_effect: the difference a paired t-test over these seeds detects with 80% power
    at the 5% level (``icl_interp.stats``; NaN for one seed), the scale an interval that
    includes 0 is inconclusive at.
    """
    model = results[results["readout"] == "model"]
    rows = []
    for (sharing, task), cell in model.groupby(["sharing", "task"], sort=False):
        by_mask = cell.pivot_table(index="seed", columns="mask", values="value")
        if not set(PAIRED) <= set(by_mask.columns):
            continue
        pairs = by_mask[list(PAIRED)].dropna()
        if pairs.empty:
            continue
        differences = (pairs[PAIRED[0]] - pairs[PAIRED[1]]).to_numpy()
        mean, low, high = paired_interval(differences)
        detectable = estimate(differences.tolist()).detectable
        rows.append(
            {
                "sharing": sharing,
                "task": task,
                "metric": cell["metric"].iloc[0],
                "n_seeds": len(pairs),
                "mean_diff": mean,
                "ci_low": low,
                "ci_high": high,
                "excludes_zero": bool(low > 0 or high < 0),
                "detectable_effect": math.nan if detectable is None else detectable,
            }
        )
    return pd.DataFrame(rows)


def _fmt(task: str, value: float) -> str:
    return f"{value:.1f}" if task == "classification" else f"{value:.1e}"


def table1_markdown(summary: pd.DataFrame, differences: pd.DataFrame) -> str:
    """Rows PrefixLM/CausalLM x SL/UL, the trivial baseline, the paired differences; columns LR, N-LR, MC."""
    tasks = [t for t in TASK_COLUMNS if t in set(summary["task"])]
    lines = ["| variant | " + " | ".join(TASK_COLUMNS[t] for t in tasks) + " |"]
    lines.append("|---" * (len(tasks) + 1) + "|")
    for variant in dict.fromkeys(summary["variant"]):
        cells = []
        for task in tasks:
            hit = summary[(summary["variant"] == variant) & (summary["task"] == task)]
            if hit.empty:
                cells.append("-")
                continue
            row = hit.iloc[0]
            cell = _fmt(task, row["mean"])
            if pd.notna(row["se"]):
                cell += " ± " + _fmt(task, row["se"])
            cells.append(cell)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    for sharing in SHARINGS:
        rows = differences[differences["sharing"] == sharing] if len(differences) else differences
        if rows.empty:
            continue
        cells = []
        for task in tasks:
            hit = rows[rows["task"] == task]
            if hit.empty:
                cells.append("-")
                continue
            row = hit.iloc[0]
            signed = "{:+.1f}" if task == "classification" else "{:+.1e}"
            cell = signed.format(row["mean_diff"])
            if pd.notna(row["ci_low"]):
                cell += f" [{signed.format(row['ci_low'])}, {signed.format(row['ci_high'])}]"
            cells.append(cell)
        lines.append(f"| PrefixLM − CausalLM, {sharing} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _table_note(summary, differences) + "\n"


def _table_note(summary: pd.DataFrame, differences: pd.DataFrame) -> str:
    seeds = sorted(set(summary["n_seeds"]))
    over = set(summary["se_over"])
    if over == {"seeds"}:
        spread = f"± one standard error over seeds (n = {'/'.join(map(str, seeds))} seeds per cell)"
    elif over == {"sequences"}:
        spread = "± one standard error over the held-out sequences of one seed"
    else:
        spread = "± one standard error over seeds where a cell has >= 2 seeds, else over held-out sequences"
    note = (
        f"LR, N-LR: query MSE; MC: query error %; mean over seeds {spread}. "
        "Trivial: predict 0 (regression) or the best single class (MC) on the same held-out sequences; "
        "least squares: a linear fit to each sequence's context points (a reference, not a bound)."
    )
    if len(differences):
        note += (
            " PrefixLM − CausalLM: mean paired difference (same seed) "
            "[95% t-interval over seeds]; negative = prefix better."
        )
    return note


def figure3(results: pd.DataFrame) -> Any:
    """Query error of each layer's probe per task (mean over seeds, band ±1 SE over seeds).

    The trivial baseline is a dashed grey line. Built on a bare ``Figure`` (no pyplot,
    no global state); the caller saves it.
    """
    import seaborn as sns
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    probes = results[results["readout"] == "probe"]
    probes = probes.assign(
        variant=[variant_name(m, s) for m, s in zip(probes["mask"], probes["sharing"], strict=True)]
    )
    tasks = [t for t in TASK_COLUMNS if t in set(probes["task"])]
    figure = Figure(figsize=(3.6 * len(tasks) + 1.6, 3.4))
    axes = np.atleast_1d(figure.subplots(1, len(tasks)))
    palette = dict(zip(sorted(set(probes["mask"])), sns.color_palette("deep"), strict=False))
    for ax, task in zip(axes, tasks, strict=True):
        data = probes[probes["task"] == task]
        sns.lineplot(
            data=data,
            x="layer",
            y="value",
            hue="mask",
            style="sharing",
            palette=palette,
            markers=True,
            errorbar="se",
            ax=ax,
            legend=ax is axes[-1],
        )
        trivial = results[(results["readout"] == "trivial") & (results["task"] == task)]
        if len(trivial):
            mean = trivial.drop_duplicates("seed")["value"].mean()
            ax.axhline(mean, color="grey", linestyle="--", linewidth=1, label="trivial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(TASK_COLUMNS[task])
        ax.set_ylabel(data["metric"].iloc[0])
        if task != "classification":
            ax.set_yscale("log")
    n_seeds = probes["seed"].nunique()
    figure.suptitle(
        f"Per-layer probe query error: mean over {n_seeds} seed(s), band ±1 SE over seeds; "
        "dashed: trivial baseline"
    )
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1))
    figure.tight_layout()
    return figure
