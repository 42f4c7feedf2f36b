"""Noise models for denoising: one definition used by the model's corruption layer, the
training data pipelines and the evaluation of denoisers.

All work on images scaled to [0, 1] and take an explicit stateless seed (a pair of integers),
so a fixed seed gives the same noise in any process, and a fresh seed per step or per epoch
gives fresh noise.

| kind          | level                          | definition                                   |
|---------------|--------------------------------|----------------------------------------------|
| `gaussian`    | sigma, in [0, 1] units         | x + sigma * N(0, 1), not clipped (as DnCNN)  |
| `salt_pepper` | fraction p of pixels           | p of the pixels set to 0 or 1, half each     |
| `poisson`     | peak (photons at x = 1)        | Poisson(peak * x) / peak                     |
| `mask`        | fraction p of pixels           | p of the pixels set to 0                     |

Pixel-wise kinds (`salt_pepper`, `mask`) hit all channels of a chosen pixel (or time step)
together; on flat vectors (batch, features) they hit single elements.

A level may also be a range `(low, high)`: each example of a batch then gets its own level,
drawn uniformly from it (as DnCNN-B trains one blind denoiser for sigma 0-55); on the command
line, "gaussian:0-55".
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

NOISE_KINDS = ("gaussian", "salt_pepper", "poisson", "mask")


Level = float | tuple[float, float]


def parse_noise(spec: str, scale: float = 255.0) -> tuple[str, Level]:
    """Parses a command-line noise spec such as "gaussian:25" into (kind, level).

    "KIND:LOW-HIGH" gives a range of levels, drawn anew for every example (see above).

    Gaussian sigmas are given on the 0..`scale` scale of 8-bit images (sigma 25 means 25/255)
    and returned in [0, 1] units; salt-and-pepper and mask fractions are in [0, 1]; the
    Poisson level is the peak photon count.

    Raises:
        ValueError: for an unknown kind or a level out of range.
    """
    kind, _, level_text = str(spec).partition(":")
    if kind not in NOISE_KINDS or not level_text:
        raise ValueError(
            f"Unknown noise spec {spec!r}: use gaussian:SIGMA (0-{scale:g} scale), "
            "salt_pepper:P, poisson:PEAK or mask:P."
        )
    low, dash, high = level_text.partition("-")
    if dash and low:
        first, last = (_level(kind, part, spec, scale) for part in (low, high))
        if not first < last:
            raise ValueError(f"The noise range in {spec!r} must go from low to high.")
        return kind, (first, last)
    return kind, _level(kind, level_text, spec, scale)


def spec(kind: str, level: Level, scale: float = 255.0) -> str:
    """The command-line spec of (kind, level), `parse_noise`'s inverse: "gaussian:0-55"."""
    levels = tuple(level) if isinstance(level, (tuple, list)) else (level,)
    if kind == "gaussian":
        levels = tuple(round(v * scale, 9) for v in levels)  # (25 / 255 * 255 is 25.000000000000004)
    # Positional (1e-05 would not parse: "-" separates a range).
    return f"{kind}:{'-'.join(np.format_float_positional(v, trim='-') for v in levels)}"


def _level(kind: str, text: str, spec: str, scale: float) -> float:
    """One level of a noise spec, checked (errors name the whole `spec`, as given)."""
    try:
        level = float(text)
    except ValueError:
        raise ValueError(f"Noise level in {spec!r} must be a number or a range LOW-HIGH.") from None
    if not level == level:  # NaN
        raise ValueError(f"Noise level in {spec!r} must be a number.")
    if kind == "gaussian":
        if not 0 <= level <= scale:
            raise ValueError(f"Gaussian sigma must be in [0, {scale:g}]. Received: {spec!r}")
        return level / scale
    if kind == "poisson":
        if not level > 0:
            raise ValueError(f"Poisson peak must be positive. Received: {spec!r}")
        return level
    if not 0 <= level <= 1:
        raise ValueError(f"The fraction in {spec!r} must be in [0, 1].")
    return level


def check_noise(kind: str, level: Level, names: tuple[str, str] = ("kind", "level")) -> None:
    """Raises ValueError unless (kind, level) is a valid noise in [0, 1] units; a level may
    be a range (low, high).  `names`: the caller's arguments for the kind and the level, as
    the message names them (a builder's `corruption` and `corruption_level`, the parts of
    `train`'s `noise` pair)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"`{names[0]}` must be one of {', '.join(NOISE_KINDS)}. "
                         f"Received: {names[0]}={kind!r}")
    levels = tuple(level) if isinstance(level, (tuple, list)) else (level,)
    ok = len(levels) in (1, 2) and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in levels)
    if ok and len(levels) == 2:
        ok = levels[0] < levels[1]
    if ok and kind == "poisson":
        ok = all(v > 0 for v in levels)
    elif ok:
        ok = all(0 <= v <= 1 for v in levels)
    if not ok:
        raise ValueError(f"`{names[1]}` is out of range for {kind} noise. "
                         f"Received: {names[1]}={level!r}")


def add_noise(x: tf.Tensor, kind: str, level: Level, seed) -> tf.Tensor:
    """Returns `x` with noise added, using stateless random ops.

    Args:
        x: images in [0, 1], shape (..., height, width, channels), any float dtype.
        kind: one of `NOISE_KINDS`.
        level: sigma, fraction or peak as in the table above, or a range (low, high) of
            them: one level per example along the first (batch) axis.
        seed: shape-[2] integer tensor or pair of ints; the same seed gives the same noise.
    """
    check_noise(kind, level)
    x = tf.convert_to_tensor(x)
    seed = tf.cast(seed, tf.int64)
    dtype = x.dtype
    if isinstance(level, (tuple, list)):
        level = _example_levels(x, level, seed)
        seed = tf.random.experimental.stateless_fold_in(seed, 1)  # not the levels' draw
    if kind == "gaussian":
        noise = tf.random.stateless_normal(tf.shape(x), seed, dtype=tf.float32)
        return x + tf.cast(level * noise, dtype)
    if kind == "poisson":
        counts = tf.random.stateless_poisson(
            tf.shape(x), seed, lam=tf.cast(x, tf.float32) * level, dtype=tf.float32
        )
        return tf.cast(counts / level, dtype)
    # Pixel-wise kinds: one draw per pixel, shared by its channels; per element for vectors.
    if x.shape.rank is not None and x.shape.rank <= 2:
        pixel_shape = tf.shape(x)
    else:
        pixel_shape = tf.concat([tf.shape(x)[:-1], [1]], axis=0)
    u = tf.random.stateless_uniform(pixel_shape, seed, dtype=tf.float32)
    hit = u < level
    if kind == "mask":
        return tf.where(hit, tf.zeros_like(x), x)
    # salt_pepper: of the hit pixels (u < p), the lower half become pepper (0), the rest salt.
    value = tf.cast(u >= level / 2, dtype)
    return tf.where(hit, tf.broadcast_to(value, tf.shape(x)), x)


def _example_levels(x: tf.Tensor, level: tuple[float, float], seed) -> tf.Tensor:
    """One level per example (first axis), uniform in [low, high), shaped to broadcast
    over `x`."""
    low, high = (float(v) for v in level)
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0)
    u = tf.random.stateless_uniform(shape, seed, dtype=tf.float32)
    return low + (high - low) * u
