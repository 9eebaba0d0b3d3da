"""`python -m refsd.cli`: the `refsd` command without its console script."""

import sys

from .entry import main

if __name__ == "__main__":
    sys.exit(main())
