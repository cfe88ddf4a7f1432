"""ICL vs GD as evidence, over models x data sets x demonstration draws: the runs and the page.

The analysis plan (``docs/analysis_plan.md``) fixes what is estimated and tested before any
unit is computed. Each call computes (or resumes) the units (model x data set x
demonstration draw) of the plan through the run kernel (``icl_interp.runs``: ``--workers N``
at a time, in local processes, Ray actors or a submitit job array), each a single-seed
``icl-interp compare`` run under ``<out>/<model>/<data>/``, in two waves: every cell's first
draw, then the other draws:

- the first draw of a data set is its *sweep* unit: every finetuning's lr chosen by the rule on
  validation data from the train split (``--lr-grid``, ``--n-val 128``, edges extended), the
  metrics at every lr of the sweep on the test queries (``--lr-sensitivity``), and the chosen
  lrs written to the archive (``chosen_lrs.csv``);
- every other draw runs at those lrs (``--lr chosen --lr-table``), with all controls on the
  first ``--full-draws`` draws and the primary endpoint's methods on the rest.

Every finished unit is archived at once under ``<archive>/<model>/<data>/`` (default
``docs/icl_vs_gd/units``; committed, since ``<out>`` is not): its per-layer metrics (gzip CSV),
its record (lrs, prompts' provenance, losses, wall times, the command), and for the sweep unit
the sweep and the sensitivity table. A unit already in the archive is never recomputed, so
compute accumulates across runs, checkouts and machines; ``--report-only`` rebuilds the page
(default ``docs/icl_vs_gd.md``) from the archive alone:

    .venv/bin/python analyses/icl_gd_report.py --models smollm2-135m gemma-3-270m --workers 2 --data-dir ../shared/data
    .venv/bin/python analyses/icl_gd_report.py --report-only
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from icl_interp.cli import OneLineParser, main, script_exit_code
from icl_interp.errors import UserError
from icl_interp.options import add_backend_arguments
from icl_interp.results import file_stem, write_csv, write_text

DATASETS = ["sst2", "sst5", "mr", "subj", "agnews", "cb"]
DRAWS = [str(seed) for seed in range(10)]
FULL_DRAWS = 5
# The grid of the first Gemma MR sweeps (validation data only); the rule extends it by a decade
# where the choice lands on its edge.
LR_GRID = ["1e-5", "1e-4", "1e-3"]
CORE_METHODS = ["gd", "lcgd", "mismatched", "mismatched_lcgd", "icl_vs_icl"]
FULL_METHODS = [*CORE_METHODS, "untrained", "shuffled_gd", "shuffled_lcgd", "icl_shuffled"]
Unit = tuple[str, str, str]  # model, data set, draw
UNIT_OPTIONS = ["--n-test", "32", "--bootstrap", "0", "--heatmap-examples", "0", "--no-figures"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="icl_gd_report.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["gemma-3-270m"], help="the models of the grid"
    )
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help="data sets of the grid")
    parser.add_argument(
        "--seeds", nargs="+", default=DRAWS, help="demonstration draws (the first sweeps)"
    )
    parser.add_argument(
        "--full-draws",
        type=int,
        default=FULL_DRAWS,
        help="draws (the first N) that also run the untrained and label-shuffled controls",
    )
    parser.add_argument("--lr-grid", nargs="+", default=LR_GRID, help="the sweep's starting grid")
    parser.add_argument("--data-dir", default=None, help="folder of the data sets")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/icl_gd_report"), help="result folder"
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=Path("docs/icl_vs_gd/units"),
        help="the archive each finished unit is copied into, and the page built from",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=Path("docs/icl_vs_gd.md"),
        help="the page written from the archive",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the page only")
    add_backend_arguments(parser, "units")
    parser.add_argument("extra", nargs="*", help="further compare options (after --)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError("--seeds lists a draw more than once")
    if args.full_draws < 0:
        raise UserError(f"--full-draws must be >= 0, got {args.full_draws}")
    return args


def cell_folder(root: Path, model: str, data: str) -> Path:
    """One model x data set's folder under ``root`` (the archive or ``--out``)."""
    return root / file_stem(model) / data


def unit_files(archive: Path, model: str, data: str, seed: str) -> dict[str, Path]:
    """Where one unit lives in the archive (``metrics`` marks it finished)."""
    cell = cell_folder(archive, model, data)
    stem = f"seed{seed}"
    return {
        "metrics": cell / f"{stem}.metrics.csv.gz",
        "record": cell / f"{stem}.json",
        "lr_sweep": cell / f"{stem}.lr_sweep.csv",
        "lr_sensitivity": cell / f"{stem}.lr_sensitivity.csv.gz",
        "chosen_lrs": cell / "chosen_lrs.csv",
    }


