"""Entry point of `aezoo anomalies` (see aezoo/apps/anomalies.py); the same as the installed command."""

import sys

from aezoo.apps.anomalies import main

if __name__ == "__main__":
    sys.exit(main())
