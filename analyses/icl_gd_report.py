"""ICL vs GD with learning rates chosen by a rule, over models x data sets x seeds: the report.

Each call runs (or resumes), for one model and each data set, two ``icl-interp compare`` runs
under ``<out>/<model>/<data>/``: ``sweep/`` chooses every finetuning's lr by the rule with
``--lr-grid`` on the first seed (its validation draw, from the train split) and computes that
seed's unit at the chosen lrs; ``chosen_lrs.csv`` holds the choice; ``seeds/`` computes the other
seeds at those lrs (``--lr-table``). One sweep per model x data set, not per seed: the sweep
costs about three units. Every cell that has finished all seeds is then archived beside the page
(``docs/icl_vs_gd/cells/<model>/<data>/``: its metrics and bootstrap rows, sweep, wall times and
commands; committed, since ``<out>`` is not), and the report is rebuilt from the archive: a
Markdown page (default ``docs/icl_vs_gd.md``) with, per model, data set and ICL mask, SimAOU and
SimAM∆ of GD, LCGD and the controls (untrained, mismatched floor, ICL-vs-ICL ceiling) with 95%
intervals, LCGD - GD with its interval, the chosen lrs, the accuracies, how many data sets have
LCGD closer to ICL than GD with an interval excluding 0, and measured wall times.
``--update-chosen-lrs`` writes the chosen lrs into the packaged table that ``compare --lr
chosen`` (the default) reads. Models may cover different data sets, and calls for different
models or data sets may run at the same time (one thread each on 2 cores):

    .venv/bin/python analyses/icl_gd_report.py --model gemma-3-270m --datasets sst2 sst5 mr subj agnews cb --data-dir ../shared/data
    .venv/bin/python analyses/icl_gd_report.py --model smollm2-135m --datasets sst2 mr subj --data-dir ../shared/data
    .venv/bin/python analyses/icl_gd_report.py --report-only --update-chosen-lrs
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from icl_interp.cli import OneLineParser, main, script_exit_code
from icl_interp.errors import UserError
from icl_interp.results import write_csv, write_text

METHODS = {
    "gd": "GD",
    "lcgd": "LCGD",
    "untrained": "untrained",
    "mismatched": "floor",
    "icl_vs_icl": "ceiling",
}
METRICS = {"simaou": "SimAOU", "simam_delta": "SimAM∆"}
# Fixed after the first Gemma MR sweeps (validation data only): 1e-2 and 1e-1 left all three
# finetunings at chance and the best lr sat at the grid's lower edge, 1e-4.
LR_GRID = ["1e-5", "1e-4", "1e-3"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="icl_gd_report.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument(
        "--datasets", nargs="+", default=["sst2", "sst5", "mr", "subj", "agnews", "cb"]
    )
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"])
    parser.add_argument("--n-test", default="32")
    parser.add_argument("--lr-grid", nargs="+", default=LR_GRID)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/icl_gd_report"))
    parser.add_argument("--doc", type=Path, default=Path("docs/icl_vs_gd.md"))
    parser.add_argument("--report-only", action="store_true", help="rebuild the report only")
    parser.add_argument("--update-chosen-lrs", action="store_true")
    parser.add_argument("extra", nargs="*", help="further compare options (after --)")
    return parser.parse_args(argv)


def _compare(
    args: argparse.Namespace, data: str, seeds: list[str], lr: list[str], out: Path
) -> None:
    argv = ["compare", "--models", args.model, "--datasets", data, "--seeds", *seeds,
            "--n-test", args.n_test, *lr, "--out", str(out), *args.extra]  # fmt: skip
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    code = main(argv)
    if code != 0:
        raise SystemExit(code)


def run_model(args: argparse.Namespace) -> None:
    """Per data set: the sweep on the first seed, its chosen lrs, then the other seeds."""
    from icl_interp.lm.lr_rule import chosen_table

    for data in args.datasets:
        cell = args.out / args.model.replace("/", "_") / data
        _compare(args, data, args.seeds[:1], ["--lr-grid", *args.lr_grid], cell / "sweep")
        table = cell / "chosen_lrs.csv"
        write_csv(table, chosen_table(pd.read_csv(cell / "sweep" / "lr_sweep.csv")))
        if args.seeds[1:]:
            lr = ["--lr", "chosen", "--lr-table", str(table)]
            _compare(args, data, args.seeds[1:], lr, cell / "seeds")


def _missing(done: set[str], seeds: Sequence[str], kind: str) -> str | None:
    """None when ``done`` covers every one of ``seeds``, else which it has ("seeds done: 0 of 0 1")."""
    if set(seeds) <= done:
        return None
    have = " ".join(sorted(done & set(seeds))) or "none"
    return f"{kind}: {have} of {' '.join(seeds)}"


def cell_folders(out: Path, seeds: Sequence[str]) -> tuple[list[list[Path]], dict[str, str]]:
    """Per model x data set whose finished compare folders (the sweep's, then the seeds')
    cover every one of ``seeds``: those folders; and, by cell name, what each other cell has
    done, which the report leaves out (a cell still running, or stopped between its sweep and its
    seeds)."""
    complete, incomplete = [], {}
    for cell in sorted(p.parent.parent for p in out.glob("*/*/sweep/metrics.csv")):
        folders = [f for f in (cell / "sweep", cell / "seeds") if (f / "metrics.csv").exists()]
        done = {
            str(seed)
            for f in folders
            for seed in json.loads((f / "config.json").read_text())["config"]["seeds"]
        }
        missing = _missing(done, seeds, "seeds done")
        if missing is None:
            complete.append(folders)
        else:
            incomplete[str(cell.relative_to(out))] = missing
    return complete, incomplete


def archive_cell(folders: list[Path], cell: Path) -> None:
    """Keep what the report reads of one finished cell under ``cell``, which is committed beside
    the page so that ``--report-only`` rebuilds it from a fresh clone: the metrics and the
    SimAOU / SimAM∆ bootstrap rows of all its seeds (gzip), the sweep's lr_sweep.csv, the
    per-unit wall times and the commands that made it."""
    write_csv(cell / "metrics.csv.gz", _read(folders, "metrics.csv"))
    resampled = _read(folders, "bootstrap.csv")
    write_csv(cell / "bootstrap.csv.gz", resampled[resampled["metric"].isin(list(METRICS))])
    write_csv(cell / "lr_sweep.csv", pd.read_csv(folders[0] / "lr_sweep.csv"))
    write_csv(cell / "wall_times.csv", wall_times(folders))
    argvs = (json.loads((f / "config.json").read_text())["argv"] for f in folders)
    write_text(
        cell / "commands.txt", "".join(dict.fromkeys(f"python {' '.join(a)}\n" for a in argvs))
    )


def archived_cells(
    archive: Path, seeds: Sequence[str]
) -> tuple[dict[Path, pd.DataFrame], dict[str, str]]:
    """The archived cells holding every one of ``seeds``, each with its metrics rows of those
    seeds; and, by cell name, what each other one holds."""
    complete, incomplete = {}, {}
    for cell in sorted(p.parent for p in archive.glob("*/*/metrics.csv.gz")):
        table = pd.read_csv(cell / "metrics.csv.gz")
        missing = _missing({str(seed) for seed in table["seed"].unique()}, seeds, "archived seeds")
        if missing is None:
            complete[cell] = _of_seeds(table, seeds)
        else:
            incomplete[str(cell.relative_to(archive))] = missing
    return complete, incomplete


def _read(folders: list[Path], name: str) -> pd.DataFrame:
    return pd.concat([pd.read_csv(folder / name) for folder in folders], ignore_index=True)


def _of_seeds(table: pd.DataFrame, seeds: Sequence[str]) -> pd.DataFrame:
    return table[table["seed"].astype(str).isin(seeds)].reset_index(drop=True)


def _cell(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.2f}, {high:.2f}]"


def similarity_table(
    table: pd.DataFrame, resampled: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Wide table (rows model x mask x data, columns metric x method with intervals, then
    LCGD - GD) and the tidy paired differences, from one cell's ``metrics.csv`` and
    ``bootstrap.csv`` rows over its seeds."""
    from icl_interp.lm.report import intervals, layer_reduced, paired_difference

    point = layer_reduced(table).groupby(["model", "mask", "data", "method", "metric"])["value"]
    point = point.mean()
    bounds = intervals(resampled).set_index(["model", "mask", "data", "method", "metric"])
    diffs = pd.concat(
        [
            paired_difference(table, resampled, metric, "lcgd", "gd").assign(metric=metric)
            for metric in METRICS
        ],
        ignore_index=True,
    )
    diff_index = diffs.set_index(["model", "mask", "data", "metric"])
    rows = []
    for model, mask, data in bounds.index.droplevel(["method", "metric"]).unique():
        if data == "mean":
            continue
        row = {"model": model, "mask": mask, "data": data}
        for metric, metric_label in METRICS.items():
            for method, method_label in METHODS.items():
                key = (model, mask, data, method, metric)
                if key in point.index and key in bounds.index:
                    low, high = bounds.loc[key, ["low", "high"]]
                    row[f"{metric_label} {method_label}"] = _cell(point[key], low, high)
            d = diff_index.loc[(model, mask, data, metric)]
            mark = " *" if d["excludes_0"] else ""
            row[f"{metric_label} LCGD-GD"] = (
                f"{d['difference']:+.3f} [{d['low']:+.2f}, {d['high']:+.2f}]{mark}"
            )
        rows.append(row)
    return pd.DataFrame(rows), diffs


