"""Generative autoencoders: the variational autoencoder (VAE) and the VQ-VAE.

`vae` / `vae_dense` (Kingma & Welling 2014; beta-VAE, Higgins et al. 2017):

`x -> encoder -> {z, z_mean, z_log_var} -> decoder -> x_hat`

The encoder ends with a `GaussianPosterior`: q(z|x) = N(mean, exp(log_var)).  In training
`z = mean + exp(log_var / 2) * eps` (the reparameterisation trick) and the layer adds
KL(q(z|x) || N(0, I)) to the model's losses; at inference `z = mean`, so `ae(x)` is
deterministic and equals `ae.decoder(ae.encoder(x))` (the decoder takes the dict's `z`).
The decoder ends with a `Likelihood` layer: "bernoulli" for binary images (its input are
logits, its output their sigmoid) or "gaussian" (a fixed variance, or one learned per
channel).  Training minimises the negative ELBO, `reconstruction + beta * kl`, in nats per
example; both terms show in the history and the progress bar.

`vq_vae` (van den Oord et al. 2017):

`x -> encoder -> {z, z_e, indices} -> decoder -> x_hat`

The encoder's continuous output `z_e` (a map of `latent_dim`-vectors) goes through a
`VectorQuantizer`: `indices` are the nearest codebook rows, `z` those rows (in training
`z_e + stop_gradient(rows - z_e)`, the straight-through estimator, so the reconstruction's
gradient reaches the encoder).  The loss is the mean squared error plus the commitment loss
(and the codebook loss, unless the codebook follows exponential moving averages of its
assigned vectors, `ema=True`).  The quantizer also holds a gated PixelCNN prior over the
index grid (`GatedPixelCNN`), trained after the autoencoder by `ae.fit_prior(x)`, as the
compression model's bottleneck holds its density, so that a `.keras` file carries it.

Both generate: `ae.sample(n, seed=...)` draws from the prior (N(0, I), or the PixelCNN) and
decodes, deterministically for a seed (stateless random ops), and their SavedModels serve
`encode`, `decode` and `sample` signatures (see `serving_endpoints`).  Likelihood bounds
(IWAE) and sample-quality measures are in `aezoo.generative`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from aezoo._keras_fixes import fix_logs, graph
from aezoo.models.base import (
    Autoencoder,
    Endpoint,
    check_activation,
    check_bool,
    check_choice,
    check_fraction,
    check_input_shape,
    check_int,
    check_ints,
    check_levels,
    check_non_negative,
    make_autoencoder,
)
from aezoo.models.conv import pad_and_crop
from aezoo.models.layers import residual_blocks

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------- builders


def vae(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    latent_dim: int = 32,
    filters: tuple[int, ...] = (32, 64),
    kernel_size: int = 3,
    activation: str = "elu",
    output_activation: str = "auto",
    blocks: int = 0,
    likelihood: str = "bernoulli",
    variance: float = 0.0,
    beta: float = 1.0,
    binarize: bool = False,
    importance_samples: int = 1,
    name: str = "vae",
) -> "VariationalAutoencoder":
    """Builds a convolutional variational autoencoder.

    `x -> pad -> down1_conv .. downN_conv -> flatten -> z_mean, z_log_var -> posterior (z) ->
    project -> upN_deconv .. up1_deconv -> output_conv -> crop -> reconstruction`

    Stride-2 convolutions down and transposed convolutions up, as the `conv` model; images
    whose sizes are not a multiple of 2**len(filters) are padded and cropped inside.  With
    `blocks`, each of those is followed by residual blocks at its resolution (the decoder's
    last ones at the image's full resolution, where a Bernoulli decoder needs the capacity
    to draw sharp strokes).

    Args:
        input_shape: `(height, width, channels)`, channels 1 or 3.
        latent_dim: size of `z`.
        filters: channels of the encoder's levels; the decoder mirrors them.
        kernel_size: size of every convolution kernel.
        activation: activation of the hidden layers.
        output_activation: the mean of p(x|z) from the decoder's last pre-activation: must
            be "sigmoid" (or "auto") with `likelihood="bernoulli"`; "auto" is "sigmoid"
            for a Gaussian too ([0, 1] images).
        blocks: residual blocks (two convolutions and a skip) after every strided
            convolution of the encoder and transposed one of the decoder; 0 for none.
        likelihood: the decoder's distribution p(x|z): "bernoulli" (binary images; the
            reconstruction is the sigmoid of logits) or "gaussian".
        variance: for "gaussian": a positive number fixes the variance of every pixel;
            0 learns one variance per channel (starting at 1).
        beta: weight of the KL term (beta-VAE); 1 is the ELBO, 0 a plain autoencoder with
            noise in its code.
        binarize: replace every training and validation batch by a Bernoulli draw with
            the pixels as probabilities, anew at each step ("dynamic binarisation", for
            `likelihood="bernoulli"`); the data stay in [0, 1] and the model's output too.
        importance_samples: k, the draws of z per example in training: 1 trains on the
            ELBO; k > 1 on the importance-weighted bound of Burda et al. (2016), tighter
            and so a better likelihood, at k decoder passes per example (beta must be 1).
        name: model name.

    Returns:
        A `VariationalAutoencoder`: `.encoder` maps `x` to `{z, z_mean, z_log_var}`,
        `.decoder` maps `z` to the mean of p(x|z).
    """
    kwargs = dict(locals())
    height, width, channels = check_input_shape(input_shape, ranks=(3,), channels=(1, 3))
    latent_dim = check_int("latent_dim", latent_dim)
    filters = check_ints("filters", filters)
    kernel_size = check_int("kernel_size", kernel_size)
    check_activation("activation", activation)
    blocks = check_int("blocks", blocks, minimum=0)
    output_activation = _check_vae_arguments(
        likelihood, variance, beta, binarize, output_activation, importance_samples, rank=3
    )

    check_levels(filters, height, width)
    pad, crop, inner = pad_and_crop(height, width, len(filters))

    def conv2d(n, name, strides=1, act=activation, layer=keras.layers.Conv2D):
        return layer(n, kernel_size, strides=strides, padding="same", activation=act, name=name)

    def blocks_at(h, n, prefix):
        return residual_blocks(h, n, blocks, prefix, conv2d, activation)

    x = keras.Input((height, width, channels), name="x")
    h = pad(x)
    for i, n in enumerate(filters, start=1):
        h = conv2d(n, f"down{i}_conv", strides=2)(h)
        h = blocks_at(h, n, f"down{i}")
    h = keras.layers.Flatten(name="flatten")(h)
    encoder = _gaussian_encoder(x, h, latent_dim)

    z = keras.Input((latent_dim,), name="z")
    h = keras.layers.Dense(
        inner[0] * inner[1] * filters[-1], activation=activation, name="project"
    )(z)
    h = keras.layers.Reshape((*inner, filters[-1]), name="unflatten")(h)
    for i, n in reversed(list(enumerate(filters, start=1))):
        h = conv2d(n, f"up{i}_deconv", strides=2, layer=keras.layers.Conv2DTranspose)(h)
        h = blocks_at(h, n, f"up{i}")
    h = conv2d(channels, "output_conv", act=None)(h)
    h = crop(h)
    decoder = _likelihood_decoder(z, h, likelihood, output_activation, variance)
    return make_autoencoder("vae", kwargs, encoder, decoder, cls=VariationalAutoencoder)


def vae_dense(
    input_shape: tuple[int, ...] = (28, 28, 1),
    latent_dim: int = 32,
    units: tuple[int, ...] = (512, 256),
    activation: str = "elu",
    output_activation: str = "auto",
    likelihood: str = "bernoulli",
    variance: float = 0.0,
    beta: float = 1.0,
    binarize: bool = False,
    importance_samples: int = 1,
    name: str = "vae_dense",
) -> "VariationalAutoencoder":
    """Builds a dense (MLP) variational autoencoder, for vectors and (flattened) images.

    `x -> flatten -> enc1_dense .. encN_dense -> z_mean, z_log_var -> posterior (z) ->
    decN_dense .. dec1_dense -> output_dense -> unflatten -> reconstruction`

    Args:
        input_shape: `(features,)` or `(height, width, channels)` (any rank; flattened).
        latent_dim: size of `z`.
        units: hidden layer sizes of the encoder; the decoder mirrors them.
        activation: activation of the hidden layers.
        output_activation: as for `vae`; "auto" is "sigmoid" for images (rank 2 or more,
            in [0, 1]) and "linear" for vectors under a Gaussian likelihood.
        likelihood: "bernoulli" or "gaussian", as for `vae`.
        variance: as for `vae`.
        beta: weight of the KL term.
        binarize: dynamic binarisation, as for `vae`.
        importance_samples: the training objective's k, as for `vae`.
        name: model name.

    Returns:
        A `VariationalAutoencoder`, as `vae`.
    """
    kwargs = dict(locals())
    input_shape = check_input_shape(input_shape, ranks=(1, 2, 3, 4))
    latent_dim = check_int("latent_dim", latent_dim)
    units = check_ints("units", units)
    check_activation("activation", activation)
    output_activation = _check_vae_arguments(
        likelihood, variance, beta, binarize, output_activation, importance_samples,
        rank=len(input_shape),
    )

    x = keras.Input(input_shape, name="x")
    h = keras.layers.Flatten(name="flatten")(x)
    for i, n in enumerate(units, start=1):
        h = keras.layers.Dense(n, activation=activation, name=f"enc{i}_dense")(h)
    encoder = _gaussian_encoder(x, h, latent_dim)

    z = keras.Input((latent_dim,), name="z")
    h = z
    for i, n in reversed(list(enumerate(units, start=1))):
        h = keras.layers.Dense(n, activation=activation, name=f"dec{i}_dense")(h)
    h = keras.layers.Dense(math.prod(input_shape), name="output_dense")(h)
    h = keras.layers.Reshape(input_shape, name="unflatten")(h)
    decoder = _likelihood_decoder(z, h, likelihood, output_activation, variance)
    return make_autoencoder("vae_dense", kwargs, encoder, decoder, cls=VariationalAutoencoder)


def vq_vae(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    latent_dim: int = 16,
    filters: tuple[int, ...] = (32, 64),
    kernel_size: int = 3,
    activation: str = "relu",
    output_activation: str = "sigmoid",
    codebook_size: int = 128,
    commitment: float = 0.25,
    ema: bool = False,
    decay: float = 0.99,
    prior_filters: int = 64,
    prior_blocks: int = 3,
    name: str = "vq_vae",
) -> "VQVAE":
    """Builds a VQ-VAE: a convolutional autoencoder with a vector-quantised code map.

    `x -> pad -> down1_conv .. downN_conv -> pre_quantize (z_e) -> quantizer -> {z, z_e,
    indices} | z -> upN_deconv .. up1_deconv -> output_conv -> crop -> reconstruction`

    The code is a grid of `(height / 2**N) x (width / 2**N)` indices into a codebook of
    `codebook_size` vectors of `latent_dim` numbers.

    Args:
        input_shape: `(height, width, channels)`, channels 1 or 3.
        latent_dim: size of each code vector (D in the paper).
        filters: channels of the encoder's levels; the decoder mirrors them.
        kernel_size: size of every convolution kernel.
        activation: activation of the hidden layers.
        output_activation: activation of the reconstruction.
        codebook_size: number of codebook vectors (K in the paper).
        commitment: weight of the commitment loss ||z_e - sg(z_q)||^2 (beta in the
            paper, 0.25 there).
        ema: update the codebook by exponential moving averages of the encoder outputs
            assigned to each code (appendix A.1), rather than by a codebook loss; codes
            that fall out of use are restarted at random encoder outputs.
        decay: the moving averages' decay, with `ema`.
        prior_filters: channels of the PixelCNN prior over the index grid.
        prior_blocks: gated residual blocks of that prior.
        name: model name.

    Returns:
        A `VQVAE`: `.encoder` maps `x` to `{z, z_e, indices}`, `.decoder` maps `z` to the
        reconstruction; `ae.fit_prior(x)` trains the prior, then `ae.sample(n)` generates.
    """
    kwargs = dict(locals())
    height, width, channels = check_input_shape(input_shape, ranks=(3,), channels=(1, 3))
    latent_dim = check_int("latent_dim", latent_dim)
    filters = check_ints("filters", filters)
    kernel_size = check_int("kernel_size", kernel_size)
    check_activation("activation", activation)
    check_activation("output_activation", output_activation)
    codebook_size = check_int("codebook_size", codebook_size, minimum=2)
    check_non_negative("commitment", commitment)
    check_bool("ema", ema)
    if not 0 < check_fraction("decay", decay) < 1:
        raise ValueError(f"`decay` must be between 0 and 1 (exclusive). Received: decay={decay!r}")
    prior_filters = check_int("prior_filters", prior_filters)
    prior_blocks = check_int("prior_blocks", prior_blocks, minimum=0)

    check_levels(filters, height, width)
    pad, crop, _ = pad_and_crop(height, width, len(filters))

    def conv2d(n, name, strides=1, act=activation, layer=keras.layers.Conv2D):
        return layer(n, kernel_size, strides=strides, padding="same", activation=act, name=name)

    x = keras.Input((height, width, channels), name="x")
    h = pad(x)
    for i, n in enumerate(filters, start=1):
        h = conv2d(n, f"down{i}_conv", strides=2)(h)
    z_e = keras.layers.Conv2D(latent_dim, 1, name="pre_quantize")(h)
    codes = VectorQuantizer(
        codebook_size, commitment=commitment, ema=ema, decay=decay,
        prior_filters=prior_filters, prior_blocks=prior_blocks, name="quantizer",
    )(z_e)
    encoder = keras.Model(x, codes, name="encoder")

    z = keras.Input(codes["z"].shape[1:], name="z")
    h = z
    for i, n in reversed(list(enumerate(filters, start=1))):
        h = conv2d(n, f"up{i}_deconv", strides=2, layer=keras.layers.Conv2DTranspose)(h)
    h = conv2d(channels, "output_conv", act=None)(h)
    h = crop(h)
    # float32 output even under mixed precision, so the loss is computed in float32.
    x_hat = keras.layers.Activation(output_activation, dtype="float32", name="reconstruction")(h)
    # A list of one input: the decoder then takes the encoder's dict as it is (picking its
    # `z` by name), with no warning from Keras about the structure.
    decoder = keras.Model([z], x_hat, name="decoder")
    return make_autoencoder("vq_vae", kwargs, encoder, decoder, cls=VQVAE)


def _check_vae_arguments(likelihood, variance, beta, binarize, output_activation,
                         importance_samples, rank):
    """Checks the VAE's own arguments; returns the resolved output activation."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    check_non_negative("variance", variance)
    check_non_negative("beta", beta)
    if check_int("importance_samples", importance_samples) > 1 and beta != 1:
        # The importance-weighted bound has no KL term to weigh.
        raise ValueError(
            "`importance_samples` > 1 trains on the importance-weighted bound, which has no "
            f"KL term for `beta` to weigh: beta must be 1. Received: beta={beta!r}"
        )
    check_bool("binarize", binarize)
    if likelihood == "bernoulli":
        if output_activation not in ("auto", "sigmoid"):
            raise ValueError(
                "A Bernoulli decoder's mean is the sigmoid of its logits: `output_activation` "
                f"must be 'sigmoid' or 'auto'. Received: output_activation={output_activation!r}"
            )
        if variance:
            raise ValueError(
                "`variance` applies to likelihood='gaussian' only. "
                f"Received: variance={variance!r}"
            )
        return "sigmoid"
    if binarize:
        raise ValueError(
            "`binarize` draws binary images for a Bernoulli likelihood; it cannot be used "
            "with likelihood='gaussian'. Received: binarize=True"
        )
    if output_activation == "auto":
        return "sigmoid" if rank > 1 else "linear"
    return check_activation("output_activation", output_activation)


