"""Learned image compression: the factorized-prior model of Ballé et al. (ICLR 2017, 2018).

`x -> analysis transform -> y -> quantiser + entropy model -> y_hat -> synthesis -> x_hat`

The encoder ends with an `EntropyBottleneck`: in training it adds uniform noise in
[-0.5, 0.5) to `y` (a differentiable stand-in for rounding) and adds the estimated rate,
in bits per pixel, to the model's losses; at inference it rounds, so the encoder's `y_hat`
is the integer latent that `aezoo.codec` entropy-codes into a file, and
`ae(x) == ae.decoder(ae.encoder(x))` holds exactly.  Training minimises
`rate + lmbda * 255**2 * MSE` (the convention of tensorflow-compression's bls2017 model).

The entropy model is the non-parametric per-channel density of Ballé et al. 2018 (appendix
6.1): a monotonic cumulative built from softplus matrices and tanh gates.  After training,
`EntropyBottleneck.finalise()` turns it into integer probability tables, stored as
non-trainable int32 weights of the layer, so a saved model carries them and decoding is
bit-exact in any process on any machine (see `aezoo.codec`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from aezoo.models.layers import PadToMultiple
from aezoo.models.base import (
    Autoencoder,
    check_activation,
    check_input_shape,
    check_int,
    check_ints,
    make_autoencoder,
)

# Integer probability tables: each channel has a window of at most TABLE_SUPPORT integer
# values, plus one escape symbol for values outside it (coded losslessly, see aezoo.codec).
# Counts sum to 2**TABLE_PRECISION, so the smallest probability is 2**-16.
TABLE_SUPPORT = 255
TABLE_PRECISION = 16
# The window of a channel holds all but this much of its probability mass.
TAIL_MASS = 2.0**-20


def compression(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    latent_dim: int = 128,
    filters: tuple[int, ...] = (128, 128, 128),
    kernel_size: int = 5,
    activation: str = "gdn",
    output_activation: str = "linear",
    lmbda: float = 0.01,
    name: str = "compression_autoencoder",
) -> "CompressionAutoencoder":
    """Builds a learned image codec with a factorized prior (Ballé et al. 2017/2018).

    `x -> pad -> down1_conv, down1_gdn .. downN_conv, downN_gdn -> latent_conv ->
    entropy_bottleneck -> {y_hat, image_size} -> latent_deconv, latent_igdn -> upN_deconv,
    upN_igdn .. up1_deconv -> crop to image_size -> reconstruction`

    Every convolution has stride 2, so the latent is 2**(len(filters) + 1) times smaller than
    the image in height and width.  The encoder repeats the last row and column of images
    whose sizes are not a multiple of that, and passes the true `image_size` (height, width)
    on with the latent, as the .aez file header does; the decoder crops back to it.  So one
    model (with None sizes, the default) codes images of every size.

    Args:
        input_shape: `(height, width, channels)`, channels 1 or 3; height and width may be
            None (any size).
        latent_dim: channels of the latent `y` (M in the papers).
        filters: channels of the hidden levels of the analysis transform (N in the papers);
            the synthesis transform mirrors them.
        kernel_size: size of every convolution kernel.
        activation: "gdn" (generalized divisive normalization in the encoder, its inverse in
            the decoder, as in the papers) or a Keras activation such as "relu".
        output_activation: activation of the reconstruction ("linear" as in the papers; the
            codec clips to [0, 1] when it writes pixels).
        lmbda: the rate-distortion trade-off: the loss is
            `bits per pixel + lmbda * 255**2 * MSE`; larger values give larger files and
            better quality.
        name: model name.

    Returns:
        A `CompressionAutoencoder`; `.encoder` maps `x` to a dict of `y_hat` (integers at
        inference) and `image_size` (int32, (batch, 2)), and `.decoder` maps that to `x_hat`.
    """
    kwargs = dict(locals())
    input_shape = check_input_shape(input_shape, ranks=(3,), dynamic=True, channels=(1, 3))
    latent_dim = check_int("latent_dim", latent_dim)
    filters = check_ints("filters", filters)
    kernel_size = check_int("kernel_size", kernel_size)
    if activation != "gdn":
        check_activation("activation", activation)
    check_activation("output_activation", output_activation)
    if isinstance(lmbda, bool) or not isinstance(lmbda, (int, float)) or not lmbda > 0:
        raise ValueError(f"`lmbda` must be a positive number. Received: lmbda={lmbda!r}")
    channels = input_shape[-1]
    stride = 2 ** (len(filters) + 1)

    def conv(n, name, layer=keras.layers.Conv2D):
        return layer(n, kernel_size, strides=2, padding="same", name=name)

    def nonlinearity(name, inverse=False):
        if activation == "gdn":
            return GDN(inverse=inverse, name=name)
        return keras.layers.Activation(activation, name=name)

    x = keras.Input(input_shape, name="x")
    h = PadToMultiple(stride, mode="edge", name="pad")(x)
    for i, n in enumerate(filters, start=1):
        h = conv(n, f"down{i}_conv")(h)
        h = nonlinearity(f"down{i}_gdn" if activation == "gdn" else f"down{i}_act")(h)
    y = conv(latent_dim, "latent_conv")(h)
    y_hat = EntropyBottleneck(pixels_per_element=stride**2, name="entropy_bottleneck")(y)
    codes = {"y_hat": y_hat, "image_size": ImageSize(name="image_size")(x)}
    encoder = keras.Model(x, codes, name="encoder")

    suffix = "igdn" if activation == "gdn" else "act"
    inputs = {
        "y_hat": keras.Input(y_hat.shape[1:], name="y_hat"),
        "image_size": keras.Input((2,), dtype="int32", name="image_size"),
    }
    h = conv(filters[-1], "latent_deconv", keras.layers.Conv2DTranspose)(inputs["y_hat"])
    h = nonlinearity(f"latent_{suffix}", inverse=True)(h)
    for i in range(len(filters), 1, -1):
        h = conv(filters[i - 2], f"up{i}_deconv", keras.layers.Conv2DTranspose)(h)
        h = nonlinearity(f"up{i}_{suffix}", inverse=True)(h)
    h = conv(channels, "up1_deconv", keras.layers.Conv2DTranspose)(h)
    h = CropToSize(name="crop")([h, inputs["image_size"]])
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    decoder = keras.Model(inputs, x_hat, name="decoder")

    return make_autoencoder("compression", kwargs, encoder, decoder, cls=CompressionAutoencoder)


@keras.saving.register_keras_serializable(package="aezoo")
class CompressionAutoencoder(Autoencoder):
    """An `Autoencoder` trained on rate + lmbda * distortion.

    The rate (bits per pixel) is what the encoder's `EntropyBottleneck` adds to the model's
    losses; the distortion is the mean squared error on the 0-255 scale.  Training and
    evaluation report both, as `bpp` and `mse` (on the [0, 1] scale), besides the total `loss`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bpp_tracker = keras.metrics.Mean(name="bpp")
        self.mse_tracker = keras.metrics.Mean(name="mse")

    @property
    def lmbda(self) -> float:
        return float(self.get_config()["lmbda"])

    @property
    def entropy_bottleneck(self) -> "EntropyBottleneck":
        return self.encoder.get_layer("entropy_bottleneck")

    @property
    def stride(self) -> int:
        """How many times smaller the latent is than the image, in height and width."""
        return int(math.isqrt(self.entropy_bottleneck.pixels_per_element))

    def compile(self, optimizer="adam", loss="mse", **kwargs):
        """`keras.Model.compile`; the loss is always rate + lmbda * MSE ("mse" or None)."""
        if loss not in ("mse", "mean_squared_error", None):
            raise ValueError(
                "Compression models train on rate + lmbda * mean squared error; "
                f"`loss` must be 'mse'. Received: loss={loss!r}"
            )
        keras.Model.compile(self, optimizer=optimizer, loss=None, **kwargs)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, then the integer probability tables of the trained entropy
        model (`EntropyBottleneck.finalise`), so that a model saved after training codes
        files at once."""
        history = super().fit(*args, **kwargs)
        self.entropy_bottleneck.finalise()
        return history

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        rate = tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])
        mse = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - tf.cast(y_pred, tf.float32)))
        # Weighted by the batch size, as Keras's own loss tracker: the epoch means then obey
        # loss = bpp + lmbda * 255**2 * mse exactly.  (A weight that depends on the data
        # also keeps a step that finds the dataset exhausted from counting.)
        batch_size = tf.cast(tf.shape(y)[0], tf.float32)
        self.bpp_tracker.update_state(rate, sample_weight=batch_size)
        self.mse_tracker.update_state(mse, sample_weight=batch_size)
        total = rate + self.lmbda * 255.0**2 * mse
        # Keras averages gradients over replicas by summing per-replica losses, so each
        # replica's loss is divided by their number (as Keras does for compiled losses).
        return total / tf.distribute.get_strategy().num_replicas_in_sync


# ------------------------------------------------------------------------------ layers


def _lower_bound(x, bound: float):
    """max(x, bound), with gradients that still pull x up from below the bound (so a
    parameter stuck there can recover), as tensorflow-compression's `lower_bound`."""
    return _lower_bound_op(x, tf.constant(bound, x.dtype))


