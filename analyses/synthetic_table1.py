"""Paper Table 1 and Figure 3: prefix vs causal, SL vs UL transformers on synthetic ICL tasks.

    python analyses/synthetic_table1.py --preset cpu --seeds 0 1 2 --workers 2 --out runs/synthetic_cpu
    python analyses/synthetic_table1.py --archive-from runs/synthetic_cpu   # archive, then the page
    python analyses/synthetic_table1.py --report-only                       # the page, from the archive

The first form takes the options of ``icl-interp synthetic`` (a thin driver over
``icl_interp.synthetic.experiment``). ``--archive-from RUN`` copies the finished run's results
into the committed archive (``docs/results/table1/``) and rebuilds the page
``docs/results/table1.md`` from it; ``--report-only`` rebuilds the page alone
(``icl_interp.synthetic.page``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from icl_interp.cli import main, page_script_exit_code


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not {"--archive-from", "--report-only"} & {a.split("=")[0] for a in argv}:
        return main(["synthetic", *argv])
    return page_script_exit_code(
        "synthetic_table1.py", __doc__.splitlines()[0], "icl_interp.synthetic.page",
        "docs/results/table1", "docs/results/table1.md", argv,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(_main())
