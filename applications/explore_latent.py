"""Look at what an autoencoder's latent space learned: a 2-D map of the codes coloured by
label, reconstructions, a walk between two examples decoded to images, and how well a linear
classifier reads the labels off the codes compared with off the raw pixels.

Train a model, then explore it (codes of the test split; the probe trains on the train split):

    python -m aezoo.train --model conv --dataset mnist --latent-dim 2 --epochs 10 \\
        --out runs/mnist_conv2
    python applications/explore_latent.py --model runs/mnist_conv2/model.keras \\
        --dataset mnist --out runs/mnist_conv2/latent

A model trained on several machines explores the same way (exploring runs on one device):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python -m aezoo.train --model conv --dataset fashion_mnist --strategy multiworker \\
        --out runs/fashion_mw
    python applications/explore_latent.py --model runs/fashion_mw/model.keras \\
        --dataset fashion_mnist --out runs/fashion_mw/latent

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
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import numpy as np  # noqa: E402

import aezoo  # noqa: E402
from aezoo import data, plots, training  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="explore_latent.py", description="Explore an autoencoder's latent space."
    )
    parser.add_argument("--model", type=Path, required=True, help="a .keras file of aezoo")
    parser.add_argument("--dataset", required=True, help="tensorflow-datasets name with labels")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    parser.add_argument("--split", default="test", help="split to map and probe on (test)")
    parser.add_argument("--train-split", default="train", help="split the probe trains on")
    parser.add_argument("--examples", type=int, default=2000, help="examples mapped and probed")
    parser.add_argument("--probe-train", type=int, default=5000, help="probe training examples")
    parser.add_argument(
        "--walk", type=int, nargs=2, metavar=("A", "B"),
        help="indices of the walk's ends (default: the first two of different labels)",
    )
    parser.add_argument("--steps", type=int, default=10, help="images along the walk")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    for name in ("examples", "probe_train", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.steps < 2:
        raise ValueError("--steps must be at least 2.")
    return args


def load_model(path: Path):
    import keras

    if not path.is_file():
        raise FileNotFoundError(f"No such model file: {path}")
    model = keras.models.load_model(path)
    if not isinstance(model, aezoo.Autoencoder):
        raise ValueError(f"{path} is not an aezoo autoencoder (it has no encoder and decoder).")
    return model


def load_split(args: argparse.Namespace, split: str, count: int):
    """(images, labels) of the first `count` examples of a split."""
    import tensorflow_datasets as tfds

    if "[" not in split:
        # Reading a slice rather than take(count) of the whole split, which tf.data would
        # cache only partly and warn about.
        try:
            size = tfds.builder(args.dataset, data_dir=args.data_dir).info.splits[split]
            split = f"{split}[:{min(count, size.num_examples)}]"
        except Exception:  # an unknown dataset or split: from_tfds says so clearly
            pass
    source = data.from_tfds(args.dataset, split, data_dir=args.data_dir, with_labels=True)
    return data.to_arrays(source.take(count))


def codes_of(encoded) -> np.ndarray:
    """The latent code of each example as a flat vector (the "latent" entry of a dict)."""
    latent = encoded["latent"] if isinstance(encoded, dict) else encoded
    latent = np.asarray(latent)
    return latent.reshape(len(latent), -1)


# ------------------------------------------------------------------------- actions


def scatter(codes: np.ndarray, labels: np.ndarray, path: Path, name: str) -> str:
    """Writes the 2-D map; returns what it shows ("latent" or "pca")."""
    if codes.shape[1] == 2:
        points, projection = codes, "latent"
        title = f"{name}: the 2-D latent codes"
        axes = ("z1", "z2")
    else:
        from sklearn.decomposition import PCA

        pca = PCA(2).fit(codes)
        points, projection = pca.transform(codes), "pca"
        explained = 100 * pca.explained_variance_ratio_.sum()
        title = (
            f"{name}: PCA of the {codes.shape[1]}-D latent codes "
            f"({explained:.0f}% of variance)"
        )
        axes = ("PC1", "PC2")
    plots.plot_scatter(points, labels, path, title=title, axis_labels=axes)
    return projection


def walk(model, x: np.ndarray, labels: np.ndarray, ends, steps: int, path: Path) -> list[int]:
    """Decodes `steps` points on the line between two examples' codes; returns the ends."""
    if ends is None:
        others = np.flatnonzero(labels != labels[0])
        ends = [0, int(others[0]) if len(others) else min(1, len(x) - 1)]
    for end in ends:
        if not 0 <= end < len(x):
            raise ValueError(f"--walk index {end} is outside the {len(x)} examples.")
    import keras

    a, b = (model.encoder.predict(x[[end]], verbose=0) for end in ends)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)

    def lerp(u, v):  # (1, ...) codes -> (steps, ...) points between them
        shape = (steps,) + (1,) * (u.ndim - 1)
        return (1 - t).reshape(shape) * u + t.reshape(shape) * v

    # Every entry of the code (one tensor, or the U-Net's dict) is interpolated alike.
    path_codes = keras.tree.map_structure(lerp, a, b)
    decoded = model.decoder.predict(path_codes, verbose=0)
    what = "every encoder output" if isinstance(a, dict) else "the latent code"
    plots.image_grid(
        [x[list(ends)], decoded], path,
        row_titles=["ends", "walk"],
        title=f"walk through {what}: example {ends[0]} (label {labels[ends[0]]}) to "
        f"{ends[1]} (label {labels[ends[1]]})",
    )
    return [int(e) for e in ends]


def probe(train_x, train_y, test_x, test_y) -> float:
    """Accuracy of a logistic regression (on standardised features) trained on train_x."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(train_x.reshape(len(train_x), -1), train_y)
    return float(classifier.score(test_x.reshape(len(test_x), -1), test_y))


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model = load_model(args.model)
    x, labels = load_split(args, args.split, args.examples)
    training.check_fits(model, x.shape[1:])
    train_x, train_y = load_split(args, args.train_split, args.probe_train)
    if len(np.unique(train_y)) < 2:
        raise ValueError("The probe needs examples of at least two labels.")
    if (args.out / "probe.json").exists():
        raise FileExistsError(f"{args.out} already holds probe.json; choose another folder.")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Encoding {len(x)} {args.split} and {len(train_x)} {args.train_split} examples.")
    codes = codes_of(model.encoder.predict(x, batch_size=args.batch_size, verbose=0))
    train_codes = codes_of(model.encoder.predict(train_x, batch_size=args.batch_size, verbose=0))

    name = f"{model.builder_name} on {args.dataset}"
    projection = scatter(codes, labels, args.out / "latent_scatter.png", name)
    plots.plot_reconstructions(model, x[:10], args.out / "reconstructions.png", title=name)
    ends = walk(model, x, labels, args.walk, args.steps, args.out / "latent_walk.png")

    result = {
        "model": str(args.model),
        "dataset": args.dataset,
        "latent_size": int(codes.shape[1]),
        "scatter": projection,
        "walk": ends,
        "probe_train_examples": int(len(train_x)),
        "probe_test_examples": int(len(x)),
        "latent_accuracy": probe(train_codes, train_y, codes, labels),
        "pixel_accuracy": probe(train_x, train_y, x, labels),
    }
    (args.out / "probe.json").write_text(json.dumps(result, indent=2))
    print(
        f"Linear probe accuracy on {len(x)} {args.split} examples: latent codes "
        f"({codes.shape[1]}-D) {result['latent_accuracy']:.4f}, raw pixels "
        f"({int(np.prod(x.shape[1:]))}-D) {result['pixel_accuracy']:.4f}. Plots in {args.out}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
