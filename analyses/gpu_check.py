"""One prepared GPU check (issue 24): CUDA tests, LM commands on CUDA vs CPU, Table 1 batched.

    bash scripts/gpu_check.sh OUT              # on a CUDA machine: one call, < 10 minutes
    bash scripts/gpu_check.sh --dry-run OUT    # every step on CPU at tiny sizes (tested)

Steps, each recorded in ``summary.json``/``summary.md`` (status, seconds, detail) even
when another fails:

1. ``tests``: the CUDA-only tests (marker ``cuda``: the CUDA-graph tests of the per-model
   and the batched trainer) under pytest; log and JUnit XML in ``tests/``.
2. ``lm``: ``layers``, ``compare`` (every method and control, both masks), ``adapt`` and
   ``adapt-table`` on ``tiny-gemma3``, once on CPU (``lm/cpu/``) and once on the device
   (``lm/device/``; a dry run checks the CPU run against itself); ``compare`` again on
   the device with bf16 fine-tuning (``compare-bf16``, checked against the float32 CPU
   run with wider tolerances).
   ``lm/agreement.csv``: per CSV file and numeric column, the max abs and rel
   difference, the tolerance and pass/fail.
3. ``synthetic``: the 12 Table-1 models (3 tasks x prefix/causal x SL/UL, seed 0) in one
   process with ``icl_interp.synthetic.batched`` (bf16 autocast and a CUDA graph on
   CUDA) at preset ``paper`` (``tiny`` in a dry run) until the time budget is spent;
   ``synthetic/table1_rows.csv``/``.md`` (query errors at the steps reached),
   ``synthetic/speed.json`` (time per step, model FLOP/s, MFU against the device's
   dense bf16 peak) and ``synthetic/profile.txt`` (top kernels of a few profiled steps).

Exit code 0 when every step passed, 1 otherwise, 2 for a usage mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.cli import main as cli_main
from icl_interp.errors import UserError
from icl_interp.results import read_csv, write_csv, write_text
from icl_interp.synthetic.batched import BatchedRun, train_batched
from icl_interp.synthetic.config import ExperimentConfig
from icl_interp.synthetic.flops import peak_flops, train_step_flops
from icl_interp.synthetic.tasks import TASKS
from icl_interp.synthetic.train import eval_data, evaluate

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tolerance:
    """``|device - cpu| <= atol + rtol * |cpu|`` for every number of a command's CSVs."""

    atol: float
    rtol: float


# float32 on both sides: only summation order differs (TF32 stays off: torch's default).
# bf16 fine-tuning (compare-bf16) against the float32 CPU run: bf16 keeps 8 bits of mantissa,
# so similarities after a few GD steps move by up to a few hundredths.
TOLERANCES = {
    "layers": Tolerance(1e-3, 1e-3),
    "compare": Tolerance(1e-3, 1e-3),
    "compare-bf16": Tolerance(5e-2, 5e-2),
    "adapt": Tolerance(1e-3, 1e-3),
    "adapt-table": Tolerance(1e-3, 1e-3),
}
REFERENCE = {"compare-bf16": "compare"}  # the CPU run a device run is checked against
SKIPPED_COLUMNS = ("seconds", "time", "elapsed", "tokens_per_s")


def lm_commands(device: str, data_dir: str | None) -> dict[str, list[str]]:
    """The LM commands (argv of ``icl-interp``, ``--out`` relative to the run's folder)."""
    package = ["--source", "package"]
    data = [] if data_dir is None else ["--data-dir", data_dir]
    compare = ["compare", "--models", "tiny-gemma3", "--datasets", "mr", *package,
               "--n-test", "4", "--k", "2", "--masks", "causal", "prefix",
               "--heatmap-examples", "0", "--bootstrap", "0", "--device", device]  # fmt: skip
    commands = {
        "layers": ["layers", "--model", "tiny-gemma3", *package, "--n-test", "4", "--k", "2",
                   "--masks", "causal", "prefix", "--device", device, "--out", "layers"],
        "compare": [*compare, "--finetune-dtype", "float32", "--out", "compare"],
        "adapt": ["adapt", "--base", "tiny-gemma3", "--mixture", "mr", *package, "--k", "2",
                  "--max-len", "160", "--steps", "4", "--warmup", "1", "--val-episodes", "2",
                  "--eval-every", "2", "--device", device, "--out", "adapt"],
        "adapt-table": ["adapt-table", "--preset", "tiny", "--seeds", "0", "--ks", "2", *data,
                        "--device", device, "--out", "adapt-table"],
    }  # fmt: skip
    if device != "cpu":
        bf16 = ["--finetune-dtype", "bfloat16", "--out", "compare-bf16"]
        commands["compare-bf16"] = [*compare, *bf16]
    return commands


