"""``icl-interp synthetic``: train prefix/causal x SL/UL transformers on the synthetic tasks.

Writes into ``--out`` (a folder it owns, see ``icl_interp.results.ResultFolder``):
``config.json``; ``runs/<task>-<mask>-<SL|UL>-seed<k>/`` with ``train_config.json``,
the checkpoint and ``eval.csv`` of each training; ``results.csv`` (tidy: one row per
task x mask x sharing x seed x read-out x layer x metric, the trivial baseline
included); ``table1.csv``/``table1.md`` (paper Table 1: mean ± SE over seeds, the
trivial baseline, paired prefix - causal differences with 95% intervals over seeds);
``paired.csv``; ``figure3.png``/``.pdf`` (per-layer probe error, bands over seeds);
``timings.json`` (wall-clock seconds, kept out of the results so identical runs give
byte-identical results and figures).

A rerun resumes unfinished trainings from their checkpoints and reuses finished ones
only when the train config recorded in the run folder equals the one asked for; a
folder made with another preset or other overrides is refused before anything is
written. Tasks, masks, sharing and seeds may change between runs on one folder:
each run folder records its own config, and the reports cover the runs asked for.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from icl_interp.errors import UserError
from icl_interp.results import (
    ResultFolder,
    done,
    read_csv,
    refuse_changed,
    to_jsonable,
    write_csv,
    write_figure,
    write_text,
)
from icl_interp.runs import Backend, backend_for, map_units
from icl_interp.synthetic.config import ExperimentConfig, RunSpec, config_from_args
from icl_interp.synthetic.report import figure3, paired_differences, summarize, table1_markdown
from icl_interp.synthetic.tasks import TASKS
from icl_interp.synthetic.train import TrainConfig, eval_data, evaluate, train

PLAN_KEYS = frozenset({"tasks", "masks", "sharing", "seeds"})


def run_name(task: str, mask: str, sharing: str, seed: int) -> str:
    return f"{task}-{mask}-{sharing}-seed{seed}"


def result_folder(cfg: ExperimentConfig, out: Path) -> ResultFolder:
    """``out`` owned by ``synthetic`` with this preset and overrides (the plan may change)."""
    return ResultFolder(out, "synthetic", cfg.folder_settings(), may_differ=PLAN_KEYS)


def check_runs(cfg: ExperimentConfig, out: Path) -> None:
    """Refuse (one line) when a run folder of this plan was made with another train config."""
    for spec in cfg.runs():
        recorded_file = out / "runs" / run_name(*spec) / "train_config.json"
        if not recorded_file.exists():
            continue
        try:
            recorded = TrainConfig.from_dict(json.loads(recorded_file.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError, UserError):
            raise UserError(
                f"{recorded_file} is unreadable; delete that run folder or pass a new --out"
            ) from None
        refuse_changed(
            f"{recorded_file.parent} was trained with another config",
            to_jsonable(recorded.to_dict()),
            to_jsonable(cfg.train_config(*spec).to_dict()),
            "delete that run folder or pass a new --out",
        )


@dataclass(frozen=True)
class RunTrainer:
    """The run kernel's worker (``icl_interp.runs``): trains (or resumes) one run of the plan
    into ``out/runs/<name>`` until ``deadline`` (a ``time.time()``), then evaluates it."""

    cfg: ExperimentConfig
    out: Path
    deadline: float | None = None

    def __call__(self, spec: RunSpec) -> bool:
        """Whether the run finished (False: stopped at the deadline, checkpointed)."""
        train_cfg, run_dir = self.cfg.train_config(*spec), self.out / "runs" / run_name(*spec)
        left = None if self.deadline is None else self.deadline - time.time()
        if left is not None and left <= 0:
            return False
        write_text(
            run_dir / "train_config.json",
            json.dumps(train_cfg.to_dict(), indent=2, sort_keys=True) + "\n",
        )
        state = train(
            train_cfg,
            device=self.cfg.device,
            checkpoint=run_dir / "checkpoint.pt",
            max_seconds=left,
            cuda_graph=self.cfg.cuda_graph,
            desc=run_dir.name,
        )
        timing = {"train_seconds": round(state.elapsed_s, 1), "steps": state.step}
        write_text(run_dir / "timing.json", json.dumps(timing, sort_keys=True) + "\n")
        if state.step < train_cfg.total_steps:
            return False
        table = evaluate(state.model, TASKS.get(spec[0]), eval_data(train_cfg))
        for position, (name, value) in enumerate(
            zip(("task", "mask", "sharing", "seed"), spec, strict=True)
        ):
            table.insert(position, name, value)
        write_csv(run_dir / "eval.csv", table)
        return True


def run_experiment(
    cfg: ExperimentConfig,
    out: Path,
    backend: Backend | None = None,
) -> pd.DataFrame:
    """Train (or resume) every run of the plan, evaluate finished ones, write reports; return results.

    Runs go through the run kernel on ``backend`` (``icl_interp.runs``; more than one worker
    is for CPU). Nothing is written before the folder and every existing run folder of the
    plan have been checked.
    """
    folder = result_folder(cfg, out)
    folder.check()
    train_configs = {run_name(*r): cfg.train_config(*r) for r in cfg.runs()}
    check_runs(cfg, out)
    folder.claim(train_configs=train_configs)
    deadline = None if cfg.max_minutes is None else time.time() + 60 * cfg.max_minutes
    todo = [r for r in cfg.runs() if not done(out / "runs" / run_name(*r) / "eval.csv")]
    started = time.monotonic()
    trainer = RunTrainer(cfg, out, deadline)
    outcomes = dict(map_units(trainer, todo, backend or Backend(), desc="trainings"))
    unfinished = [run_name(*spec) for spec in todo if not outcomes[spec]]
    if unfinished:
        print(f"{len(unfinished)} run(s) unfinished ({', '.join(unfinished)}); rerun to resume")
    write_timings(cfg, out, time.monotonic() - started)
    return write_reports(cfg, out)


def write_timings(cfg: ExperimentConfig, out: Path, wall_seconds: float) -> None:
    """``timings.json``: each run's training seconds and steps, and this command's wall time."""
    runs = {}
    for spec in cfg.runs():
        path = out / "runs" / run_name(*spec) / "timing.json"
        if path.exists():
            runs[run_name(*spec)] = json.loads(path.read_text(encoding="utf-8"))
    payload = {"last_command_wall_seconds": round(wall_seconds, 1), "runs": runs}
    write_text(out / "timings.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_reports(cfg: ExperimentConfig, out: Path) -> pd.DataFrame:
    """Collect the plan's finished runs into results.csv, Table 1, paired.csv and Figure 3."""
    files = [out / "runs" / run_name(*r) / "eval.csv" for r in cfg.runs()]
    files = [f for f in files if f.exists()]
    if not files:
        return pd.DataFrame()
    results = pd.concat([read_csv(f) for f in files], ignore_index=True)
    results = results.sort_values(
        ["task", "mask", "sharing", "seed"], kind="stable", ignore_index=True
    )
    write_csv(out / "results.csv", results)
    summary = summarize(results)
    differences = paired_differences(results)
    write_csv(out / "table1.csv", summary)
    write_csv(out / "paired.csv", differences)
    write_text(out / "table1.md", table1_markdown(summary, differences))
    write_figure(out / "figure3", figure3(results))
    return results


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    backend = backend_for(args.backend, args.workers, args.threads, args.out)
    if backend.workers > 1 and not cfg.device.startswith("cpu"):
        raise UserError("--workers > 1 is for --device cpu; one GPU trains one run at a time")
    if cfg.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = run_experiment(cfg, args.out, backend)
    if (args.out / "table1.md").exists() and not results.empty:
        print((args.out / "table1.md").read_text())
    return 0
