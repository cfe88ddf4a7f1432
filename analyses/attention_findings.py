"""The attention findings page (where the query reads in the prompt) from an archived run.

    OMP_NUM_THREADS=1 icl-interp compare --models gemma-3-270m --datasets mr --source package \
        --n-test 8 --methods gd lcgd --out runs/attn_mr       # about 20 min on 2 CPU cores
    python analyses/attention_findings.py --archive-from runs/attn_mr   # summarise, then the page
    python analyses/attention_findings.py --report-only                 # the page, from the archive

``--archive-from RUN`` summarises the run's ``prompt_attention.csv`` (one model x data set x
seed) into the committed archive (``docs/results/attention/``: mass per role, per
demonstration, the query's logit changes, the figures, the unit's settings) and rebuilds the page
``docs/results/attention.md`` from it; ``--report-only`` rebuilds the page alone
(``icl_interp.lm.attention_page``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import page_script_exit_code


def _main(argv: Sequence[str] | None = None) -> int:
    return page_script_exit_code(
        "attention_findings.py", __doc__.splitlines()[0], "icl_interp.lm.attention_page",
        "docs/results/attention", "docs/results/attention.md", argv,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(_main())
