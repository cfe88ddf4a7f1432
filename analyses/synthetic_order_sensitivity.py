"""Order sensitivity of trained synthetic transformers per layer, reported beside Table 1.

    python analyses/synthetic_order_sensitivity.py --runs results/synthetic_cpu \
        --out results/synthetic_order [--n-draws 8 --n-sequences 64]

Reads every finished run of an ``icl-interp synthetic`` folder (``runs/*/checkpoint.pt``),
and writes ``order_sensitivity.csv`` (one row per task x mask x sharing x seed x read-out x
layer x statistic; statistic ``across_orders`` or ``across_sets``, the scale) and
``order_table1.csv``/``.md`` (the read-out's values per Table 1 variant, mean over seeds).
Definition: ``icl_interp.order``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.errors import UserError
from icl_interp.results import ResultFolder, read_torch, write_csv, write_text
from icl_interp.synthetic.model import SyntheticTransformer
from icl_interp.synthetic.order import (
    order_summary,
    order_summary_markdown,
    probe_order_sensitivity,
)
from icl_interp.synthetic.tasks import TASKS
from icl_interp.synthetic.train import TrainConfig
from icl_interp.threads import torch_threads


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="synthetic_order_sensitivity.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=Path, required=True, help="an icl-interp synthetic --out")
    parser.add_argument(
        "--out", type=Path, default=Path("results/synthetic_order"), help="result folder"
    )
    parser.add_argument("--n-draws", type=int, default=8, help="P orders (and P context sets)")
    parser.add_argument("--n-sequences", type=int, default=64, help="sequences (tasks)")
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the permutations")
    args = parser.parse_args(argv)
    if args.n_draws < 2 or args.n_sequences < 1:
        parser.error("--n-draws must be >= 2 and --n-sequences >= 1")
    return args


def finished_runs(folder: Path) -> list[Path]:
    runs = sorted(p.parent for p in folder.glob("runs/*/eval.csv"))
    runs = [run for run in runs if (run / "checkpoint.pt").exists()]
    if not runs:
        raise UserError(
            f"{folder} has no finished runs (runs/*/eval.csv); run icl-interp synthetic"
        )
    return runs


def main(args: argparse.Namespace) -> pd.DataFrame:
    runs = finished_runs(args.runs)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    folder = ResultFolder(args.out, "analyses/synthetic_order_sensitivity.py", settings)
    folder.check()
    frames = []
    with torch_threads(1):
        for run in runs:
            cfg = TrainConfig.from_dict(json.loads((run / "train_config.json").read_text()))
            model = SyntheticTransformer(cfg.model)
            model.load_state_dict(read_torch(run / "checkpoint.pt", map_location="cpu")["model"])
            model.eval()
            rows = probe_order_sensitivity(
                model,
                TASKS.get(cfg.task),
                n_sequences=args.n_sequences,
                n_draws=args.n_draws,
                seed=cfg.seed,
                order_seed=args.order_seed,
            )
            frame = pd.DataFrame(rows)
            sharing = "SL" if cfg.model.shared_layers else "UL"
            for position, (name, value) in enumerate(
                [("task", cfg.task), ("mask", cfg.model.mask_kind), ("sharing", sharing),
                 ("seed", cfg.seed)]
            ):  # fmt: skip
                frame.insert(position, name, value)
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    summary = order_summary(table)
    folder.claim(runs=[run.name for run in runs])
    write_csv(args.out / "order_sensitivity.csv", table)
    write_csv(args.out / "order_table1.csv", summary)
    write_text(args.out / "order_table1.md", order_summary_markdown(summary))
    print(order_summary_markdown(summary))
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("synthetic_order_sensitivity", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
