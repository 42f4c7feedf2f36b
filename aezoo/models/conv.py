"""Convolutional autoencoders for images of any height and width."""

from __future__ import annotations

import keras

from aezoo.models.base import (
    Autoencoder,
    check_activation,
    check_choice,
    check_input_shape,
    check_int,
    check_ints,
    check_levels,
    corruption_layer,
    make_autoencoder,
)


def conv(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    latent_dim: int = 32,
    filters: tuple[int, ...] = (32, 64, 128),
    kernel_size: int = 3,
    activation: str = "elu",
    output_activation: str = "sigmoid",
    latent: str = "dense",
    downsample: str = "stride",
    corruption: str | None = None,
    corruption_level: float = 0.1,
    name: str = "conv_autoencoder",
) -> Autoencoder:
    """Builds a convolutional autoencoder.

    `x -> pad -> down1_conv .. downN_conv -> latent (z) -> upN_deconv .. up1_deconv ->
    output_conv -> crop -> reconstruction`

    Each level halves height and width with a stride-2 convolution (by default, rather than
    pooling, so the decoder mirrors it exactly with a stride-2 transposed convolution).  Images
    whose sizes are
    not a multiple of 2**len(filters) are zero-padded around the border inside the encoder,
    and the decoder crops the same margins off, so any height and width work.

    Args:
        input_shape: `(height, width, channels)`, channels 1 (grayscale) or 3 (RGB).
        latent_dim: size of the code: units of a dense vector when `latent="dense"`, channels
            of the bottleneck feature map when `latent="spatial"`.
        filters: channels of the encoder's levels, from the input down; the decoder mirrors
            them.  Its length is the number of halvings.
        kernel_size: size of every convolution kernel.
        activation: activation of the hidden layers.  ELU rather than ReLU by default: with
            a dense bottleneck and a sigmoid output, ReLU units died in our MNIST runs and the
            reconstruction collapsed to a black image (test MSE 0.10 instead of 0.014).
        output_activation: activation of the reconstruction ("sigmoid" for [0, 1] images).
        latent: "dense" (a vector of `latent_dim`) or "spatial" (a map of
            `latent_dim` channels at 1/2**len(filters) resolution, made by a 1x1 convolution).
        downsample: "stride" (stride-2 convolutions) or "pool" (convolution, then 2x2
            max-pooling, as in the classic Keras denoising example).
        corruption: None or a noise kind of `aezoo.noise`, applied in training only.
        corruption_level: sigma, fraction or peak of that noise.
        name: model name.

    Returns:
        An `Autoencoder` with `.encoder` (x -> z) and `.decoder` (z -> x_hat).
    """
    kwargs = dict(locals())
    height, width, channels = check_input_shape(input_shape, ranks=(3,), channels=(1, 3))
    latent_dim = check_int("latent_dim", latent_dim)
    filters = check_ints("filters", filters)
    kernel_size = check_int("kernel_size", kernel_size)
    check_activation("activation", activation)
    check_activation("output_activation", output_activation)
    check_choice("latent", latent, ("dense", "spatial"))
    check_choice("downsample", downsample, ("stride", "pool"))
    corrupt = corruption_layer(corruption, corruption_level)

    check_levels(filters, height, width)
    pad, crop, (inner_h, inner_w) = pad_and_crop(height, width, len(filters))

    def conv2d(n, name, strides=1, act=activation, layer=keras.layers.Conv2D):
        return layer(n, kernel_size, strides=strides, padding="same", activation=act, name=name)

    x = keras.Input((height, width, channels), name="x")
    h = pad(x)
    for i, n in enumerate(filters, start=1):
        if downsample == "stride":
            h = conv2d(n, f"down{i}_conv", strides=2)(h)
        else:
            h = conv2d(n, f"down{i}_conv")(h)
            h = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(h)
    if latent == "dense":
        h = keras.layers.Flatten(name="flatten")(h)
        z = keras.layers.Dense(latent_dim, name="latent")(h)
    else:
        z = keras.layers.Conv2D(latent_dim, 1, name="latent")(h)
    encoder = keras.Model(x, z, name="encoder")

    z_in = keras.Input(z.shape[1:], name="z")
    if latent == "dense":
        h = keras.layers.Dense(
            inner_h * inner_w * filters[-1], activation=activation, name="project"
        )(z_in)
        h = keras.layers.Reshape((inner_h, inner_w, filters[-1]), name="unflatten")(h)
    else:
        h = z_in
    for i, n in reversed(list(enumerate(filters, start=1))):
        h = conv2d(n, f"up{i}_deconv", strides=2, layer=keras.layers.Conv2DTranspose)(h)
    h = conv2d(channels, "output_conv", act=None)(h)
    h = crop(h)
    # float32 output even under mixed precision, so the loss is computed in float32.
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    decoder = keras.Model(z_in, x_hat, name="decoder")

    return make_autoencoder("conv", kwargs, encoder, decoder, corrupt)


def split_margin(size: int, multiple: int) -> tuple[int, int]:
    """Padding (before, after) that brings `size` up to a multiple, centred."""
    total = -size % multiple
    return total // 2, total - total // 2


def pad_and_crop(height: int, width: int, levels: int):
    """For an image model of `levels` halvings: the zero-padding that brings (height, width)
    up to a multiple of 2**levels, centred, the crop that undoes it (identities of the same
    names when nothing needs padding, so that no op runs), and the (height, width) after
    the halvings."""
    multiple = 2**levels
    margins = [split_margin(size, multiple) for size in (height, width)]
    inner = tuple((size + sum(m)) // multiple for size, m in zip((height, width), margins))
    if any(sum(pair) for pair in margins):
        return (keras.layers.ZeroPadding2D(margins, name="pad"),
                keras.layers.Cropping2D(margins, name="crop"), inner)
    return keras.layers.Identity(name="pad"), keras.layers.Identity(name="crop"), inner