def accuracy_table(table: pd.DataFrame) -> pd.DataFrame:
    """Final-layer accuracy per model x data of ``metrics.csv`` rows: zero-shot, ICL under each
    mask, GD and LCGD finetuned (mean over seeds), and the number of seeds."""
    from icl_interp.lm.report import layer_reduced

    reduced = layer_reduced(table[table["metric"].str.startswith("accuracy")])
    reduced = reduced.groupby(["model", "data", "mask", "method", "metric"])["value"].mean()
    rows = []
    for (model, data), block in reduced.groupby(level=["model", "data"]):
        block = block.droplevel(["model", "data"])
        seeds = table.loc[(table["model"] == model) & (table["data"] == data), "seed"].nunique()
        row = {"model": model, "data": data, "seeds": seeds}
        row["ZSL"] = block.xs("accuracy_zsl", level="metric").mean()
        for mask, value in block.xs(("none", "accuracy_icl"), level=["method", "metric"]).items():
            row[f"ICL {mask}"] = value
        finetuned = block.xs("accuracy_ft", level="metric").groupby(level="method").mean()
        for method in ("gd", "lcgd"):
            if method in finetuned:
                row[METHODS[method]] = finetuned[method]
        rows.append(row)
    return pd.DataFrame(rows).round(3)


