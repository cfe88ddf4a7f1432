"""ICL vs GD vs layer-causal GD on six classification data sets (Deutch et al. 2023, Table 1).

The full run of the project: Gemma-3-270M, SST-2, SST-5, MR, Subj, AG News and CB, k per data
set (docs/definitions.md, packed to fit), one seed, 100 test examples each (CB has 56: all are
used), both ICL masks, results in runs/compare_icl_gd (~40 min on 2 CPU cores). A thin driver over ``icl-interp compare``: any option given on
the command line replaces the matching default here, e.g.

    python analyses/compare_icl_gd.py --data-dir ../shared/data --n-test 20
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import main

FULL_RUN: dict[str, list[str]] = {
    "--models": ["gemma-3-270m"],
    "--datasets": ["sst2", "sst5", "mr", "subj", "agnews", "cb"],
    "--seeds": ["0"],
    "--n-test": ["100"],
    "--masks": ["causal", "prefix"],
    "--out": ["runs/compare_icl_gd"],
}


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = {arg.split("=")[0] for arg in argv if arg.startswith("--")}
    defaults = [
        x for option, values in FULL_RUN.items() if option not in given for x in (option, *values)
    ]
    return main(["compare", *defaults, *argv])


if __name__ == "__main__":
    sys.exit(_main())
