"""Benchmark: shared-prefix key/value reuse vs one full forward per example.

Same model, prompts and examples, measured in one run, for both masks:
- ``full``: one forward of ``prefix + query`` per example (the reference pipeline);
- ``reuse, batch 1``: prefix keys/values computed once, then one query per forward;
- ``reuse, batch B``: the same with B right-padded queries per forward.
Reports wall time, speed-up over ``full`` and the largest absolute difference of any
captured value (residuals, attention outputs, attention logits, label logits).

    .venv/bin/python analyses/bench_prefix_reuse.py --model gemma-3-270m --n 16
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.errors import UserError
from icl_interp.lm.capture import capture
from icl_interp.lm.data import make_prompts
from icl_interp.lm.models import load_model
from icl_interp.lm.record import Capture
from icl_interp.masks import MASKS, mask_names
from icl_interp.results import ResultFolder, seed_everything, write_csv


def max_abs_diff(a: Capture, b: Capture) -> float:
    """Largest absolute difference over every captured tensor."""
    pairs = [
        (a.resid, b.resid),
        (a.attn_out, b.attn_out),
        (a.label_logits, b.label_logits),
        (a.layer_label_logits, b.layer_label_logits),
        *zip(a.attn_logits, b.attn_logits, strict=True),
    ]
    return max(float((x - y).abs().max()) for x, y in pairs)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="bench_prefix_reuse.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        default="gemma-3-270m",
        help="model: packaged name, tiny-<arch>, HF folder or .gguf",
    )
    parser.add_argument("--dataset", default="mr", help="data set (a registered name)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding the data sets (default: the packaged copies)",
    )
    parser.add_argument("--source", default="auto", help="auto, folder, package or hub")
    parser.add_argument("--k", type=int, default=32, help="demonstrations per prompt")
    parser.add_argument("--n", type=int, default=16, help="test examples timed per method")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    parser.add_argument("--max-len", type=int, default=2048, help="token budget of a prompt")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demonstration draw")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="results/bench_prefix_reuse", help="result folder")
    args = parser.parse_args(argv)
    for name in ("k", "n", "batch_size", "max_len"):
        if getattr(args, name) < (0 if name == "k" else 1):
            raise UserError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    return args


def main(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    out = Path(args.out)
    settings = {k: v for k, v in vars(args).items() if k not in ("threads", "out")}
    folder = ResultFolder(out, "analyses/bench_prefix_reuse.py", settings, ignore=frozenset())
    folder.check()
    model = load_model(args.model)
    _, prompts, provenance = make_prompts(
        model.tokenizer,
        args.dataset,
        n_test=args.n,
        seed=args.seed,
        k=args.k,
        max_len=args.max_len,
        context=int(model.cfg.n_ctx),
        data_dir=args.data_dir,
        source=args.source,
    )
    methods: dict[str, dict[str, Any]] = {
        "full": {"reuse_prefix": False},
        "reuse, batch 1": {"reuse_prefix": True, "batch_size": 1},
        f"reuse, batch {args.batch_size}": {"reuse_prefix": True, "batch_size": args.batch_size},
    }
    rows: list[dict[str, Any]] = []
    for mask in [name for name in mask_names() if MASKS.get(name).reuses_prefix]:
        results: dict[str, Capture] = {}
        for method, options in methods.items():
            start = time.perf_counter()
            results[method] = capture(
                model,
                prompts.prefix_ids,
                prompts.query_ids,
                prompts.labels,
                prompts.label_token_ids,
                mask=mask,
                desc=f"{mask}: {method}",
                **options,
            )
            seconds = time.perf_counter() - start
            rows.append({"mask": mask, "method": method, "seconds": seconds})
        for row in rows[-len(methods) :]:
            row["max_abs_diff_vs_full"] = max_abs_diff(results[row["method"]], results["full"])
    table = pd.DataFrame(rows)
    full_seconds = table[table["method"] == "full"].set_index("mask")["seconds"]
    table["speedup_vs_full"] = full_seconds.loc[table["mask"]].to_numpy() / table["seconds"]
    table["seconds_per_example"] = table["seconds"] / prompts.n_examples
    table.insert(0, "model", args.model)
    table.insert(1, "n_examples", prompts.n_examples)
    table.insert(2, "prefix_tokens", len(prompts.prefix_ids))
    folder.claim(
        prompts=provenance.to_dict(),
        torch_threads=torch.get_num_threads(),
        mean_query_tokens=sum(len(q) for q in prompts.query_ids) / prompts.n_examples,
    )
    write_csv(out / "bench_prefix_reuse.csv", table)
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(table.drop(columns=["model"]).to_string(index=False))
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("bench_prefix_reuse", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
