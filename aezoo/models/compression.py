"""Learned image compression: the factorized-prior model of Ballé et al. (ICLR 2017, 2018),
and the scale- and mean-scale-hyperprior models (Ballé et al. ICLR 2018; Minnen et al.
NeurIPS 2018, without the autoregressive context model).

`compression`: `x -> analysis -> y -> quantiser + entropy model -> y_hat -> synthesis -> x_hat`

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

`compression_hyperprior`, `compression_meanscale`:

    x -> analysis -> y -> hyper-analysis -> z -> hyper_bottleneck -> z_hat
    z_hat -> hyper_synthesis -> (means,) scales
    (y, means, scales) -> gaussian_conditional -> y_hat -> synthesis -> x_hat

The side information `z_hat` is coded with a factorized prior (an `EntropyBottleneck`),
and each element of `y` with a Gaussian whose scale (and mean) the hyper-synthesis predicts
from `z_hat`.  The encoder still returns `{y_hat, image_size}` and the decoder takes them;
`HyperpriorAutoencoder.analysis_model()` gives `y`, `z_hat` and the float parameters.

What a decoder must compute exactly like its encoder, and how:

* The tables.  The factorized prior's (z's) are integers fixed by `finalise()`, as above;
  the Gaussian tables are integers too, made once by `GaussianConditional.finalise()` for
  `SCALE_LEVELS` fixed scales and stored in the model (counts summing to 2**16).
* Which table codes each element of `y`, and the mean subtracted before rounding.  A
  floating-point hyper-synthesis would give slightly different scales on another CPU, with
  another math library or thread count (oneDNN and Eigen, say, differ in the last bits of
  almost every output), and a scale near the boundary between two tables would then pick
  another table on the decoder's side and derail the rest of the stream.  So the codec
  never uses the float network: `HyperSynthesis.finalise()` quantises its kernels and
  biases once to integers, and `integer_hyper_synthesis` computes it with integer
  arithmetic only (Ballé, Johnston, Minnen, "Integer networks for data compression with
  latent-variable models", ICLR 2019): exact (transposed) convolutions, rounding right
  shifts, a ReLU that clips.  Its scales pick tables by integer comparisons with stored
  integer thresholds (`table_indexes`), and its means are fixed-point numbers (units of
  2**-16), so `round(y - mean)` is what the file carries and `q + mean` is exactly the
  same number on every machine.  These parts are exact: the entropy-decoded `z_hat` and
  `y_hat` are identical everywhere.
* Not exact: the synthesis transform (`y_hat -> x_hat`) runs in float32 in TensorFlow, so
  its pixels may differ by a grey level across CPUs and TensorFlow builds (they are
  identical on one machine and build); so may the encoder's choice of latent (which only
  changes the file, never its decodability).  Training uses the float hyper-synthesis;
  the integer one is a post-training quantisation precise enough (15-bit kernels, 12
  fractional bits in the activations, 16 in the outputs) that its scales and means differ
  from the float ones by far less than the 13 % between neighbouring tables, so the files
  stay within a few percent of the model's own rate estimate (tested).
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import tensorflow as tf

from aezoo.models.base import (
    Autoencoder,
    arguments_but_widths,
    check_activation,
    check_bool,
    check_input_shape,
    check_int,
    check_ints,
    check_positive,
    make_autoencoder,
    split_among_copies,
    widened_channels,
)
from aezoo.models.layers import PadToMultiple

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
    the image in height and width.  The encoder pads images whose sizes are not a multiple
    of that with their last row and column, blurred more the farther they reach (cheap to
    code: `PadToMultiple(mode="blur")`), and passes the true `image_size` (height, width)
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
    input_shape, latent_dim, filters, kernel_size = _check_codec_arguments(kwargs)
    stride = 2 ** (len(filters) + 1)

    x = keras.Input(input_shape, name="x")
    h = PadToMultiple(stride, mode="blur", name="pad")(x)
    y = _analysis(h, filters, latent_dim, kernel_size, activation)
    y_hat = EntropyBottleneck(pixels_per_element=stride**2, name="entropy_bottleneck")(y)
    codes = {"y_hat": y_hat, "image_size": ImageSize(name="image_size")(x)}
    encoder = keras.Model(x, codes, name="encoder")
    decoder = _synthesis(y_hat.shape[1:], input_shape[-1], filters, kernel_size, activation,
                         output_activation)
    return make_autoencoder("compression", kwargs, encoder, decoder, cls=CompressionAutoencoder)


def compression_hyperprior(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    latent_dim: int = 192,
    filters: tuple[int, ...] = (128, 128, 128),
    kernel_size: int = 5,
    activation: str = "gdn",
    output_activation: str = "linear",
    hyper_filters: tuple[int, ...] = (128, 128, 128),
    lmbda: float = 0.01,
    straight_through: bool = False,
    name: str = "compression_hyperprior",
) -> "HyperpriorAutoencoder":
    """Builds a learned image codec with a scale hyperprior (Ballé et al. ICLR 2018).

    `x -> pad -> analysis (as `compression`) -> y`;
    `|y| -> hyper_abs -> hyper_conv1 .. hyper_latent_conv -> z -> hyper_bottleneck -> z_hat
    -> hyper_synthesis -> scales`; `(y, scales) -> gaussian_conditional -> y_hat`;
    `{y_hat, image_size} -> synthesis (as `compression`) -> reconstruction`.

    Each element of `y` is coded with a zero-mean Gaussian whose scale the hyper-synthesis
    predicts from the side information `z_hat`, itself coded with a factorized prior.  The
    codec picks the scale's table with an integer version of the hyper-synthesis, so files
    decode the same everywhere (see the module docstring).

    Args:
        input_shape: `(height, width, channels)`, channels 1 or 3; height and width may be
            None (any size).
        latent_dim: channels of the latent `y` (M in the papers).
        filters: channels of the hidden levels of the analysis transform (N in the papers);
            the synthesis transform mirrors them.
        kernel_size: size of the kernels of the analysis and synthesis transforms.
        activation: "gdn" (GDN in the analysis, IGDN in the synthesis) or a Keras activation.
        output_activation: activation of the reconstruction ("linear" as in the papers).
        hyper_filters: channels of the levels of the hyper-analysis: a 3x3 convolution to
            `hyper_filters[0]`, then one 5x5 stride-2 convolution to each next entry, the
            last giving the hyper-latent `z`; ReLU between them.  The hyper-synthesis mirrors
            them with 5x5 stride-2 transposed convolutions and ends in a 3x3 convolution to
            the `latent_dim` scales.  The default is the papers' (N = 128, z 4 times smaller
            than y).
        lmbda: the rate-distortion trade-off: the loss is
            `bits per pixel (y and z) + lmbda * 255**2 * MSE`.
        straight_through: in training, give the synthesis the rounded latent
            `round(y - mean) + mean` (the one it decodes from a file) with straight-through
            gradients, while the rate is still estimated at `y + noise` ("mixed"
            quantisation, Minnen and Singh, ICIP 2020).  Off, the synthesis trains on the
            noisy latent, as in Ballé et al.  Inference is the same either way.
        name: model name.

    Returns:
        A `HyperpriorAutoencoder`; `.encoder` maps `x` to a dict of `y_hat` and
        `image_size` as `compression`'s does, and `.decoder` maps that to `x_hat`.
    """
    kwargs = dict(locals())
    return _hyperprior("compression_hyperprior", kwargs, means=False)


def compression_meanscale(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    latent_dim: int = 192,
    filters: tuple[int, ...] = (128, 128, 128),
    kernel_size: int = 5,
    activation: str = "gdn",
    output_activation: str = "linear",
    hyper_filters: tuple[int, ...] = (128, 128, 128),
    lmbda: float = 0.01,
    straight_through: bool = False,
    name: str = "compression_meanscale",
) -> "HyperpriorAutoencoder":
    """Builds a learned image codec with a mean-scale hyperprior (Minnen et al. NeurIPS
    2018, without the autoregressive context model).

    As `compression_hyperprior`, except that the hyper-analysis sees `y` itself (not `|y|`)
    and the hyper-synthesis predicts a mean and a scale for each element of `y`
    (`2 * latent_dim` channels: the means, then the scales).  The quantised latent is
    `y_hat = round(y - mean) + mean`; the file carries the integers `round(y - mean)`.

    Args:
        input_shape: `(height, width, channels)`, channels 1 or 3; height and width may be
            None (any size).
        latent_dim: channels of the latent `y` (M).
        filters: channels of the hidden levels of the analysis transform (N).
        kernel_size: size of the kernels of the analysis and synthesis transforms.
        activation: "gdn" or a Keras activation.
        output_activation: activation of the reconstruction.
        hyper_filters: channels of the levels of the hyper-analysis (see
            `compression_hyperprior`).
        lmbda: the rate-distortion trade-off (see `compression_hyperprior`).
        straight_through: train the synthesis on rounded latents (see
            `compression_hyperprior`).
        name: model name.

    Returns:
        A `HyperpriorAutoencoder`.
    """
    kwargs = dict(locals())
    return _hyperprior("compression_meanscale", kwargs, means=True)


def _hyperprior(model: str, kwargs: dict, means: bool) -> "HyperpriorAutoencoder":
    input_shape, latent_dim, filters, kernel_size = _check_codec_arguments(kwargs)
    hyper_filters = check_ints("hyper_filters", kwargs["hyper_filters"])
    straight_through = check_bool("straight_through", kwargs["straight_through"])
    activation = kwargs["activation"]
    stride = 2 ** (len(filters) + 1)
    hyper_stride = 2 ** (len(hyper_filters) - 1)

    x = keras.Input(input_shape, name="x")
    # Padded to a multiple of both strides, so that the hyper-synthesis gives back exactly
    # the latent's height and width.
    h = PadToMultiple(stride * hyper_stride, mode="blur", name="pad")(x)
    y = _analysis(h, filters, latent_dim, kernel_size, activation)
    # The scale hyperprior sees magnitudes only (scales do not depend on signs); the
    # mean-scale one needs the signs to predict the means.
    h = y if means else Abs(name="hyper_abs")(y)
    for i, n in enumerate(hyper_filters, start=1):
        last = i == len(hyper_filters)
        h = keras.layers.Conv2D(
            n, 3 if i == 1 else 5, strides=1 if i == 1 else 2, padding="same",
            activation=None if last else "relu",
            name="hyper_latent_conv" if last else f"hyper_conv{i}",
        )(h)
    z_hat = EntropyBottleneck(
        pixels_per_element=(stride * hyper_stride) ** 2, name="hyper_bottleneck"
    )(h)
    params = HyperSynthesis(
        filters=hyper_filters[-2::-1], output_channels=(2 if means else 1) * latent_dim,
        name="hyper_synthesis",
    )(z_hat)
    y_hat = GaussianConditional(
        pixels_per_element=stride**2, means=means, straight_through=straight_through,
        name="gaussian_conditional",
    )([y, params])
    codes = {"y_hat": y_hat, "image_size": ImageSize(name="image_size")(x)}
    encoder = keras.Model(x, codes, name="encoder")
    decoder = _synthesis(y_hat.shape[1:], input_shape[-1], filters, kernel_size, activation,
                         kwargs["output_activation"])
    return make_autoencoder(model, kwargs, encoder, decoder, cls=HyperpriorAutoencoder)


def _check_codec_arguments(kwargs: dict) -> tuple:
    """Checks the arguments every compression builder takes; returns the normalised
    (input_shape, latent_dim, filters, kernel_size)."""
    input_shape = check_input_shape(
        kwargs["input_shape"], ranks=(3,), dynamic=True, channels=(1, 3)
    )
    latent_dim = check_int("latent_dim", kwargs["latent_dim"])
    filters = check_ints("filters", kwargs["filters"])
    kernel_size = check_int("kernel_size", kwargs["kernel_size"])
    if kwargs["activation"] != "gdn":
        check_activation("activation", kwargs["activation"])
    check_activation("output_activation", kwargs["output_activation"])
    check_positive("lmbda", kwargs["lmbda"])
    return input_shape, latent_dim, filters, kernel_size


def _nonlinearity(activation: str, name: str, inverse: bool = False) -> keras.layers.Layer:
    if activation == "gdn":
        return GDN(inverse=inverse, name=name)
    return keras.layers.Activation(activation, name=name)


def _analysis(h, filters, latent_dim: int, kernel_size: int, activation: str):
    """`down1_conv, down1_gdn .. downN_conv, downN_gdn -> latent_conv`: y, as a Keras tensor."""
    for i, n in enumerate(filters, start=1):
        h = keras.layers.Conv2D(n, kernel_size, strides=2, padding="same",
                                name=f"down{i}_conv")(h)
        h = _nonlinearity(activation, f"down{i}_gdn" if activation == "gdn" else f"down{i}_act")(h)
    return keras.layers.Conv2D(latent_dim, kernel_size, strides=2, padding="same",
                               name="latent_conv")(h)


def _synthesis(latent_shape, channels: int, filters, kernel_size: int, activation: str,
               output_activation: str) -> keras.Model:
    """The decoder: `{y_hat, image_size} -> latent_deconv, latent_igdn -> upN_deconv,
    upN_igdn .. up1_deconv -> crop to image_size -> reconstruction`."""

    def deconv(n, name):
        return keras.layers.Conv2DTranspose(n, kernel_size, strides=2, padding="same", name=name)

    suffix = "igdn" if activation == "gdn" else "act"
    inputs = {
        "y_hat": keras.Input(latent_shape, name="y_hat"),
        "image_size": keras.Input((2,), dtype="int32", name="image_size"),
    }
    h = deconv(filters[-1], "latent_deconv")(inputs["y_hat"])
    h = _nonlinearity(activation, f"latent_{suffix}", inverse=True)(h)
    for i in range(len(filters), 1, -1):
        h = deconv(filters[i - 2], f"up{i}_deconv")(h)
        h = _nonlinearity(activation, f"up{i}_{suffix}", inverse=True)(h)
    h = deconv(channels, "up1_deconv")(h)
    h = CropToSize(name="crop")([h, inputs["image_size"]])
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    return keras.Model(inputs, x_hat, name="decoder")


def widen(source: "CompressionAutoencoder", target: "CompressionAutoencoder",
          seed: int = 0) -> None:
    """Sets `target`'s weights to `source`'s, where `target` is the same model with wider
    analysis and synthesis levels (`filters`), so that `target` computes the same function
    (Net2WiderNet: Chen, Goodfellow, Shlens, ICLR 2016): a fine-tuning then starts where
    the narrower model is and can only add to it.

    Each new channel copies a channel of its level (the first `n` keep their own; the rest
    copy channels drawn at random), in its convolution and its GDN, whose gamma is divided
    among the copies (each copy's square counts in the others' norms); the next layer
    splits each channel's weights among its copies at random proportions summing to one,
    so that their gradients differ and the copies can drift apart.

    A hyperprior model may also be given more latent channels (`latent_dim`).  Copies would
    be coded twice, so the new channels start unused instead: the analysis computes each as
    a hundredth of an old channel drawn at random (so small that it rounds to zero: no
    bits, and the same file), the synthesis and the hyper-analysis give them zero weights
    (the same pixels and hyper-latent), and the hyper-synthesis a mean of zero and the
    smallest scale.  Training then grows their synthesis weights from the analysis's signal.

    Raises ValueError if the two models differ in anything but these widths (and lmbda or
    straight_through, which set the training, not the weights), a width shrinks, or a model
    without a hyperprior is given more latent channels.
    """
    old_filters = tuple(source.get_config()["filters"])
    new_filters = tuple(target.get_config()["filters"])
    old_latent, new_latent = source.get_config()["latent_dim"], target.get_config()["latent_dim"]
    # (lmbda and straight_through may change too: they are no weights)
    if (arguments_but_widths(source, "lmbda", "straight_through")
            != arguments_but_widths(target, "lmbda", "straight_through")
            or len(old_filters) != len(new_filters)
            or any(n < o for o, n in zip(old_filters, new_filters)) or new_latent < old_latent):
        raise ValueError(f"Cannot widen a model of filters {old_filters} and latent_dim "
                         f"{old_latent} to {new_filters} and {new_latent}: only the widths "
                         "may grow, all else must be the same.")
    if new_latent > old_latent and not isinstance(source, HyperpriorAutoencoder):
        raise ValueError("Only a hyperprior model can be given more latent channels: a "
                         "factorized prior has no density for a channel that starts unused.")
    rng = np.random.default_rng(seed)
    old = {layer.name: layer for part in (source.encoder, source.decoder) for layer in part.layers}
    new = {layer.name: layer for part in (target.encoder, target.decoder) for layer in part.layers}
    weights = {name: [np.asarray(w, np.float64) for w in layer.get_weights()]
               for name, layer in old.items()}

    count = len(old_filters)
    for level in range(1, count + 1):
        n, wide = old_filters[level - 1], new_filters[level - 1]
        copies, shares = widened_channels(rng, n, wide)
        analysis = (f"down{level}_conv", f"down{level}_gdn",
                    f"down{level + 1}_conv" if level < count else "latent_conv")
        synthesis = ("latent_deconv" if level == count else f"up{level + 1}_deconv",
                     "latent_igdn" if level == count else f"up{level + 1}_igdn",
                     f"up{level}_deconv")
        # Kernel axes (out, in): Conv2D kernels are (h, w, in, out), transposed ones
        # (h, w, out, in).
        for (producer, norm, consumer), (out, into) in ((analysis, (3, 2)), (synthesis, (2, 3))):
            kernel, bias = weights[producer]
            weights[producer] = [np.take(kernel, copies, axis=out), bias[copies]]
            if norm in weights:  # GDN (absent where the activation is another)
                beta, gamma = weights[norm]
                pedestal = GDN._PEDESTAL
                effective = np.square(np.maximum(gamma, 2.0**-18)) - pedestal
                effective = effective[np.ix_(copies, copies)] / shares[:, None]
                weights[norm] = [beta[copies], np.sqrt(np.maximum(effective, 0.0) + pedestal)]
            kernel, bias = weights[consumer]
            split = split_among_copies(rng, copies, shares, n)
            shape = [1] * kernel.ndim
            shape[into] = len(copies)
            weights[consumer] = [np.take(kernel, copies, axis=into) * split.reshape(shape), bias]
    if new_latent > old_latent:
        _add_latent_channels(weights, old_latent, new_latent, target, rng)
    for name, layer in new.items():
        if name in weights:
            layer.set_weights([w.astype(v.dtype) for w, v in zip(weights[name], layer.weights)])


def _add_latent_channels(weights: dict, old: int, new: int, target, rng) -> None:
    """`widen`'s new latent channels, in `weights` (layer name -> arrays, `target`'s order)."""
    def pad(array, axis, width, values=0.0):
        shape = list(array.shape)
        shape[axis] = width
        return np.concatenate([array, np.broadcast_to(values, shape)], axis=axis)

    added = new - old
    kernel, bias = weights["latent_conv"]  # (h, w, in, out)
    copies = rng.integers(0, old, added)
    weights["latent_conv"] = [np.concatenate([kernel, kernel[..., copies] / 100], axis=3),
                              np.concatenate([bias, bias[copies] / 100])]
    kernel, bias = weights["latent_deconv"]  # transposed: (h, w, out, in)
    weights["latent_deconv"] = [pad(kernel, 3, added), bias]
    first = "hyper_conv1" if "hyper_conv1" in weights else "hyper_latent_conv"
    kernel, bias = weights[first]  # (h, w, in, out)
    weights[first] = [pad(kernel, 2, added), bias]
    # The hyper-synthesis's last level gives the means (if any), then the scales, of each
    # channel: each part gets its new channels at its end, with zero weights (a scale of 0
    # is SCALE_MIN's table).  Its integer weights are left as the new layer's: unset, until
    # `finalise()` computes them from the float ones.
    layer = target.encoder.get_layer("hyper_synthesis")
    values = dict(zip([v.name for v in layer.weights], weights["hyper_synthesis"]))
    last = len(layer.filters)
    parts = 2 if target.gaussian_conditional.means else 1
    kernel, bias = values[f"kernel{last}"], values[f"bias{last}"]
    values[f"kernel{last}"] = np.concatenate(
        [pad(part, 3, added) for part in np.split(kernel, parts, axis=3)], axis=3)
    values[f"bias{last}"] = np.concatenate(
        [pad(part, 0, added) for part in np.split(bias, parts)])
    for variable in layer.weights:
        if variable.name.startswith("integer"):
            values[variable.name] = np.asarray(variable.numpy())
    weights["hyper_synthesis"] = [values[v.name] for v in layer.weights]


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
        """`keras.Model.fit`, then `finalise()`, so that a model saved after training codes
        files at once."""
        history = super().fit(*args, **kwargs)
        self.finalise()
        return history

    def finalise(self) -> None:
        """Computes the integer probability tables of the trained entropy model
        (`EntropyBottleneck.finalise`)."""
        self.entropy_bottleneck.finalise()

    @property
    def finalised(self) -> bool:
        """Whether the integer tables that `aezoo.codec` needs are there."""
        return self.entropy_bottleneck.finalised

    def estimate_bits(self, x) -> float:
        """The model's own estimate of the bits of a batch of images `x` (floats in [0, 1]):
        `sum(-log2 p(y_hat))` under its continuous density, at the rounded latent (what
        training minimises, with rounding in place of noise)."""
        y_hat = self.encoder(x, training=False)["y_hat"]
        p = self.entropy_bottleneck.likelihood(y_hat)
        return float(-np.sum(np.log2(np.asarray(p, np.float64))))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        rate = self.added_losses()
        mse = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - tf.cast(y_pred, tf.float32)))
        return self.replica_loss(rate + self.lmbda * 255.0**2 * mse, y,
                                 (self.bpp_tracker, rate), (self.mse_tracker, mse),
                                 sample_weight=sample_weight)


@keras.saving.register_keras_serializable(package="aezoo")
class HyperpriorAutoencoder(CompressionAutoencoder):
    """A `CompressionAutoencoder` with a hyperprior: its rate is the bits of `y` under the
    Gaussian conditional plus the bits of the side information `z` under the factorized
    prior (`hyper_bottleneck`, which `entropy_bottleneck` names here)."""

    @property
    def entropy_bottleneck(self) -> "EntropyBottleneck":
        return self.encoder.get_layer("hyper_bottleneck")

    @property
    def gaussian_conditional(self) -> "GaussianConditional":
        return self.encoder.get_layer("gaussian_conditional")

    @property
    def hyper_synthesis(self) -> "HyperSynthesis":
        return self.encoder.get_layer("hyper_synthesis")

    @property
    def stride(self) -> int:
        """How many times smaller `y` is than the image, in height and width."""
        return 2 ** (len(self.get_config()["filters"]) + 1)

    @property
    def hyper_stride(self) -> int:
        """How many times smaller `z` is than `y`, in height and width."""
        return 2 ** (len(self.get_config()["hyper_filters"]) - 1)

    def finalise(self) -> None:
        """The integer tables of both entropy models and the integer hyper-synthesis."""
        self.entropy_bottleneck.finalise()
        self.hyper_synthesis.finalise()
        self.gaussian_conditional.finalise()

    @property
    def finalised(self) -> bool:
        return all(part.finalised for part in (
            self.entropy_bottleneck, self.hyper_synthesis, self.gaussian_conditional))

    def analysis_model(self) -> keras.Model:
        """`x -> {"y", "z_hat", "params"}`: the latent before quantisation, the rounded
        hyper-latent (at inference) and the float hyper-synthesis's output, from the
        encoder's own layers (what the codec and the rate estimate need)."""
        encoder = self.encoder
        outputs = {
            "y": encoder.get_layer("latent_conv").output,
            "z_hat": encoder.get_layer("hyper_bottleneck").output,
            "params": encoder.get_layer("hyper_synthesis").output,
        }
        return keras.Model(encoder.input, outputs, name="analysis")

    def estimate_bits(self, x) -> float:
        """The model's own estimate of the bits of a batch of images `x`: `-log2` of the
        continuous likelihoods of `z_hat` and of `y_hat` given the float hyper-synthesis
        (what training minimises, with rounding in place of noise)."""
        parts = self.analysis_model()(x, training=False)
        conditional = self.gaussian_conditional
        means, scales = conditional.split(parts["params"])
        y_hat = conditional.quantise(tf.cast(parts["y"], tf.float32), means)
        p_y = conditional.likelihood(y_hat - means, scales)
        p_z = self.entropy_bottleneck.likelihood(tf.cast(parts["z_hat"], tf.float32))
        return float(sum(-np.sum(np.log2(np.asarray(p, np.float64))) for p in (p_y, p_z)))


