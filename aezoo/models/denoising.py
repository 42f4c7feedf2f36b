"""Fully convolutional denoising autoencoder (a residual U-Net) for images of any size."""

from __future__ import annotations

import keras
import numpy as np

from aezoo.models.base import (
    Autoencoder,
    arguments_but_widths,
    check_activation,
    check_bool,
    check_input_shape,
    check_int,
    check_ints,
    corruption_layer,
    make_autoencoder,
    split_among_copies,
    widened_channels,
)
from aezoo.models.layers import CropLike, PadToMultiple, residual_blocks


def denoising(
    input_shape: tuple[int | None, int | None, int] = (None, None, 1),
    latent_dim: int = 128,
    filters: tuple[int, ...] = (32, 64),
    kernel_size: int = 3,
    activation: str = "relu",
    output_activation: str = "linear",
    residual: bool = True,
    blocks: int = 0,
    corruption: str | None = "gaussian",
    corruption_level: float = 0.1,
    name: str = "denoising_autoencoder",
) -> Autoencoder:
    """Builds a fully convolutional denoising autoencoder (U-Net with residual output).

    `x -> [corruption] -> encoder -> {latent, skip1..skipN, image} -> decoder -> x_hat`

    The encoder pads the image to a multiple of 2**len(filters), then runs two convolutions
    and a 2x2 max-pool per level; the outputs of each level before pooling are the skips.  The
    decoder upsamples with stride-2 transposed convolutions, concatenates the matching skip,
    crops back to the size of the `image` the encoder passed on, and (with `residual=True`)
    predicts the noise and subtracts it from that image (residual learning, as in DnCNN), which
    trains faster and better than predicting the clean image.  No layer depends on the image
    size, so one model denoises patches and full photos alike.

    The default widths learn the most per CPU second among the variants that
    `benchmarks/denoise_architectures.py` compares (a third level, or a narrower first level
    with three or four levels, did no better for the same CPU time on Train400).

    The corruption layer (Gaussian noise of sigma 0.1 by default) is active only in training,
    so `model.fit(x_clean, x_clean)` trains a denoiser; pass `corruption=None` when the data
    pipeline supplies `(noisy, clean)` pairs instead.

    Args:
        input_shape: `(height, width, channels)`; height and width may be None (any size).
        latent_dim: channels of the bottleneck feature map (the latent code).
        filters: channels of the encoder's levels; the decoder mirrors them.
        kernel_size: size of every convolution kernel.
        activation: activation of the hidden layers.
        output_activation: activation applied to the reconstruction ("linear": denoised
            images may overshoot [0, 1] slightly, clip when saving).
        residual: predict the noise and subtract it from the input.
        blocks: 0 for the small U-Net above (two convolutions per level, max-pooling,
            concatenated skips).  With 1 or more, each level is that many residual blocks
            (convolution, activation, convolution, plus the block's input), a level goes
            down by a stride-2 2x2 convolution and up by a stride-2 2x2 transposed
            convolution, and skips are added rather than concatenated, as in DRUNet (Zhang
            et al., TPAMI 2021), without its noise-level input; cheaper per pixel than
            concatenation, so a deeper and wider network fits the same CPU time.
        corruption: None or a noise kind of `aezoo.noise`, applied in training only.
        corruption_level: sigma, fraction or peak of that noise.
        name: model name.

    Returns:
        An `Autoencoder`; `.encoder` maps `x` to a dict of `latent`, `skip1..skipN` and
        `image`, and `.decoder` maps that dict to `x_hat`.
    """
    kwargs = dict(locals())
    input_shape = check_input_shape(input_shape, ranks=(3,), dynamic=True, channels=(1, 3))
    latent_dim = check_int("latent_dim", latent_dim)
    filters = check_ints("filters", filters)
    kernel_size = check_int("kernel_size", kernel_size)
    check_activation("activation", activation)
    check_activation("output_activation", output_activation)
    check_bool("residual", residual)
    blocks = check_int("blocks", blocks, minimum=0)
    corrupt = corruption_layer(corruption, corruption_level)
    channels = input_shape[-1]

    def conv2d(n, name, act=activation):
        return keras.layers.Conv2D(n, kernel_size, padding="same", activation=act, name=name)

    if blocks:
        encoder, inputs, h = _residual_unet(
            input_shape, latent_dim, filters, kernel_size, activation, blocks
        )
        return _finish(kwargs, encoder, inputs, h, residual, output_activation, corrupt)

    x = keras.Input(input_shape, name="x")
    # Mirrored, not zeros: a clean black band beside a noisy photo is an edge no training
    # patch had (their sides are multiples of the pooling), and pooling spreads it.
    h = PadToMultiple(2 ** len(filters), mode="reflect", name="pad")(x)
    features = {}
    for i, n in enumerate(filters, start=1):
        h = conv2d(n, f"down{i}_conv1")(h)
        h = conv2d(n, f"down{i}_conv2")(h)
        features[f"skip{i}"] = h
        h = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(h)
    h = conv2d(latent_dim, "latent_conv")(h)
    features["latent"] = conv2d(latent_dim, "latent")(h)
    features["image"] = x
    encoder = keras.Model(x, features, name="encoder")

    inputs = {
        key: keras.Input(tensor.shape[1:], name=key) for key, tensor in features.items()
    }
    h = inputs["latent"]
    for i, n in reversed(list(enumerate(filters, start=1))):
        h = keras.layers.Conv2DTranspose(
            n, 2, strides=2, activation=activation, name=f"up{i}_deconv"
        )(h)
        h = keras.layers.Concatenate(name=f"up{i}_concat")([h, inputs[f"skip{i}"]])
        h = conv2d(n, f"up{i}_conv1")(h)
        h = conv2d(n, f"up{i}_conv2")(h)
    h = conv2d(channels, "output_conv", act=None)(h)
    return _finish(kwargs, encoder, inputs, h, residual, output_activation, corrupt)


