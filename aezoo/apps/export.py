"""aezoo export: a trained model as a SavedModel version for TF Serving.

    aezoo export runs/mnist_conv exports/mnist_conv              # -> exports/mnist_conv/1
    aezoo export runs/mnist_conv/model.keras exports/mnist_conv  # -> .../2
    aezoo export runs/mnist_conv exports/mnist_conv --version 7  # -> .../7

The SavedModel runs with no Python and no aezoo (see aezoo.export for its signatures); an
anomaly detector's (a run of `aezoo anomalies train`, or the ecg5000 preset) takes examples
as they come and returns their `score` and `anomaly`, as the run's own export/1.
Existing versions are never overwritten.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aezoo.apps import cli

PROG = "aezoo export"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Export a trained model as a SavedModel version for TF Serving.",
    )
    parser.add_argument("model", help="a run folder, its model.keras, or a preset name")
    parser.add_argument("base_dir", type=Path, help="TF Serving's model_base_path; gets <version>/")
    parser.add_argument("--version", type=cli.positive_int,
                        help="version number (default: the next one)")
    return parser


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow()
    from aezoo import export, runs

    export.new_version(args.base_dir, args.version)  # fails before the slow part
    model, edit_endpoints = runs.open_for_export(args.model)
    print(f"Exporting {args.model} ...", flush=True)
    target = export.export_saved_model(model, args.base_dir, version=args.version,
                                       edit_endpoints=edit_endpoints)
    print(f"Exported {args.model} to {target} "
          f"(signatures: {', '.join(export.signature_names(target))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
