"""`aezoo anomalies`, as the installed command runs it (see aezoo/apps/anomalies.py)."""

import sys

from aezoo.apps.anomalies import main

if __name__ == "__main__":
    sys.exit(main())
