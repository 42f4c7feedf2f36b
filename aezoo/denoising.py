"""Fully convolutional denoising autoencoder (a residual U-Net) for images of any size."""

from __future__ import annotations

import keras

from aezoo.layers import CropLike, PadToMultiple
from aezoo.model import (
    Autoencoder,
    check_activation,
    check_input_shape,
    check_int,
    check_ints,
    corruption_layer,
    make_autoencoder,
)


def denoising(
    input_shape: tuple[int | None, int | None, int] = (None, None, 1),
    latent_dim: int = 128,
    filters: tuple[int, ...] = (32, 64),
    kernel_size: int = 3,
    activation: str = "relu",
    output_activation: str = "linear",
    residual: bool = True,
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
    corrupt = corruption_layer(corruption, corruption_level)
    channels = input_shape[-1]

    def conv2d(n, name, act=activation):
        return keras.layers.Conv2D(n, kernel_size, padding="same", activation=act, name=name)

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
    h = CropLike(name="crop")([h, inputs["image"]])
    if residual:
        # The float32 subtraction keeps the clean image exact under mixed precision.
        h = keras.layers.Subtract(dtype="float32", name="residual")([inputs["image"], h])
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    decoder = keras.Model(inputs, x_hat, name="decoder")

    return make_autoencoder("denoising", kwargs, encoder, decoder, corrupt)