def _gaussian_encoder(x, features, latent_dim: int) -> keras.Model:
    """`x -> features -> z_mean, z_log_var -> GaussianPosterior`: the encoder q(z|x)."""
    mean = keras.layers.Dense(latent_dim, name="z_mean")(features)
    log_var = keras.layers.Dense(latent_dim, name="z_log_var")(features)
    codes = GaussianPosterior(name="posterior")([mean, log_var])
    return keras.Model(x, codes, name="encoder")


def _likelihood_decoder(z, h, likelihood, output_activation, variance) -> keras.Model:
    x_hat = Likelihood(likelihood, output_activation, variance, name="reconstruction")(h)
    # A list of one input, as the VQ-VAE's decoder: it takes the encoder's dict as it is.
    return keras.Model([z], x_hat, name="decoder")


# ------------------------------------------------------------------------------ models


# The inputs of the `sample` signature of both models' SavedModels.
SAMPLE_INPUTS = {
    "n": tf.TensorSpec([], tf.int32, name="n"),
    "seed": tf.TensorSpec([], tf.int32, name="seed"),
}


def _stateless_seed(seed) -> tf.Tensor:
    """The [2] int32 seed of stateless random ops from a user's integer seed."""
    return tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])


def _check_sample_arguments(n, seed, batch_size) -> None:
    check_int("n", n)
    check_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
        -(2**31) <= seed < 2**31
    ):
        raise ValueError(f"`seed` must be a 32-bit integer. Received: seed={seed!r}")


