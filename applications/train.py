"""`aezoo train`, as the installed command runs it (see aezoo/apps/train.py)."""

import sys

from aezoo.apps.train import main

if __name__ == "__main__":
    sys.exit(main())
