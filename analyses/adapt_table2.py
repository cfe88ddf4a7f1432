"""The Table 2 analog (prefixLM vs causalLM adaptation): its results page from an archived run.

    icl-interp adapt-table --preset cpu --lr-grid 1e-4 3e-4 --workers 2 --out runs/adapt_cpu
    python analyses/adapt_table2.py --archive-from runs/adapt_cpu   # archive, then the page
    python analyses/adapt_table2.py --report-only                   # the page, from the archive

``--archive-from RUN`` copies the finished run's report, tables and figures into the committed
archive (``docs/results/table2/``) and rebuilds the page ``docs/results/table2.md`` from it;
``--report-only`` rebuilds the page alone (``icl_interp.lm.adapt.page``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import page_script_exit_code


def _main(argv: Sequence[str] | None = None) -> int:
    return page_script_exit_code(
        "adapt_table2.py", __doc__.splitlines()[0], "icl_interp.lm.adapt.page",
        "docs/results/table2", "docs/results/table2.md", argv,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(_main())
