"""`aezoo presets`, as the installed command runs it (see aezoo/apps/presets.py)."""

import sys

from aezoo.apps.presets import main

if __name__ == "__main__":
    sys.exit(main())