def _residual_unet(input_shape, latent_dim, filters, kernel_size, activation, blocks):
    """The encoder, and the decoder's inputs and output convolution, of `blocks` > 0."""

    def conv2d(n, name, act=None, size=kernel_size, strides=1, layer=keras.layers.Conv2D):
        return layer(n, size, strides=strides, padding="same", activation=act, name=name)

    def blocks_at(h, n, prefix):
        return residual_blocks(h, n, blocks, prefix, conv2d, activation)

    x = keras.Input(input_shape, name="x")
    h = PadToMultiple(2 ** len(filters), mode="reflect", name="pad")(x)
    h = conv2d(filters[0], "head_conv")(h)
    features = {}
    for i, n in enumerate(filters, start=1):
        h = blocks_at(h, n, f"down{i}")
        features[f"skip{i}"] = h
        wider = filters[i] if i < len(filters) else latent_dim
        h = conv2d(wider, f"down{i}_conv", size=2, strides=2)(h)
    features["latent"] = blocks_at(h, latent_dim, "latent")
    features["image"] = x
    encoder = keras.Model(x, features, name="encoder")

    inputs = {key: keras.Input(t.shape[1:], name=key) for key, t in features.items()}
    h = inputs["latent"]
    for i in range(len(filters), 0, -1):
        h = conv2d(filters[i - 1], f"up{i}_deconv", size=2, strides=2,
                   layer=keras.layers.Conv2DTranspose)(h)
        h = keras.layers.Add(name=f"up{i}_add")([h, inputs[f"skip{i}"]])
        h = blocks_at(h, filters[i - 1], f"up{i}")
    h = conv2d(input_shape[-1], "output_conv")(h)
    return encoder, inputs, h


def _finish(kwargs, encoder, inputs, h, residual, output_activation, corrupt) -> Autoencoder:
    """The decoder's last layers on its output convolution `h`: crop to the image,
    subtract (residual), activation; then the whole autoencoder."""
    h = CropLike(name="crop")([h, inputs["image"]])
    if residual:
        # The float32 subtraction keeps the clean image exact under mixed precision.
        h = keras.layers.Subtract(dtype="float32", name="residual")([inputs["image"], h])
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    decoder = keras.Model(inputs, x_hat, name="decoder")
    return make_autoencoder("denoising", kwargs, encoder, decoder, corrupt)


