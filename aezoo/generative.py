"""What generative autoencoders (`vae`, `vae_dense`, `vq_vae`) are measured and shown by:
likelihood bounds, the Fréchet distance of samples, and pictures of samples, interpolations
and latent traversals.

>>> from aezoo import generative
>>> bounds = generative.iwae_bound(vae, x_test, k=5000, binarize=True)  # nats per image
>>> nll = -bounds.mean()
>>> generative.traversals(vae, "traversals.png")

`iwae_bound` is the importance-weighted bound of Burda et al. (2016):
`log p(x) >= E[log (1/k) sum_i p(x, z_i) / q(z_i | x)]`, z_i ~ q(z|x), which rises with `k`
towards log p(x); with `k=1` it is the ELBO.  Papers report `-bound` with k = 5000 as the
"NLL" of binarised MNIST.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from aezoo import plots, training
from aezoo._keras_fixes import graph
from aezoo.models.base import check_int, is_float_dtype


def _check_vae(model) -> None:
    if not hasattr(model, "prior_draws"):
        raise ValueError(
            f"Model '{model.name}' is not a variational autoencoder (`vae`, `vae_dense`); "
            "likelihood bounds need its posterior q(z|x) and its likelihood p(x|z)."
        )


def binarized(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """One Bernoulli draw per pixel with the pixel values (in [0, 1]) as probabilities: the
    evaluation images of a dynamically binarised model (one draw per image, seeded)."""
    x = np.asarray(x, np.float32)
    return (np.random.default_rng(seed).random(x.shape) < x).astype(np.float32)


def log_importance_weights(model, x, eps) -> tf.Tensor:
    """The model's `log_importance_weights(x, eps)` in inference mode: float32 (B, k)."""
    return model.log_importance_weights(x, eps, training=False)


def importance_draws(batch: int, k: int, dim: int, seed: int, offset: int) -> tf.Tensor:
    """The standard normal draws (batch, k, dim) of `iwae_bound`'s step at `offset` (its
    first example times its `k`, plus its first sample): stateless, so reproducible."""
    return tf.random.stateless_normal([batch, k, dim], seed=[seed, offset])


