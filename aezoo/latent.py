"""What an autoencoder's latent space learned: codes, a 2-D map of them, a walk between two
examples decoded to images, and how well a linear classifier reads labels off the codes.

>>> from aezoo import latent
>>> codes = latent.codes_of(model.encoder.predict(x))
>>> latent.probe(train_codes, train_labels, codes, labels)   # accuracy of a linear probe
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from aezoo import data, plots


def load_split(dataset: str, split: str, count: int, data_dir: str | None = None):
    """(images, labels) of the first `count` examples of a tensorflow-datasets split."""
    import tensorflow_datasets as tfds

    if "[" not in split:
        # Reading a slice rather than take(count) of the whole split, which tf.data would
        # cache only partly and warn about.
        try:
            size = tfds.builder(dataset, data_dir=data_dir).info.splits[split]
            split = f"{split}[:{min(count, size.num_examples)}]"
        except Exception:  # an unknown dataset or split: from_tfds says so clearly
            pass
    source = data.from_tfds(dataset, split, data_dir=data_dir, with_labels=True)
    return data.to_arrays(source.take(count))


def codes_of(encoded) -> np.ndarray:
    """The latent code of each example as a flat vector (the "latent" entry of a dict, or
    its "z": a VAE's posterior mean, a VQ-VAE's quantised vectors)."""
    if isinstance(encoded, dict):
        encoded = encoded["latent"] if "latent" in encoded else encoded["z"]
    latent = np.asarray(encoded)
    return latent.reshape(len(latent), -1)


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
            raise ValueError(f"The walk's end {end} is outside the {len(x)} examples.")
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
