"""Order sensitivity of ICL in pretrained LMs per layer, causal vs prefix mask, over draws.

    python analyses/lm_order_sensitivity.py --models gemma-3-270m smollm2-135m \
        --datasets sst2 mr agnews --seeds 0 1 2 3 4 --n-orders 8 --n-test 50 \
        --out results/lm_order

For each model x data set x draw (seed): the draw's demonstrations and queries
(``make_prompts``), P seeded orders of those demonstrations, and P - 1 further demonstration
sets of the same size from the rest of the train split (the scale). ICL runs under each of
``--masks``; ``--methods gd lcgd`` (with ``--lr``) adds the finetunings, each order one
finetuning order, read out zero-shot. Writes ``units/`` (one CSV per model x data x seed x
mask or finetuning, reused on a rerun) and ``order_sensitivity.csv`` (one row per model x data
x seed x method x mask x layer x statistic). Definition: ``icl_interp.order``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.errors import UserError
from icl_interp.lm.data import load_examples, make_prompts, sample_demonstrations
from icl_interp.lm.lr_rule import chosen_lrs
from icl_interp.lm.models import load_model
from icl_interp.lm.order import finetune_order_sensitivity, lm_order_sensitivity
from icl_interp.masks import MASKS
from icl_interp.options import add_draw_grid_arguments
from icl_interp.results import ResultFolder, done, read_csv, write_csv


def lr_option(text: str) -> float | str:
    """``--lr``'s value: "chosen", or a number."""
    if text == "chosen":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'chosen', got {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="lm_order_sensitivity.py", description=__doc__.splitlines()[0])
    add_draw_grid_arguments(parser)
    parser.add_argument(
        "--methods", nargs="+", default=["icl"], help="icl (under each mask), gd, lcgd"
    )
    parser.add_argument(
        "--lr",
        type=lr_option,
        default=1e-4,
        help="learning rate of gd / lcgd: a number, or 'chosen' (the packaged chosen lr per "
        "model, data set and method)",
    )
    parser.add_argument("--n-orders", type=int, default=8, help="P orders (and P sets)")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    parser.add_argument("--out", type=Path, default=Path("results/lm_order"), help="result folder")
    args = parser.parse_args(argv)
    try:
        for mask in args.masks:
            MASKS.get(mask)
    except UserError as err:
        parser.error(str(err))
    if args.n_orders < 2 or args.n_test < 1:
        parser.error("--n-orders must be >= 2 and --n-test >= 1")
    unknown = sorted(set(args.methods) - {"icl", "gd", "lcgd"})
    if unknown or not (args.lr == "chosen" or args.lr > 0):
        parser.error(f"--methods are icl, gd, lcgd (got {unknown}) and --lr must be > 0")
    return args


def run_unit(args: argparse.Namespace, model: object, name: str, data: str, seed: int) -> None:
    tokenizer = model.tokenizer  # type: ignore[attr-defined]
    spec, prompts, _ = make_prompts(
        tokenizer, data, n_test=args.n_test, seed=seed, k=args.k, max_len=args.max_len,
        context=int(model.cfg.n_ctx), data_dir=args.data_dir, source=args.source,  # type: ignore[attr-defined]
    )  # fmt: skip
    taken = {example.content_key for example in (*prompts.queries, *prompts.demonstrations)}
    pool = [e for e in load_examples(data, "train", args.data_dir, source=args.source)
            if e.content_key not in taken]  # fmt: skip
    others = [
        sample_demonstrations(pool, prompts.k_used, seed=seed * 1_000 + j)
        for j in range(1, args.n_orders)
    ]
    for kind in unit_kinds(args):
        path = unit_path(args.out, name, data, seed, kind)
        if done(path):
            continue
        common = dict(n_orders=args.n_orders, order_seed=seed, batch_size=args.batch_size)
        lr = finetune_lr(args.lr, name, data, kind) if kind in ("gd", "lcgd") else None
        if lr is not None:
            rows = finetune_order_sensitivity(
                model, tokenizer, spec, prompts, others, method=kind, lr=lr, seed=seed, **common
            )
        else:
            rows = lm_order_sensitivity(
                model, tokenizer, spec, prompts, others, mask=kind, **common
            )
        frame = pd.DataFrame(rows)
        for position, (column, value) in enumerate(
            [("model", name), ("data", data), ("seed", seed)]
        ):
            frame.insert(position, column, value)
        frame["k_used"] = prompts.k_used
        if lr is not None:
            frame["lr"] = lr
        write_csv(path, frame)


def finetune_lr(lr: float | str, model: str, data: str, method: str) -> float:
    """``lr``, or with "chosen" the packaged chosen lr of ``method`` for ``model`` on ``data``."""
    if lr != "chosen":
        return float(lr)
    chosen = chosen_lrs(model, data)
    if method not in chosen:
        raise UserError(f"no chosen lr for {method} on {model} / {data}; pass a number as --lr")
    return chosen[method]


def unit_kinds(args: argparse.Namespace) -> list[str]:
    """One unit per ICL mask (with ``icl`` in ``--methods``) and per finetuning."""
    return [*(args.masks if "icl" in args.methods else []),
            *(m for m in args.methods if m != "icl")]  # fmt: skip


def unit_path(out: Path, model: str, data: str, seed: int, kind: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", model)
    return out / "units" / f"{safe}_{data}_seed{seed}_{kind}.csv"


def main(args: argparse.Namespace) -> pd.DataFrame:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name in args.models:  # every lr is known before the folder is claimed
        for data in args.datasets:
            for method in set(unit_kinds(args)) & {"gd", "lcgd"}:
                finetune_lr(args.lr, name, data, method)
    settings = {k: v for k, v in vars(args).items() if k not in ("threads", "out", "batch_size")}
    ResultFolder(args.out, "analyses/lm_order_sensitivity.py", settings).claim()
    for name in args.models:
        model = load_model(name)
        for data in args.datasets:
            for seed in args.seeds:
                run_unit(args, model, name, data, seed)
    paths = [unit_path(args.out, n, d, s, kind) for n in args.models for d in args.datasets
             for s in args.seeds for kind in unit_kinds(args)]  # fmt: skip
    table = pd.concat([read_csv(path) for path in paths], ignore_index=True)
    write_csv(args.out / "order_sensitivity.csv", table)
    wide = table.pivot_table(
        index=["model", "data", "method", "mask", "layer"], columns="statistic", values="value"
    )
    print(wide.groupby(["model", "data", "method", "mask"]).mean().to_string())
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("lm_order_sensitivity", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