def run_lm(out: Path, device: str, data_dir: str | None) -> dict[str, dict[str, Any]]:
    """Run every LM command on ``device`` inside ``out`` (same relative paths on every device)."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, argv in lm_commands(device, data_dir).items():
        started = time.monotonic()
        with contextlib.chdir(out):
            code = cli_main(argv)
        results[name] = {"exit_code": code, "seconds": round(time.monotonic() - started, 1)}
    return results


def csv_agreement(reference: Path, actual: Path, tolerance: Tolerance) -> list[dict[str, Any]]:
    """One row per CSV under ``reference`` and numeric column: max abs/rel difference, pass."""
    rows: list[dict[str, Any]] = []
    for ref_file in sorted(reference.rglob("*.csv")):
        relative = ref_file.relative_to(reference)
        row = {"file": str(relative), "atol": tolerance.atol, "rtol": tolerance.rtol}
        act_file = actual / relative
        if not act_file.exists():
            rows.append({**row, "column": "", "passed": False, "note": "missing on device"})
            continue
        ref, act = read_csv(ref_file), read_csv(act_file)
        if ref.shape != act.shape or list(ref.columns) != list(act.columns):
            rows.append({**row, "column": "", "passed": False, "note": "shapes differ"})
            continue
        for column in ref.columns:
            if any(word in column for word in SKIPPED_COLUMNS):
                continue
            if not pd.api.types.is_numeric_dtype(ref[column]):
                same = ref[column].astype(str).equals(act[column].astype(str))
                if not same:
                    rows.append({**row, "column": column, "passed": False, "note": "labels differ"})
                continue
            a, b = act[column].to_numpy(float), ref[column].to_numpy(float)
            both_nan = np.isnan(a) & np.isnan(b)
            diff = np.where(both_nan, 0.0, np.abs(a - b))
            scale = np.abs(b)
            rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 1e-12)
            passed = bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.nan_to_num(scale)))
            rows.append({**row, "column": column, "max_abs_diff": float(np.nanmax(diff, initial=0)),
                         "max_rel_diff": float(np.nanmax(rel, initial=0)), "passed": passed,
                         "note": ""})  # fmt: skip
    return rows


def lm_step(out: Path, device: str, data_dir: str | None) -> tuple[bool, dict[str, Any]]:
    """LM commands on CPU and on ``device``; agreement table; passed when all ran and agree.

    With ``device`` cpu (dry run) the commands run once and that run is its own device
    run: the commands and the agreement code are exercised, CUDA is not.
    """
    runs = {"cpu": run_lm(out / "cpu", "cpu", data_dir)}
    device_dir = out / "cpu"
    if device != "cpu":
        device_dir = out / "device"
        runs["device"] = run_lm(device_dir, device, data_dir)
    rows = []
    for name in runs.get("device", runs["cpu"]):
        reference = out / "cpu" / REFERENCE.get(name, name)
        for row in csv_agreement(reference, device_dir / name, TOLERANCES[name]):
            rows.append({"command": name, **row})
    table = pd.DataFrame(rows)
    write_csv(out / "agreement.csv", table)
    ran = all(r["exit_code"] == 0 for per_device in runs.values() for r in per_device.values())
    failed = sorted(set(table.loc[~table["passed"], "command"])) if len(table) else []
    detail = {"runs": runs, "disagreeing_commands": failed, "checked_columns": len(table)}
    return ran and not failed and len(table) > 0, detail


def cuda_tests(out: Path) -> tuple[bool, dict[str, Any]]:
    """pytest on the CUDA-only tests; on a machine without CUDA they are skipped (passed)."""
    out.mkdir(parents=True, exist_ok=True)
    files = ["tests/synthetic/test_train.py", "tests/synthetic/test_batched.py"]
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *files,
            "-m", "cuda", f"--junitxml={out / 'junit.xml'}"]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    write_text(out / "pytest.log", done.stdout + done.stderr)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return done.returncode == 0, {"exit_code": done.returncode, "pytest": last}


def synthetic_step(
    out: Path, device: str, *, dry_run: bool, seconds: float
) -> tuple[bool, dict[str, Any]]:
    """The 12 Table-1 models batched for ``seconds``; rows, speed/MFU and a profile."""
    plan = ExperimentConfig(preset="tiny" if dry_run else "paper")
    specs = plan.runs()
    cfgs = [plan.train_config(*spec) for spec in specs]
    on_cuda = torch.device(device).type == "cuda"
    detail: dict[str, Any] = {"preset": plan.preset, "models": len(cfgs), "bf16": on_cuda}
    run, graph_error = _train_with_graph_fallback(
        lambda graph: train_batched(
            cfgs, device, max_seconds=seconds, bf16=on_cuda, cuda_graph=graph
        ),
        on_cuda,
    )
    detail["cuda_graph"] = on_cuda and graph_error is None
    if graph_error is not None:
        detail["cuda_graph_error"] = graph_error
    tables = {}
    for group in run.groups:
        for cfg, model in zip(group.cfgs, group.trained_models(), strict=True):
            table = evaluate(model, TASKS.get(cfg.task), eval_data(cfg))
            tables[cfgs.index(cfg)] = table.set_index("readout")
    rows = []
    for index, (task, mask, sharing, _seed) in enumerate(specs):
        table, cfg = tables[index], cfgs[index]
        rows.append({"task": task, "mask": mask, "sharing": sharing, "steps": run.steps,
                     "total_steps": cfg.total_steps, "epochs": round(run.steps / cfg.steps_per_epoch, 3),
                     "metric": table.loc["model", "metric"],
                     "query_error": table.loc["model", "value"],
                     "trivial": table.loc["trivial", "value"],
                     "least_squares": table.loc["least_squares", "value"]})  # fmt: skip
    rows_table = pd.DataFrame(rows)
    write_csv(out / "table1_rows.csv", rows_table)
    speed = _speed(run, cfgs, device)
    write_text(out / "speed.json", json.dumps(speed, indent=2, sort_keys=True) + "\n")
    write_text(out / "table1_rows.md", _rows_markdown(rows_table, speed))
    write_text(out / "profile.txt", _profile(run, on_cuda, steps=1 if dry_run else 5))
    finite = bool(np.isfinite(rows_table["query_error"]).all())
    return finite and run.steps > 0, {**detail, **speed}


def _train_with_graph_fallback(
    train: Callable[[bool], BatchedRun], on_cuda: bool
) -> tuple[BatchedRun, str | None]:
    """Train with a CUDA graph where possible; a failed capture is recorded, then eager runs."""
    if not on_cuda:
        return train(False), None
    try:
        return train(True), None
    except RuntimeError as err:
        torch.cuda.synchronize()
        return train(False), str(err).splitlines()[0][:300]


def _speed(run: BatchedRun, cfgs: Sequence[Any], device: str) -> dict[str, Any]:
    """Time per step (one step of all models), model FLOP/s and MFU over the timed steps."""
    flops_per_step = sum(train_step_flops(cfg.model, cfg.batch_size) for cfg in cfgs)
    seconds_per_step = run.timed_seconds / run.timed_steps if run.timed_steps else math.nan
    achieved = flops_per_step / seconds_per_step if run.timed_steps else math.nan
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"
    peak = peak_flops(name)
    total_steps = cfgs[0].total_steps
    return {
        "device": name,
        "steps": run.steps,
        "total_steps": total_steps,
        "timed_steps": run.timed_steps,
        "seconds_per_step": seconds_per_step,
        "steps_per_second": 1 / seconds_per_step,
        "model_flops_per_step": flops_per_step,
        "achieved_flops_per_second": achieved,
        "peak_flops_per_second": peak,
        "mfu": None if peak is None else achieved / peak,
        "projected_seconds_for_all_steps": seconds_per_step * total_steps,
    }


def _rows_markdown(rows: pd.DataFrame, speed: dict[str, Any]) -> str:
    mfu = "n/a (no peak known)" if speed["mfu"] is None else f"{speed['mfu']:.1%}"
    lines = [
        f"Table 1 rows, batched training on {speed['device']}: {speed['steps']} of "
        f"{speed['total_steps']} steps, {speed['seconds_per_step'] * 1e3:.2f} ms per step "
        f"of all {len(rows)} models, {speed['achieved_flops_per_second'] / 1e12:.3g} TFLOP/s, "
        f"MFU {mfu}.",
        "",
        "| task | mask | sharing | steps | epochs | metric | query error | trivial | least squares |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows.itertuples():
        lines.append(f"| {r.task} | {r.mask} | {r.sharing} | {r.steps} | {r.epochs} | {r.metric} "
                     f"| {r.query_error:.3g} | {r.trivial:.3g} | {r.least_squares:.3g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _profile(run: BatchedRun, on_cuda: bool, steps: int) -> str:
    """Top operators of ``steps`` more steps of every group (after the rows were written)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if on_cuda:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            for group in run.groups:
                group.train_step()
        if on_cuda:
            torch.cuda.synchronize()
    sort_by = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=30) + "\n"