# ------------------------------------------------------------------------------ layers


def information(likelihood):
    """`sum(-log2 p)` of a tensor of likelihoods: the bits an ideal entropy coder spends."""
    return -tf.reduce_sum(tf.math.log(likelihood)) / math.log(2.0)


def _pixels(y, pixels_per_element: int):
    """The image pixels of a batch of latents `y` (batch, height, width, channels)."""
    shape = tf.shape(y)
    return tf.cast(shape[0] * shape[1] * shape[2] * pixels_per_element, tf.float32)


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
        # Differences of sigmoids taken on the side where they are small, for accuracy
        # (either side where lower + upper == 0: -sign(0) would be 0, and p = 0).
        sign = tf.where(lower + upper > 0, -1.0, 1.0)
        p = tf.abs(tf.sigmoid(sign * upper) - tf.sigmoid(sign * lower))
        p = tf.reshape(tf.transpose(p[:, 0, :]), shape)
        return _lower_bound(p, self.likelihood_bound)

    def call(self, y, training=False):
        if training:
            y_hat = y + keras.random.uniform(tf.shape(y), -0.5, 0.5, seed=self.seed_generator)
        else:
            y_hat = tf.round(y)
        self.add_loss(information(self.likelihood(y_hat)) / _pixels(y, self.pixels_per_element))
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


