"""Paper Figures 2 and 4 (LSA theory): a thin driver over ``icl-interp lsa``.

    python analyses/lsa_figures.py --out results/lsa [--n-layers 50 --seed 0 ...]

Options are those of ``icl-interp lsa --help``; results go to ``--out`` (default results/lsa).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import main


def _main(argv: Sequence[str] | None = None) -> int:
    return main(["lsa", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(_main())