def lr_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The lr chosen by the sweep (``lr_sweep.csv`` rows) per model x data x finetuning, with
    validation accuracy at it, the best and worst grid point, and the unchanged model's zero-shot
    validation accuracy."""
    from icl_interp.lm.lr_rule import chosen_table

    chosen = chosen_table(sweep)
    zero_shot = sweep.groupby(["model", "data", "finetuning"])["zero_shot_accuracy"].mean()
    by_lr = sweep.groupby(["model", "data", "finetuning", "lr"])["val_accuracy"].mean()
    keys = ["model", "data", "finetuning"]
    chosen["zero-shot val acc"] = [round(zero_shot[tuple(r)], 3) for r in chosen[keys].values]
    chosen["worst lr's val acc"] = [round(by_lr[tuple(r)].min(), 3) for r in chosen[keys].values]
    chosen["below zero-shot at every lr"] = [  # a diverged lr (NaN) scores below
        not (by_lr[tuple(r)] >= zero_shot[tuple(r)]).any() for r in chosen[keys].values
    ]
    low, high = sweep["lr"].min(), sweep["lr"].max()
    chosen["grid edge"] = [
        "lower" if lr == low else "upper" if lr == high else "" for lr in chosen["lr"]
    ]
    return chosen


def wall_times(folders: list[Path]) -> pd.DataFrame:
    """Seconds per unit; ``sweep``: whether the unit chose the lrs (``--lr-grid``) first."""
    rows = []
    for folder in folders:
        for file in sorted((folder / "units").glob("*.timings.json")):
            info = json.loads(file.with_name(file.name.replace(".timings", "")).read_text())
            seconds = json.loads(file.read_text())
            rows.append({"model": info["model"], "data": info["data"], "seed": info["seed"],
                         "sweep": folder.name == "sweep", "seconds": seconds["unit"]})  # fmt: skip
    return pd.DataFrame(rows)


def report(args: argparse.Namespace) -> str:
    from icl_interp.lm.plots import plot_layer_curves
    from icl_interp.lm.report import markdown_table
    from icl_interp.results import write_figure

    finished, running = cell_folders(args.out, args.seeds)
    archive = args.doc.with_suffix("") / "cells"
    for folders in finished:
        archive_cell(folders, archive / folders[0].parent.relative_to(args.out))
    cells, incomplete = archived_cells(archive, args.seeds)
    named = {str(cell.relative_to(archive)) for cell in cells}
    incomplete.update({name: done for name, done in running.items() if name not in named})
    if not cells:
        raise UserError(
            f"no cell under {args.out} or {archive} has all seeds {' '.join(args.seeds)}"
        )
    similarity, diffs, accuracy, lrs, times = [], [], [], [], []
    for cell, table in cells.items():
        resampled = _of_seeds(pd.read_csv(cell / "bootstrap.csv.gz"), args.seeds)
        wide, paired = similarity_table(table, resampled)
        similarity.append(wide)
        diffs.append(paired)
        accuracy.append(accuracy_table(table))
        lrs.append(lr_table(pd.read_csv(cell / "lr_sweep.csv")))
        times.append(pd.read_csv(cell / "wall_times.csv"))
    diff = pd.concat(diffs, ignore_index=True)
    diff = diff[diff["data"] != "mean"]
    counts = (
        diff.assign(
            lcgd=(diff["difference"] > 0) & diff["excludes_0"],
            gd=(diff["difference"] < 0) & diff["excludes_0"],
        )
        .groupby(["model", "mask", "metric"])
        .agg(
            **{
                "LCGD closer (*)": ("lcgd", "sum"),
                "GD closer (*)": ("gd", "sum"),
                "data sets": ("data", "size"),
            }
        )  # fmt: skip
        .reset_index()
    )
    lr_all = pd.concat(lrs, ignore_index=True)
    time_all = pd.concat(times, ignore_index=True)
    doc = args.doc
    figures = doc.parent / "figures" / "icl_vs_gd"
    figures.mkdir(parents=True, exist_ok=True)
    figure_links = []
    for model, table in pd.concat(cells.values(), ignore_index=True).groupby("model"):
        name = f"layer_curves__{str(model).replace('/', '_')}"
        write_figure(figures / name, plot_layer_curves(table, str(model)), ("png",))
        figure_links.append(f"![{name}](figures/icl_vs_gd/{name}.png)")
    parts = [
        "# ICL vs GD with learning rates chosen by a rule",
        "",
        "Made by `analyses/icl_gd_report.py` (commands at the end; `--report-only` rebuilds this "
        "page). Per layer, at the query's "
        "last position, ICL on demonstrations A is compared with GD and layer-causal GD (LCGD) "
        "on A, the untrained model, GD on a disjoint draw B (the *floor*: similarity that is "
        "not about these demonstrations) and ICL on B (the *ceiling*). Values: mean over layers "
        "and seeds; brackets: 95% two-level bootstrap intervals (seeds, then test examples, "
        "resampled). LCGD - GD is paired within each replicate; `*` marks intervals that "
        "exclude 0.",
        *(
            [
                "",
                "Not finished, left out of every table: "
                + "; ".join(f"{name} ({done})" for name, done in incomplete.items())
                + ".",
            ]
            if incomplete
            else []
        ),
        "",
        "## LCGD closer to ICL than GD: data sets where LCGD - GD > 0 with its interval "
        "excluding 0",
        "",
        "(The reference paper, Deutch et al. 2023, Table 1: LCGD above GD on 5 of 6 data sets "
        "for SimAOU, no intervals.)",
        "",
        markdown_table(counts),
    ]
    for (model, mask), block in pd.concat(similarity).groupby(["model", "mask"], sort=False):
        for metric_label in METRICS.values():
            columns = [c for c in block.columns if c.startswith(metric_label + " ")]
            parts += ["", f"## {model}, ICL mask {mask}: {metric_label}", ""]
            parts.append(markdown_table(block[["data", *columns]]))
    parts += ["", "## Accuracy (final layer, mean over seeds)", ""]
    parts.append(markdown_table(pd.concat(accuracy, ignore_index=True)))
    parts += [
        "",
        "## Learning rates chosen by the rule",
        "",
        "Per model x data set x finetuning: finetune on a separate demonstration draw from the "
        "train split at every lr of the grid, score zero-shot accuracy on validation examples "
        "from the train split (the first seed's validation draw), take the best (ties: the smaller "
        "lr); the other seeds run at the chosen lrs. The "
        "test examples are never read. `below zero-shot at every lr`: no lr of the grid keeps "
        "validation accuracy at the unchanged model's; `grid edge`: the chosen lr is the grid's "
        "smallest or largest, so the best lr may lie outside it.",
        "",
        markdown_table(lr_all.assign(lr=[f"{lr:g}" for lr in lr_all["lr"]])),
        "",
        "## Wall time",
        "",
        f"{len(time_all)} units (model x data set x seed), "
        f"{time_all['seconds'].sum() / 60:.0f} min in all; per unit (s), the first seed's "
        "with the lr sweep, the others without: "
        + "; ".join(
            f"{model} {g[g['sweep']]['seconds'].mean():.0f} / "
            f"{g[~g['sweep']]['seconds'].mean():.0f}"
            for model, g in time_all.groupby("model")
        )
        + ". One torch thread per unit; measured on the machine that ran them (see the "
        "closing note for its load).",
        "",
        *figure_links,
        "",
        "## Commands (as recorded in each run's config.json)",
        "",
        *dict.fromkeys(
            f"    {line}"
            for cell in cells
            for line in (cell / "commands.txt").read_text().splitlines()
        ),
    ]
    markdown = "\n".join(parts) + "\n"
    write_text(doc, markdown)
    if args.update_chosen_lrs:
        from icl_interp.lm.lr_rule import CHOSEN_COLUMNS, CHOSEN_LRS

        new = lr_all[CHOSEN_COLUMNS]
        if CHOSEN_LRS.exists():
            old = pd.read_csv(CHOSEN_LRS)
            keep = ~old.set_index(["model", "data"]).index.isin(
                new.set_index(["model", "data"]).index
            )
            new = pd.concat([old[keep], new], ignore_index=True)
        write_csv(CHOSEN_LRS, new.sort_values(["model", "data", "finetuning"]))
    return markdown


def run(args: argparse.Namespace) -> int:
    if not args.report_only:
        run_model(args)
    markdown = report(args)
    print(f"report in {args.doc} ({len(markdown.splitlines())} lines)")
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("icl_gd_report.py", parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(_main())
