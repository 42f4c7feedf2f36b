"""Entry point of `aezoo compress` (see aezoo/apps/compress.py); the same as the installed command."""

import sys

from aezoo.apps.compress import main

if __name__ == "__main__":
    sys.exit(main())
