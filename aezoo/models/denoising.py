"""Fully convolutional denoising autoencoder (a residual U-Net) for images of any size."""

from __future__ import annotations

import keras

from aezoo.models.base import (
    Autoencoder,
    check_activation,
    check_input_shape,
    check_int,
    check_ints,
    corruption_layer,
    make_autoencoder,
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
    if not isinstance(residual, bool):
        raise ValueError(f"`residual` must be True or False. Received: residual={residual!r}")
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
    h = PadToMultiple(2 ** len(filters), name="pad")(x)
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
    h = PadToMultiple(2 ** len(filters), name="pad")(x)
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