def _compare(args: argparse.Namespace, unit: Unit, options: list[str], out: Path) -> None:
    model, data, seed = unit
    argv = ["compare", "--models", model, "--datasets", data, "--seeds", seed,
            *UNIT_OPTIONS, *options, "--out", str(out), *args.extra]  # fmt: skip
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    code = main(argv)
    if code != 0:
        raise UserError(f"compare stopped (exit {code}) on {model} {data} draw {seed}")


def archive_unit(folder: Path, unit: tuple[str, str, int], files: dict[str, Path]) -> None:
    """Copy one finished unit of the compare folder ``folder`` into the archive: its record
    (the unit's JSON with its wall times and the command), for a sweep unit the sweep and
    sensitivity tables and the chosen lrs, then its per-layer metrics (gzip, no time in the
    header: byte-identical for identical rows), which mark it archived."""
    from icl_interp.lm.compare import unit_stem
    from icl_interp.lm.lr_rule import chosen_table

    stem = folder / "units" / unit_stem(*unit)

    def unit_file(suffix: str) -> Path:
        return stem.with_name(stem.name + suffix)

    record = json.loads(unit_file(".json").read_text(encoding="utf-8"))
    record["seconds"] = json.loads(unit_file(".timings.json").read_text(encoding="utf-8"))
    record["argv"] = json.loads((folder / "config.json").read_text(encoding="utf-8"))["argv"]
    write_text(files["record"], json.dumps(record, indent=1, sort_keys=True) + "\n")
    if unit_file(".lr_sweep.csv").exists():
        sweep = pd.read_csv(unit_file(".lr_sweep.csv"))
        write_csv(files["lr_sweep"], sweep)
        write_csv(files["lr_sensitivity"], pd.read_csv(unit_file(".lr_sensitivity.csv")))
        write_csv(files["chosen_lrs"], chosen_table(sweep))
    write_csv(files["metrics"], pd.read_csv(unit_file(".csv")))


def compute_unit(args: argparse.Namespace, unit: Unit) -> None:
    """Run one unit's ``compare`` and archive it (the run kernel's worker)."""
    from icl_interp.lm.data import get_dataset

    model, data, seed = unit
    files = unit_files(args.archive, *unit)
    cell = cell_folder(args.out, model, data)
    full = args.seeds.index(seed) < args.full_draws
    methods = ["--methods", *(FULL_METHODS if full else CORE_METHODS)]
    if seed == args.seeds[0]:
        lr = ["--lr-grid", *args.lr_grid, "--n-val", "128", "--lr-sensitivity"]
        folder = cell / "sweep"
    else:
        if not files["chosen_lrs"].exists():
            raise UserError(
                f"{files['chosen_lrs']} is missing: draw {args.seeds[0]} (the sweep) of "
                f"{model} {data} must be archived before its other draws"
            )
        table = cell / "chosen_lrs.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files["chosen_lrs"], table)
        lr = ["--lr", "chosen", "--lr-table", str(table)]
        folder = cell / ("draws_full" if full else "draws_core")
    _compare(args, unit, [*methods, *lr], folder)
    archive_unit(folder, (model, get_dataset(data).name, int(seed)), files)


def run_grid(args: argparse.Namespace) -> None:
    """Every unit of the grid not yet archived, sweeps first; each archived as it finishes."""
    from icl_interp.runs import backend_for, map_units

    plan = [
        (model, data, seed)
        for seed in args.seeds
        for model in args.models
        for data in args.datasets
    ]
    todo = [u for u in plan if not unit_files(args.archive, *u)["metrics"].exists()]
    print(f"{len(plan) - len(todo)} of {len(plan)} units archived; {len(todo)} to run")
    backend = backend_for(args.backend, args.workers, args.threads, args.out)
    worker = functools.partial(compute_unit, args)
    for wave in (
        [u for u in todo if u[2] == args.seeds[0]],
        [u for u in todo if u[2] != args.seeds[0]],
    ):
        for (model, data, seed), _ in map_units(worker, wave, backend):
            print(f"archived {model} {data} draw {seed}", flush=True)


def run(args: argparse.Namespace) -> int:
    if not args.report_only:
        run_grid(args)
        print(f"archived under {args.archive}; rebuild the page with --report-only")
        return 0
    from icl_interp.lm.evidence_page import write_page

    markdown = write_page(args.archive, args.doc)
    print(f"report in {args.doc} ({len(markdown.splitlines())} lines)")
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("icl_gd_report.py", parse_args, run, argv)


if __name__ == "__main__":
    raise SystemExit(_main())