@tf.custom_gradient
def _lower_bound_op(x, bound):
    def grad(dy):
        pass_through = tf.logical_or(x >= bound, dy < 0)
        return tf.where(pass_through, dy, tf.zeros_like(dy)), None

    return tf.maximum(x, bound), grad


@keras.saving.register_keras_serializable(package="aezoo")
class ImageSize(keras.layers.Layer):
    """The (height, width) of a batch of images, as int32 (batch, 2), every row the same."""

    def call(self, x):
        shape = tf.shape(x)
        return tf.tile(shape[None, 1:3], [shape[0], 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2)

    def compute_output_spec(self, x):
        return keras.KerasTensor((x.shape[0], 2), dtype="int32")


@keras.saving.register_keras_serializable(package="aezoo")
class CropToSize(keras.layers.Layer):
    """Crops images (top-left anchored) to the (height, width) in `size` (its first row)."""

    def call(self, inputs):
        x, size = inputs
        return x[:, : size[0, 0], : size[0, 1], :]

    def compute_output_shape(self, input_shapes):
        x_shape = input_shapes[0]
        return (x_shape[0], None, None, x_shape[3])


@keras.saving.register_keras_serializable(package="aezoo")
class GDN(keras.layers.Layer):
    """Generalized divisive normalization (Ballé et al. 2016), or its inverse (IGDN).

    `y_i = x_i / sqrt(beta_i + sum_j gamma_ji x_j**2)`; the inverse multiplies instead.
    beta and gamma are kept non-negative by the square-root reparametrisation of the paper.

    Args:
        inverse: compute IGDN (for the decoder).
        beta_min: lower bound of beta, which keeps the division away from zero.
        gamma_init: initial diagonal of gamma.
    """

    _PEDESTAL = 2.0**-36  # (2**-18)**2: the reparametrisation offset, squared

    def __init__(
        self, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1, **kwargs
    ):
        super().__init__(**kwargs)
        self.inverse = bool(inverse)
        self.beta_min, self.gamma_init = float(beta_min), float(gamma_init)

    def build(self, input_shape):
        channels = input_shape[-1]
        pedestal = self._PEDESTAL
        self.beta = self.add_weight(
            name="beta",
            shape=(channels,),
            initializer=keras.initializers.Constant(math.sqrt(1.0 + pedestal)),
        )
        gamma = np.sqrt(self.gamma_init * np.eye(channels) + pedestal).astype("float32")
        self.gamma = self.add_weight(
            name="gamma", shape=(channels, channels), initializer=keras.initializers.Constant(gamma)
        )

    def call(self, x):
        pedestal = self._PEDESTAL
        # (Tensors, not variables, go through the custom gradient.)
        beta = tf.convert_to_tensor(self.beta)
        gamma = tf.convert_to_tensor(self.gamma)
        beta = tf.square(_lower_bound(beta, math.sqrt(self.beta_min + pedestal))) - pedestal
        gamma = tf.square(_lower_bound(gamma, 2.0**-18)) - pedestal
        gamma, beta = tf.cast(gamma, x.dtype), tf.cast(beta, x.dtype)  # mixed precision
        norm = tf.tensordot(tf.square(x), gamma, axes=[[3], [0]]) + beta
        return x * tf.sqrt(norm) if self.inverse else x * tf.math.rsqrt(norm)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "inverse": self.inverse,
            "beta_min": self.beta_min,
            "gamma_init": self.gamma_init,
        }


