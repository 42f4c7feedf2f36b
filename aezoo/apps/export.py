"""aezoo export: a trained model as a SavedModel version for TF Serving.

    aezoo export runs/mnist_conv exports/mnist_conv              # -> exports/mnist_conv/1
    aezoo export runs/mnist_conv/model.keras exports/mnist_conv  # -> .../2
    aezoo export runs/mnist_conv exports/mnist_conv --version 7  # -> .../7
    aezoo export --model conv_mnist --out exports/conv_mnist     # the other commands' words

The SavedModel runs with no Python and no aezoo (see aezoo.export for its signatures); an
anomaly detector's (a run of `aezoo anomalies train`, or the ecg5000 preset) takes examples
as they come and returns their `score` and `anomaly`, as the run's own export/1.
Existing versions are never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aezoo.apps import cli

PROG = "aezoo export"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Export a trained model as a SavedModel version for TF Serving.",
    )
    # Positional, or named as every other command names them (--model, --out).
    parser.add_argument("model", nargs="?",
                        help="a run folder, its model.keras, or a preset name (or --model)")
    parser.add_argument("base_dir", nargs="?", type=cli.folder,
                        help="TF Serving's model_base_path; gets <version>/ (or --out)")
    parser.add_argument("--model", dest="model_option", metavar="MODEL",
                        help="the model, as the other commands name it")
    parser.add_argument("--out", dest="out_option", type=cli.folder, metavar="BASE_DIR",
                        help="the base_dir, as the other commands name it")
    parser.add_argument("--version", type=cli.positive_int,
                        help="version number (default: the next one)")
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for positional, option, flag in (("model", "model_option", "--model"),
                                     ("base_dir", "out_option", "--out")):
        given = [v for v in (getattr(args, positional), getattr(args, option)) if v is not None]
        if not given:
            parser.error(f"the {positional} is required (as an argument or {flag})")
        if len(given) == 2:
            parser.error(f"the {positional} is given twice (as an argument and {flag})")
        setattr(args, positional, given[0])
    return args


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.start_tensorflow()
    from aezoo import export, runs

    cli.check_folder(args.base_dir)  # fails before the slow part, as does:
    export.new_version(args.base_dir, args.version)
    model, edit_endpoints = runs.open_for_export(args.model)
    print(f"Exporting {args.model} ...", flush=True)
    target = export.export_saved_model(model, args.base_dir, version=args.version,
                                       edit_endpoints=edit_endpoints)
    names = export.signature_names(target)
    print(f"Exported {args.model} to {target} (signatures: {', '.join(names)})")
    if getattr(model, "prior_trained", True) is False:
        print("No `sample` signature: this VQ-VAE's prior is untrained (aezoo generate "
              "--fit-prior DATASET writes one with it).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
