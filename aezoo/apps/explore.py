"""Look at what an autoencoder's latent space learned: a 2-D map of the codes coloured by
label, reconstructions, a walk between two examples decoded to images, and how well a linear
classifier reads the labels off the codes compared with off the raw pixels.

Train a model, then explore it (codes of the test split; the probe trains on the train split):

    aezoo train --model conv --dataset mnist --latent-dim 2 --epochs 10 --out runs/mnist_conv2
    aezoo explore --model runs/mnist_conv2 --dataset mnist --out runs/mnist_conv2/latent

A model trained on several machines explores the same way (exploring runs on one device):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo train --model conv --dataset fashion_mnist --strategy multiworker \\
        --out runs/fashion_mw
    aezoo explore --model runs/fashion_mw --dataset fashion_mnist --out runs/fashion_mw/latent

Writes OUT/latent_scatter.png (the codes themselves when the latent has 2 numbers, else
their PCA projection; the title says which), OUT/reconstructions.png, OUT/latent_walk.png
and OUT/probe.json, and prints the probe's accuracies.

Every model of the zoo that takes the dataset's images works.  The `denoising` U-Net's
encoder returns a dict: its "latent" map, flattened, is the code for the scatter and the
probe, and its walk interpolates every decoder input (latent, skips and the image itself),
since the U-Net decodes from all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from aezoo.apps import cli

PROG = "aezoo explore"
OUTPUTS = ("latent_scatter.png", "reconstructions.png", "latent_walk.png", "probe.json")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description="Explore an autoencoder's latent space.")
    parser.add_argument("--model", required=True,
                        help="a run folder, its model.keras, or a preset name")
    parser.add_argument("--dataset", required=True, help="tensorflow-datasets name with labels")
    parser.add_argument("--out", type=cli.folder, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    parser.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    parser.add_argument("--split", default="test", help="split to map and probe on (test)")
    parser.add_argument("--train-split", default="train", help="split the probe trains on")
    parser.add_argument("--examples", type=cli.at_least(2), default=2000,
                        help="examples mapped and probed (2000)")
    parser.add_argument("--probe-train", type=cli.at_least(2), default=5000,
                        help="probe training examples (5000)")
    parser.add_argument(
        "--walk", type=int, nargs=2, metavar=("A", "B"),
        help="indices of the walk's ends (default: the first two of different labels)",
    )
    parser.add_argument("--steps", type=cli.steps, default=10,
                        help="images along the walk (10)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=256)
    return parser


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.check_outputs(args.out, OUTPUTS, args.overwrite)
    cli.start_tensorflow()
    import numpy as np

    from aezoo import latent, plots, runs, training

    model = runs.open_model(args.model)
    if not hasattr(model, "encoder"):
        raise ValueError(f"{args.model} is not an aezoo autoencoder (no encoder and decoder).")
    x, labels = latent.load_split(args.dataset, args.split, args.examples, args.data_dir)
    if len(x) < 2:  # (as --examples 1 is refused: a scatter of codes needs two)
        raise ValueError(f"The split {args.split!r} has {cli.counted(len(x), 'example')}; "
                         "explore needs at least 2.")
    training.check_fits(model, x.shape[1:])
    for end in args.walk or ():
        if not 0 <= end < len(x):
            raise ValueError(f"--walk index {end} is outside the {len(x)} examples.")
    train_x, train_y = latent.load_split(args.dataset, args.train_split, args.probe_train,
                                         args.data_dir)
    if len(np.unique(train_y)) < 2:
        raise ValueError("The probe needs examples of at least two labels.")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Encoding {len(x)} {args.split} and {len(train_x)} {args.train_split} examples.")
    codes = latent.codes_of(model.encoder.predict(x, batch_size=args.batch_size, verbose=0))
    train_codes = latent.codes_of(
        model.encoder.predict(train_x, batch_size=args.batch_size, verbose=0))

    name = f"{model.get_config().get('model', model.name)} on {args.dataset}"
    with runs.together():  # (with --overwrite: never new plots beside an old probe)
        with runs.writing(args.out / "latent_scatter.png") as path:
            projection = latent.scatter(codes, labels, path, name)
        with runs.writing(args.out / "reconstructions.png") as path:
            plots.plot_reconstructions(model, x[:10], path, title=name)
        with runs.writing(args.out / "latent_walk.png") as path:
            ends = latent.walk(model, x, labels, args.walk, args.steps, path)

        result = {
            "model": str(args.model),
            "dataset": args.dataset,
            "latent_size": int(codes.shape[1]),
            "scatter": projection,
            "walk": ends,
            "probe_train_examples": int(len(train_x)),
            "probe_test_examples": int(len(x)),
            "latent_accuracy": latent.probe(train_codes, train_y, codes, labels),
            "pixel_accuracy": latent.probe(train_x, train_y, x, labels),
        }
        runs.write_text(args.out / "probe.json", json.dumps(result, indent=2) + "\n")
    print(
        f"Linear probe accuracy on {len(x)} {args.split} examples: latent codes "
        f"({codes.shape[1]}-D) {result['latent_accuracy']:.4f}, raw pixels "
        f"({int(np.prod(x.shape[1:]))}-D) {result['pixel_accuracy']:.4f}. Plots in {args.out}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
