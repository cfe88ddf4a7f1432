import sys

from icl_interp.cli import main

sys.exit(main())
