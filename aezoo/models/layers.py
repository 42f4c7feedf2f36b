"""Layers shared by the families, each registered so `.keras` files load with no
`custom_objects`, and the blocks built of them that several builders use."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from aezoo import noise


@keras.saving.register_keras_serializable(package="aezoo")
class Corruption(keras.layers.Layer):
    """Corrupts its input with `aezoo.noise` noise in training; the identity at inference.

    Args:
        kind: one of `aezoo.noise.NOISE_KINDS`.
        level: sigma, fraction or peak (see `aezoo.noise`).
        seed: optional int, for reproducible training.
    """

    def __init__(self, kind: str, level: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        noise.check_noise(kind, level)
        level = tuple(float(v) for v in level) if isinstance(level, (tuple, list)) else float(level)
        self.kind, self.level, self.seed = kind, level, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, x, training=False):
        if not training:
            return x
        return noise.add_noise(x, self.kind, self.level, self.seed_generator.next())

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "level": self.level, "seed": self.seed}


def _blur_kernels(multiple: int) -> np.ndarray:
    """The kernels of `PadToMultiple`'s "blur" mode, (width, 1, multiple - 1): one for each
    distance d = 1 .. multiple - 1, of sigma d and radius 3 d, centred in a common width
    (zeros beyond its radius), each summing to 1."""
    longest = max(multiple - 1, 1)
    half = 3 * longest
    offsets = np.arange(-half, half + 1, dtype=np.float64)[:, None]
    sigma = np.arange(1, longest + 1, dtype=np.float64)[None, :]
    weights = np.exp(-0.5 * (offsets / sigma) ** 2) * (np.abs(offsets) <= 3 * sigma)
    return (weights / weights.sum(0))[:, None, :].astype(np.float32)


@keras.saving.register_keras_serializable(package="aezoo")
class PadToMultiple(keras.layers.Layer):
    """Pads height and width at the bottom/right up to a multiple of `multiple`.

    Works on sizes known only at call time, so fully convolutional models take any image.

    Args:
        multiple: the size multiple.
        mode: "constant" pads with zeros; "edge" repeats the last row and column, which
            adds no new edges to the image, but stripes;
            "reflect" mirrors the image about its last row and column (folding again where
            the pad is longer than the image), which keeps a noisy image's noise looking
            like noise: the denoisers use it (zeros there cost `denoise_gray` 0.45 dB on
            BSD68's 481x321 photos at sigma 50, docs/denoising.md); "blur" makes each padded
            row (then column) the image's last one blurred by a Gaussian whose sigma is its
            distance from the image (truncated at 3 sigma, as `scipy.ndimage` would with
            `truncate=3`), which joins the image as smoothly as "edge" but without its
            stripes, which cost bits: the codecs use it (9.5 % fewer bits than "edge" at
            equal PSNR on CBSD68's 481x321 photos, docs/compression.md).
    """

    MODES = ("constant", "edge", "reflect", "blur")

    def __init__(self, multiple: int, mode: str = "constant", **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}. Received: mode={mode!r}")
        self.multiple, self.mode = int(multiple), mode
        self._kernels = _blur_kernels(self.multiple) if mode == "blur" else None

    def call(self, x):
        if all(size is not None and size % self.multiple == 0 for size in x.shape[1:3]):
            return x  # known to fit: no pad op (and no gradient of one) in the step
        shape = tf.shape(x)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        if self.mode == "constant":
            return tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        if self.mode == "blur":
            x = self._blurred(x, pad_h)
            x = tf.transpose(self._blurred(tf.transpose(x, [0, 2, 1, 3]), pad_w), [0, 2, 1, 3])
            return x
        rows = self._source(shape[1], shape[1] + pad_h)
        cols = self._source(shape[2], shape[2] + pad_w)
        return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)

    def _blurred(self, x, pad):
        """`x` with `pad` rows below: its last row blurred by Gaussians of sigma 1, 2, ..."""
        half = (self._kernels.shape[0] - 1) // 2
        shape = tf.shape(x)
        batch, length, channels = shape[0], shape[2], shape[3]
        # The last row, extended by its end values, as one signal per image and channel.
        ends = tf.clip_by_value(tf.range(-half, length + half), 0, length - 1)
        last = tf.gather(x[:, -1], ends, axis=1)
        signals = tf.reshape(tf.transpose(last, [0, 2, 1]), [-1, length + 2 * half, 1])
        blurred = tf.nn.conv1d(signals, tf.cast(self._kernels, x.dtype), 1, "VALID")
        blurred = tf.reshape(blurred, [batch, channels, length, -1])
        rows = tf.transpose(blurred, [0, 3, 2, 1])[:, :pad]
        return tf.concat([x, rows], axis=1)

    def _source(self, n, size):
        """For each of `size` output positions, the input position (of `n`) it copies."""
        i = tf.range(size)
        if self.mode == "edge":
            return tf.minimum(i, n - 1)
        # Reflection is periodic with period 2 (n - 1): 0 1 .. n-1 n-2 .. 1 0 1 ..
        # (tf.pad's REFLECT cannot pad by more than n - 1, as a 2-pixel-high image needs).
        period = tf.maximum(2 * (n - 1), 1)
        j = i % period
        return tf.minimum(j, period - j)

    def compute_output_shape(self, input_shape):
        def up(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple, "mode": self.mode}


@keras.saving.register_keras_serializable(package="aezoo")
class CropLike(keras.layers.Layer):
    """Crops `x` (top-left anchored) to the height and width of `reference`.

    Undoes `PadToMultiple` at the end of a decoder, whose skip input carries the original size.
    """

    def call(self, inputs):
        x, reference = inputs
        if None not in x.shape[1:3] and x.shape[1:3] == reference.shape[1:3]:
            return x  # known to be the same size: no slice op in the step
        shape = tf.shape(reference)
        return x[:, : shape[1], : shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, reference_shape = input_shapes
        return (x_shape[0], reference_shape[1], reference_shape[2], x_shape[3])


def residual_blocks(h, n: int, blocks: int, prefix: str, conv, activation):
    """`blocks` residual blocks on `h` (which has `n` channels): convolution, activation,
    convolution, plus the block's input; layers `{prefix}_block{b}_conv1|conv2|add`.

    `conv(n, name, act=...)` is the builder's convolution factory (its kernel size, padding
    and dtype), so that the blocks match the layers around them.
    """
    for b in range(1, blocks + 1):
        r = conv(n, f"{prefix}_block{b}_conv1", act=activation)(h)
        r = conv(n, f"{prefix}_block{b}_conv2", act=None)(r)
        h = keras.layers.Add(name=f"{prefix}_block{b}_add")([h, r])
    return h
