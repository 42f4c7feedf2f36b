"""Reconstruction quality on the full MNIST test set, against PCA and the mean image.

    python -m aezoo.train --model conv --dataset mnist --latent-dim 32 --epochs 10 \\
        --out runs/mnist_conv
    python benchmarks/mnist_quality.py runs/mnist_conv/model.keras [--json results.json]

Prints a table of test-set mean squared errors (pixels in [0, 1]): the model, PCA with as many
components as the model's latent size (fitted on the 60,000 training images by SVD), and the
mean training image.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import keras  # noqa: E402
import numpy as np  # noqa: E402

from aezoo import data  # noqa: E402


def load(split: str) -> np.ndarray:
    return np.stack([np.asarray(x) for x in data.from_tfds("mnist", split)]).astype(np.float32)


def pca_mse(x_train: np.ndarray, x_test: np.ndarray, components: int) -> float:
    train = x_train.reshape(len(x_train), -1)
    test = x_test.reshape(len(x_test), -1)
    mean = train.mean(axis=0)
    # Principal axes from the covariance's eigenvectors (784x784: cheaper than a 60000x784 SVD).
    values, vectors = np.linalg.eigh(np.cov(train - mean, rowvar=False))
    basis = vectors[:, np.argsort(values)[::-1][:components]].T
    rebuilt = (test - mean) @ basis.T @ basis + mean
    return float(np.mean((rebuilt - test) ** 2))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a .keras file of a model for 28x28x1 images")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    model = keras.models.load_model(args.model)
    x_train, x_test = load("train"), load("test")
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
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
