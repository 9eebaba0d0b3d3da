"""`python -m refsd.cli`: the `refsd` command without its console script."""

import sys

from .entry import main

sys.exit(main())