# ----------------------------------------------------------------- hyperprior models

# The Gaussian conditional codes each element of y with one of SCALE_LEVELS fixed tables,
# zero-mean Gaussians of log-spaced scales from SCALE_MIN to SCALE_MAX (the table of
# tensorflow-compression and CompressAI).  A table covers +-TAIL_STDS standard deviations,
# so at most 2 * ceil(TAIL_STDS * SCALE_MAX) + 1 values, plus the escape symbol (whose mass,
# below 6e-7 of the Gaussian, is lifted to the smallest count).
SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64
TAIL_STDS = 5.0
GAUSSIAN_SUPPORT = 2 * math.ceil(TAIL_STDS * SCALE_MAX) + 1

# The integer hyper-synthesis (Ballé, Johnston, Minnen, ICLR 2019) is fixed-point: kernels
# are integers of at most 15 bits (|k| <= WEIGHT_MAX) with a per-level number of fractional
# bits, hidden activations have ACTIVATION_FRACTION fractional bits and are clipped (the
# ReLU) to [0, ACTIVATION_MAX], and the outputs (means and scales) come in units of
# 2**-OUTPUT_FRACTION.  The input z_hat is clipped to +-INPUT_MAX.  With at most
# MAX_CHANNELS input channels, each tap's dot product is an integer below
# 2**13 * 2**24 * 2**15 = 2**52 in magnitude, which float64 matrix products compute exactly.
WEIGHT_MAX = 2**15 - 1
BIAS_MAX = 2**31 - 1
INPUT_MAX = 2**15
ACTIVATION_FRACTION = 12
ACTIVATION_MAX = 2**24 - 1  # 4096 - 2**-12
OUTPUT_FRACTION = 16
OUTPUT_MAX = 2**31 - 1
MAX_CHANNELS = 2**13
MAX_FRACTION = 40  # fractional bits of a kernel whose weights are all tiny (or zero)