@keras.saving.register_keras_serializable(package="aezoo")
class EntropyBottleneck(keras.layers.Layer):
    """Quantiser and learned factorized prior (Ballé et al. 2018, appendix 6.1).

    In training `y_hat = y + u` with `u ~ U(-0.5, 0.5)`; at inference `y_hat = round(y)`.
    Each channel has its own density: its cumulative `c(t) = sigmoid(f_K(.. f_1(t)))`,
    with `f_k(t) = g_k(softplus(H_k) t + b_k)` and `g_k(t) = t + tanh(a_k) * tanh(t)`, is
    monotonic by construction, and `p(y_hat) = c(y_hat + 0.5) - c(y_hat - 0.5)`.  The layer
    adds the rate `sum(-log2 p(y_hat))` per pixel of the image to the model's losses.

    After training, `finalise()` writes integer tables (int32 weights `table_counts`,
    `table_offsets`, `table_lengths`) from which `aezoo.codec` entropy-codes `y_hat`.

    Args:
        pixels_per_element: image pixels per spatial position of the latent (stride**2),
            which turns bits per latent position into bits per pixel.
        filters: widths of the hidden layers of each channel's cumulative.
        init_scale: the initial density's approximate width.
        likelihood_bound: smallest likelihood, so that log2 stays finite.
        seed: seed of the training noise.
    """

    def __init__(
        self,
        pixels_per_element: int = 1,
        filters: tuple[int, ...] = (3, 3, 3),
        init_scale: float = 10.0,
        likelihood_bound: float = 1e-9,
        seed: int | None = None,
        **kwargs,
    ):
        # The density is kept in float32 even under a mixed-precision policy.
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.pixels_per_element = int(pixels_per_element)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.likelihood_bound = float(likelihood_bound)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        channels = input_shape[-1]
        dims = (1,) + self.filters + (1,)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = [], [], []
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(self.add_weight(
                name=f"matrix{i}",
                shape=(channels, dims[i + 1], dims[i]),
                initializer=keras.initializers.Constant(init),
            ))
            self.biases.append(self.add_weight(
                name=f"bias{i}",
                shape=(channels, dims[i + 1], 1),
                initializer=keras.initializers.RandomUniform(-0.5, 0.5),
            ))
            if i < len(self.filters):
                self.factors.append(self.add_weight(
                    name=f"factor{i}", shape=(channels, dims[i + 1], 1), initializer="zeros"
                ))
        # The integer tables (all zero until finalise()): per channel, the counts of the
        # window's values and then of the escape symbol, the window's first value, and its
        # number of values.
        def table(name, shape):
            return self.add_weight(
                name=name, shape=shape, dtype="int32", initializer="zeros", trainable=False
            )

        self.table_counts = table("table_counts", (channels, TABLE_SUPPORT + 1))
        self.table_offsets = table("table_offsets", (channels,))
        self.table_lengths = table("table_lengths", (channels,))

    def logits_cumulative(self, t):
        """The logit of each channel's cumulative at `t`, of shape (channels, 1, n)."""
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            t = tf.linalg.matmul(tf.nn.softplus(matrix), t) + bias
            if i < len(self.factors):
                t += tf.tanh(self.factors[i]) * tf.tanh(t)
        return t

    def likelihood(self, y_hat):
        """p(y_hat) under the continuous density (float), elementwise; y_hat (..., channels)."""
        shape = tf.shape(y_hat)
        channels = y_hat.shape[-1]
        t = tf.transpose(tf.reshape(y_hat, [-1, channels]))[:, None, :]
        lower = self.logits_cumulative(t - 0.5)
        upper = self.logits_cumulative(t + 0.5)
        # Differences of sigmoids taken on the side where they are small, for accuracy.
        sign = -tf.sign(lower + upper)
        p = tf.abs(tf.sigmoid(sign * upper) - tf.sigmoid(sign * lower))
        p = tf.reshape(tf.transpose(p[:, 0, :]), shape)
        return _lower_bound(p, self.likelihood_bound)

    def call(self, y, training=False):
        if training:
            y_hat = y + keras.random.uniform(tf.shape(y), -0.5, 0.5, seed=self.seed_generator)
        else:
            y_hat = tf.round(y)
        bits = -tf.reduce_sum(tf.math.log(self.likelihood(y_hat))) / math.log(2.0)
        shape = tf.shape(y)
        pixels = tf.cast(shape[0] * shape[1] * shape[2] * self.pixels_per_element, tf.float32)
        self.add_loss(bits / pixels)
        return y_hat

    def compute_output_shape(self, input_shape):
        return input_shape

    # ------------------------------------------------------------------ tables

    @property
    def finalised(self) -> bool:
        return bool(np.all(self.table_lengths.numpy() > 0))

    def finalise(self) -> None:
        """Computes the integer probability tables from the learned densities.

        For each channel: the window of integers holding all but `TAIL_MASS` of the density
        (at most `TABLE_SUPPORT` values, centred on the median when wider), each value's
        probability mass, and the escape symbol's (the rest); quantised to counts >= 1 that
        sum to 2**TABLE_PRECISION.  Done once; the counts are then fixed integers, so
        encoders and decoders anywhere use exactly the same tables.
        """
        channels = self.table_counts.shape[0]
        lower = self._quantile(TAIL_MASS / 2)
        upper = self._quantile(1 - TAIL_MASS / 2)
        median = self._quantile(0.5)
        low = np.floor(lower).astype(np.int64)
        high = np.ceil(upper).astype(np.int64)
        wide = high - low + 1 > TABLE_SUPPORT
        centre = np.round(median).astype(np.int64)
        low = np.where(wide, centre - TABLE_SUPPORT // 2, low)
        high = np.where(wide, low + TABLE_SUPPORT - 1, high)
        lengths = (high - low + 1).astype(np.int64)

        values = low[:, None] + np.arange(TABLE_SUPPORT)[None, :]  # (channels, support)
        t = tf.constant(values[:, None, :], tf.float32)
        cdf_upper = tf.sigmoid(self.logits_cumulative(t + 0.5))[:, 0, :].numpy().astype(np.float64)
        cdf_lower = tf.sigmoid(self.logits_cumulative(t - 0.5))[:, 0, :].numpy().astype(np.float64)
        pmf = np.clip(cdf_upper - cdf_lower, 0.0, 1.0)
        counts = np.zeros((channels, TABLE_SUPPORT + 1), np.int64)
        for c in range(channels):
            p = pmf[c, : lengths[c]]
            escape = max(1.0 - p.sum(), 0.0)
            counts[c, : lengths[c] + 1] = quantise_pmf(np.append(p, escape), TABLE_PRECISION)
        self.table_counts.assign(counts.astype(np.int32))
        self.table_offsets.assign(low.astype(np.int32))
        self.table_lengths.assign(lengths.astype(np.int32))

    def _quantile(self, q: float) -> np.ndarray:
        """Each channel's q-quantile of its density, by bisection (the cumulative is
        monotonic), to within 1e-7."""
        channels = self.table_counts.shape[0]
        target = math.log(q / (1 - q))
        lo = np.full(channels, -2.0**16)
        hi = np.full(channels, 2.0**16)
        for _ in range(40):
            mid = (lo + hi) / 2
            logits = self.logits_cumulative(tf.constant(mid[:, None, None], tf.float32))
            below = logits.numpy()[:, 0, 0] < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return (lo + hi) / 2

    def get_config(self):
        return {
            **super().get_config(),
            "pixels_per_element": self.pixels_per_element,
            "filters": list(self.filters),
            "init_scale": self.init_scale,
            "likelihood_bound": self.likelihood_bound,
            "seed": self.seed,
        }


def quantise_pmf(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Integer counts >= 1 summing to 2**precision, close to `pmf * 2**precision`.

    Rounds, lifts zeros to one, and settles the difference on the largest counts (where a
    change of one costs the least, relatively).
    """
    total = 2**precision
    if len(pmf) > total:
        raise ValueError(f"Cannot give {len(pmf)} symbols a nonzero count out of {total}.")
    pmf = np.asarray(pmf, np.float64)
    counts = np.maximum(np.round(pmf / pmf.sum() * total).astype(np.int64), 1)
    while counts.sum() != total:
        excess = counts.sum() - total
        i = int(np.argmax(counts))
        counts[i] -= min(excess, counts[i] - 1)
    return counts
