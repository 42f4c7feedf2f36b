"""Entry point of `aezoo explore` (see aezoo/apps/explore.py); the same as the installed command."""

import sys

from aezoo.apps.explore import main

if __name__ == "__main__":
    sys.exit(main())
