"""`python -m osum.convert ...`: the command line of ``osum.convert.cli``."""

from __future__ import annotations

import sys

from osum.convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