@keras.saving.register_keras_serializable(package="aezoo")
class Abs(keras.layers.Layer):
    """|x|, elementwise (what the scale hyperprior's hyper-analysis sees)."""

    def call(self, x):
        return tf.abs(x)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="aezoo")
class HyperSynthesis(keras.layers.Layer):
    """The hyper-synthesis transform, in float for training and in integers for decoding.

    `z_hat -> [5x5 stride-2 transposed convolution, ReLU] x len(filters) -> 3x3 convolution
    -> params` (`padding="same"` throughout, as Keras's layers).

    Keras calls it in float32 (under any dtype policy: its output picks the tables).
    `finalise()` quantises the trained kernels and biases once to fixed-point integers
    (int32 weights of the layer, see `WEIGHT_MAX` and the constants beside it), and
    `integer_call(z_hat)` then computes the same network with integer arithmetic only, so
    every machine gets the same bits (`aezoo.codec` uses it on both sides of a file).  The
    integer network differs from the float one by its rounding: 2**-13 absolute in the
    hidden activations (which it clips at 4096), about 2**-15 relative in the kernels.

    Args:
        filters: output channels of the transposed convolutions, in order.
        output_channels: channels of the output.
    """

    def __init__(self, filters: tuple[int, ...] = (128, 128), output_channels: int = 192,
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.filters = tuple(int(f) for f in filters)
        self.output_channels = int(output_channels)

    def build(self, input_shape):
        channels = (input_shape[-1], *self.filters, self.output_channels)
        if max(channels[:-1]) > MAX_CHANNELS:
            raise ValueError(f"The integer hyper-synthesis takes at most {MAX_CHANNELS} "
                             f"channels per level. Received: {channels}")
        self.kernels, self.biases = [], []
        self.integer_kernels, self.integer_biases = [], []
        for i, (cin, cout) in enumerate(itertools.pairwise(channels)):
            # Transposed convolutions keep TensorFlow's (k, k, out, in) kernel layout.
            shape = (5, 5, cout, cin) if i < len(self.filters) else (3, 3, cin, cout)
            self.kernels.append(self.add_weight(
                name=f"kernel{i}", shape=shape, initializer="glorot_uniform"))
            self.biases.append(self.add_weight(name=f"bias{i}", shape=(cout,),
                                               initializer="zeros"))
            self.integer_kernels.append(self.add_weight(
                name=f"integer_kernel{i}", shape=shape, dtype="int32", initializer="zeros",
                trainable=False))
            self.integer_biases.append(self.add_weight(
                name=f"integer_bias{i}", shape=(cout,), dtype="int32", initializer="zeros",
                trainable=False))
        # Fractional bits of each level's integer kernel; -1 until finalise().
        self.integer_fractions = self.add_weight(
            name="integer_fractions", shape=(len(channels) - 1,), dtype="int32",
            initializer=keras.initializers.Constant(-1), trainable=False)

    def call(self, z):
        h = z
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            if i < len(self.filters):
                shape = tf.shape(h)
                output_shape = tf.stack([shape[0], 2 * shape[1], 2 * shape[2], kernel.shape[2]])
                h = tf.nn.conv2d_transpose(h, kernel, output_shape, strides=2, padding="SAME")
                h = tf.nn.relu(h + bias)
            else:
                h = tf.nn.conv2d(h, kernel, strides=1, padding="SAME") + bias
        return h

    def compute_output_shape(self, input_shape):
        factor = 2 ** len(self.filters)

        def up(size):
            return None if size is None else size * factor

        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), self.output_channels)

    @property
    def finalised(self) -> bool:
        return bool(np.all(self.integer_fractions.numpy() >= 0))

    def finalise(self) -> None:
        """Quantises the kernels and biases to the integers of `integer_call`.

        Each level's kernel gets as many fractional bits as fit 15-bit integers (and its
        bias, in the units of the level's sums, 31 bits), up to `MAX_FRACTION`.
        """
        fraction = 0  # of the level's input: z_hat is an integer
        fractions = []
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases)):
            k = np.asarray(kernel.numpy(), np.float64)
            b = np.asarray(bias.numpy(), np.float64)
            bits = MAX_FRACTION
            if np.any(k):
                bits = min(bits, math.floor(math.log2(WEIGHT_MAX / np.max(np.abs(k)))))
            if np.any(b):
                bits = min(bits, math.floor(math.log2(BIAS_MAX / np.max(np.abs(b)))) - fraction)
            if bits < 0:
                raise ValueError(
                    f"The hyper-synthesis's level {i} has weights too large for its integer "
                    f"version (largest kernel {np.max(np.abs(k)):g}, bias {np.max(np.abs(b)):g})."
                )
            k = np.clip(np.round(k * 2.0**bits), -WEIGHT_MAX, WEIGHT_MAX)
            b = np.clip(np.round(b * 2.0 ** (fraction + bits)), -BIAS_MAX, BIAS_MAX)
            self.integer_kernels[i].assign(k.astype(np.int32))
            self.integer_biases[i].assign(b.astype(np.int32))
            fractions.append(bits)
            fraction = ACTIVATION_FRACTION
        self.integer_fractions.assign(np.array(fractions, np.int32))

    def integer_parameters(self) -> dict[str, list[np.ndarray]]:
        """The integer network: kernels, biases (int64) and fractional bits of each level."""
        if not self.finalised:
            raise ValueError("The hyper-synthesis has no integer version yet: call finalise().")
        return {
            "kernels": [np.asarray(k.numpy(), np.int64) for k in self.integer_kernels],
            "biases": [np.asarray(b.numpy(), np.int64) for b in self.integer_biases],
            "fractions": [int(f) for f in self.integer_fractions.numpy()],
            "upsampling": len(self.filters),
        }

    def integer_call(self, z_hat: np.ndarray) -> np.ndarray:
        """The integer network on one integer hyper-latent (height, width, channels): the
        outputs (height * 2**len(filters), width * 2**len(filters), output_channels) as int64
        in units of 2**-OUTPUT_FRACTION.  See `integer_hyper_synthesis`."""
        return integer_hyper_synthesis(z_hat, self.integer_parameters())

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters),
                "output_channels": self.output_channels}


