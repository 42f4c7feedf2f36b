"""Continue training an aezoo codec preset (`compression_meanscale`) on a GPU without
TensorFlow: the training-time computation of aezoo's model, rebuilt with Keras 3 layers on
the JAX backend, with weights of the same names and shapes, so that they go back into
aezoo 1:1.

aezoo imports TensorFlow, which the GPU machine lacks, so this script imports nothing of
aezoo.  It mirrors `aezoo/models/compression.py` (`compression_meanscale`: analysis with
GDN, hyper-analysis, `EntropyBottleneck`, `HyperSynthesis`, `GaussianConditional`,
synthesis with IGDN, `_lower_bound` and its gradient), the loss of
`CompressionAutoencoder.compute_loss` (bits per pixel + lmbda * 255**2 * MSE), and the
recipe of `aezoo compress train`: random patches of the images, uniform noise for rounding,
Adam (Keras's, with `global_clipnorm=1`), a linear warm-up, the `mixed_bfloat16` policy
with the entropy models and the hyper-synthesis in float32.  The integer tables are not
part of training; see `save_weights`.

Training (one process per preset; the images live on the device as one uint8 array, and
the patches are cut inside the jitted step, so the CPU never limits the step rate):

    KERAS_BACKEND=jax python benchmarks/gpu/codec_jax.py --preset aezoo/presets/codec_0.01 \\
        --images ../shared/data/raw/cbsd432 --minutes 8 --out runs/gpu_codec_0.01

`OUT` then holds `weights.npz` (written every `--save-every` seconds and at the end, the
preset's keys, shapes and dtypes), a copy of the preset's `run.json` (so `OUT` is a run
folder that `aezoo.runs.load_run(OUT)` opens), and `log.csv`.  In aezoo, call
`model.finalise()` before coding files with the trained weights (the integer tables that
depend on the weights are written as "not finalised").

Check mode (float32, fixed noise): writes what `check_codec_port.py` compares with aezoo's
TensorFlow model:

    KERAS_BACKEND=jax python benchmarks/gpu/codec_jax.py --preset aezoo/presets/codec_0.01 \\
        --images ../shared/data/raw/cbsd432 --dump /tmp/codec_port.npz

Deviations from `aezoo compress train`, by design: patches are drawn with replacement
(an image and a position uniformly at random for each patch) rather than as 4 patches of
every image per epoch, shuffled; the learning rate follows the time budget (warm-up, then
a cosine to 0 at its end) rather than epochs; no validation.  Patches must be a multiple
of the model's total stride (64), so the model's padding ("blur") and final crop are no-ops
here and are left out.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the time budget counts from here, imports and compilation too

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("KERAS_BACKEND", "jax")  # before Keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import (Budget, image_files, load_images, log_line, read_image,  # noqa: E402
                    save_weights)

if keras.backend.backend() != "jax":
    sys.exit(f"codec_jax.py needs KERAS_BACKEND=jax (Keras runs on {keras.backend.backend()}).")

# Float32 means float32: without this, JAX on recent NVIDIA GPUs computes float32
# convolutions and matrix products in TF32 (10-bit mantissa), while aezoo's float32 layers
# (entropy models, hyper-synthesis) trained in full float32 on CPUs.  bfloat16 operands are
# unaffected, so the mixed-precision layers still use the tensor cores.
jax.config.update("jax_default_matmul_precision", "highest")

# The constants of aezoo/models/compression.py.
SCALE_MIN = 0.11  # smallest scale of the Gaussian conditional
LIKELIHOOD_BOUND = 1e-9  # both entropy models' smallest likelihood
GDN_PEDESTAL = 2.0**-36
GDN_BETA_MIN = 1e-6
ENTROPY_FILTERS = (3, 3, 3)  # EntropyBottleneck's default `filters`

# The integer weights that depend on the float ones, and their "not finalised" values
# (what a freshly built aezoo layer holds): trained float weights make the preset's stale.
# gaussian_conditional's tables depend on no weight and are kept.
STALE_TABLES = {
    "hyper_bottleneck/table_counts": 0,
    "hyper_bottleneck/table_offsets": 0,
    "hyper_bottleneck/table_lengths": 0,
    "hyper_synthesis/integer_kernel": 0,  # prefixes: integer_kernel0, 1, ...
    "hyper_synthesis/integer_bias": 0,
    "hyper_synthesis/integer_fractions": -1,
}


# ------------------------------------------------------------------------------- layers


@jax.custom_vjp
def _lower_bound_op(x, bound):
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(residuals, dy):
    # As aezoo's `_lower_bound` (tensorflow-compression's): the gradient also passes where
    # x is below the bound if it would push x up, so a parameter stuck there can recover.
    x, bound = residuals
    pass_through = jnp.logical_or(x >= bound, dy < 0)
    return jnp.where(pass_through, dy, jnp.zeros_like(dy)), jnp.zeros_like(bound)


_lower_bound_op.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def lower_bound(x, bound: float):
    """max(x, bound) with aezoo's gradient; the bound in x's dtype, as aezoo's
    `tf.constant(bound, x.dtype)`."""
    x = ops.convert_to_tensor(x)
    return _lower_bound_op(x, jnp.asarray(bound, x.dtype))


def information(likelihood):
    """sum(-log2 p): the bits of an ideal entropy coder."""
    return -ops.sum(ops.log(likelihood)) / math.log(2.0)


def pixels(y, pixels_per_element: int) -> float:
    """Image pixels of a batch of latents (static shapes under jit)."""
    batch, height, width, _ = y.shape
    return float(batch * height * width * pixels_per_element)


class GDN(keras.layers.Layer):
    """aezoo's `GDN` (or IGDN with `inverse`): y = x / sqrt(beta + gamma^T x^2).

    Its variables are read inside Keras's autocast scope, as in aezoo: under
    mixed_bfloat16 beta and gamma are cast to bfloat16 *before* the reparametrisation."""

    def __init__(self, inverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.inverse = inverse

    def build(self, input_shape):
        channels = input_shape[-1]
        self.beta = self.add_weight(
            name="beta", shape=(channels,),
            initializer=keras.initializers.Constant(math.sqrt(1.0 + GDN_PEDESTAL)))
        gamma = np.sqrt(0.1 * np.eye(channels) + GDN_PEDESTAL).astype("float32")
        self.gamma = self.add_weight(name="gamma", shape=(channels, channels),
                                     initializer=keras.initializers.Constant(gamma))

    def call(self, x):
        beta = ops.convert_to_tensor(self.beta)
        gamma = ops.convert_to_tensor(self.gamma)
        beta = ops.square(lower_bound(beta, math.sqrt(GDN_BETA_MIN + GDN_PEDESTAL))) - GDN_PEDESTAL
        gamma = ops.square(lower_bound(gamma, 2.0**-18)) - GDN_PEDESTAL
        gamma, beta = ops.cast(gamma, x.dtype), ops.cast(beta, x.dtype)
        norm = ops.tensordot(ops.square(x), gamma, axes=[[3], [0]]) + beta
        return x * ops.sqrt(norm) if self.inverse else x * ops.rsqrt(norm)


class EntropyBottleneck(keras.layers.Layer):
    """aezoo's `EntropyBottleneck` (the factorized prior of z), float32 under any policy.

    Returns `(z_hat, rate)`: z + noise in training (the noise is an input, drawn by the
    caller), round(z) otherwise; rate = sum(-log2 p(z_hat)) per image pixel."""

    def __init__(self, pixels_per_element: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.pixels_per_element = pixels_per_element

    def build(self, input_shape):
        channels = input_shape[-1]
        dims = (1,) + ENTROPY_FILTERS + (1,)
        self.matrices, self.biases, self.factors = [], [], []
        for i in range(len(ENTROPY_FILTERS) + 1):
            self.matrices.append(self.add_weight(name=f"matrix{i}",
                                                 shape=(channels, dims[i + 1], dims[i])))
            self.biases.append(self.add_weight(name=f"bias{i}", shape=(channels, dims[i + 1], 1)))
            if i < len(ENTROPY_FILTERS):
                self.factors.append(self.add_weight(
                    name=f"factor{i}", shape=(channels, dims[i + 1], 1), initializer="zeros"))

    def logits_cumulative(self, t):
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            t = ops.matmul(ops.softplus(matrix), t) + bias
            if i < len(self.factors):
                t = t + ops.tanh(self.factors[i]) * ops.tanh(t)
        return t

    def likelihood(self, z_hat):
        shape = z_hat.shape
        channels = shape[-1]
        t = ops.transpose(ops.reshape(z_hat, (-1, channels)))[:, None, :]
        lower = self.logits_cumulative(t - 0.5)
        upper = self.logits_cumulative(t + 0.5)
        sign = ops.where(lower + upper > 0, -1.0, 1.0)  # (not -sign: 0 where the sum is)
        p = ops.abs(ops.sigmoid(sign * upper) - ops.sigmoid(sign * lower))
        p = ops.reshape(ops.transpose(p[:, 0, :]), shape)
        return lower_bound(p, LIKELIHOOD_BOUND)

    def call(self, z, noise=None, training=False):
        z_hat = z + noise if training else ops.round(z)
        return z_hat, information(self.likelihood(z_hat)) / pixels(z, self.pixels_per_element)


class HyperSynthesis(keras.layers.Layer):
    """aezoo's float `HyperSynthesis` (float32 under any policy): 5x5 stride-2 transposed
    convolutions with ReLU, then a 3x3 convolution; transposed kernels in TensorFlow's
    (k, k, out, in) layout, which `ops.conv_transpose` takes too."""

    def __init__(self, filters, output_channels: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.filters = tuple(filters)
        self.output_channels = output_channels

    def build(self, input_shape):
        channels = (input_shape[-1], *self.filters, self.output_channels)
        self.kernels, self.biases = [], []
        for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
            shape = (5, 5, cout, cin) if i < len(self.filters) else (3, 3, cin, cout)
            self.kernels.append(self.add_weight(name=f"kernel{i}", shape=shape,
                                                initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias{i}", shape=(cout,),
                                               initializer="zeros"))

    def call(self, z):
        h = z
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            if i < len(self.filters):
                h = ops.relu(ops.conv_transpose(h, kernel, strides=2, padding="same") + bias)
            else:
                h = ops.conv(h, kernel, strides=1, padding="same") + bias
        return h


def _normal_cdf(t):
    return 0.5 * jax.lax.erfc(-t * (1 / math.sqrt(2.0)))  # erfc: accurate in the tails


class GaussianConditional(keras.layers.Layer):
    """aezoo's `GaussianConditional` with means (float32 under any policy).

    Called on `[y, params, noise]`; returns `(y_hat, rate)`: y + noise in training,
    round(y - mean) + mean otherwise; rate = sum(-log2 p(y_hat)) per image pixel.  With
    `straight_through`, training returns the rounded latent with the gradient of y (the
    rate is still the noisy one), as aezoo's `straight_through=True`."""

    def __init__(self, pixels_per_element: int, straight_through: bool = False, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.pixels_per_element = pixels_per_element
        self.straight_through = straight_through

    def likelihood(self, values, scales):
        scales = lower_bound(scales, SCALE_MIN)
        magnitude = ops.abs(values)
        upper = _normal_cdf((0.5 - magnitude) / scales)
        lower = _normal_cdf((-0.5 - magnitude) / scales)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def call(self, inputs, training=False):
        y, params, noise = inputs
        channels = params.shape[-1] // 2
        means, scales = params[..., :channels], params[..., channels:]
        y_hat = y + noise if training else ops.round(y - means) + means
        bits = information(self.likelihood(y_hat - means, scales))
        if training and self.straight_through:
            y_hat = y + ops.stop_gradient(ops.round(y - means) + means - y)
        return y_hat, bits / pixels(y, self.pixels_per_element)


class MeanScaleCodec(keras.layers.Layer):
    """The training-time computation of aezoo's `compression_meanscale` model.

    Called on `(x, noise_z, noise_y)`; returns a dict of `x_hat`, `y`, `z`, `y_hat`,
    `z_hat`, `rate_y`, `rate_z` (bits per pixel).  The noises are ignored at inference.
    Sublayers carry aezoo's layer names, their variables aezoo's weight names.
    """

    def __init__(self, config: dict, policy: str, straight_through: bool = False, **kwargs):
        super().__init__(name="codec", dtype="float32", **kwargs)
        filters = tuple(config["filters"])
        hyper_filters = tuple(config["hyper_filters"])
        k = int(config["kernel_size"])
        latent_dim = int(config["latent_dim"])
        self.stride = 2 ** (len(filters) + 1)
        self.hyper_stride = 2 ** (len(hyper_filters) - 1)

        def conv(n, size, strides, name, activation=None):
            return keras.layers.Conv2D(n, size, strides=strides, padding="same",
                                       activation=activation, name=name, dtype=policy)

        def deconv(n, name):
            return keras.layers.Conv2DTranspose(n, k, strides=2, padding="same", name=name,
                                                dtype=policy)

        self.analysis = []
        for i, n in enumerate(filters, start=1):
            self.analysis += [conv(n, k, 2, f"down{i}_conv"),
                              GDN(name=f"down{i}_gdn", dtype=policy)]
        self.analysis.append(conv(latent_dim, k, 2, "latent_conv"))
        self.hyper_analysis = []
        for i, n in enumerate(hyper_filters, start=1):
            last = i == len(hyper_filters)
            self.hyper_analysis.append(conv(
                n, 3 if i == 1 else 5, 1 if i == 1 else 2,
                "hyper_latent_conv" if last else f"hyper_conv{i}",
                activation=None if last else "relu"))
        self.hyper_bottleneck = EntropyBottleneck(
            (self.stride * self.hyper_stride) ** 2, name="hyper_bottleneck")
        self.hyper_synthesis = HyperSynthesis(hyper_filters[-2::-1], 2 * latent_dim,
                                              name="hyper_synthesis")
        self.gaussian_conditional = GaussianConditional(
            self.stride**2, straight_through=straight_through, name="gaussian_conditional")
        self.synthesis = [deconv(filters[-1], "latent_deconv"),
                          GDN(inverse=True, name="latent_igdn", dtype=policy)]
        for i in range(len(filters), 1, -1):
            self.synthesis += [deconv(filters[i - 2], f"up{i}_deconv"),
                               GDN(inverse=True, name=f"up{i}_igdn", dtype=policy)]
        self.synthesis.append(deconv(3, "up1_deconv"))
        # aezoo's decoder ends in a float32 linear Activation, so x_hat (and the MSE) is
        # float32 under mixed precision.
        self.reconstruction = keras.layers.Activation("linear", dtype="float32",
                                                      name="reconstruction")

    def call(self, inputs, training=False):
        x, noise_z, noise_y = inputs
        y = x
        for layer in self.analysis:
            y = layer(y)
        z = y
        for layer in self.hyper_analysis:
            z = layer(z)
        z_hat, rate_z = self.hyper_bottleneck(z, noise=noise_z, training=training)
        params = self.hyper_synthesis(z_hat)
        y_hat, rate_y = self.gaussian_conditional([y, params, noise_y], training=training)
        h = y_hat
        for layer in self.synthesis:
            h = layer(h)
        x_hat = self.reconstruction(h)
        return {"x_hat": x_hat, "y": y, "z": z, "y_hat": y_hat, "z_hat": z_hat,
                "rate_y": rate_y, "rate_z": rate_z}

    def latent_shapes(self, batch: int, height: int, width: int, config: dict):
        """(z's shape, y's shape) for images of height x width."""
        s, hs = self.stride, self.stride * self.hyper_stride
        return ((batch, height // hs, width // hs, int(config["hyper_filters"][-1])),
                (batch, height // s, width // s, int(config["latent_dim"])))

    def weight_names(self) -> dict[int, str]:
        """id(variable) -> aezoo's 'layer/weight' name."""
        layers = [*self.analysis, *self.hyper_analysis, self.hyper_bottleneck,
                  self.hyper_synthesis, self.gaussian_conditional, *self.synthesis]
        return {id(v): f"{layer.name}/{v.name}" for layer in layers for v in layer.weights}


# ------------------------------------------------------------------------- the model


class Port:
    """The model, its variables in aezoo's names, and the loss of aezoo's training."""

    def __init__(self, preset: Path, precision: str, weights: Path | None = None,
                 straight_through: bool | None = None):
        info = json.loads((preset / "run.json").read_text())
        config = info.get("config") or {"model": info["model"], **info["options"]["model"]}
        if straight_through is None:  # the preset's, as `aezoo compress train --init` takes it
            straight_through = bool(config.get("straight_through", False))
        self.straight_through = straight_through
        if config.get("model", info.get("model")) != "compression_meanscale":
            raise ValueError(f"{preset} is not a compression_meanscale model.")
        if (config["activation"], config["output_activation"]) != ("gdn", "linear") or \
                config["input_shape"][-1] != 3:
            raise ValueError("Only the presets' kind is ported: GDN, linear output, RGB.")
        self.config, self.run_info = config, info
        self.lmbda = float(config["lmbda"])
        policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
        self.model = MeanScaleCodec(config, policy, straight_through)
        size = self.model.stride * self.model.hyper_stride
        shape_z, shape_y = self.model.latent_shapes(1, size, size, config)
        self.model((np.zeros((1, size, size, 3), "float32"), np.zeros(shape_z, "float32"),
                    np.zeros(shape_y, "float32")))  # builds every variable
        if self.model.non_trainable_variables:
            raise AssertionError("The port has no state besides its trainable weights.")
        names = self.model.weight_names()
        self.names = [names[id(v)] for v in self.model.trainable_variables]

        path = weights or preset / "weights.npz"
        with np.load(path, allow_pickle=False) as arrays:
            self.stored = {name: arrays[name] for name in arrays.files}
        floats = {n for n, a in self.stored.items() if a.dtype.kind == "f"}
        if floats != set(self.names):
            raise ValueError(f"{path} does not fit the port: missing "
                             f"{sorted(floats - set(self.names))}, extra "
                             f"{sorted(set(self.names) - floats)}.")
        for name, variable in zip(self.names, self.model.trainable_variables):
            if tuple(self.stored[name].shape) != tuple(variable.shape):
                raise ValueError(f"{name}: {self.stored[name].shape} in {path}, "
                                 f"{tuple(variable.shape)} in the port.")

    def initial_values(self) -> list:
        """The stored weights, float32, in the order of `trainable_variables`."""
        return [jnp.asarray(self.stored[n].astype("float32")) for n in self.names]

    def forward(self, values, x, noise_z, noise_y, training: bool):
        outputs, _ = self.model.stateless_call(values, [], (x, noise_z, noise_y),
                                               training=training)
        return outputs

    def loss(self, values, x, noise_z, noise_y, training: bool = True):
        """aezoo's `CompressionAutoencoder.compute_loss`: bpp + lmbda * 255**2 * MSE."""
        out = self.forward(values, x, noise_z, noise_y, training)
        rate = out["rate_y"] + out["rate_z"]
        mse = ops.mean(ops.square(ops.cast(x, "float32") - ops.cast(out["x_hat"], "float32")))
        return rate + self.lmbda * 255.0**2 * mse, (rate, mse, out)

    def save_weights(self, values, path: Path) -> None:
        """Writes the weights as the preset's weights.npz (same keys and shapes; float
        weights as float16, which `common.save_weights` makes them, atomically).  The
        integer tables that depend on the weights are written as "not finalised" (aezoo's
        `finalise()` recomputes them); the Gaussian tables, which depend on no weight, are
        the preset's."""
        arrays = {}
        trained = dict(zip(self.names, values))
        for name, stored in self.stored.items():
            if name in trained:
                arrays[name] = np.asarray(trained[name])
                continue
            reset = next((v for prefix, v in STALE_TABLES.items() if name.startswith(prefix)),
                         None)
            arrays[name] = stored if reset is None else np.full_like(stored, reset)
        save_weights(path, arrays)


# ---------------------------------------------------------------------------- images


def random_patches(images, portrait, key, batch: int, patch: int, augment: bool):
    """A batch of random patches (float32 in [0, 1]), cut on the device.

    As aezoo.data.from_directory: a uniformly random position in the image; with `augment`,
    a random one of the 8 rotations and mirror images (rot90 by k % 4, then a left-right
    flip if k >= 4)."""
    k_image, k_top, k_left, k_turn = jax.random.split(key, 4)
    count, height, width, _ = images.shape
    index = jax.random.randint(k_image, (batch,), 0, count)
    top = jax.random.randint(k_top, (batch,), 0, height - patch + 1)
    left = jax.random.randint(k_left, (batch,), 0, width - patch + 1)

    def cut(i, t, s):
        return jax.lax.dynamic_slice(images, (i, t, s, 0), (1, patch, patch, 3))[0]

    x = jax.vmap(cut)(index, top, left)
    # A patch of a turned image is the turned patch of the photo: turn it back, so that
    # portrait photos give upright patches, as in aezoo.
    x = jnp.where(portrait[index][:, None, None, None], jnp.rot90(x, -1, axes=(1, 2)), x)
    if augment:
        k = jax.random.randint(k_turn, (batch,), 0, 8)
        turns = jnp.stack([jnp.rot90(x, r, axes=(1, 2)) for r in range(4)])
        x = turns[k % 4, jnp.arange(batch)]
        x = jnp.where((k >= 4)[:, None, None, None], x[:, :, ::-1], x)
    return x.astype(jnp.float32) / 255.0


# ------------------------------------------------------------------------- check mode


def _plain(value) -> np.ndarray:
    """A NumPy array; floats as float32 (NumPy alone cannot read bfloat16 back, which y
    and z are under the mixed policy)."""
    value = np.asarray(value)
    return value.astype(np.float32) if jnp.issubdtype(value.dtype, jnp.floating) else value


def dump(args) -> None:
    """The check's figures for one fixed patch and one fixed noise sample, in float32
    (or under `--precision bfloat16`, the training's mixed policy, for a looser check)."""
    port = Port(args.preset, args.precision or "float32", args.weights,
                straight_through=args.straight_through)
    first = image_files(args.images)[0]
    image = read_image(first, 3)
    size = args.patch
    x = (image[:size, :size].astype(np.float32) / 255.0)[None]  # the top-left crop
    shape_z, shape_y = port.model.latent_shapes(1, size, size, port.config)
    rng = np.random.default_rng(args.seed)
    noise_z = rng.uniform(-0.5, 0.5, shape_z).astype(np.float32)
    noise_y = rng.uniform(-0.5, 0.5, shape_y).astype(np.float32)
    values = port.initial_values()

    evaluation = jax.jit(lambda v: port.loss(v, x, noise_z, noise_y, training=False))
    loss, (rate, mse, out) = evaluation(values)
    train = jax.jit(jax.value_and_grad(
        lambda v: port.loss(v, x, noise_z, noise_y, training=True), has_aux=True))
    (loss_t, (rate_t, mse_t, out_t)), grads = train(values)
    grad_norms = np.array([float(jnp.linalg.norm(g)) for g in grads])
    result = {
        "image": np.array(first.name), "x": x, "noise_z": noise_z, "noise_y": noise_y,
        "x_hat": out["x_hat"], "y": out["y"], "z": out["z"], "y_hat": out["y_hat"],
        "z_hat": out["z_hat"], "bpp": rate, "bpp_y": out["rate_y"], "bpp_z": out["rate_z"],
        "mse": mse, "loss": loss,
        "x_hat_train": out_t["x_hat"], "bpp_train": rate_t, "mse_train": mse_t,
        "loss_train": loss_t, "grad_norm": np.sqrt(np.sum(grad_norms**2)),
        "grad_names": np.array(port.names), "grad_norms": grad_norms,
        "precision": np.array(args.precision or "float32"),
        "straight_through": np.array(port.straight_through),
    }
    args.dump.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.dump, **{k: _plain(v) for k, v in result.items()})
    print(f"{first.name} {size}x{size}: bpp {float(rate):.5f} (y {float(out['rate_y']):.5f}, "
          f"z {float(out['rate_z']):.5f}), PSNR {-10 * math.log10(float(mse)):.3f} dB; "
          f"with noise: loss {float(loss_t):.5f}, gradient norm {result['grad_norm']:.5f}; "
          f"wrote {args.dump}", flush=True)


# ---------------------------------------------------------------------------- training


def train(args) -> int:
    budget = Budget(args.minutes, args.learning_rate, args.warmup, started=STARTED)
    port = Port(args.preset, args.precision, straight_through=args.straight_through)
    stride = port.model.stride * port.model.hyper_stride
    if args.patch % stride:
        raise ValueError(f"--patch must be a multiple of {stride}, the model's total stride.")
    images, portrait = load_images(args.images, 3)
    if min(images.shape[1:3]) < args.patch:
        raise ValueError(f"The images ({images.shape[1]}x{images.shape[2]}) are smaller than "
                         f"--patch {args.patch}.")
    images, portrait = jax.device_put(images), jax.device_put(portrait)
    shape_z, shape_y = port.model.latent_shapes(args.batch, args.patch, args.patch, port.config)
    print(f"{len(portrait)} images {tuple(images.shape[1:3])} on {jax.devices()[0]}; "
          f"{args.preset.name}: lmbda {port.lmbda:g}, filters {port.config['filters']}, "
          f"latent {port.config['latent_dim']}, {args.precision}; batch {args.batch} of "
          f"{args.patch}x{args.patch}", flush=True)

    # Keras's Adam, with aezoo's global gradient clipping; its learning rate is one of its
    # variables, which the step sets from the host's schedule.
    optimizer = keras.optimizers.Adam(args.learning_rate, global_clipnorm=1.0)
    optimizer.build(port.model.trainable_variables)
    lr_index = next(i for i, v in enumerate(optimizer.variables) if v.name == "learning_rate")

    def step(values, opt_values, images, portrait, key, lr):
        k_patch, k_z, k_y = jax.random.split(key, 3)
        x = random_patches(images, portrait, k_patch, args.batch, args.patch, args.augment)
        noise_z = jax.random.uniform(k_z, shape_z, jnp.float32, -0.5, 0.5)
        noise_y = jax.random.uniform(k_y, shape_y, jnp.float32, -0.5, 0.5)
        (loss, (rate, mse, _)), grads = jax.value_and_grad(port.loss, has_aux=True)(
            values, x, noise_z, noise_y)
        opt_values = list(opt_values)
        opt_values[lr_index] = lr
        values, opt_values = optimizer.stateless_apply(opt_values, grads, values)
        return values, opt_values, jnp.stack([loss, rate, mse])

    values = port.initial_values()
    opt_values = [v.value for v in optimizer.variables]
    base_key = jax.random.key(args.seed)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
        values, opt_values, images, portrait, base_key, jnp.float32(0)).compile()
    budget.begin()
    began = budget.began
    print(f"compiled in {budget.elapsed:.1f} s since start; training until "
          f"{budget.end - STARTED:.0f} s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.preset / "run.json", args.out / "run.json")
    log_path = args.out / "log.csv"

    # Metrics stay on the device until a report (reading them waits for the device).
    pending, since_save, since_print = [], [], []
    step_count, last_save, last_print = 0, began, began
    saved_step, save_seconds, step_seconds = 0, 1.0, 0.0
    previous = None
    lr = 0.0

    def report(rows, t0, now):
        mean = np.mean(np.array(rows), axis=0)
        return mean, len(rows) / max(now - t0, 1e-9)

    def log(rows, t0, now):
        (loss, rate, mse), speed = report(rows, t0, now)
        log_line(log_path, {"step": step_count, "elapsed_s": round(now - STARTED, 1),
                            "loss": float(loss), "bpp": float(rate), "mse": float(mse),
                            "psnr": -10 * math.log10(mse), "learning_rate": lr,
                            "steps_per_s": speed})

    while True:
        now = time.monotonic()
        # Stop while the last steps and the final save still fit in the budget.
        if now + 2 * step_seconds + save_seconds + 0.5 >= budget.end:
            break
        lr = budget.rate(step_count)
        key = jax.random.fold_in(base_key, step_count)
        values, opt_values, metrics = compiled(values, opt_values, images, portrait, key,
                                               jnp.float32(lr))
        step_count += 1
        # One step queued at most: the host's clock (hence the schedule) stays with the device.
        if previous is not None:
            previous.block_until_ready()
        previous = metrics
        pending.append(metrics)
        if step_count > 1:
            step_seconds = 0.9 * step_seconds + 0.1 * (time.monotonic() - now) \
                if step_seconds else time.monotonic() - now
        now = time.monotonic()
        # Reports (and saves, at the first report past --save-every) read the metrics,
        # which waits for the device: only every --print-every seconds.
        if now - last_print >= args.print_every:
            saving = now - last_save >= args.save_every
            rows = np.asarray(jnp.stack(pending))
            pending.clear()
            if not np.all(np.isfinite(rows)):
                print(f"step {step_count}: the loss is not finite; stopping without saving "
                      f"(the last good weights, of step {saved_step}, stay in "
                      f"{args.out / 'weights.npz'}).", flush=True)
                return 1
            since_print += list(rows)
            since_save += list(rows)
            (loss, rate, mse), speed = report(since_print, last_print, now)
            print(f"step {step_count} {now - STARTED:.0f} s: loss {loss:.4f} bpp {rate:.4f} "
                  f"PSNR {-10 * math.log10(mse):.2f} dB lr {lr:.3g} {speed:.1f} steps/s"
                  f"{', saving' if saving else ''}", flush=True)
            since_print, last_print = [], now
            if saving:
                t = time.monotonic()
                port.save_weights(jax.device_get(values), args.out / "weights.npz")
                save_seconds = time.monotonic() - t
                log(since_save, last_save, now)
                since_save, last_save, saved_step = [], time.monotonic(), step_count

    now = time.monotonic()
    rows = np.asarray(jnp.stack(pending)) if pending else np.zeros((0, 3))
    if not np.all(np.isfinite(rows)):
        print("The loss is not finite at the end; the last good weights stay.", flush=True)
        return 1
    since_save += list(rows)
    port.save_weights(jax.device_get(values), args.out / "weights.npz")
    if since_save:
        log(since_save, last_save, now)
    print(f"done: {step_count} steps in {now - began:.0f} s of training "
          f"({step_count / max(now - began, 1e-9):.2f} steps/s), "
          f"{time.monotonic() - STARTED:.0f} s in all; wrote {args.out / 'weights.npz'}",
          flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", type=Path, required=True,
                        help="preset folder: run.json (config, lmbda) and weights.npz")
    parser.add_argument("--images", type=Path, required=True, help="folder of training images")
    parser.add_argument("--out", type=Path, help="output folder (training)")
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="wall-clock budget from the start of the process (default 8)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=500, help="warm-up steps (default 500)")
    parser.add_argument("--augment", action="store_true",
                        help="random rotations and mirror images of patches (off in the "
                             "presets' training)")
    parser.add_argument("--straight-through", choices=("true", "false"),
                        help="true: train the synthesis on rounded latents, as aezoo's "
                             "--straight-through true (default: the preset's, as aezoo's "
                             "--init takes it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--print-every", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--precision", choices=("bfloat16", "float32"),
                        help="bfloat16: aezoo's mixed_bfloat16 policy (default, except with "
                             "--dump: float32)")
    parser.add_argument("--dump", type=Path,
                        help="check mode: write the port's float32 figures for the first "
                             "image's top-left --patch crop to this .npz, and exit")
    parser.add_argument("--weights", type=Path,
                        help="check mode: these weights instead of the preset's")
    args = parser.parse_args(argv)
    if args.straight_through is not None:
        args.straight_through = args.straight_through == "true"
    if args.dump is not None:
        dump(args)
        return 0
    if args.out is None:
        parser.error("--out is required for training")
    args.precision = args.precision or "bfloat16"
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
