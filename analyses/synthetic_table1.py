"""Paper Table 1 and Figure 3: prefix vs causal, SL vs UL transformers on synthetic ICL tasks.

    python analyses/synthetic_table1.py --preset cpu --seeds 0 1 2 --jobs 2 --threads 1 \
        --out results/synthetic_cpu

Same options as ``icl-interp synthetic`` (a thin driver over icl_interp.synthetic.experiment).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import main


def _main(argv: Sequence[str] | None = None) -> int:
    return main(["synthetic", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(_main())
