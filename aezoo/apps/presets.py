"""aezoo presets: the pretrained presets that ship with aezoo.

    aezoo presets                 # name, task, size and headline figure of each
    aezoo presets denoise_gray    # one preset's model card
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aezoo.apps import cli

PROG = "aezoo presets"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description="List the pretrained presets.")
    parser.add_argument("name", nargs="?", help="show this preset's model card")
    return parser


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aezoo import presets  # no TensorFlow: the table and the cards are plain data

    if args.name is None:
        print(presets.listing())
        return 0
    print(presets.card(args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
