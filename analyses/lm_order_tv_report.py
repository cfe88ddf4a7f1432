"""The real-LM order-sensitivity and task-vector page, from the committed runs' units.

    python analyses/lm_order_tv_report.py      # docs/results/lm_order_tv.md and its figures

Reads ``docs/results/lm_order_tv/{task_vectors,order}/`` (written there by
``analyses/task_vectors.py`` and ``analyses/lm_order_sensitivity.py``, commands on the page)
and applies ``docs/analysis_plan_order_tv.md`` (``icl_interp.lm.order_tv_page``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from icl_interp.cli import OneLineParser, script_exit_code


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="lm_order_tv_report.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archive",
        type=Path,
        default=Path("docs/results/lm_order_tv"),
        help="the committed archive the page is built from",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        default=Path("docs/results/lm_order_tv.md"),
        help="the page written from the archive",
    )
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    from icl_interp.lm.order_tv_page import write_page

    markdown = write_page(args.archive, args.doc)
    print(f"page in {args.doc} ({len(markdown.splitlines())} lines)")
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    return script_exit_code("lm_order_tv_report.py", parse_args, main, argv)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