def summary_markdown(steps: dict[str, dict[str, Any]], device: str, dry_run: bool) -> str:
    kind = "dry run (CPU, tiny sizes)" if dry_run else f"device {device}"
    lines = [f"# GPU check: {kind}", "", "| step | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {s['status']} | {s['seconds']} |" for name, s in steps.items()]
    return "\n".join(lines) + "\n"


def run_check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    deadline = started + 60 * args.budget_minutes
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        raise UserError("torch sees no CUDA device; use --dry-run to check the script on CPU")
    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out} is not empty; give a new output folder")
    args.out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, dict[str, Any]] = {}

    def record(name: str, action: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        began = time.monotonic()
        try:
            passed, detail = action()
        except Exception as err:  # a broken step must not hide the others' results
            passed, detail = False, {"error": f"{type(err).__name__}: {err}"[:500]}
        seconds = round(time.monotonic() - began, 1)
        steps[name] = {"status": "passed" if passed else "failed", "seconds": seconds, **detail}
        print(f"gpu_check: {name} {steps[name]['status']} in {seconds} s", flush=True)

    record("tests", lambda: cuda_tests(args.out / "tests"))
    record("lm", lambda: lm_step(args.out / "lm", device, args.data_dir))
    seconds = max(1.0, deadline - time.monotonic() - args.reserve_seconds)
    if args.dry_run:
        seconds = min(seconds, 5.0)
    record(
        "synthetic",
        lambda: synthetic_step(
            args.out / "synthetic", device, dry_run=args.dry_run, seconds=seconds
        ),
    )
    payload = {"dry_run": args.dry_run, "device": device, "steps": steps,
               "wall_seconds": round(time.monotonic() - started, 1),
               "cuda_device": torch.cuda.get_device_name() if device == "cuda" else None}  # fmt: skip
    write_text(args.out / "summary.json", json.dumps(payload, indent=2, default=str) + "\n")
    write_text(args.out / "summary.md", summary_markdown(steps, device, args.dry_run))
    return 0 if all(s["status"] == "passed" for s in steps.values()) else 1


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", help="output folder (default: $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="every step on CPU at tiny sizes")
    parser.add_argument(
        "--budget-minutes", type=float, default=9.0, help="whole run (default 9: one 10-min call)"
    )
    parser.add_argument(
        "--reserve-seconds", type=float, default=45.0,
        help="kept after synthetic training for evaluation, profile and reports",
    )  # fmt: skip
    parser.add_argument("--data-dir", help="shared/data-like folder for adapt-table's data sets")
    args = parser.parse_args(argv)
    if args.out is None:
        if not os.environ.get("OUT"):
            parser.error("give an output folder or set $OUT")
        args.out = Path(os.environ["OUT"])
    if args.budget_minutes <= 0 or args.reserve_seconds < 0:
        parser.error("--budget-minutes must be > 0 and --reserve-seconds >= 0")
    return args


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("gpu_check", parse, run_check, argv)


if __name__ == "__main__":
    sys.exit(_main())
