"""Reconstruction quality on the full MNIST test set, against PCA and the mean image.

    aezoo train --model conv --dataset mnist --latent-dim 32 --epochs 10 --out runs/mnist_conv
    python benchmarks/mnist_quality.py runs/mnist_conv [--json results.json]
    python benchmarks/mnist_quality.py runs/mnist_conv --limit 1000   # a smoke test

Prints a table of test-set mean squared errors (pixels in [0, 1]): the model (a run folder,
a preset or a .keras file), PCA with as many components as the model's latent size (fitted
on the 60,000 training images), and the mean training image.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from offline import use_offline_tfds, write_json

from aezoo.apps import cli


def load(split: str, limit: int | None) -> np.ndarray:
    from aezoo import data

    examples = data.from_tfds("mnist", split)
    return data.to_arrays(examples.take(limit) if limit else examples)


def pca_mse(x_train: np.ndarray, x_test: np.ndarray, components: int) -> float:
    train = x_train.reshape(len(x_train), -1)
    test = x_test.reshape(len(x_test), -1)
    mean = train.mean(axis=0)
    # Principal axes from the covariance's eigenvectors (784x784: cheaper than a 60000x784 SVD).
    values, vectors = np.linalg.eigh(np.cov(train - mean, rowvar=False))
    basis = vectors[:, np.argsort(values)[::-1][:components]].T
    rebuilt = (test - mean) @ basis.T @ basis + mean
    return float(np.mean((rebuilt - test) ** 2))


@cli.guarded("mnist_quality.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="run folder, preset or .keras file of a model for "
                        "28x28x1 images")
    parser.add_argument("--limit", type=cli.positive_int,
                        help="the first N images of each split only (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    use_offline_tfds()
    cli.start_tensorflow()
    from aezoo import runs

    model = runs.open_model(args.model)
    from aezoo import training

    training.check_fits(model, (28, 28, 1), "MNIST's images")  # (one line, not Keras's ten)
    x_train, x_test = load("train", args.limit), load("test", args.limit)
    x_hat = model.predict(x_test, batch_size=500, verbose=0)
    latent = math.prod(model.encoder.output_shape[1:])
    rows = {
        f"{model.name} ({args.model})": float(np.mean((x_hat - x_test) ** 2)),
        f"PCA, {latent} components": pca_mse(x_train, x_test, latent),
        "mean training image": float(np.mean((x_train.mean(axis=0) - x_test) ** 2)),
    }
    print(f"MNIST test set ({len(x_test)} images), mean squared error:")
    print("| method | test MSE | vs PCA |")
    print("|---|---|---|")
    pca = rows[f"PCA, {latent} components"]
    for name, mse in rows.items():
        print(f"| {name} | {mse:.5f} | {mse / pca:.2f}x |")
    if args.json:
        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