def _reject_loss(loss) -> None:
    # The training command passes its default loss ("mse") to every model; generative
    # models define their own, so only that default (or None) is accepted.
    if loss not in (None, "mse", "mean_squared_error"):
        raise ValueError(
            "Generative models train on their own loss (the negative ELBO of their "
            "`likelihood`, or the VQ-VAE's reconstruction and commitment losses); leave "
            f"`loss` unset. Received: loss={loss!r}"
        )


@keras.saving.register_keras_serializable(package="aezoo")
class VariationalAutoencoder(Autoencoder):
    """An `Autoencoder` trained on the negative ELBO, `reconstruction + beta * kl`.

    `reconstruction` is -log p(x|z) at a draw z ~ q(z|x) and `kl` is KL(q(z|x) || N(0, I)),
    both summed over the example (nats per example) and averaged over the batch; the
    history and the progress bar show both besides `loss`.  Validation decodes the
    posterior mean (inference mode), so `val_reconstruction` is slightly optimistic; use
    `aezoo.generative.iwae_bound` for a likelihood.

    With `importance_samples` k > 1, training minimises the negative importance-weighted
    bound `-log mean_i p(x, z_i) / q(z_i|x)` over k draws z_i ~ q(z|x) instead (Burda et
    al. 2016): `loss` is that bound, and `reconstruction` (at the first draw) and `kl` are
    still the ELBO's terms, so that their sum shows how much tighter the bound is.
    Validation stays on the ELBO.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.binarize_seed = keras.random.SeedGenerator(0, name="binarize_seed")
        self.importance_seed = keras.random.SeedGenerator(1, name="importance_seed")

    @property
    def beta(self) -> float:
        return float(self.get_config()["beta"])

    @property
    def importance_samples(self) -> int:
        # Files saved before the argument existed trained on the ELBO.
        return int(self.get_config().get("importance_samples", 1))

    @property
    def latent_dim(self) -> int:
        return int(self.decoder.input_shape[-1])

    @property
    def likelihood(self) -> "Likelihood":
        """The decoder's last layer: p(x|z), with `log_prob(x, x_hat)`."""
        return self.decoder.get_layer("reconstruction")

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """`keras.Model.compile`; the loss is always the negative ELBO (`loss`: None or
        the training command's default, "mse")."""
        _reject_loss(loss)
        keras.Model.compile(self, optimizer=optimizer, loss=None, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        kl = self.added_losses()  # (the posterior layer adds the batch's mean KL)
        reconstruction = -tf.reduce_mean(self.likelihood.log_prob(y, y_pred))
        return self.replica_loss(reconstruction + self.beta * kl, y,
                                 (self.reconstruction_tracker, reconstruction),
                                 (self.kl_tracker, kl),
                                 sample_weight=sample_weight)

    def log_importance_weights(self, x, eps, training: bool = False) -> tf.Tensor:
        """`log p(x, z_i) - log q(z_i | x)` for `z_i = mean + exp(log_var / 2) * eps_i`.

        Args:
            x: a batch of examples (B, ...).
            eps: standard normal draws (B, k, latent_dim).
            training: the mode the encoder and decoder are called in.

        Returns:
            float32 (B, k): the log importance weights, in nats.
        """
        log_px, log_prior_over_q = self._log_weight_terms(x, eps, training)
        return log_px + log_prior_over_q

    def _log_weight_terms(self, x, eps, training):
        """`log p(x|z_i)` and `log p(z_i) - log q(z_i|x)`, each (B, k)."""
        codes = self.encoder(x, training=training)
        mean = tf.cast(codes["z_mean"], tf.float32)
        log_var = tf.cast(codes["z_log_var"], tf.float32)
        eps = tf.cast(eps, tf.float32)
        batch, k = tf.shape(eps)[0], tf.shape(eps)[1]
        z = mean[:, None, :] + tf.exp(0.5 * log_var)[:, None, :] * eps
        # log N(z; mean, sigma^2) with (z - mean) / sigma = eps.
        log_q = -0.5 * tf.reduce_sum(tf.square(eps) + LOG_2PI + log_var[:, None, :], axis=-1)
        log_prior = -0.5 * tf.reduce_sum(tf.square(z) + LOG_2PI, axis=-1)
        x_hat = self.decoder(tf.reshape(z, [batch * k, -1]), training=training)
        log_px = self.likelihood.log_prob(tf.repeat(x, k, axis=0), x_hat)
        return tf.reshape(log_px, [batch, k]), log_prior - log_q

    def train_step(self, data):
        data = self._binarized(data)
        if self.importance_samples == 1:
            return super().train_step(data)
        return self._importance_weighted_step(data)

    def _importance_weighted_step(self, data):
        # Keras's train_step (TensorFlow backend) with the IWAE loss; the model's own call
        # would decode one more draw per example, for nothing.
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("importance_samples > 1 does not take sample weights.")
        k = self.importance_samples
        batch = tf.shape(x)[0]
        eps = keras.random.normal([batch, k, self.latent_dim], seed=self.importance_seed)
        with tf.GradientTape() as tape:
            log_px, log_prior_over_q = self._log_weight_terms(x, eps, training=True)
            log_w = log_px + log_prior_over_q
            loss = -tf.reduce_mean(tf.reduce_logsumexp(log_w, axis=1) - math.log(k))
            # As in compute_loss: Keras sums the replicas' gradients.
            scaled = self.optimizer.scale_loss(
                loss / tf.distribute.get_strategy().num_replicas_in_sync
            )
        weights = self.trainable_weights
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, weights), weights))
        # The analytic KL the posterior layer added when the encoder ran above.
        kl = tf.add_n([tf.cast(t, tf.float32) for t in self.encoder.losses])
        size = tf.cast(batch, tf.float32)
        # Keras's own "loss" metric, as its train_step updates it.
        self._loss_tracker.update_state(loss, sample_weight=size)
        self.reconstruction_tracker.update_state(-tf.reduce_mean(log_px[:, 0]), sample_weight=size)
        self.kl_tracker.update_state(kl, sample_weight=size)
        logs = {metric.name: metric.result() for metric in self.metrics}
        return fix_logs(logs, self.distribute_strategy)

    def test_step(self, data):
        return super().test_step(self._binarized(data))

    def _binarized(self, data):
        if not self.get_config().get("binarize"):
            return data
        x, _, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        u = keras.random.uniform(tf.shape(x), seed=self.binarize_seed)
        x = tf.cast(u < tf.cast(x, tf.float32), x.dtype)
        return (x, x) if sample_weight is None else (x, x, sample_weight)

    def prior_draws(self, n, seed) -> tf.Tensor:
        """`n` draws of z ~ N(0, I), a function of (n, seed) only (stateless)."""
        return tf.random.stateless_normal([n, self.latent_dim], seed=_stateless_seed(seed))

    def sample(self, n: int, seed: int = 0, batch_size: int = 256) -> np.ndarray:
        """Generates `n` examples: the decoder's means at `n` draws from the prior.

        The same `(n, seed)` gives the same examples (in any process, and in the
        SavedModel's `sample` signature); a larger `n` begins with the same examples (the
        draws are counter-based: measured for n = 64 to 1000).
        """
        _check_sample_arguments(n, seed, batch_size)
        z = self.prior_draws(n, seed)
        return self.decoder.predict(z, batch_size=batch_size, verbose=0)

    def serving_endpoints(self, endpoints):
        """`encode` returns the posterior's `z_mean` and `z_log_var`, and `z` (the mean, as at
        inference: what `decode` takes, by its name); `sample` takes `n` and `seed` (int32
        scalars) and returns `samples`; the others are the defaults."""

        def encode(inputs):
            codes = self.encoder(inputs["x"], training=False)
            codes = {key: tf.cast(codes[key], tf.float32) for key in ("z_mean", "z_log_var")}
            return {"z": codes["z_mean"], **codes}

        def sample(inputs):
            z = self.prior_draws(inputs["n"], inputs["seed"])
            return {"samples": tf.cast(self.decoder(z, training=False), tf.float32)}

        endpoints = dict(endpoints)
        endpoints["encode"] = Endpoint(endpoints["encode"].inputs, encode)
        endpoints["sample"] = Endpoint(SAMPLE_INPUTS, sample)
        return endpoints


