"""``icl-interp synthetic``: train prefix/causal x SL/UL transformers on the synthetic tasks.

Writes into ``--out``: ``config.json``; ``runs/<task>-<mask>-<SL|UL>/`` with the
checkpoint and ``eval.csv`` of each training (a rerun skips finished ones and
resumes unfinished ones from their checkpoint); ``results.csv`` (tidy: one row per
task x mask x sharing x read-out x layer x metric); ``table1.csv`` and
``table1.md`` (paper Table 1: query error of the model's read-out);
``figure3.png``/``.pdf`` (query error of each layer's probe, paper Figure 3).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from icl_interp.errors import UserError
from icl_interp.masks import MASKS, mask_names
from icl_interp.results import done, write_config, write_csv, write_figure, write_text
from icl_interp.synthetic.model import ModelConfig
from icl_interp.synthetic.presets import PRESETS
from icl_interp.synthetic.tasks import TASKS
from icl_interp.synthetic.train import TrainConfig, eval_data, evaluate, train

SHARINGS = ("SL", "UL")
TASK_COLUMNS = {"linear": "LR", "nonlinear": "N-LR", "classification": "MC"}


@dataclass
class ExperimentConfig:
    """Which trainings to run and at which scale (``overrides`` patch the preset's fields)."""

    preset: str = "cpu"
    tasks: list[str] = field(default_factory=lambda: list(TASK_COLUMNS))
    masks: list[str] = field(default_factory=lambda: ["prefix", "causal"])
    sharing: list[str] = field(default_factory=lambda: list(SHARINGS))
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        PRESETS.get(self.preset)
        for task in self.tasks:
            TASKS.get(task)
        for mask in self.masks:
            MASKS.get(mask)
        for sharing in self.sharing:
            if sharing not in SHARINGS:
                raise UserError(f"unknown sharing {sharing!r}; valid: {', '.join(SHARINGS)}")
        if not (self.tasks and self.masks and self.sharing):
            raise UserError("--tasks, --masks and --sharing each need at least one value")

    def train_config(self, task: str, mask: str, sharing: str) -> TrainConfig:
        values = copy.deepcopy(PRESETS.get(self.preset))
        model_overrides = self.overrides.get("model", {})
        values.update({k: v for k, v in self.overrides.items() if k != "model"})
        model = ModelConfig(
            **{**values.pop("model"), **model_overrides},
            d_y=TASKS.get(task).d_y,
            shared_layers=sharing == "SL",
            mask_kind=mask,
        )
        return TrainConfig(task=task, model=model, seed=self.seed, **values)

    def runs(self) -> list[tuple[str, str, str]]:
        return [(t, m, s) for t in self.tasks for m in self.masks for s in self.sharing]


def run_experiment(
    cfg: ExperimentConfig,
    out: Path,
    *,
    device: str = "cpu",
    cuda_graph: bool = False,
    max_seconds: float | None = None,
) -> pd.DataFrame:
    """Train (or resume) every run, evaluate finished ones, write tables and figure; return results."""
    write_config(out, cfg, train_configs={"-".join(r): cfg.train_config(*r) for r in cfg.runs()})
    started = time.monotonic()
    for task, mask, sharing in cfg.runs():
        run_dir = out / "runs" / f"{task}-{mask}-{sharing}"
        if done(run_dir / "eval.csv"):
            continue
        left = None if max_seconds is None else max_seconds - (time.monotonic() - started)
        if left is not None and left <= 0:
            break
        train_cfg = cfg.train_config(task, mask, sharing)
        state = train(
            train_cfg,
            device=device,
            checkpoint=run_dir / "checkpoint.pt",
            max_seconds=left,
            cuda_graph=cuda_graph,
            desc=run_dir.name,
        )
        if state.step < train_cfg.total_steps:
            print(
                f"{run_dir.name}: stopped at step {state.step}/{train_cfg.total_steps}; rerun to resume"
            )
            break
        table = evaluate(state.model, TASKS.get(task), eval_data(train_cfg))
        table.insert(0, "task", task)
        table.insert(1, "mask", mask)
        table.insert(2, "sharing", sharing)
        table["train_seconds"] = state.elapsed_s
        write_csv(run_dir / "eval.csv", table)
    return write_reports(out)


def write_reports(out: Path) -> pd.DataFrame:
    """Collect every finished run under ``out/runs`` into results.csv, Table 1 and Figure 3."""
    files = sorted((out / "runs").glob("*/eval.csv"))
    if not files:
        return pd.DataFrame()
    results = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    write_csv(out / "results.csv", results)
    table = results[results["readout"] == "model"].drop(columns=["readout", "layer"])
    table = table.assign(
        variant=[
            f"{MASKS.get(m).short}-{s}" for m, s in zip(table["mask"], table["sharing"], strict=True)
        ]
    )
    columns = ["variant", "task", "metric", "value", "se", "train_seconds"]
    write_csv(out / "table1.csv", table.reindex(columns=columns))
    write_text(out / "table1.md", table1_markdown(table))
    write_figure(out / "figure3", figure3(results[results["readout"] == "probe"]))
    return results


def table1_markdown(table: pd.DataFrame) -> str:
    """Rows PrefixLM/CausalLM x SL/UL, columns LR / N-LR (query MSE) and MC (error %)."""
    tasks = [t for t in TASK_COLUMNS if t in set(table["task"])]
    header = "| variant | " + " | ".join(TASK_COLUMNS[t] for t in tasks) + " |"
    lines = [header, "|---" * (len(tasks) + 1) + "|"]
    for sharing in SHARINGS:
        for variant in [v for v in dict.fromkeys(table["variant"]) if v.endswith(f"-{sharing}")]:
            cells = []
            for task in tasks:
                hit = table[(table["variant"] == variant) & (table["task"] == task)]
                fmt = "{:.1f}" if task == "classification" else "{:.1e}"
                if not len(hit):
                    cells.append("-")
                    continue
                cell = fmt.format(hit["value"].iloc[0])
                if "se" in hit and pd.notna(hit["se"].iloc[0]):
                    cell += " ± " + fmt.format(hit["se"].iloc[0])
                cells.append(cell)
            if any(c != "-" for c in cells):
                lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    note = "LR, N-LR: query MSE; MC: query error %; ± one standard error over held-out sequences."
    return "\n".join(lines) + f"\n\n{note}\n"


def figure3(probes: pd.DataFrame) -> Any:
    """Query error of each layer's probe, one panel per task, log scale for regression."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    data = probes.assign(
        variant=[
            f"{MASKS.get(m).short}-{s}" for m, s in zip(probes["mask"], probes["sharing"], strict=True)
        ]
    )
    grid = sns.relplot(
        data=data,
        x="layer",
        y="value",
        hue="mask",
        style="sharing",
        col="task",
        col_order=[t for t in TASK_COLUMNS if t in set(data["task"])],
        kind="line",
        markers=True,
        facet_kws={"sharey": False},
        height=3.2,
    )
    for task, ax in grid.axes_dict.items():
        metric = data.loc[data["task"] == task, "metric"].iloc[0]
        ax.set_ylabel(metric)
        if task != "classification":
            ax.set_yscale("log")
    return grid.figure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", help=f"scale: {', '.join(PRESETS.names())}")
    parser.add_argument(
        "--tasks", nargs="+", default=list(TASK_COLUMNS), help=f"of {', '.join(TASKS.names())}"
    )
    parser.add_argument("--masks", nargs="+", default=["prefix", "causal"], help=", ".join(mask_names()))
    parser.add_argument(
        "--sharing", nargs="+", default=list(SHARINGS), help="SL (shared layers), UL"
    )
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--n-train", type=int, help="override the preset's training-pool size")
    parser.add_argument("--n-layers", type=int, help="override the preset's depth")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--cuda-graph", action="store_true", help="replay each training step as one CUDA graph"
    )
    parser.add_argument(
        "--max-minutes", type=float, help="stop (checkpointed) after this long; rerun resumes"
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.n_train is not None:
        overrides["n_train"] = args.n_train
    if args.n_layers is not None:
        overrides["model"] = {"n_layers": args.n_layers}
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UserError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device")
    if args.cuda_graph and not args.device.startswith("cuda"):
        raise UserError("--cuda-graph needs --device cuda")
    cfg = ExperimentConfig(
        preset=args.preset,
        tasks=args.tasks,
        masks=args.masks,
        sharing=args.sharing,
        overrides=overrides,
        seed=args.seed,
    )
    for run_spec in cfg.runs():
        cfg.train_config(*run_spec)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = run_experiment(
        cfg,
        args.out,
        device=args.device,
        cuda_graph=args.cuda_graph,
        max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
    )
    if (args.out / "table1.md").exists() and not results.empty:
        print((args.out / "table1.md").read_text())
    return 0
