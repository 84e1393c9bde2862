"""`python -m osum.token2wav`: see osum.token2wav.cli."""

from osum.token2wav.cli import main

if __name__ == "__main__":
    main()
