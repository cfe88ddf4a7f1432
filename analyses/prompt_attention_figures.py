"""Figures of where the query reads in the prompt, from a ``compare`` results folder.

Reads ``<results>/prompt_attention.csv`` and writes, per model x data x seed, the segment-mass,
role-mass, difference-map and per-head figures (``icl_interp.lm.attention_plots``) as PNG.

    .venv/bin/python analyses/prompt_attention_figures.py runs/attn_mr --layer 14   # runs/attn_mr/figures
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_interp.cli import OneLineParser, exit_code
from icl_interp.errors import UserError


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="prompt_attention_figures.py", description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results folder of icl-interp compare")
    parser.add_argument("--layer", type=int, default=None, help="layer of the per-head view")
    parser.add_argument("--out", default=None, help="default: <results>/figures")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> list[Path]:
    from icl_interp.lm.attention import read_prompt_attention
    from icl_interp.lm.attention_plots import write_attention_figures

    source = Path(args.results) / "prompt_attention.csv"
    if not source.is_file():
        raise UserError(f"{source} does not exist; run icl-interp compare into that folder first")
    table = read_prompt_attention(source)
    n_layers = int(table["layer"].max()) + 1
    if args.layer is not None and not 0 <= args.layer < n_layers:
        raise UserError(f"--layer must be in [0, {n_layers - 1}], got {args.layer}")
    out = Path(args.out) if args.out else Path(args.results) / "figures"
    written = write_attention_figures(table, out, layer=args.layer)
    for path in written:
        print(path)
    return written


def _main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # argparse: --help, or a one-line usage error
        return int(stop.code or 0)
    return exit_code("prompt_attention_figures", lambda: main(args))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
