"""The Table 1 results page, rebuilt from an archived ``icl-interp synthetic`` run.

``archive_run(run, archive)`` copies what the page needs from a finished run folder into
``archive`` (committed, ``docs/results/table1/``): ``results.csv``, ``table1.csv``,
``paired.csv``, ``timings.json``, ``figure3.png`` and the run's settings (``run.json``).
``write_page(archive, doc)`` writes the page from the archive alone: the paper's numbers, the
run's Table 1, what the paired differences say (an interval that includes 0 is inconclusive,
with the effect the seeds could detect), how far each model is below the trivial baseline,
the training times and Figure 3. The same archive gives the same page, byte for byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from icl_interp import results
from icl_interp.errors import UserError
from icl_interp.results import read_csv, write_text
from icl_interp.synthetic.config import TASK_COLUMNS
from icl_interp.synthetic.report import table1_markdown

ARCHIVED = ("results.csv", "table1.csv", "paired.csv", "timings.json", "figure3.png")
# The paper's Table 1 (24 layers, 100k steps; no SE reported): LR, N-LR MSE, MC error %
PAPER = {
    "PrefixLM-SL": ("8.6e-3", "1.5e-4", "24.1"),
    "CausalLM-SL": ("1.9e-1", "2.7e-3", "27.0"),
    "PrefixLM-UL": ("2.5e-3", "9.0e-5", "27.6"),
    "CausalLM-UL": ("1.6e-2", "2.9e-3", "32.1"),
}
TRIVIAL = "trivial (0 / best class)"


def archive_run(run: Path, archive: Path) -> None:
    """Copy a finished run's page inputs into ``archive`` (a one-line error if any is missing)."""
    results.archive_run(run, archive, "synthetic", ARCHIVED)


def _command(config: dict) -> str:
    seeds = " ".join(str(s) for s in config["seeds"])
    return (
        f"icl-interp synthetic --preset {config['preset']} --seeds {seeds} "
        "--workers 2 --out runs/synthetic_cpu"
    )


def _paper_table() -> str:
    lines = ["| variant | LR | N-LR | MC |", "|---|---|---|---|"]
    lines += [f"| {variant} | " + " | ".join(cells) + " |" for variant, cells in PAPER.items()]
    return "\n".join(lines)


def _differences(paired: pd.DataFrame) -> list[str]:
    """One line per sharing x task: which mask is lower, and whether the seeds can say so."""
    lines = []
    order = {task: i for i, task in enumerate(TASK_COLUMNS)}
    paired = paired.sort_values(
        ["task", "sharing"], key=lambda c: c.map(order) if c.name == "task" else c
    )
    for row in paired.itertuples():
        task = TASK_COLUMNS[row.task]
        interval = f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}]"
        better = "PrefixLM" if row.mean_diff < 0 else "CausalLM"
        if row.excludes_zero:
            said = f"{better} lower, interval {interval} excludes 0"
        else:
            said = (
                f"inconclusive: {row.mean_diff:+.3g}, interval {interval} includes 0; "
                f"{row.n_seeds} seeds detect about {row.detectable_effect:.3g} (80% power, 5% level)"
            )
        lines.append(f"- {task}, {row.sharing}: {said}.")
    return lines


def _ratios(summary: pd.DataFrame) -> str:
    """Trivial baseline / model per variant and task (higher = further below the baseline)."""
    tasks = [t for t in TASK_COLUMNS if t in set(summary["task"])]
    trivial = summary[summary["variant"] == TRIVIAL].set_index("task")["mean"]
    lines = ["| variant | " + " | ".join(TASK_COLUMNS[t] for t in tasks) + " |"]
    lines.append("|---" * (len(tasks) + 1) + "|")
    for variant in PAPER:
        means = summary[summary["variant"] == variant].set_index("task")["mean"]
        cells = [f"{trivial[t] / means[t]:.1f}x" if t in means else "-" for t in tasks]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _timing(timings: dict) -> str:
    seconds = [run["train_seconds"] for run in timings["runs"].values()]
    return (
        f"{len(seconds)} trainings, {min(seconds):.0f}-{max(seconds):.0f} s each "
        f"({sum(seconds) / 60:.0f} min of training in all; one torch thread per training, "
        "on a shared 2-core machine, so these are upper bounds)."
    )


def write_page(archive: Path, doc: Path) -> str:
    """The Table 1 page from ``archive`` alone, written to ``doc``; its markdown."""
    missing = [name for name in (*ARCHIVED, "run.json") if not (archive / name).is_file()]
    if missing:
        raise UserError(f"the archive {archive} lacks {', '.join(missing)}")
    config = json.loads((archive / "run.json").read_text(encoding="utf-8"))["config"]
    summary, paired = read_csv(archive / "table1.csv"), read_csv(archive / "paired.csv")
    timings = json.loads((archive / "timings.json").read_text(encoding="utf-8"))
    figure = Path(os.path.relpath(archive / "figure3.png", doc.parent)).as_posix()
    data = Path(os.path.relpath(archive, doc.parent)).as_posix()
    seeds = len(config["seeds"])
    parts = [
        "# Table 1: synthetic tasks, prefix vs causal",
        "",
        "<!-- generated by analyses/synthetic_table1.py --report-only; edit the generator -->",
        "",
        "Study, command and options: [Synthetic transformers](../studies/synthetic.md); tasks, "
        "baselines and the paired interval: [Definitions](../definitions.md#synthetic-tasks).",
        "This page is rebuilt from the archived run in "
        f"[`{data}/`]({data}/results.csv) by `python analyses/synthetic_table1.py --report-only`.",
        "",
        "## The paper (24 layers, 100k steps; no SE reported)",
        "",
        "Query MSE (LR, N-LR) and query error % (MC).",
        "",
        _paper_table(),
        "",
        f"## This toolkit, `--preset {config['preset']}`, {seeds} seeds",
        "",
        "Made by (resumable; then `python analyses/synthetic_table1.py --archive-from "
        "runs/synthetic_cpu` archives it and rebuilds this page):",
        "",
        "```bash",
        _command(config),
        "```",
        "",
        table1_markdown(summary, paired).rstrip(),
        "",
        "The paper's sizes (`--preset paper`) need a GPU; they have not been run.",
        "",
        "## What the paired differences say (PrefixLM − CausalLM, same seed)",
        "",
        *_differences(paired),
        "",
        "## How far below the trivial baseline (trivial / model)",
        "",
        _ratios(summary),
        "",
        "## Figure 3: per-layer probe error (bands over seeds)",
        "",
        f"![Figure 3: per-layer probe error, prefix vs causal, SL vs UL]({figure})",
        "",
        "## Cost",
        "",
        _timing(timings),
    ]
    markdown = "\n".join(parts) + "\n"
    write_text(doc, markdown)
    return markdown
