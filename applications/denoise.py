"""`aezoo denoise`, as the installed command runs it (see aezoo/apps/denoise.py)."""

import sys

from aezoo.apps.denoise import main

if __name__ == "__main__":
    sys.exit(main())
