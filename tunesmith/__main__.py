"""`python -m tunesmith COMMAND ...`: the same command line as `tunesmith`."""

import sys

from tunesmith.cli import main

sys.exit(main())
