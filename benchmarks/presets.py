"""Pack trained runs as presets, and measure every preset's check against its card.

    python benchmarks/presets.py pack conv_mnist /work/runs/conv_mnist --card card.json
    python benchmarks/presets.py check                  # every preset: card vs measured
    python benchmarks/presets.py check denoise_gray
    python benchmarks/presets.py docs                   # README's table, docs/presets.md

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

from aezoo import presets
from aezoo.apps import cli


def pack(args: argparse.Namespace) -> None:
    from aezoo import runs  # TensorFlow, after cli.start_tensorflow() quietened it

    card = json.loads(Path(args.card).read_text())
    run = runs.load_run(args.run)
    folder = presets.PRESET_DIR / args.name
    card["sha256"] = runs.pack(run, folder, float16=not args.float32)
    card["precision"] = "float32" if args.float32 else "float16"
    runs.write_text(folder / "card.json", json.dumps(card, indent=2) + "\n")
    print(f"Packed {args.run} as {folder} ({sum(p.stat().st_size for p in folder.iterdir())} "
          "bytes)")
    if args.compare:
        from aezoo.presets import checks

        presets.PRESETS[args.name] = card
        for what, source in (("run (float32)", args.run), (f"preset ({card['precision']})", None)):
            print(f"{what}: {checks.measure(args.name, DATA, source)}")


def check(args: argparse.Namespace) -> None:
    from aezoo.presets import checks

    names = args.names or sorted(presets.PRESETS)
    print("| preset | figure | card | measured |")
    print("|---|---|---|---|")
    for name in names:
        measured = checks.measure(name, DATA)
        for key, value in measured.items():
            print(f"| {name} | {key} | {presets.PRESETS[name]['check'][key]:.6g} | {value:.6g} |")


def docs(args: argparse.Namespace) -> None:
    """README's presets table and docs/presets.md's cards, from the cards."""
    root = Path(__file__).resolve().parent.parent
    rows = ["| preset | task | headline (measured, see its card) |", "|---|---|---|"]
    rows += [f"| `{name}` | {card['task']} | {card['headline']} |"
             for name, card in presets.PRESETS.items()]
    readme = (root / "README.md").read_text()
    head, rest = readme.split("<!-- presets-table -->\n", 1)
    rest = rest.split("\n\n", 1)[1]
    (root / "README.md").write_text(head + "<!-- presets-table -->\n" + "\n".join(rows)
                                    + "\n\n" + rest)
    page = root / "docs" / "presets.md"
    head = page.read_text().split("<!-- presets-cards -->", 1)[0]
    page.write_text(head + "<!-- presets-cards -->\n\n" + presets.markdown())
    print("Wrote README.md's presets table and docs/presets.md's cards.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    actions = parser.add_subparsers(dest="action", required=True)
    packer = actions.add_parser("pack")
    packer.add_argument("name")
    packer.add_argument("run")
    packer.add_argument("--card", required=True)
    packer.add_argument("--float32", action="store_true")
    packer.add_argument("--compare", action="store_true",
                        help="measure the card's check on the run and on the packed preset")
    checker = actions.add_parser("check")
    checker.add_argument("names", nargs="*")
    actions.add_parser("docs", help="README's presets table and docs/presets.md from the cards")
    args = parser.parse_args(argv)
    if args.action == "docs":
        docs(args)
        return 0
    cli.start_tensorflow()
    {"pack": pack, "check": check}[args.action](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
