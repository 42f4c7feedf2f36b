"""Latent refinement: an encoder that searches for better latents than the analysis gives.

A trained analysis transform maps an image to latents in one pass; the latents that
minimise the model's own loss (bits + lmbda * 255**2 * MSE) for *this* image are nearby but
not the same (the "amortization gap"; Campos et al. 2019, Yang et al., NeurIPS 2020).
`refine` starts from the analysis's latents and runs gradient descent on them, through the
model's own entropy models and synthesis, with rounding relaxed by stochastic Gumbel
annealing (SGA, Yang et al. 2020): each value is drawn between its floor and its ceiling
with probabilities that sharpen into rounding as a temperature falls.  Only the encoder
changes: the file holds integers like any other, and decodes with the same exact tables
and integer hyper-synthesis, so refined files decode bit-exactly on any machine too.

On the `codec_*` presets, 100 iterations (11-15 s for a Kodak image on 2 cores, float32)
gain 0.34-0.66 dB at equal rate on Kodak (docs/compression.md; `benchmarks/refinement.py`
measures the gain against the number of iterations).

The search runs its synthesis in bfloat16 where the CPU computes it natively (AVX512-BF16
or AMX; see `search_precision`): on this project's 2-core CPU an iteration took 0.6x the
time of float32's (1.55-1.75x as fast, alternating in one process), and 100 iterations kept
all but 0.015-0.03 dB of float32's gain (`benchmarks/README.md`), which the iterations that
the saved time buys give back, or more.  It only changes which integers the encoder picks:
the file decodes as any other.

Images larger than `REFINE_PIXELS` are refined in tiles of whole blocks (stride *
hyper_stride pixels, so that a tile's latents are a block of the image's), each with a
margin of `MARGIN` pixels that is refined with it and dropped: a tile's core is optimised
beside neighbours that are close to their final values.  Tiles cost a little of the gain
(on kodim19, tiles of 256x256 pixels kept 94 % of it, of 384x384 99.6 %), never
correctness.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

# Adam on the latents; the temperature falls as TAU_START * exp(-TAU_DECAY * progress),
# no lower than TAU_MIN: from 0.5 as Yang et al., but slowly, which did best at 100
# iterations (0.07-0.09 dB more than a fall by e^-4; benchmarks/README.md).
LEARNING_RATE = 1e-2
TAU_START, TAU_DECAY, TAU_MIN = 0.5, 1.0, 0.1
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-8
# The largest tile refined in one piece, margins included, in pixels: 2**21 gives the
# presets (blocks of 64 pixels) cores of 1280x1280.  Measured with `codec_0.01`: a
# 1920x1080 frame (two tiles) peaks at 1.66 GB of memory refined, 1.41 GB not.
REFINE_PIXELS = 2**21
# Pixels (rounded up to whole blocks of stride * hyper_stride) refined around each tile's
# core and then dropped: they cover the synthesis's reach (2 positions of y) and most of
# the hyper-synthesis's (1 of z).
MARGIN = 64


def search_precision() -> str:
    """"bfloat16" where no GPU is visible and the CPU computes bfloat16 natively (its flags
    name avx512_bf16 or amx_bf16, on Linux), else "float32": elsewhere bfloat16 is emulated,
    and slower than float32."""
    import tensorflow as tf

    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            flags = set(info.read().split())
    except OSError:
        return "float32"
    if tf.config.list_physical_devices("GPU") or not flags & {"avx512_bf16", "amx_bf16"}:
        return "float32"
    return "bfloat16"


def temperature(iteration: int, iterations: int) -> float:
    """SGA's temperature at `iteration` (0-based) of `iterations`."""
    progress = iteration / max(iterations - 1, 1)
    return max(TAU_START * math.exp(-TAU_DECAY * progress), TAU_MIN)


