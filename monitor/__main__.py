"""`python -m monitor` is the same as the `dprk-monitor` console script."""

import sys

from monitor.cli import main

sys.exit(main())
