"""`python -m aezoo COMMAND ...`: the `aezoo` command, for environments without its script."""

from aezoo.apps.main import console

console()
