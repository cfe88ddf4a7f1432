"""Order sensitivity of the constructed LSA per layer (prefix vs causal vs causal2).

    python analyses/lsa_order_sensitivity.py --out results/lsa_order [--n-orders 8 ...]

Paper settings by default (d=16, n=40, 200 queries, 64 sequences, 50 layers, eta 1.6 and
0.1 for causal2). Writes ``config.json`` and ``order_sensitivity.csv`` (one row per variant
x statistic x layer; statistic ``across_orders`` or ``across_sets``, the scale) and prints
both at a few layers. Definition: ``icl_interp.order``; about 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from icl_interp.cli import OneLineParser, script_exit_code
from icl_interp.lsa.config import LSAConfig
from icl_interp.lsa.order import order_sensitivity_rows
from icl_interp.results import ResultFolder, write_csv
from icl_interp.threads import torch_threads

SHOWN_LAYERS = (1, 2, 5, 10, 20, 50)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = LSAConfig()
    parser = OneLineParser(prog="lsa_order_sensitivity.py", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/lsa_order"), help="result folder")
    parser.add_argument("--n-orders", type=int, default=8, help="P orders (and P context sets)")
    parser.add_argument("--order-seed", type=int, default=0, help="seed of the permutations")
    for name in ("d", "n_context", "n_queries", "n_sequences", "n_layers", "seed"):
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            default=getattr(defaults, name),
            help=f"the LSA setting {name} (as icl-interp lsa)",
        )
    parser.add_argument(
        "--eta",
        type=float,
        default=defaults.eta,
        help="prefix/causal step; each layer uses eta/n (as icl-interp lsa)",
    )
    parser.add_argument(
        "--eta-causal2",
        type=float,
        default=defaults.eta_causal2,
        help="the causal2 variant's step (as icl-interp lsa)",
    )
    parser.add_argument(
        "--form",
        choices=["recursion", "matrix"],
        default=defaults.form,
        help="how the LSA forward is computed: the recursion or the matrix form",
    )
    args = parser.parse_args(argv)
    if args.n_orders < 2:
        parser.error(f"--n-orders must be >= 2, got {args.n_orders}")
    return args


def main(args: argparse.Namespace) -> pd.DataFrame:
    config = LSAConfig(
        d=args.d,
        n_context=args.n_context,
        n_queries=args.n_queries,
        n_sequences=args.n_sequences,
        n_layers=args.n_layers,
        eta=args.eta,
        eta_causal2=args.eta_causal2,
        form=args.form,
        seed=args.seed,
    )
    settings = {"lsa": config.to_dict(), "n_orders": args.n_orders, "order_seed": args.order_seed}
    folder = ResultFolder(args.out, "analyses/lsa_order_sensitivity.py", settings)
    folder.check()
    with torch_threads(1):
        table = pd.DataFrame(
            order_sensitivity_rows(config, n_orders=args.n_orders, seed=args.order_seed)
        )
    folder.claim()
    write_csv(args.out / "order_sensitivity.csv", table)
    shown = table[table["layer"].isin(SHOWN_LAYERS)]
    wide = shown.pivot_table(index=["variant", "layer"], columns="statistic", values="value")
    with pd.option_context("display.width", 120, "display.float_format", "{:.3g}".format):
        print(wide.to_string())
    return table


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("lsa_order_sensitivity", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