class Refiner:
    """Refines the latents of one compression model (built once: its graph takes any size).

    >>> refiner = Refiner(model)
    >>> latents = refiner.refine(x, iterations=100)   # {"y"[, "z"]}: float32 arrays

    `x` is one image as floats in [0, 1], (1, height, width, channels).  The latents
    returned are continuous; the codec rounds them as it rounds the analysis's.
    `precision`: of the search's synthesis, "float32" or "bfloat16" (default:
    `search_precision()`); the analysis that gives the starting latents, the entropy models
    and the latents themselves stay float32.
    """

    def __init__(self, model, precision: str | None = None):
        import keras
        import tensorflow as tf

        from aezoo._keras_fixes import graph
        from aezoo.codec import block_size
        from aezoo.models.base import check_choice
        from aezoo.models.compression import HyperpriorAutoencoder

        self.precision = search_precision() if precision is None else precision
        check_choice("precision", self.precision, ("float32", "bfloat16"))
        self.model = model
        self.search = model if self.precision == "float32" else _bfloat16_copy(model)
        self.hyper = isinstance(model, HyperpriorAutoencoder)
        encoder = model.encoder
        outputs = {"y": encoder.get_layer("latent_conv").output}
        if self.hyper:
            outputs["z"] = encoder.get_layer("hyper_latent_conv").output
        self.analysis = keras.Model(encoder.input, outputs, name="refine_analysis")
        self.block = block_size(model)  # the blocks the codec codes in
        channels = int(encoder.input_shape[-1])
        self._analyse = graph(
            lambda x: self.analysis(x, training=False),
            input_signature=[tf.TensorSpec((1, None, None, channels), tf.float32)])
        y_channels = int(model.get_config()["latent_dim"])
        spec = [tf.TensorSpec((1, None, None, channels), tf.float32),
                tf.TensorSpec((1, None, None, y_channels), tf.float32)]
        if self.hyper:
            z_channels = int(encoder.get_layer("hyper_latent_conv").output.shape[-1])
            spec.append(tf.TensorSpec((1, None, None, z_channels), tf.float32))
        # One traced step for every image size; Adam is written out in the graph because
        # a Keras optimizer's slots are variables of one fixed shape.
        self._step = graph(self._adam_step, input_signature=[
            spec[1:], spec[1:], spec[1:], spec[0], tf.TensorSpec((), tf.float32),
            tf.TensorSpec((), tf.int32)])

    def refine(self, x: np.ndarray, iterations: int,
               progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
        """The refined continuous latents of `x` after `iterations` steps (the analysis's
        own latents when 0); `progress(done, total)` is called after every step, with the
        steps done and to do over all tiles."""
        from aezoo.codec import keep_core

        x = np.asarray(x, np.float32)
        start = {k: np.asarray(v, np.float32) for k, v in self._start(x).items()}
        if iterations <= 0:
            return start
        blocks = (-(-x.shape[1] // self.block), -(-x.shape[2] // self.block))
        tiles = list(self._tiles(*blocks))
        result = {k: v.copy() for k, v in start.items()}
        for number, (core, around) in enumerate(tiles):
            def step_done(i, before=number * iterations):
                if progress is not None:
                    progress(before + i, len(tiles) * iterations)

            refined = self._refine_tile(x, start, around, iterations, step_done)
            for key, value in refined.items():
                # The core's part of the refined latents (the margins are dropped).
                keep_core(result[key], value, core, around, self._at(key, 1))
        return result

    def _start(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The analysis's latents of `x`, in windows for a large image (as the codec's)."""
        from aezoo.codec import analyse_in_windows

        keys = {"y": self.model.stride, **({"z": self.block} if self.hyper else {})}
        return analyse_in_windows(self._analyse, self.model, x, keys)

    def _at(self, key: str, blocks: int) -> int:
        """The position in latent `key` of a distance in blocks."""
        return blocks * (self.block // self.model.stride if key == "y" else 1)

    def _tiles(self, blocks_h: int, blocks_w: int):
        """(core, around) for each tile (`codec.block_tiles`): the cores tile the image, and
        each with `MARGIN` pixels around it (inside the image) holds at most REFINE_PIXELS
        pixels."""
        from aezoo.codec import block_tiles

        return block_tiles(blocks_h, blocks_w, self.block, REFINE_PIXELS,
                           -(-MARGIN // self.block))

    def _refine_tile(self, x, start, around, iterations, step_done) -> dict[str, np.ndarray]:
        """Refines the latents of the blocks `around` (all of them: a tile's margins move
        with it, so that its core is optimised beside neighbours that fit it, not beside
        the zeros the synthesis pads a lone tile with)."""
        import tensorflow as tf

        # The tile's own pixels: the last blocks reach past the image (the model pads it),
        # and the decoder crops to the size it is given, so those latents are optimised
        # for the pixels they touch only.
        tile = tf.constant(x[:, around[0].start * self.block: around[0].stop * self.block,
                             around[1].start * self.block: around[1].stop * self.block])
        keys = ["y", "z"] if self.hyper else ["y"]
        latents = [tf.constant(start[key][(slice(None), *(
            slice(self._at(key, a.start), self._at(key, a.stop)) for a in around))])
            for key in keys]
        first = [tf.zeros_like(v) for v in latents]
        second = [tf.zeros_like(v) for v in latents]
        for i in range(iterations):
            latents, first, second = self._step(
                latents, first, second, tile, tf.constant(temperature(i, iterations)),
                tf.constant(i + 1))
            step_done(i + 1)
        return {key: np.asarray(v) for key, v in zip(keys, latents)}

    def loss(self, latents, x, tau, seed):
        """The model's loss (bits per pixel + lmbda * 255**2 * MSE) at SGA-rounded latents
        (`seed`: of the draws, two int32)."""
        import tensorflow as tf

        from aezoo.models.compression import information

        model = self.search
        pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
        if self.hyper:
            y, z = latents
            z_tilde = sga(z, tau, seed + [0, 1])
            conditional = model.gaussian_conditional
            means, scales = conditional.split(model.hyper_synthesis(z_tilde))
            residual = sga(y - means, tau, seed)
            y_tilde = means + residual
            bits = (information(conditional.likelihood(residual, scales))
                    + information(model.entropy_bottleneck.likelihood(z_tilde)))
        else:
            y_tilde = sga(latents[0], tau, seed)
            bits = information(model.entropy_bottleneck.likelihood(y_tilde))
        size = tf.shape(x)[1:3][None]
        x_hat = model.decoder({"y_hat": y_tilde, "image_size": size}, training=False)
        mse = tf.reduce_mean(tf.square(tf.cast(x_hat, tf.float32) - x))
        return bits / pixels + model.lmbda * 255.0**2 * mse

    def _adam_step(self, latents, first, second, x, tau, step):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(latents)
            # The draws depend on the step only: the same image gives the same file.
            loss = self.loss(latents, x, tau, tf.stack([step, 0]))
        grads = tape.gradient(loss, latents)
        first = [BETA_1 * m + (1 - BETA_1) * g for m, g in zip(first, grads)]
        second = [BETA_2 * v + (1 - BETA_2) * tf.square(g) for v, g in zip(second, grads)]
        t = tf.cast(step, tf.float32)
        rate = LEARNING_RATE * tf.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        latents = [w - rate * m / (tf.sqrt(v) + EPSILON)
                   for w, m, v in zip(latents, first, second)]
        return latents, first, second


def _bfloat16_copy(model):
    """`model` built again under Keras's mixed_bfloat16 policy, with its weights: its
    convolutions compute in bfloat16, its entropy models (float32 by design) do not."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        copy = model.from_config(model.get_config())  # the builder, called again
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def sga(values, tau, seed):
    """Stochastic Gumbel annealing: each value becomes a draw between its floor and its
    ceiling, soft (differentiable) at temperature `tau`, nearly rounding as `tau` -> 0; the
    nearer integer is the likelier (logits -atanh(distance) / tau, Yang et al. 2020)."""
    import tensorflow as tf

    floor = tf.stop_gradient(tf.floor(values))
    up = values - floor  # distance to the floor, in [0, 1)
    bound = 1 - 1e-5
    logits = tf.stack([-tf.atanh(tf.clip_by_value(up, -bound, bound)),
                       -tf.atanh(tf.clip_by_value(1 - up, -bound, bound))], axis=-1) / tau
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed, 1e-10, 1.0)
    gumbel = -tf.math.log(-tf.math.log(uniform))
    weights = tf.nn.softmax((logits + gumbel) / tau, axis=-1)
    return floor + weights[..., 1]
