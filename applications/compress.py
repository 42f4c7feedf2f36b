"""`aezoo compress`, as the installed command runs it (see aezoo/apps/compress.py)."""

import sys

from aezoo.apps.compress import main

if __name__ == "__main__":
    sys.exit(main())
