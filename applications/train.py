"""Entry point of `aezoo train` (see aezoo/apps/train.py); the same as the installed command."""

import sys

from aezoo.apps.train import main

if __name__ == "__main__":
    sys.exit(main())
