"""``python -m icl_interp``: the command line. A Ctrl-C that arrives while the command line is
still being imported ends as one during a run does: one line, exit code 130."""

import sys

try:
    from icl_interp.cli import main
except KeyboardInterrupt:
    print("icl-interp: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
