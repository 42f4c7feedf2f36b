"""`python -m aezoo COMMAND ...`: the `aezoo` command, for environments without its script."""

import sys

from aezoo.apps.main import main

sys.exit(main())
