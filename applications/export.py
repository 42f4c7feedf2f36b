"""`aezoo export`, as the installed command runs it (see aezoo/apps/export.py)."""

import sys

from aezoo.apps.export import main

if __name__ == "__main__":
    sys.exit(main())