@keras.saving.register_keras_serializable(package="aezoo")
class VQVAE(Autoencoder):
    """An `Autoencoder` with a vector-quantised code, trained on MSE + the quantizer's losses.

    The history shows `reconstruction` (mean squared error), `vq_loss` (commitment, plus
    the codebook loss without EMA) and `perplexity` (exp of the entropy of the codes used
    in a batch: the number of codes in use, were they used equally often).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.vq_tracker = keras.metrics.Mean(name="vq_loss")

    @property
    def quantizer(self) -> "VectorQuantizer":
        return self.encoder.get_layer("quantizer")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of the index grid."""
        return tuple(self.encoder.output["indices"].shape[1:3])

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """`keras.Model.compile`; the loss is always MSE + the quantizer's losses."""
        _reject_loss(loss)
        keras.Model.compile(self, optimizer=optimizer, loss=None, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        vq = self.added_losses()
        mse = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - tf.cast(y_pred, tf.float32)))
        return self.replica_loss(mse + vq, y, (self.reconstruction_tracker, mse),
                                 (self.vq_tracker, vq),
                                 sample_weight=sample_weight)

    # ------------------------------------------------------------------ the prior

    def fit_prior(
        self,
        x,
        epochs: int = 10,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        validation_data=None,
        verbose="auto",
    ) -> keras.callbacks.History:
        """Trains the PixelCNN prior on the index grids of `x`, with the autoencoder fixed.

        Args:
            x: examples (array (N, ...) or a dataset of examples or of `(x, ...)` batches),
                encoded once to their indices.
            epochs, batch_size, learning_rate: of the prior's training (Adam).
            validation_data: examples to report `val_loss` on.
            verbose: Keras's verbosity.

        Returns:
            The Keras history: `loss` is the prior's negative log-likelihood in nats per
            code (divide by ln 2 for bits).
        """
        check_int("epochs", epochs)
        prior = self.quantizer.prior
        indices = self._indices_of(x, batch_size)
        validation = None
        if validation_data is not None:
            v = self._indices_of(validation_data, batch_size)
            validation = (v, v)
        strategy = getattr(self, "_distribute_strategy", None) or tf.distribute.get_strategy()
        prior.trainable = True
        try:
            with strategy.scope():
                grid = keras.Input(self.grid, dtype="int32", name="indices")
                model = keras.Model(grid, prior(grid), name="prior_training")
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                )
            history = model.fit(
                indices, indices, epochs=epochs, batch_size=batch_size,
                validation_data=validation, verbose=verbose,
            )
        finally:
            prior.trainable = False  # the autoencoder's own training leaves it alone
        self.quantizer.prior_epochs.assign_add(epochs)
        return history

    def _indices_of(self, x, batch_size: int) -> np.ndarray:
        if isinstance(x, tf.data.Dataset):
            x = x.map(lambda *e: e[0])
            if x.element_spec.shape.rank == len(self.input_shape) - 1:
                x = x.batch(batch_size)
        return np.asarray(self.encoder.predict(x, batch_size=batch_size, verbose=0)["indices"])

    @property
    def prior_trained(self) -> bool:
        return int(self.quantizer.prior_epochs.numpy()) > 0

    def sample_indices(self, n, seed) -> tf.Tensor:
        """`n` index grids drawn from the prior, position by position in raster order;
        a function of (n, seed) only (stateless), whose first grids are those of a smaller
        `n`: each position's draw is the Gumbel-max of its logits and counter-based
        uniforms, one row of them per grid (tf.random.stateless_categorical's draws for a
        batch depend on its size)."""
        rows, columns = self.grid
        prior = self.quantizer.prior
        positions = rows * columns
        codes = self.quantizer.codebook_size

        def body(i, grids):
            logits = tf.cast(prior(grids)[:, i // columns, i % columns, :], tf.float32)
            seed_i = tf.stack([tf.cast(seed, tf.int32), i])
            uniform = tf.random.stateless_uniform([tf.shape(grids)[0], codes], seed_i,
                                                  minval=1e-20, maxval=1.0)
            gumbel = -tf.math.log(-tf.math.log(uniform))
            drawn = tf.argmax(logits + gumbel, axis=-1, output_type=tf.int32)[:, None]
            here = tf.reshape(tf.one_hot(i, positions, dtype=tf.int32), (rows, columns))
            return i + 1, grids + here[None] * drawn[:, :, None]

        grids = tf.zeros([n, rows, columns], tf.int32)
        _, grids = tf.while_loop(
            lambda i, _: i < positions, body, (tf.constant(0), grids),
            shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, rows, columns])),
        )
        return grids

    def decode_indices(self, indices) -> tf.Tensor:
        """The decoder's reconstruction from an index grid (its codebook rows)."""
        z = tf.gather(tf.convert_to_tensor(self.quantizer.codebook), indices)
        return self.decoder(z, training=False)

    def sample(self, n: int, seed: int = 0, batch_size: int = 256) -> np.ndarray:
        """Generates `n` examples: index grids from the prior, decoded.  The same
        `(n, seed)` gives the same examples, here and in the SavedModel's `sample`; as a
        VAE's, a larger `n` begins with the same examples (see `sample_indices`).

        Raises:
            ValueError: if the prior has not been trained (`fit_prior`).
        """
        _check_sample_arguments(n, seed, batch_size)
        if not self.prior_trained:
            raise ValueError(
                "This VQ-VAE's prior has not been trained: call ae.fit_prior(x) first "
                "(or `aezoo generate --fit-prior DATASET`)."
            )
        # One graph for every call (n and seed are its tensors' values, not its shapes).
        if getattr(self, "_sample_graph", None) is None:
            self._sample_graph = graph(self.sample_indices, autograph=False)
        indices = self._sample_graph(tf.constant(n, tf.int32), tf.constant(seed, tf.int32))
        z = tf.gather(tf.convert_to_tensor(self.quantizer.codebook), indices)
        return self.decoder.predict(z, batch_size=batch_size, verbose=0)

    def serving_endpoints(self, endpoints):
        """`encode` returns the `indices` (int32 grids); `decode` takes them; `sample`
        takes `n` and `seed` (int32 scalars) and returns `samples`, once the prior is
        trained (`fit_prior`): before, it would serve noise where `sample()` refuses."""

        def encode(inputs):
            return {"indices": self.encoder(inputs["x"], training=False)["indices"]}

        def decode(inputs):
            x_hat = self.decode_indices(inputs["indices"])
            return {"reconstruction": tf.cast(x_hat, tf.float32)}

        def sample(inputs):
            x_hat = self.decode_indices(self.sample_indices(inputs["n"], inputs["seed"]))
            return {"samples": tf.cast(x_hat, tf.float32)}

        endpoints = dict(endpoints)
        grid = tf.TensorSpec((None, *self.grid), tf.int32, name="indices")
        endpoints["encode"] = Endpoint(endpoints["encode"].inputs, encode)
        endpoints["decode"] = Endpoint({"indices": grid}, decode)
        if self.prior_trained:
            endpoints["sample"] = Endpoint(SAMPLE_INPUTS, sample)
        return endpoints


