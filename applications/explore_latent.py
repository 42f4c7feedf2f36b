"""`aezoo explore`, as the installed command runs it (see aezoo/apps/explore.py)."""

import sys

from aezoo.apps.explore import main

if __name__ == "__main__":
    sys.exit(main())