def widen(source: Autoencoder, target: Autoencoder, seed: int = 0) -> None:
    """Sets `target`'s weights to `source`'s, where `target` is the same U-Net (`blocks=0`)
    with wider levels (`filters`) and bottleneck (`latent_dim`), so that `target` denoises
    exactly as `source` does (Net2WiderNet: Chen, Goodfellow, Shlens, ICLR 2016).  A
    fine-tuning then starts from the narrower model's quality instead of from scratch, so a
    preset can grow over several training rounds, each of which can only add to it.

    Each convolution's new output channels copy channels of its own (the first `n` keep
    theirs; the rest copy channels drawn at random); every layer that reads those channels
    splits each one's weights among its copies at random proportions summing to one, so that
    the copies' gradients differ and training moves them apart.  ReLU, max-pooling and
    concatenation act on each channel alone, so the copies carry the same values through
    them, and the sum of the next layer is unchanged.

    Raises ValueError if the two models differ in anything but these widths, a width
    shrinks, or the models are residual-block U-Nets (`blocks` > 0, whose additive skips
    would need one copy pattern through a whole level: not supported).
    """
    old, new = source.get_config(), target.get_config()
    old_widths = (*old["filters"], old["latent_dim"])
    new_widths = (*new["filters"], new["latent_dim"])
    if (old.get("model") != "denoising" or arguments_but_widths(source) != arguments_but_widths(target)
            or len(old_widths) != len(new_widths)
            or any(n < o for o, n in zip(old_widths, new_widths))):
        raise ValueError(f"Cannot widen a denoising model of filters {tuple(old['filters'])} "
                         f"and latent_dim {old['latent_dim']} to {tuple(new['filters'])} and "
                         f"{new['latent_dim']}: only the widths may grow, all else must be the "
                         "same.")
    if old["blocks"]:
        raise ValueError("Only the plain U-Net (blocks=0) can be widened.")
    rng = np.random.default_rng(seed)
    layers = {layer.name: layer for part in (source.encoder, source.decoder)
              for layer in part.layers if layer.weights}
    weights = {name: [np.asarray(w, np.float64) for w in layer.get_weights()]
               for name, layer in layers.items()}
    # Kernel axes of (out, in): Conv2D kernels are (h, w, in, out), transposed ones
    # (h, w, out, in).
    axes = {name: (2, 3) if name.endswith("_deconv") else (3, 2) for name in weights}

    def grow(producer, readers, n, wide):
        """Widens `producer`'s n output channels to `wide`; `readers` are (layer, offset)
        pairs: each reads those channels at `offset` of its input channels."""
        copies, shares = widened_channels(rng, n, wide)
        kernel, bias = weights[producer]
        weights[producer] = [np.take(kernel, copies, axis=axes[producer][0]), bias[copies]]
        split = split_among_copies(rng, copies, shares, n)
        for reader, offset in readers:
            kernel, bias = weights[reader]
            into = axes[reader][1]
            total = kernel.shape[into]
            index = np.concatenate([np.arange(offset), offset + copies,
                                    np.arange(offset + n, total)])
            scale = np.concatenate([np.ones(offset), split, np.ones(total - offset - n)])
            shape = [1] * kernel.ndim
            shape[into] = len(index)
            weights[reader] = [np.take(kernel, index, axis=into) * scale.reshape(shape), bias]

    count = len(old["filters"])
    for level in range(1, count + 1):
        n, wide = old["filters"][level - 1], new["filters"][level - 1]
        below = f"down{level + 1}_conv1" if level < count else "latent_conv"
        above = f"up{level - 1}_deconv" if level > 1 else "output_conv"
        grow(f"down{level}_conv1", [(f"down{level}_conv2", 0)], n, wide)
        # The skip: read by the level below and, after the up-sampled channels (which this
        # loop has not widened yet: they are n wide), by the level's first up convolution.
        grow(f"down{level}_conv2", [(below, 0), (f"up{level}_conv1", n)], n, wide)
        grow(f"up{level}_deconv", [(f"up{level}_conv1", 0)], n, wide)
        grow(f"up{level}_conv1", [(f"up{level}_conv2", 0)], n, wide)
        grow(f"up{level}_conv2", [(above, 0)], n, wide)
    n, wide = old["latent_dim"], new["latent_dim"]
    grow("latent_conv", [("latent", 0)], n, wide)
    grow("latent", [(f"up{count}_deconv", 0)], n, wide)
    for part in (target.encoder, target.decoder):
        for layer in part.layers:
            if layer.name in weights:
                layer.set_weights([w.astype(v.dtype)
                                   for w, v in zip(weights[layer.name], layer.weights)])