# ------------------------------------------------------------------------------ layers


@keras.saving.register_keras_serializable(package="aezoo")
class GaussianPosterior(keras.layers.Layer):
    """q(z|x) = N(mean, exp(log_var)): draws z in training, its mean at inference.

    Takes `[mean, log_var]`; returns `{"z", "z_mean", "z_log_var"}` (float32 even under
    mixed precision; "z" sorts first, so that even Keras's symbolic call of the decoder on
    the whole dict, which takes its values in key order, picks it).  Adds the batch's mean
    KL(q(z|x) || N(0, I)), in nats, to the model's losses:
    `0.5 * sum(exp(log_var) + mean**2 - 1 - log_var)` over the latent.

    Args:
        seed: seed of the training noise.
    """

    def __init__(self, seed: int | None = None, **kwargs):
        kwargs["dtype"] = "float32"  # exp(log_var) and the KL in float32
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        mean, log_var = (tf.cast(t, tf.float32) for t in inputs)
        kl = 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=-1)
        self.add_loss(tf.reduce_mean(kl))
        z = mean
        if training:
            eps = keras.random.normal(tf.shape(mean), seed=self.seed_generator)
            z = mean + tf.exp(0.5 * log_var) * eps
        return {"z": z, "z_mean": mean, "z_log_var": log_var}

    def compute_output_spec(self, inputs, training=False):
        # Three tensors, not one thrice: the functional graph tells outputs apart by identity.
        return {key: keras.KerasTensor(inputs[0].shape, dtype="float32")
                for key in ("z", "z_mean", "z_log_var")}

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="aezoo")
class Likelihood(keras.layers.Layer):
    """The decoder's last layer: the mean of p(x|z) from the pre-activation `h`, and
    `log_prob(x, mean)`.

    * "bernoulli": the mean is `sigmoid(h)` (the logits `h` are p's natural parameter);
      `log_prob` is `-binary_crossentropy(x, mean)`, which Keras computes from the
      logits behind the sigmoid (it finds them on the sigmoid's output), so it is exact
      where the sigmoid rounds to 0 or 1.
    * "gaussian": the mean is `activation(h)`; the variance is `variance`, or learned per
      channel (a float32 weight `log_var`, starting at 0) when `variance` is 0.

    Float32 even under mixed precision, so the loss is computed in float32.

    Args:
        likelihood: "bernoulli" or "gaussian".
        activation: the mean's activation ("sigmoid" for Bernoulli).
        variance: the fixed Gaussian variance, or 0 to learn it.
    """

    def __init__(self, likelihood: str, activation: str = "sigmoid", variance: float = 0.0,
                 **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.activation = activation
        self.variance = float(variance)

    def build(self, input_shape):
        if self.likelihood == "gaussian" and not self.variance:
            self.log_var = self.add_weight(
                name="log_var", shape=(input_shape[-1],), initializer="zeros"
            )

    def call(self, h):
        if self.likelihood == "bernoulli":
            # keras.activations.sigmoid marks its output with the logits (for Keras's
            # cross-entropies); tf.sigmoid does not, outside graphs.
            return keras.activations.sigmoid(h)
        return keras.activations.get(self.activation)(h)

    def log_var_value(self) -> tf.Tensor:
        if self.variance:
            return tf.constant(math.log(self.variance), tf.float32)
        return tf.convert_to_tensor(self.log_var)

    def log_prob(self, x, mean) -> tf.Tensor:
        """log p(x | mean), summed over all but the batch axis (nats per example).

        For "bernoulli", `mean` must be this layer's output (the decoder's), whose logits
        Keras recovers; `x` may be any value in [0, 1] (binary for a true likelihood).
        """
        x = tf.cast(x, tf.float32)
        if self.likelihood == "bernoulli":
            log_p = -keras.ops.binary_crossentropy(x, mean)
        else:
            log_var = self.log_var_value()
            log_p = -0.5 * (LOG_2PI + log_var + tf.square(x - mean) * tf.exp(-log_var))
        return tf.reduce_sum(tf.reshape(log_p, [tf.shape(log_p)[0], -1]), axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "likelihood": self.likelihood,
            "activation": self.activation,
            "variance": self.variance,
        }


@keras.saving.register_keras_serializable(package="aezoo")
class VectorQuantizer(keras.layers.Layer):
    """Nearest-neighbour quantisation of vectors against a codebook, with the prior over
    its index grids.

    Takes `z_e` (batch, rows, columns, D); returns `{"z", "z_e", "indices"}`: `indices`
    (int32, (batch, rows, columns)) of the nearest codebook rows (Euclidean), `z` those
    rows, in training `z_e + stop_gradient(rows - z_e)` (straight-through: the gradient
    reaching `z` passes to `z_e` unchanged).  Adds `commitment * mean((z_e - sg(rows))**2)`
    to the model's losses, and without `ema` the codebook loss `mean((sg(z_e) - rows)**2)`.

    With `ema`, the codebook is not trained by gradients: in each training step every code
    moves to the moving average of the vectors assigned to it (Laplace-smoothed counts, as
    in Sonnet's VectorQuantizerEMA), and codes whose average count falls below 1% of the
    mean are restarted at random vectors of the batch (so none stays unused; this also
    seeds the codebook from the data in the first step).  Under MirroredStrategy the
    averages are the replicas' mean, and a restarted code the mean of the replicas' picks.

    Tracks `perplexity`, exp(entropy of the codes' frequencies in the batch).  Holds a
    `GatedPixelCNN` over the index grids (`prior`, not trainable with the autoencoder) and
    `prior_epochs`, the epochs it has been trained for.

    Args:
        codebook_size: number of codes K.
        commitment: weight of the commitment loss.
        ema: moving-average codebook updates.
        decay: their decay.
        prior_filters, prior_blocks: of the PixelCNN prior.
        seed: seed of the restarts' picks.
    """

    def __init__(
        self,
        codebook_size: int,
        commitment: float = 0.25,
        ema: bool = False,
        decay: float = 0.99,
        prior_filters: int = 64,
        prior_blocks: int = 3,
        seed: int | None = None,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"  # distances and moving averages in float32
        super().__init__(**kwargs)
        self.codebook_size = int(codebook_size)
        self.commitment = float(commitment)
        self.ema = bool(ema)
        self.decay = float(decay)
        self.prior_filters, self.prior_blocks = int(prior_filters), int(prior_blocks)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.perplexity_tracker = keras.metrics.Mean(name="perplexity")
        self.prior = GatedPixelCNN(
            codebook_size, filters=prior_filters, blocks=prior_blocks, name="prior"
        )
        self.prior.trainable = False

    def build(self, input_shape):
        dim = input_shape[-1]
        limit = 1.0 / self.codebook_size  # small codes: the encoder's outputs pick them up
        self.codebook = self.add_weight(
            name="codebook",
            shape=(self.codebook_size, dim),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            trainable=not self.ema,
            aggregation="mean" if self.ema else "none",
        )
        if self.ema:
            def average(name, shape):
                return self.add_weight(name=name, shape=shape, initializer="zeros",
                                       trainable=False, aggregation="mean")

            self.ema_count = average("ema_count", (self.codebook_size,))
            self.ema_sum = average("ema_sum", (self.codebook_size, dim))
        self.prior_epochs = self.add_weight(
            name="prior_epochs", shape=(), dtype="int32", initializer="zeros",
            trainable=False,
        )
        self.prior.build((None, *input_shape[1:3]))

    def call(self, z_e, training=None):
        z_e = tf.cast(z_e, tf.float32)
        shape = tf.shape(z_e)
        flat = tf.reshape(z_e, [-1, z_e.shape[-1]])
        codebook = tf.convert_to_tensor(self.codebook)
        distances = (
            tf.reduce_sum(tf.square(flat), axis=1, keepdims=True)
            - 2.0 * tf.matmul(flat, codebook, transpose_b=True)
            + tf.reduce_sum(tf.square(codebook), axis=1)[None, :]
        )
        indices = tf.argmin(distances, axis=1, output_type=tf.int32)
        rows = tf.gather(codebook, indices)

        loss = self.commitment * tf.reduce_mean(tf.square(flat - tf.stop_gradient(rows)))
        if not self.ema:
            loss += tf.reduce_mean(tf.square(tf.stop_gradient(flat) - rows))
        self.add_loss(loss)

        one_hot = tf.one_hot(indices, self.codebook_size)
        # In real calls (fit, evaluate, predict, serving), not symbolic ones: evaluate
        # reports it as val_perplexity; elsewhere it is a running count nobody reads.
        if training is not None:
            frequencies = tf.reduce_mean(one_hot, axis=0)
            entropy = -tf.reduce_sum(frequencies * tf.math.log(frequencies + 1e-10))
            self.perplexity_tracker.update_state(
                tf.exp(entropy), sample_weight=tf.cast(shape[0], tf.float32)
            )
        if training and self.ema:
            self._update_codebook(flat, one_hot)

        rows = tf.reshape(rows, shape)
        z = z_e + tf.stop_gradient(rows - z_e) if training else rows
        return {"z": z, "z_e": z_e, "indices": tf.reshape(indices, shape[:3])}

    def _update_codebook(self, flat, one_hot):
        d = self.decay
        count = d * self.ema_count + (1 - d) * tf.reduce_sum(one_hot, axis=0)
        total = d * self.ema_sum + (1 - d) * tf.matmul(one_hot, flat, transpose_a=True)
        mean_count = tf.reduce_sum(count) / self.codebook_size
        dead = count < 0.01 * mean_count
        picks = tf.cast(
            keras.random.uniform((self.codebook_size,), seed=self.seed_generator)
            * tf.cast(tf.shape(flat)[0], tf.float32),
            tf.int32,
        )
        count = tf.where(dead, mean_count, count)
        total = tf.where(dead[:, None], tf.gather(flat, picks) * mean_count, total)
        # Laplace smoothing keeps the division away from zero for rarely used codes.
        n = tf.reduce_sum(count)
        smoothed = (count + 1e-5) / (n + self.codebook_size * 1e-5) * n
        self.ema_count.assign(count)
        self.ema_sum.assign(total)
        self.codebook.assign(total / smoothed[:, None])

    def compute_output_spec(self, z_e, training=None):
        shape = z_e.shape
        return {
            "z": keras.KerasTensor(shape, dtype="float32"),
            "z_e": keras.KerasTensor(shape, dtype="float32"),
            "indices": keras.KerasTensor(shape[:3], dtype="int32"),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "codebook_size": self.codebook_size,
            "commitment": self.commitment,
            "ema": self.ema,
            "decay": self.decay,
            "prior_filters": self.prior_filters,
            "prior_blocks": self.prior_blocks,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="aezoo")
class MaskedConv2D(keras.layers.Conv2D):
    """A "same" convolution that sees only pixels before the centre in raster order
    (mask "A", for the first layer of a PixelCNN) or those and the centre (mask "B")."""

    def __init__(self, filters: int, kernel_size: int, mask: str = "B", **kwargs):
        kwargs["padding"] = "same"
        super().__init__(filters, kernel_size, **kwargs)
        self.mask = check_choice("mask", mask, ("A", "B"))

    def build(self, input_shape):
        super().build(input_shape)
        height, width = self.kernel_size
        mask = np.zeros((height, width, 1, 1), np.float32)
        mask[: height // 2] = 1.0
        mask[height // 2, : width // 2 + (self.mask == "B")] = 1.0
        self._mask_value = mask

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel * tf.constant(self._mask_value, kernel.dtype))

    def get_config(self):
        config = super().get_config()
        config.pop("padding", None)
        return {**config, "mask": self.mask}


@keras.saving.register_keras_serializable(package="aezoo")
class GatedPixelCNN(keras.layers.Layer):
    """An autoregressive prior over grids of code indices: logits of each position's
    index given the positions before it in raster order (PixelCNN, van den Oord et al.
    2016).

    `indices -> embedding -> input_conv (mask A, 5x5) -> blocks of [masked 3x3 conv to
    2F channels, tanh(a) * sigmoid(b) (the gated activation unit), 1x1 conv, + residual]
    -> relu -> logits (1x1)`

    A single masked stack, so it has PixelCNN's blind spot (a wedge above-right of each
    position that it cannot see); on the small grids of a VQ-VAE (7x7 for MNIST) that costs
    little, and it keeps the layer short.

    Args:
        codebook_size: number of codes (the logits' size).
        filters: channels F of the hidden layers.
        blocks: number of gated residual blocks.
    """

    def __init__(self, codebook_size: int, filters: int = 64, blocks: int = 3, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.codebook_size, self.filters = int(codebook_size), int(filters)
        self.blocks = int(blocks)
        f = self.filters
        self.embedding = keras.layers.Embedding(codebook_size, f, dtype="float32",
                                                name="embedding")
        self.input_conv = MaskedConv2D(f, 5, mask="A", dtype="float32", name="input_conv")
        self.gate_convs = [
            MaskedConv2D(2 * f, 3, mask="B", dtype="float32", name=f"block{i}_gate_conv")
            for i in range(1, self.blocks + 1)
        ]
        self.mix_convs = [
            keras.layers.Conv2D(f, 1, dtype="float32", name=f"block{i}_mix_conv")
            for i in range(1, self.blocks + 1)
        ]
        self.logits_conv = keras.layers.Conv2D(codebook_size, 1, dtype="float32",
                                               name="logits_conv")

    def build(self, input_shape):
        features = (*input_shape, self.filters)
        self.embedding.build(input_shape)
        self.input_conv.build(features)
        for gate, mix in zip(self.gate_convs, self.mix_convs):
            gate.build(features)
            mix.build((*input_shape, self.filters))
        self.logits_conv.build(features)

    def call(self, indices):
        h = self.input_conv(self.embedding(indices))
        for gate, mix in zip(self.gate_convs, self.mix_convs):
            a, b = tf.split(gate(h), 2, axis=-1)
            h = h + mix(tf.tanh(a) * tf.sigmoid(b))
        return self.logits_conv(tf.nn.relu(h))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.codebook_size)

    def get_config(self):
        return {
            **super().get_config(),
            "codebook_size": self.codebook_size,
            "filters": self.filters,
            "blocks": self.blocks,
        }
