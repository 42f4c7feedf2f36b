"""Show what a generative autoencoder learned: samples from its prior, interpolations
between prior draws, and (for a VAE) latent traversals, one dimension at a time.

Train a model, then generate (a VAE on dynamically binarised MNIST):

    aezoo train --model vae --dataset mnist --binarize true --epochs 30 --out runs/mnist_vae
    aezoo generate --model runs/mnist_vae --out runs/mnist_vae/generated

A VQ-VAE generates from a PixelCNN prior over its codes, trained after the autoencoder;
`--fit-prior` trains it here on a tensorflow-datasets dataset and saves the model with it
as OUT/model.keras (the run itself is left as it is):

    aezoo train --model vq_vae --dataset mnist --epochs 20 --out runs/mnist_vq
    aezoo generate --model runs/mnist_vq --fit-prior mnist --out runs/mnist_vq/generated

A model trained on several machines generates the same way (generating runs on one device):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo train --model vae --dataset mnist --binarize true --strategy multiworker \\
        --out runs/mnist_vae_mw
    aezoo generate --model runs/mnist_vae_mw --out runs/mnist_vae_mw/generated

Writes OUT/samples.png, OUT/interpolations.png, OUT/traversals.png (VAEs) and
OUT/generate.json (what was drawn, with which seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from aezoo.apps import cli

PROG = "aezoo generate"
OUTPUTS = ("samples.png", "interpolations.png", "traversals.png", "generate.json",
           "model.keras")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Draw samples, interpolations and traversals of a VAE or VQ-VAE."
    )
    parser.add_argument("--model", required=True,
                        help="a run folder, its model.keras, or a preset name")
    parser.add_argument("--out", type=cli.folder, required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    parser.add_argument("--samples", type=cli.positive_int, default=64,
                        help="samples drawn (rows of 8; default 64)")
    parser.add_argument("--seed", type=cli.seed32, default=0,
                        help="seed of every draw, 32 bits (default 0)")
    parser.add_argument("--rows", type=cli.positive_int, default=6, help="interpolations drawn")
    parser.add_argument("--steps", type=cli.steps, default=10,
                        help="images along each interpolation and traversal")
    parser.add_argument("--dimensions", type=cli.positive_int,
                        help="VAEs: latent dimensions traversed, those that change the image "
                        "most (default 10)")
    prior = parser.add_argument_group("VQ-VAE prior")
    prior.add_argument("--fit-prior", metavar="DATASET",
                       help="train the PixelCNN prior on this tensorflow-datasets dataset first")
    prior.add_argument("--prior-epochs", type=cli.positive_int, default=10)
    prior.add_argument("--prior-examples", type=cli.positive_int, default=60000,
                       help="training examples of the prior (the first of the train split)")
    prior.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    return parser


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.check_outputs(args.out, OUTPUTS, args.overwrite)
    cli.start_tensorflow()
    from aezoo import generative, latent, runs

    model = runs.open_model(args.model)
    generative.check_image_model(model)
    vq = hasattr(model, "fit_prior")
    if args.fit_prior and not vq:
        raise ValueError("--fit-prior applies to VQ-VAE models only.")
    if args.dimensions is not None and vq:
        raise ValueError("--dimensions applies to VAEs only: a VQ-VAE's code has no "
                         "dimensions to traverse.")
    args.dimensions = args.dimensions or 10
    if vq and not args.fit_prior and not model.prior_trained:
        raise ValueError(
            "The VQ-VAE's prior has not been trained; pass --fit-prior DATASET (e.g. "
            "--fit-prior mnist) to train it on that dataset first."
        )
    if args.fit_prior:  # the data is loaded (or refused) before --out is made
        x, _ = latent.load_split(args.fit_prior, "train", args.prior_examples, args.data_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.fit_prior:
        print(f"Training the prior on {len(x)} {args.fit_prior} examples.")
        history = model.fit_prior(x, epochs=args.prior_epochs, verbose=2)
        with runs.writing(args.out / "model.keras") as path:
            model.save(path)
        nats = history.history["loss"][-1]
        print(f"Prior: {nats:.4f} nats ({nats / 0.6931471805599453:.4f} bits) per code.")

    # The prior's model.keras is kept whatever comes next (it took the training); the
    # pictures and their summary take their names together.
    with runs.together():
        if vq:  # (--overwrite of a VAE's results: not beside this model's)
            (args.out / "traversals.png").unlink(missing_ok=True)
        print(f"Drawing {cli.counted(args.samples, 'sample')} and "
              f"{cli.counted(args.rows, 'interpolation')}...", flush=True)
        with runs.writing(args.out / "samples.png") as path:
            generative.sample_grid(model, path, args.samples, args.seed)
        with runs.writing(args.out / "interpolations.png") as path:
            generative.interpolations(model, path, args.rows, args.steps, args.seed)
        summary = {"model": str(args.model), "seed": args.seed, "samples": args.samples,
                   "interpolations": args.rows, "steps": args.steps}
        if not vq:
            with runs.writing(args.out / "traversals.png") as path:
                summary["traversed_dimensions"] = generative.traversals(
                    model, path, args.dimensions, args.steps)
            if len(summary["traversed_dimensions"]) < args.dimensions:
                print(f"The latent has {len(summary['traversed_dimensions'])} dimensions: "
                      "traversals.png shows them all.")
        if args.fit_prior:
            summary["prior"] = {"dataset": args.fit_prior, "examples": len(x),
                                "epochs": args.prior_epochs, "nats_per_code": nats}
        runs.write_text(args.out / "generate.json", json.dumps(summary, indent=2) + "\n")
    print(f"Samples, interpolations{'' if vq else ' and traversals'} in {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
