"""Entry point of `aezoo generate` (see aezoo/apps/generate.py): the installed command."""

import sys

from aezoo.apps.generate import main

if __name__ == "__main__":
    sys.exit(main())
