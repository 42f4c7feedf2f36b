"""Entry point of `aezoo denoise` (see aezoo/apps/denoise.py); the same as the installed command."""

import sys

from aezoo.apps.denoise import main

if __name__ == "__main__":
    sys.exit(main())
