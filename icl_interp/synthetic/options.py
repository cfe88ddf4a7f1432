"""The options of ``icl-interp synthetic``, import-light (no torch, so a mistyped option is
answered at once; names are checked against the registries when the run starts)."""

from __future__ import annotations

import argparse
from pathlib import Path

from icl_interp.options import add_backend_arguments
from icl_interp.synthetic.presets import PRESETS

SHARINGS = ("SL", "UL")
TASK_COLUMNS = {"linear": "LR", "nonlinear": "N-LR", "classification": "MC"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu", help=f"scale: {', '.join(PRESETS.names())}")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(TASK_COLUMNS),
        help=f"registered tasks: {', '.join(TASK_COLUMNS)} or one a plugin adds",
    )
    parser.add_argument(
        "--masks",
        nargs="+",
        default=["prefix", "causal"],
        help="registered mask kinds: prefix, causal or one a plugin adds",
    )
    parser.add_argument(
        "--sharing", nargs="+", default=list(SHARINGS), help="SL (shared layers), UL"
    )
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--n-train", type=int, help="override the preset's training-pool size")
    parser.add_argument("--n-layers", type=int, help="override the preset's depth")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", help="seeds to train (default: 0)")
    seeds.add_argument("--seed", type=int, help="one seed (same as --seeds N)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--cuda-graph", action="store_true", help="replay each training step as one CUDA graph"
    )
    add_backend_arguments(parser, "trainings")
    parser.add_argument(
        "--max-minutes", type=float, help="stop (checkpointed) after this long; rerun resumes"
    )
    parser.add_argument("--out", type=Path, required=True, help="results folder")
