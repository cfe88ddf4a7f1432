"""The ``icl-interp`` command: one subcommand per analysis.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; only the chosen module is imported, so ``icl-interp lsa``
never pays for loading transformers. User mistakes (``UserError``, bad options)
print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from icl_interp.errors import UserError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "lsa": ("icl_interp.lsa.experiment", "linear self-attention theory: paper Figures 2 and 4"),
    "synthetic": (
        "icl_interp.synthetic.experiment",
        "trained transformers on synthetic tasks: Table 1, Figure 3",
    ),
    "layers": (
        "icl_interp.lm.layers",
        "per-layer (logit-lens) accuracy: zero-shot vs causal vs prefix ICL",
    ),
    "compare": ("icl_interp.lm.compare", "ICL vs GD vs layer-causal GD: similarity metrics per layer"),
    "adapt": (
        "icl_interp.lm.adapt",
        "continue training a model on ICL episodes under a prefix or causal mask",
    ),
    "adapt-table": (
        "icl_interp.lm.adapt_table",
        "prefixLM vs causalLM adaptation: Table 2 analog and the layer-by-layer comparison",
    ),
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def exit_code(prog: str, action: Callable[[], object]) -> int:
    """Run ``action`` and return its exit code: its result if an int, else 0; a ``UserError``
    prints ``<prog>: error: <message>`` on stderr (one line) and gives 2."""
    try:
        result = action()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def build_parser(chosen: str | None = None) -> OneLineParser:
    parser = OneLineParser(prog="icl-interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return exit_code(f"icl-interp {args.command}", lambda: module.run(args))
    except KeyboardInterrupt:
        print(
            f"icl-interp {args.command}: interrupted; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
