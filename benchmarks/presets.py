"""Pack trained runs as presets, and measure every preset's check against its card.

    python benchmarks/presets.py pack conv_mnist /work/runs/conv_mnist --card card.json
    python benchmarks/presets.py check                  # every preset: card vs measured
    python benchmarks/presets.py check denoise_gray

`pack` writes aezoo/presets/NAME/ (run.json and weights.npz, float16 weights unless
--float32; see aezoo.runs.pack) and the card: CARD (a JSON file with the card's text fields
and its `check`) completed with the SHA-256 of the files.  A preset's file is replaced only
when a better model has been measured, so that the repository does not grow with every
experiment.  `--compare` prints the check measured on the run (float32) and on the packed
preset, the cost of float16 storage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from offline import DATA

from aezoo import presets, runs
from aezoo.apps import cli


def pack(args: argparse.Namespace) -> None:
    card = json.loads(Path(args.card).read_text())
    run = runs.load_run(args.run)
    folder = presets.PRESET_DIR / args.name
    card["sha256"] = runs.pack(run, folder, float16=not args.float32)
    card["precision"] = "float32" if args.float32 else "float16"
    runs.write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    print(f"Packed {args.run} as {folder} ({sum(p.stat().st_size for p in folder.iterdir())} "
          "bytes)")


def check(args: argparse.Namespace) -> None:
    from aezoo.presets import checks

    names = args.names or sorted(presets.PRESETS)
    print("| preset | figure | card | measured |")
    print("|---|---|---|---|")
    for name in names:
        measured = checks.measure(name, DATA)
        for key, value in measured.items():
            print(f"| {name} | {key} | {presets.PRESETS[name]['check'][key]:.6g} | {value:.6g} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    packer = actions.add_parser("pack")
    packer.add_argument("name")
    packer.add_argument("run")
    packer.add_argument("--card", required=True)
    packer.add_argument("--float32", action="store_true")
    checker = actions.add_parser("check")
    checker.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    {"pack": pack, "check": check}[args.action](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