def iwae_bound(
    model,
    x: np.ndarray,
    k: int = 5000,
    *,
    batch_size: int = 10,
    chunk: int = 500,
    seed: int = 0,
    binarize: bool = False,
    verbose: bool = False,
) -> np.ndarray:
    """The importance-weighted lower bound on log p(x) of each example, with `k` samples.

    Args:
        model: a variational autoencoder (`vae`, `vae_dense`).
        x: examples (N, ...), in [0, 1]; binary for a Bernoulli likelihood to be a
            likelihood (pass `binarize=True` to draw them, or statically binarised data).
        k: importance samples per example (5000 in the literature; 1 gives the ELBO).
        batch_size: examples per step; each step decodes `batch_size * chunk` codes.
        chunk: samples per example and step.
        seed: seed of the samples (and of the binarisation); the result is a function of
            (x, k, batch_size, chunk, seed).
        binarize: binarise `x` first (`binarized(x, seed)`).
        verbose: print progress.

    Returns:
        float64 (N,): the bounds in nats (the NLL is minus their mean).
    """
    from scipy.special import logsumexp

    _check_vae(model)
    k = check_int("k", k)
    batch_size, chunk = check_int("batch_size", batch_size), check_int("chunk", chunk)
    x = np.asarray(x)
    # 8-bit pixels would give bounds that look plausible and mean nothing (binarised, every
    # pixel above 0 becomes 1): float examples only, in [0, 1] for a Bernoulli likelihood
    # (a Gaussian one also models real-valued vectors).
    if not is_float_dtype(x.dtype) or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be float examples (N, ...). Received: {x.dtype} of "
                         f"shape {x.shape}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("`x` holds NaN or infinite values.")
    bernoulli = binarize or model.get_config().get("likelihood") == "bernoulli"
    if bernoulli and not (x.min() >= 0 and x.max() <= 1):
        raise ValueError(f"`x` must be in [0, 1] for a Bernoulli likelihood (divide 8-bit "
                         f"pixels by 255); its values span {x.min():.4g} to {x.max():.4g}.")
    training.check_fits(model, x.shape[1:])
    x = binarized(x, seed) if binarize else x
    dim = model.latent_dim
    spec = tf.TensorSpec((None, *x.shape[1:]), tf.float32)
    weights = graph(
        lambda xb, eps: log_importance_weights(model, xb, eps),
        input_signature=[spec, tf.TensorSpec((None, None, dim), tf.float32)],
        autograph=False,  # no data-dependent Python control flow to convert
    )
    bounds = np.empty(len(x), np.float64)
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start : start + batch_size])
        parts = []
        for first in range(0, k, chunk):
            size = min(chunk, k - first)
            eps = importance_draws(len(xb), size, dim, seed, start * k + first)
            parts.append(weights(xb, eps).numpy().astype(np.float64))
        log_w = np.concatenate(parts, axis=1)
        bounds[start : start + len(xb)] = logsumexp(log_w, axis=1) - math.log(k)
        if verbose and (start // batch_size) % 10 == 0:
            done = start + len(xb)
            print(f"  iwae k={k}: {done}/{len(x)} examples, NLL so far "
                  f"{-bounds[:done].mean():.2f} nats", flush=True)
    return bounds


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of features (N, d):
    `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`, as FID (Heusel et al. 2017)
    computes it on Inception features."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"`a` and `b` must be sets of at least 2 feature vectors of one "
                         f"length, (N, d). Received: shapes {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("`a` and `b` must be finite; they hold NaN or infinite values.")
    mean_term = np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2)
    # Features constant in both sets (dead ReLUs) add nothing to the covariance terms (their
    # means count above): leave them out of the matrices, which they only make larger.
    varying = (a.var(axis=0) > 0) | (b.var(axis=0) > 0)
    if not varying.any():
        return float(mean_term)
    a, b = a[:, varying], b[:, varying]
    s_a, s_b = (np.atleast_2d(np.cov(x, rowvar=False)) for x in (a, b))
    # tr (S_a S_b)^(1/2) is the sum of the square roots of the eigenvalues of the symmetric
    # S_a^(1/2) S_b S_a^(1/2), which has the same spectrum: computed with eigh, it stays
    # exact for the rank-deficient covariances of few samples or correlated features, where
    # scipy's general sqrtm of S_a S_b warns that the matrix is singular and loses precision.
    values, vectors = np.linalg.eigh(s_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sum(np.sqrt(np.clip(inner, 0.0, None)))
    return float(mean_term + np.trace(s_a) + np.trace(s_b) - 2.0 * trace_root)


# ---------------------------------------------------------------------------- pictures


def check_image_model(model) -> None:
    """Raises ValueError unless `model` is a generative autoencoder of images."""
    if not hasattr(model, "sample"):
        raise ValueError(
            f"Model '{model.name}' is not a generative autoencoder; generating needs a "
            "`vae`, `vae_dense` or `vq_vae` model."
        )
    shape = model.input_shape[1:]
    if len(shape) != 3 or shape[-1] not in (1, 3):
        raise ValueError(
            f"Model '{model.name}' takes examples of shape {tuple(shape)}, not images "
            "(height, width, 1 or 3); there is nothing to draw."
        )


def sample_grid(model, path: str | os.PathLike, n: int = 64, seed: int = 0) -> np.ndarray:
    """Draws `n` samples in rows of 8 into `path`; returns them (`model.sample(n, seed)`).

    Raises:
        ValueError: `model` is not a generative autoencoder of images (see
            `check_image_model`).
    """
    check_image_model(model)
    samples = model.sample(check_int("n", n), seed=seed)
    rows = [samples[i : i + 8] for i in range(0, n, 8)]
    plots.image_grid(rows, path, title=f"{n} samples of {model.name} (seed {seed})")
    return samples


def _latent_pairs(model, rows: int, seed: int):
    """Two latent points per row, drawn from the prior (the VQ-VAE: its code maps)."""
    if hasattr(model, "prior_draws"):
        z = model.prior_draws(2 * rows, seed).numpy()
    else:
        indices = model.sample_indices(tf.constant(2 * rows), tf.constant(seed))
        z = tf.gather(tf.convert_to_tensor(model.quantizer.codebook), indices).numpy()
    return z[:rows], z[rows:]


def interpolations(
    model, path: str | os.PathLike, rows: int = 6, steps: int = 10, seed: int = 0
) -> np.ndarray:
    """Decodes `steps` points on the line between two prior draws, one pair per row, into
    the picture `path`; returns them, (rows, steps, height, width, channels).

    For a VQ-VAE the ends are two code maps drawn from its prior, and the points between
    mix their vectors linearly (the decoder takes any vectors, not only codebook rows).

    Raises:
        ValueError: `model` is not a generative autoencoder of images (see
            `check_image_model`).
    """
    check_image_model(model)
    rows, steps = check_int("rows", rows), check_int("steps", steps, minimum=2)
    a, b = _latent_pairs(model, rows, seed)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape((1, steps) + (1,) * (a.ndim - 1))
    points = (1 - t) * a[:, None] + t * b[:, None]  # (rows, steps, ...)
    decoded = model.decoder.predict(points.reshape((-1,) + a.shape[1:]), verbose=0)
    grid = decoded.reshape((rows, steps) + decoded.shape[1:])
    plots.image_grid(list(grid), path, title=f"interpolations between prior draws (seed {seed})")
    return grid


def traversals(
    model, path: str | os.PathLike, dimensions: int = 10, steps: int = 9, limit: float = 3.0
) -> list[int]:
    """Decodes z = 0 with one latent dimension at a time moved from -limit to +limit.

    The rows are the `dimensions` dimensions whose move changes the image the most (a VAE
    leaves unused dimensions at the prior, and they change nothing); returns them.
    """
    if not hasattr(model, "prior_draws"):
        raise ValueError("Latent traversals are drawn for variational autoencoders only.")
    check_image_model(model)
    dimensions, steps = check_int("dimensions", dimensions), check_int("steps", steps, minimum=2)
    dim = model.latent_dim
    values = np.linspace(-limit, limit, steps, dtype=np.float32)
    z = np.zeros((dim, steps, dim), np.float32)
    z[np.arange(dim), :, np.arange(dim)] = values
    decoded = model.decoder.predict(z.reshape(dim * steps, dim), verbose=0)
    decoded = decoded.reshape((dim, steps) + decoded.shape[1:])
    effect = np.abs(decoded[:, -1] - decoded[:, 0]).reshape(dim, -1).mean(axis=1)
    chosen = [int(i) for i in np.argsort(-effect)[: min(dimensions, dim)]]
    plots.image_grid(
        [decoded[i] for i in chosen], path, row_titles=[f"z[{i}]" for i in chosen],
        title=f"traversals from z = 0, each dimension from {-limit:g} to {limit:g}",
    )
    return chosen