def integer_hyper_synthesis(z_hat: np.ndarray, parameters: dict) -> np.ndarray:
    """The integer hyper-synthesis of `HyperSynthesis.integer_parameters()` on one integer
    hyper-latent (height, width, channels), with integer arithmetic only.

    Each level: an exact integer (transposed) convolution plus the integer bias, whose
    result has `fraction_in + fraction_k` fractional bits; hidden levels then round to
    `ACTIVATION_FRACTION` bits (adding half and shifting right) and clip to
    `[0, ACTIVATION_MAX]` (the ReLU); the last rounds to `OUTPUT_FRACTION` bits.

    Returns:
        int64 (height * 2**upsampling, width * 2**upsampling, output channels), in units of
        2**-OUTPUT_FRACTION.
    """
    a = np.clip(np.asarray(z_hat, np.int64), -INPUT_MAX, INPUT_MAX)
    fraction = 0
    levels = len(parameters["kernels"])
    for i, (kernel, bias, bits) in enumerate(
        zip(parameters["kernels"], parameters["biases"], parameters["fractions"])
    ):
        if i < parameters["upsampling"]:
            acc = integer_conv2d_transpose(a, kernel) + bias
        else:
            acc = integer_conv2d(a, kernel) + bias
        if i < levels - 1:
            a = np.clip(_shift_round(acc, fraction + bits - ACTIVATION_FRACTION), 0,
                        ACTIVATION_MAX)
            fraction = ACTIVATION_FRACTION
        else:
            return np.clip(_shift_round(acc, fraction + bits - OUTPUT_FRACTION), -OUTPUT_MAX,
                           OUTPUT_MAX)
    raise AssertionError("unreachable: the network has at least one level")


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`a @ b` of integer matrices, exactly, as int64.

    Computed with float64 matrix products (BLAS, 30 times faster than NumPy's int64 loops),
    which is exact here: every product and partial sum is an integer of magnitude below
    2**53 (see `MAX_CHANNELS`), and IEEE 754 arithmetic on such integers never rounds, in any
    order of summation, with or without fused multiply-adds, on any machine.
    """
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def integer_conv2d(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """`tf.nn.conv2d(a, kernel, strides=1, padding="SAME")` on integers, exactly.

    Args:
        a: (height, width, in channels) integers.
        kernel: (k, k, in channels, out channels) integers.
    """
    height, width, cin = a.shape
    k = kernel.shape[0]
    before = (k - 1) // 2  # TensorFlow's "SAME": the odd pixel of padding goes after
    padded = np.pad(a, ((before, k - 1 - before), (before, k - 1 - before), (0, 0)))
    out = np.zeros((height, width, kernel.shape[3]), np.int64)
    for i in range(k):
        for j in range(k):
            window = padded[i: i + height, j: j + width].reshape(-1, cin)
            out += _exact_matmul(window, kernel[i, j]).reshape(out.shape)
    return out


def integer_conv2d_transpose(a: np.ndarray, kernel: np.ndarray, stride: int = 2) -> np.ndarray:
    """`tf.nn.conv2d_transpose(a, kernel, stride * size, stride, padding="SAME")` on
    integers, exactly: each input position adds its kernel-weighted values to the
    `k x k` outputs around `stride * position`.

    Args:
        a: (height, width, in channels) integers.
        kernel: (k, k, out channels, in channels) integers (TensorFlow's layout).
    """
    height, width, cin = a.shape
    k, cout = kernel.shape[0], kernel.shape[2]
    # The padding "SAME" gives the convolution that this one transposes, on an input of
    # stride * size: max(k - stride, 0) in total, the smaller half before.
    before = max(k - stride, 0) // 2
    full = np.zeros((stride * height + k, stride * width + k, cout), np.int64)
    flat = a.reshape(-1, cin)
    for i in range(k):
        for j in range(k):
            product = _exact_matmul(flat, kernel[i, j].T).reshape(height, width, cout)
            full[i: i + stride * height: stride, j: j + stride * width: stride] += product
    return full[before: before + stride * height, before: before + stride * width]


def _shift_round(values: np.ndarray, bits: int) -> np.ndarray:
    """`values * 2**-bits` rounded to the nearest integer (halves up), exactly, for int64."""
    if bits > 0:
        return (values + (1 << (bits - 1))) >> bits
    # (Only for kernels of huge weights; the clip keeps the shift from overflowing.)
    return np.clip(values, -(2**46), 2**46) << -bits


def scale_table() -> np.ndarray:
    """The `SCALE_LEVELS` scales of the Gaussian tables (float64, log-spaced).  (Only
    `finalise()` uses them, to make the integer tables that decoders then read.)"""
    scales = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALE_LEVELS))
    scales[[0, -1]] = SCALE_MIN, SCALE_MAX  # exactly, not exp(log(.)) of them
    return scales


def _normal_cdf(t):
    return 0.5 * tf.math.erfc(-t * (1 / math.sqrt(2.0)))


@keras.saving.register_keras_serializable(package="aezoo")
class GaussianConditional(keras.layers.Layer):
    """Quantiser and conditional Gaussian entropy model of `y` given the hyper-synthesis.

    Called on `[y, params]`, where `params` holds one scale per element of `y` (the
    `means=True` variant: a mean, then a scale; the channels of the means come first).  In
    training `y_hat = y + u`, `u ~ U(-0.5, 0.5)`; at inference `y_hat = round(y - mean) +
    mean`.  `p(y_hat)` is the mass of `N(mean, max(scale, SCALE_MIN))` on
    `[y_hat - 0.5, y_hat + 0.5]`; the layer adds `sum(-log2 p(y_hat))` per image pixel to
    the model's losses.  It computes in float32 under any dtype policy.  With
    `straight_through`, training still estimates the rate at `y + u` but returns the
    rounded latent, with the gradient of `y`.

    `finalise()` writes the integer tables of the fixed scales of `scale_table()` (int32
    weights `table_counts`, `table_offsets`, `table_lengths`, as `EntropyBottleneck`'s), and
    `scale_thresholds`, the boundaries between neighbouring scales (their geometric means) in
    the integer hyper-synthesis's output units: the codec gives each element the table of
    the scale nearest (in log) to its integer scale, by integer comparisons.

    Args:
        pixels_per_element: image pixels per spatial position of `y` (stride**2).
        means: whether `params` holds means too.
        likelihood_bound: smallest likelihood, so that log2 stays finite.
        seed: seed of the training noise.
        straight_through: return the rounded latent in training too (see above).
    """

    def __init__(self, pixels_per_element: int = 1, means: bool = False,
                 likelihood_bound: float = 1e-9, seed: int | None = None,
                 straight_through: bool = False, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.pixels_per_element = int(pixels_per_element)
        self.means = bool(means)
        self.straight_through = bool(straight_through)
        self.likelihood_bound = float(likelihood_bound)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shapes):
        y_shape, params_shape = input_shapes
        expected = (2 if self.means else 1) * y_shape[-1]
        if params_shape[-1] != expected:
            raise ValueError(f"GaussianConditional expects {expected} channels of parameters "
                             f"for {y_shape[-1]} latent channels. Received: {params_shape[-1]}")

        def table(name, shape):
            return self.add_weight(
                name=name, shape=shape, dtype="int32", initializer="zeros", trainable=False
            )

        self.table_counts = table("table_counts", (SCALE_LEVELS, GAUSSIAN_SUPPORT + 1))
        self.table_offsets = table("table_offsets", (SCALE_LEVELS,))
        self.table_lengths = table("table_lengths", (SCALE_LEVELS,))
        self.scale_thresholds = table("scale_thresholds", (SCALE_LEVELS - 1,))

    def split(self, params):
        """(means, scales) of a parameter tensor; means are zeros without `means`."""
        if not self.means:
            return tf.zeros_like(params), params
        channels = params.shape[-1] // 2
        return params[..., :channels], params[..., channels:]

    @staticmethod
    def quantise(y, means):
        return tf.round(y - means) + means

    def likelihood(self, values, scales):
        """p of `values` (`y_hat - mean`) under zero-mean Gaussians of `scales`, elementwise."""
        scales = _lower_bound(scales, SCALE_MIN)
        # Both terms in the lower tail, where erfc keeps its relative accuracy.
        magnitude = tf.abs(values)
        upper = _normal_cdf((0.5 - magnitude) / scales)
        lower = _normal_cdf((-0.5 - magnitude) / scales)
        return _lower_bound(upper - lower, self.likelihood_bound)

    def call(self, inputs, training=False):
        y, params = inputs
        means, scales = self.split(params)
        if training:
            y_hat = y + keras.random.uniform(tf.shape(y), -0.5, 0.5, seed=self.seed_generator)
        else:
            y_hat = self.quantise(y, means)
        bits = information(self.likelihood(y_hat - means, scales))
        self.add_loss(bits / _pixels(y, self.pixels_per_element))
        if training and self.straight_through:
            # The value the decoder will see, with the gradient of y (to y, not to the
            # mean: d(round(y - mean) + mean)/d(mean) is 0 under the identity gradient).
            return y + tf.stop_gradient(self.quantise(y, means) - y)
        return y_hat

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    @property
    def finalised(self) -> bool:
        return bool(np.all(self.table_lengths.numpy() > 0))

    def finalise(self) -> None:
        """Computes the integer tables of the fixed scales (once: they depend on no weight,
        but are stored so that decoders read them rather than recompute them)."""
        scales = scale_table()
        counts = np.zeros((SCALE_LEVELS, GAUSSIAN_SUPPORT + 1), np.int64)
        offsets = np.zeros(SCALE_LEVELS, np.int64)
        lengths = np.zeros(SCALE_LEVELS, np.int64)
        erfc = np.vectorize(math.erfc)
        for k, scale in enumerate(scales):
            half = math.ceil(TAIL_STDS * scale)
            magnitude = np.abs(np.arange(-half, half + 1, dtype=np.float64))
            pmf = 0.5 * (erfc((magnitude - 0.5) / (scale * math.sqrt(2.0)))
                         - erfc((magnitude + 0.5) / (scale * math.sqrt(2.0))))
            escape = max(1.0 - pmf.sum(), 0.0)
            counts[k, : 2 * half + 2] = quantise_pmf(np.append(pmf, escape), TABLE_PRECISION)
            offsets[k], lengths[k] = -half, 2 * half + 1
        thresholds = np.round(np.sqrt(scales[:-1] * scales[1:]) * 2.0**OUTPUT_FRACTION)
        self.table_counts.assign(counts.astype(np.int32))
        self.table_offsets.assign(offsets.astype(np.int32))
        self.table_lengths.assign(lengths.astype(np.int32))
        self.scale_thresholds.assign(thresholds.astype(np.int32))

    def get_config(self):
        return {
            **super().get_config(),
            "pixels_per_element": self.pixels_per_element,
            "means": self.means,
            "likelihood_bound": self.likelihood_bound,
            "seed": self.seed,
            "straight_through": self.straight_through,
        }


def table_indexes(scales: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The table of each integer scale (units of 2**-OUTPUT_FRACTION): the number of
    thresholds below it, by integer comparisons (so 0 for scales at or below the first
    boundary, SCALE_LEVELS - 1 above the last)."""
    return np.searchsorted(np.asarray(thresholds, np.int64), np.asarray(scales, np.int64),
                           side="left").astype(np.uint8)
