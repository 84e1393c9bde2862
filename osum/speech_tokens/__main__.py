"""`python -m osum.speech_tokens ...`: the command line of ``osum.speech_tokens.cli``."""

from __future__ import annotations

import sys

from osum.speech_tokens.cli import main

if __name__ == "__main__":
    sys.exit(main())
