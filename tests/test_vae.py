"""Generative autoencoders (aezoo.models.vae) and their measures (aezoo.generative): the
ELBO's terms against closed forms and NumPy, the IWAE bound, sampling, the VQ-VAE's
quantizer, EMA codebook and prior, training under strategies, and SavedModel signatures
called by a process without aezoo.  The generic checks (shapes, composition, .keras round
trip, golden parameter counts) are test_models.py's."""

import json
import warnings
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT
from PIL import Image

import aezoo
from aezoo import export, generative, training

SERVER_SCRIPT = Path(__file__).with_name("serve_without_aezoo.py")
SITE_PACKAGES = Path(tf.__file__).parents[1]


def build(name, shape, **kwargs):
    keras.utils.set_random_seed(1)
    kwargs.setdefault("latent_dim", 4)
    return aezoo.MODELS[name](input_shape=shape, **kwargs)


def images(n=32, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def tiny_vae(**kwargs):
    """A dense VAE small enough to recompute in NumPy: 6 -> 5 -> (2, 2) | 2 -> 5 -> 6."""
    return build("vae_dense", (6,), latent_dim=2, units=(5,), **kwargs)


def elu(a):
    return np.where(a > 0, a, np.expm1(np.minimum(a, 0)))


def dense(model, name, a):
    kernel, bias = model.get_layer(name).get_weights()
    return a.astype(np.float64) @ kernel + bias


def numpy_log_weights(ae, x, eps):
    """log p(x, z) - log q(z|x) of the tiny VAE, from its weights, in float64."""
    h = elu(dense(ae.encoder, "enc1_dense", x))
    mean, log_var = dense(ae.encoder, "z_mean", h), dense(ae.encoder, "z_log_var", h)
    z = mean[:, None] + np.exp(0.5 * log_var)[:, None] * eps  # (B, k, 2)
    logits = dense(ae.decoder, "output_dense", elu(dense(ae.decoder, "dec1_dense", z)))
    # Bernoulli log-likelihood from the logits: x * l - log(1 + e^l), stably.
    log_px = np.sum(x[:, None] * logits - np.logaddexp(0.0, logits), axis=-1)
    log_prior = -0.5 * np.sum(z**2 + np.log(2 * np.pi), axis=-1)
    log_q = -0.5 * np.sum(eps**2 + np.log(2 * np.pi) + log_var[:, None], axis=-1)
    return log_px + log_prior - log_q


# ------------------------------------------------------------------------ the VAE's loss


def test_iwae_bound_equals_an_independent_numpy_computation():
    ae = tiny_vae()
    # Large output biases saturate the sigmoid in float32 (it rounds to 0 or 1 there): the
    # likelihood must come from the logits, or those pixels would cost log(1e-7) = -16
    # nats instead of -40.
    kernel, bias = ae.decoder.get_layer("output_dense").get_weights()
    ae.decoder.get_layer("output_dense").set_weights([kernel, bias + [40, -40, 0, 0, 0, 0]])
    x = generative.binarized(np.random.default_rng(0).random((7, 6)), seed=3)
    x[:, :2] = [0, 1]  # the saturated pixels, on the unlikely side
    k, chunk, batch_size, seed = 12, 5, 4, 9
    bounds = generative.iwae_bound(ae, x, k=k, batch_size=batch_size, chunk=chunk, seed=seed)

    expected = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        eps = np.concatenate([
            generative.importance_draws(len(xb), min(chunk, k - first), 2, seed,
                                        start * k + first).numpy()
            for first in range(0, k, chunk)
        ], axis=1).astype(np.float64)
        log_w = numpy_log_weights(ae, xb, eps)
        top = log_w.max(axis=1, keepdims=True)
        expected.append(top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1)))
    expected = np.concatenate(expected)
    assert expected.max() < -80  # the saturated pixels do cost about 2 x 40 nats
    # float32 network against float64 NumPy, on log-weights of about -100 nats: 1e-5
    # relative is float32 round-off over a few hundred operations.
    np.testing.assert_allclose(bounds, expected, rtol=1e-5)


def test_iwae_bound_rises_with_k_towards_the_likelihood():
    ae = tiny_vae()
    x = generative.binarized(np.random.default_rng(1).random((64, 6)), seed=0)
    means = [generative.iwae_bound(ae, x, k=k, batch_size=64, seed=k).mean() for k in (1, 10, 200)]
    # E[bound_k] rises with k; for an untrained model q(z|x) is far from p(z|x), so the
    # steps (about 1 nat here) are far above the noise of a mean over 64 examples.
    assert means[0] < means[1] < means[2] < 0
    for bad, message in ((x * 255, r"in \[0, 1\] for a Bernoulli likelihood \(divide 8-bit"),
                         ((x * 255).astype(np.uint8), "must be float examples"),
                         (x[:, :5], r"shape \(5,\), but model")):
        with pytest.raises(ValueError, match=message):
            generative.iwae_bound(ae, bad, k=2)
    # A Gaussian likelihood models real-valued vectors too, and bfloat16 ones are floats.
    import ml_dtypes

    gaussian = tiny_vae(likelihood="gaussian", output_activation="linear")
    vectors = np.random.default_rng(3).standard_normal((8, 6)).astype(ml_dtypes.bfloat16)
    assert np.all(np.isfinite(generative.iwae_bound(gaussian, vectors, k=2)))


def test_importance_weighted_training_steps_down_the_numpy_iwae_loss():
    k, lr = 4, 0.05
    ae = tiny_vae(importance_samples=k)
    ae.compile(keras.optimizers.SGD(lr))
    x = generative.binarized(np.random.default_rng(2).random((16, 6)), seed=1)
    # The step's draws, replayed from a generator in the state of the model's (seed 1).
    eps = keras.random.normal([16, k, 2], seed=keras.random.SeedGenerator(1)).numpy()
    log_w = numpy_log_weights(ae, x, eps.astype(np.float64))
    top = log_w.max(axis=1, keepdims=True)
    expected = -np.mean(top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1)))
    codes = ae.encoder(x)
    mean, log_var = codes["z_mean"].numpy(), codes["z_log_var"].numpy()
    kl = kl_closed_form(mean, log_var).mean()
    z = mean + np.exp(0.5 * log_var) * eps[:, 0]  # the first draws, which report the ELBO
    log_prior_over_q = 0.5 * np.sum(eps[:, 0] ** 2 + log_var - z**2, axis=-1)
    reconstruction = -np.mean(log_w[:, 0] - log_prior_over_q)
    weights = ae.trainable_weights
    with tf.GradientTape() as tape:
        w = ae.log_importance_weights(x, eps, training=True)
        loss = -tf.reduce_mean(tf.reduce_logsumexp(w, axis=1) - np.log(k))
    gradients = tape.gradient(loss, weights)
    before = [v.numpy() for v in weights]

    logs = ae.train_on_batch(x, return_dict=True)

    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(logs["kl"], kl, rtol=1e-5)
    np.testing.assert_allclose(logs["reconstruction"], reconstruction, rtol=1e-5)
    assert all(np.abs(g).max() > 0 for g in gradients)  # encoder and decoder both learn
    for v, old, g in zip(weights, before, gradients):
        np.testing.assert_allclose(v.numpy(), old - lr * g.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"importance_samples": 0},
                                    {"importance_samples": 2, "beta": 0.5}])
def test_importance_samples_must_be_positive_and_need_the_plain_elbo(kwargs):
    with pytest.raises(ValueError, match="importance_samples|beta must be 1"):
        tiny_vae(**kwargs)


def kl_closed_form(mean, log_var):
    return 0.5 * np.sum(np.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)


def test_kl_term_equals_its_closed_form_and_a_monte_carlo_estimate():
    ae = build("vae", (12, 20, 3), latent_dim=3, filters=(4, 8))
    ae.compile()
    x = images(5, (12, 20, 3))
    codes = ae.encoder.predict(x, verbose=0)
    mean, log_var = codes["z_mean"].astype(np.float64), codes["z_log_var"].astype(np.float64)
    expected = kl_closed_form(mean, log_var)
    logs = ae.evaluate(x, x, batch_size=5, verbose=0, return_dict=True)
    np.testing.assert_allclose(logs["kl"], expected.mean(), rtol=1e-5)
    # The closed form itself, against E_q[log q(z|x) - log p(z)] over 400,000 draws: the
    # Monte Carlo mean has a standard error below 0.005 nats here.
    eps = np.random.default_rng(0).standard_normal((400_000, 3))
    z = mean[0] + np.exp(0.5 * log_var[0]) * eps
    log_q = -0.5 * np.sum(eps**2 + log_var[0], axis=1)
    log_p = -0.5 * np.sum(z**2, axis=1)
    assert abs(np.mean(log_q - log_p) - expected[0]) < 0.02


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_beta_weighs_the_kl_and_zero_leaves_the_reconstruction(beta):
    ae = build("vae", (5, 7, 1), beta=beta, filters=(4,))
    # Logits near +20: their sigmoid rounds to 1 in float32, so a loss computed from the
    # probabilities (clipped to 1e-7) would be about 8 nats per pixel instead of 10.
    kernel, bias = ae.decoder.get_layer("output_conv").get_weights()
    ae.decoder.get_layer("output_conv").set_weights([kernel, bias + 20.0])
    ae.compile()
    x = images(6, (5, 7, 1))
    logs = ae.evaluate(x, x, batch_size=6, verbose=0, return_dict=True)
    assert logs["kl"] > 0
    np.testing.assert_allclose(logs["loss"], logs["reconstruction"] + beta * logs["kl"],
                               rtol=1e-6)
    # The reconstruction term is the Bernoulli negative log-likelihood at z = mean, from the
    # logits: softplus(l) - x * l per pixel.
    head = keras.Model(ae.decoder.inputs, ae.decoder.get_layer("reconstruction").input)
    logits = head.predict(ae.encoder.predict(x, verbose=0)["z_mean"], verbose=0)
    logits = logits.astype(np.float64)
    nll = np.sum(np.logaddexp(0.0, logits) - x * logits, axis=(1, 2, 3))
    assert nll.mean() > 9 * 35  # 35 pixels, mostly saturated
    np.testing.assert_allclose(logs["reconstruction"], nll.mean(), rtol=1e-5)


def test_a_gaussian_likelihood_learns_its_variance_or_keeps_a_fixed_one():
    x = images(16, (5, 7, 1))
    learned = build("vae", (5, 7, 1), likelihood="gaussian", filters=(4,))
    fixed = build("vae", (5, 7, 1), likelihood="gaussian", variance=0.1, filters=(4,))
    for ae in (learned, fixed):
        ae.compile(optimizer=keras.optimizers.Adam(0.05))
        ae.fit(x, x, epochs=3, batch_size=16, verbose=0)
    log_var = learned.likelihood.log_var.numpy()
    assert log_var.shape == (1,) and log_var[0] < -0.05  # it shrinks from 1 towards the MSE
    assert not fixed.likelihood.weights
    logs = fixed.evaluate(x, x, batch_size=16, verbose=0, return_dict=True)
    x_hat = fixed.predict(x, verbose=0).astype(np.float64)
    nll = 0.5 * np.sum(np.log(2 * np.pi * 0.1) + (x - x_hat) ** 2 / 0.1, axis=(1, 2, 3))
    np.testing.assert_allclose(logs["reconstruction"], nll.mean(), rtol=1e-5)


def test_dynamic_binarisation_draws_new_binary_targets_at_every_step():
    ae = build("vae", (5, 7, 1), binarize=True, filters=(4,))
    x = images(64, (5, 7, 1))
    first, target = ae._binarized((tf.constant(x), tf.constant(x)))
    second, _ = ae._binarized((tf.constant(x), tf.constant(x)))
    assert set(np.unique(first)) == {0.0, 1.0}
    np.testing.assert_array_equal(first, target)  # the model reconstructs its own draw
    assert np.mean(first != second) > 0.2
    assert abs(float(np.mean(first)) - float(np.mean(x))) < 0.02  # P(1) is the pixel
    with pytest.raises(ValueError, match="`binarize`.*gaussian"):
        build("vae", (5, 7, 1), binarize=True, likelihood="gaussian")


def test_sampling_is_reproducible_per_seed_and_differs_across_seeds():
    ae = build("vae", (12, 20, 3), filters=(4, 8))
    a, b, c = ae.sample(5, seed=3), ae.sample(5, seed=3), ae.sample(5, seed=4)
    assert a.shape == (5, 12, 20, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3
    with pytest.raises(ValueError, match="`n` must be a positive integer"):
        ae.sample(0)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer"):
        ae.sample(3, batch_size=0)


def test_samples_are_the_decoder_at_standard_normal_draws_of_the_code():
    """p(z) = N(0, I): 20,000 draws of 4 numbers have per-dimension means and variances
    within 5 standard errors of 0 and 1 (chance of a false alarm < 1e-5), no correlation
    between dimensions; `sample` decodes those draws."""
    ae = build("vae", (5, 7, 1), filters=(4,))
    z = np.asarray(ae.prior_draws(20_000, 3), np.float64)
    assert z.shape == (20_000, 4)
    n = len(z)
    assert np.all(np.abs(z.mean(axis=0)) < 5 / np.sqrt(n))
    assert np.all(np.abs(z.var(axis=0) - 1) < 5 * np.sqrt(2 / n))
    correlation = np.corrcoef(z, rowvar=False)[np.triu_indices(4, 1)]
    assert np.all(np.abs(correlation) < 5 / np.sqrt(n))
    np.testing.assert_allclose(ae.sample(6, seed=3), np.asarray(ae.decoder([z[:6]])),
                               rtol=1e-5, atol=1e-6)


def test_the_model_is_deterministic_at_inference_and_samples_its_code_in_training():
    ae = build("vae", (5, 7, 1), filters=(4,))
    x = images(4, (5, 7, 1))
    codes = ae.encoder(x, training=False)
    np.testing.assert_array_equal(codes["z"], codes["z_mean"])
    np.testing.assert_array_equal(ae(x), ae(x))
    drawn = ae.encoder(x, training=True)
    assert np.abs(drawn["z"] - drawn["z_mean"]).max() > 1e-3


def test_blocks_add_a_residual_block_per_level_on_each_side_and_keep_the_contract(tmp_path):
    plain = build("vae", (12, 20, 3), filters=(4, 8))
    deep = build("vae", (12, 20, 3), filters=(4, 8), blocks=1)
    # A block of n channels: two 3x3 convolutions n -> n with biases; one after each strided
    # convolution (n = 4, 8) and one after each transposed one (the same n).
    per_block = [2 * (3 * 3 * n * n + n) for n in (4, 8)]
    assert deep.count_params() - plain.count_params() == 2 * sum(per_block)
    names = {layer.name for layer in deep.encoder.layers + deep.decoder.layers}
    assert {"down1_block1_conv1", "down2_block1_add", "up1_block1_conv2"} <= names
    x = images(3, (12, 20, 3))
    np.testing.assert_allclose(deep(x), deep.decoder(deep.encoder(x)), atol=1e-6)
    deep.save(tmp_path / "deep.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "deep.keras")(x), deep(x),
                               atol=1e-6)
    with pytest.raises(ValueError, match="`blocks`"):
        build("vae", (5, 7, 1), blocks=-1)


# ------------------------------------------------------------------------------ VQ-VAE


def test_vq_indices_are_in_range_and_codes_are_codebook_rows():
    ae = build("vq_vae", (12, 20, 3), codebook_size=16, filters=(4, 8))
    codes = ae.encoder.predict(images(3, (12, 20, 3)), verbose=0)
    assert codes["indices"].shape == (3, 3, 5) and codes["indices"].dtype == np.int32
    assert codes["indices"].min() >= 0 and codes["indices"].max() < 16
    codebook = ae.quantizer.codebook.numpy()
    np.testing.assert_array_equal(codes["z"], codebook[codes["indices"]])
    # ... and the nearest rows to the continuous codes.
    distances = np.sum((codes["z_e"][..., None, :] - codebook) ** 2, axis=-1)
    np.testing.assert_array_equal(codes["indices"], np.argmin(distances, axis=-1))


def test_straight_through_gradients_reach_the_encoder():
    ae = build("vq_vae", (5, 7, 1), codebook_size=8, filters=(4,))
    x = tf.constant(images(4, (5, 7, 1)))
    kernel = ae.encoder.get_layer("down1_conv").kernel
    with tf.GradientTape(persistent=True) as tape:
        codes = ae.encoder(x, training=True)
        # The reconstruction error alone, without the commitment loss that also pulls
        # on the encoder: only the straight-through path connects it to the encoder.
        error = tf.reduce_mean(tf.square(ae.decoder(codes["z"], training=True) - x))
        rows = tf.gather(ae.quantizer.codebook, codes["indices"])
        blocked = tf.reduce_mean(tf.square(ae.decoder(rows, training=True) - x))
    gradient = tape.gradient(error, kernel)
    assert gradient is not None and float(tf.reduce_max(tf.abs(gradient))) > 0
    assert tape.gradient(blocked, kernel) is None  # the rows themselves carry none


def test_ema_codebook_follows_the_encoder_outputs_and_reports_perplexity():
    x = images(64, (5, 7, 1))
    ae = build("vq_vae", (5, 7, 1), codebook_size=8, ema=True, filters=(4,))
    assert not ae.quantizer.codebook.trainable
    before = ae.quantizer.codebook.numpy().copy()
    ae.compile()
    history = ae.fit(x, x, epochs=2, batch_size=16, verbose=0).history
    assert set(history) == {"loss", "reconstruction", "vq_loss", "perplexity"}
    codebook = ae.quantizer.codebook.numpy()
    assert np.isfinite(codebook).all() and np.abs(codebook - before).max() > 1e-3
    # Dead codes are restarted at encoder outputs: the codes spread over the data.
    assert 1.0 < history["perplexity"][-1] <= 8.0
    np.testing.assert_allclose(history["loss"][-1],
                               history["reconstruction"][-1] + history["vq_loss"][-1], rtol=1e-5)


def test_an_ema_step_moves_each_code_to_the_decayed_mean_of_its_vectors_and_restarts_dead_ones():
    """One training call of the quantizer against the EMA update by hand (van den Oord et
    al., appendix): N_k <- d N_k + (1 - d) n_k, m_k <- d m_k + (1 - d) sum of the vectors
    nearest code k, e_k = m_k / N_k (Laplace-smoothed); a code whose count falls under 1 %
    of the mean restarts at one of the batch's vectors."""
    ae = build("vq_vae", (5, 7, 1), codebook_size=8, ema=True, filters=(4,))
    quantizer, d = ae.quantizer, 0.99
    rng = np.random.default_rng(4)
    codebook = rng.normal(0, 1, (8, 4)).astype(np.float32)
    counts = np.full(8, 10.0, np.float32)
    counts[7] = 0.0  # unused so far: dead after this step unless the batch picks it
    codebook[7] = 100.0  # (far from every vector: it is not picked)
    quantizer.codebook.assign(codebook)
    quantizer.ema_count.assign(counts)
    quantizer.ema_sum.assign(codebook * counts[:, None])
    z_e = rng.normal(0, 1, (2, 3, 4, 4)).astype(np.float32)
    quantizer(z_e, training=True)

    flat = z_e.reshape(-1, 4).astype(np.float64)
    nearest = np.argmin(((flat[:, None] - codebook) ** 2).sum(-1), axis=1)
    one_hot = np.eye(8)[nearest]
    count = d * counts + (1 - d) * one_hot.sum(0)
    total = d * codebook * counts[:, None] + (1 - d) * one_hot.T @ flat
    n = count.sum()
    smoothed = (count + 1e-5) / (n + 8e-5) * n
    updated = quantizer.codebook.numpy()
    np.testing.assert_allclose(updated[:7], (total / smoothed[:, None])[:7], rtol=1e-5,
                               atol=1e-6)
    assert 7 not in nearest
    # The dead code: a batch vector (times mean count / its smoothed count, 1 - 1e-6).
    assert np.min(np.abs(flat - updated[7]).max(axis=1)) < 1e-4


def test_the_prior_is_autoregressive_in_raster_order():
    prior = build("vq_vae", (12, 20, 3), codebook_size=8, filters=(4, 8)).quantizer.prior
    grid = np.random.default_rng(0).integers(0, 8, (1, 3, 5)).astype(np.int32)
    logits = prior(grid).numpy()
    for position in (0, 6, 14):
        changed = grid.copy().reshape(1, -1)
        changed[0, position:] = (changed[0, position:] + 1) % 8  # this one and all after
        moved = prior(changed.reshape(grid.shape)).numpy()
        row, column = divmod(position, 5)
        np.testing.assert_array_equal(moved[0, row, column], logits[0, row, column])
        if position + 1 < 15:  # the next position does see this one
            row, column = divmod(position + 1, 5)
            assert np.abs(moved[0, row, column] - logits[0, row, column]).max() > 0


def test_a_vaes_larger_sample_begins_with_the_smaller_one():
    vae = build("vae", (5, 7, 1), filters=(4,))
    np.testing.assert_array_equal(vae.sample(8, seed=3), vae.sample(20, seed=3)[:8])
    assert not np.array_equal(vae.sample(8, seed=3), vae.sample(8, seed=4))


def test_fit_prior_then_sample_reproducibly_and_keep_the_prior_in_the_keras_file(tmp_path):
    ae = build("vq_vae", (5, 7, 1), codebook_size=8, filters=(4,), prior_filters=8,
               prior_blocks=1)
    with pytest.raises(ValueError, match="prior has not been trained"):
        ae.sample(2)
    x = images(32, (5, 7, 1))
    before = [w.copy() for w in ae.quantizer.prior.get_weights()]
    autoencoder_before = [w.copy() for w in ae.decoder.get_weights()]
    history = ae.fit_prior(x, epochs=2, batch_size=16, learning_rate=0.01, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0] <= 1.1 * np.log(8)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, ae.quantizer.prior.get_weights()))
    assert all(np.array_equal(a, b) for a, b in zip(autoencoder_before, ae.decoder.get_weights()))
    assert not ae.quantizer.prior.trainable  # training the autoencoder leaves it alone
    a, b, c = ae.sample(6, seed=1), ae.sample(6, seed=1), ae.sample(6, seed=2)
    assert a.shape == (6, 5, 7, 1)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    # A larger n begins with the same examples (`--samples 16`, then 64), and each grid's
    # first index follows the prior: its frequencies in 4000 draws are the softmax of the
    # prior's logits there (it sees no earlier index), within 3 standard errors.
    np.testing.assert_array_equal(ae.sample(3, seed=1), a[:3])
    grids = np.asarray(ae.sample_indices(4000, 5))
    logits = np.asarray(ae.quantizer.prior(np.zeros((1, *grids.shape[1:]), np.int32)),
                        np.float64)[0, 0, 0]
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    frequency = np.bincount(grids[:, 0, 0], minlength=8) / len(grids)
    assert np.all(np.abs(frequency - p) < 3 * np.sqrt(p * (1 - p) / len(grids)) + 1e-3)
    ae.save(tmp_path / "vq.keras")
    loaded = keras.models.load_model(tmp_path / "vq.keras")
    assert loaded.prior_trained
    np.testing.assert_array_equal(loaded.sample(6, seed=1), a)


# ---------------------------------------------------------------- training and resuming


class Crash(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt  # as if the process were stopped here


@pytest.mark.parametrize("name,kwargs", [
    ("vae", {"filters": (4, 8), "binarize": True}),
    ("vq_vae", {"filters": (4, 8), "ema": True, "codebook_size": 8, "prior_blocks": 0}),
])
def test_training_under_bfloat16_resumes_and_keeps_float32_losses(name, kwargs, tmp_path):
    x = images(48, (12, 20, 3))
    run = dict(model_kwargs={"latent_dim": 4, **kwargs}, batch_size=16, strategy="cpu",
               mixed_precision="mixed_bfloat16", out_dir=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.train(name, x, epochs=2, callbacks=[Crash()], **run)
    ae, history = training.train(name, x, epochs=2, **run)
    assert ae.encoder.get_layer("down1_conv").compute_dtype == "bfloat16"
    assert int(ae.optimizer.iterations) == 2 * 3  # the first epoch was not redone
    terms = {"vae": ("reconstruction", "kl"), "vq_vae": ("reconstruction", "vq_loss")}[name]
    for key in ("loss", *terms):
        assert len(history[key]) == 2 and np.isfinite(history[key]).all()
    # Float32 variables (and the int32 count of the prior's epochs): none in bfloat16.
    assert {w.dtype for w in ae.get_weights()} <= {np.dtype("float32"), np.dtype("int32")}
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    assert reloaded.get_config() == ae.get_config()


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
from aezoo import training
training.split_cpu(2)
# One strategy for both models: two MirroredStrategy objects in one process reuse the
# same collective instance keys, and the second model's all-reduce fails.
strategy = training.resolve_strategy("mirrored")
x = np.random.default_rng(0).random((64, 12, 20, 3), dtype=np.float32)
results = {}
for case, name, kwargs in [("vae", "vae", {"binarize": True}),
                           ("iwae", "vae", {"binarize": True, "importance_samples": 3}),
                           ("vq_vae", "vq_vae", {"ema": True, "codebook_size": 8})]:
    ae, history = training.train(name, x, model_kwargs={"latent_dim": 4, "filters": (4, 8),
                                 **kwargs}, epochs=2, batch_size=16, strategy=strategy,
                                 verbose=0)
    results[case] = {"replicas": ae.distribute_strategy.num_replicas_in_sync,
                     "history": history}
print(json.dumps(results))
"""


def test_training_under_mirrored_strategy_on_two_cpu_devices():
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, result in results.items():
        assert result["replicas"] == 2
        history = result["history"]
        assert np.isfinite(history["loss"]).all(), name
        if name == "iwae":  # its own train step: it runs, and reports the ELBO's terms too
            assert np.isfinite(history["reconstruction"]).all()
            assert np.isfinite(history["kl"]).all()
            continue
        # The trackers' epoch means, summed over replicas as Keras's loss is, still add up.
        second = "kl" if name == "vae" else "vq_loss"
        np.testing.assert_allclose(history["loss"], np.add(history["reconstruction"],
                                   history[second]), rtol=1e-4, err_msg=name)
    assert 1.0 < results["vq_vae"]["history"]["perplexity"][-1] <= 8.0


# ------------------------------------------------------------------ SavedModel export


def png(path, shape, seed):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if shape[-1] == 1 else pixels).save(path)
    return str(path)


def test_exported_signatures_encode_decode_and_sample_as_keras_does(tmp_path):
    vae = build("vae", (12, 20, 3), filters=(4, 8))
    vq = build("vq_vae", (5, 7, 1), codebook_size=8, filters=(4,), prior_filters=8,
               prior_blocks=1)
    vq.fit_prior(images(16, (5, 7, 1)), epochs=1, verbose=0)
    cases = {"vae": (vae, (12, 20, 3)), "vq": (vq, (5, 7, 1))}
    manifest, arrays = {}, {}
    for case, (model, shape) in cases.items():
        x = images(3, shape, seed=2)
        codes = model.encoder.predict(x, verbose=0)
        arrays.update({f"{case}/x": x, f"{case}/n": np.int32(4), f"{case}/seed": np.int32(7)})
        arrays[f"{case}/z" if case == "vae" else f"{case}/indices"] = (
            codes["z"] if case == "vae" else codes["indices"])
        manifest[case] = {"dir": str(export.export_saved_model(model, tmp_path / case)),
                          "images": [png(tmp_path / f"{case}.png", shape, 0)]}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    np.savez(tmp_path / "inputs.npz", **arrays)
    command = [sys.executable, "-I", "-S", str(SERVER_SCRIPT), str(SITE_PACKAGES),
               "manifest.json", "inputs.npz", "outputs.npz", "specs.json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = dict(np.load(tmp_path / "outputs.npz"))
    specs = json.loads((tmp_path / "specs.json").read_text())
    # Float32 kernels as Keras's, possibly fused differently by Grappler: round-off only.
    close = {"rtol": 1e-5, "atol": 1e-5}

    x = arrays["vae/x"]
    codes = vae.encoder.predict(x, verbose=0)
    assert set(specs["vae"]) == {"serving_default", "encode", "decode", "sample", "score",
                                 "reconstruct_image"}
    assert specs["vae"]["sample"]["inputs"] == {"n": ["int32", []], "seed": ["int32", []]}
    np.testing.assert_allclose(outputs["vae/encode/z_mean"], codes["z_mean"], **close)
    np.testing.assert_allclose(outputs["vae/encode/z_log_var"], codes["z_log_var"], **close)
    # z, decode's input by its name, is the mean at inference (as the encoder's own z).
    assert specs["vae"]["encode"]["outputs"]["z"] == specs["vae"]["decode"]["inputs"]["z"]
    np.testing.assert_allclose(outputs["vae/encode/z"], codes["z"], **close)
    np.testing.assert_array_equal(codes["z"], codes["z_mean"])
    np.testing.assert_allclose(outputs["vae/decode/reconstruction"],
                               vae.decoder.predict(codes["z"], verbose=0), **close)
    np.testing.assert_allclose(outputs["vae/serving_default/reconstruction"],
                               vae.predict(x, verbose=0), **close)
    np.testing.assert_allclose(outputs["vae/sample/samples"], vae.sample(4, seed=7), **close)

    x = arrays["vq/x"]
    assert specs["vq"]["encode"]["outputs"] == {"indices": ["int32", [None, 3, 4]]}
    assert specs["vq"]["decode"]["inputs"] == {"indices": ["int32", [None, 3, 4]]}
    np.testing.assert_array_equal(outputs["vq/encode/indices"],
                                  vq.encoder.predict(x, verbose=0)["indices"])
    np.testing.assert_allclose(outputs["vq/decode/reconstruction"], vq.predict(x, verbose=0),
                               **close)
    # The same stateless draws from (nearly) the same logits: the same index grids.
    np.testing.assert_allclose(outputs["vq/sample/samples"], vq.sample(4, seed=7), **close)


def test_a_vq_vae_draws_the_same_first_grids_whatever_their_number():
    """`generate --samples 16`, then 64: the first 16 are the same, as a VAE's.  (With 128
    codes, tf.random.stateless_categorical's draws for 64 rows differed from those for 16
    after the 8th: each batch size drew its own.)"""
    ae = build("vq_vae", (5, 7, 1), codebook_size=128, filters=(4,), prior_filters=8,
               prior_blocks=1)
    grids = np.asarray(ae.sample_indices(64, 3))
    assert len(np.unique(grids)) > 20  # (draws of the untrained prior: near uniform)
    for n in (1, 9, 16):
        np.testing.assert_array_equal(np.asarray(ae.sample_indices(n, 3)), grids[:n])


def test_a_vq_vae_with_an_untrained_prior_is_exported_without_sample(tmp_path, capsys):
    """Its `sample` would draw from a PixelCNN that learnt nothing, where `sample()` refuses."""
    from aezoo.apps import export as app

    vq = build("vq_vae", (5, 7, 1), codebook_size=8, filters=(4,), prior_filters=8,
               prior_blocks=1)
    vq.save(tmp_path / "vq.keras")
    assert app.main([str(tmp_path / "vq.keras"), str(tmp_path / "served")]) == 0
    said = capsys.readouterr().out
    assert set(export.signature_names(tmp_path / "served" / "1")) == {
        "serving_default", "encode", "decode", "score", "reconstruct_image"}
    assert "No `sample` signature: this VQ-VAE's prior is untrained" in said


# ---------------------------------------------------------------------- the commands


def test_the_train_command_trains_a_vae_and_exports_it_with_its_sample_signature(tmp_path):
    from aezoo.apps import train

    np.save(tmp_path / "x.npy", images(32, (12, 20, 1)))
    argv = ["--model", "vae", "--arrays", str(tmp_path / "x.npy"), "--filters", "4",
            "--latent-dim", "2", "--binarize", "true", "--epochs", "2", "--batch-size", "16",
            "--out", str(tmp_path / "run")]
    assert train.main(argv) == 0
    run = aezoo.load_run(tmp_path / "run")
    assert run.model.get_config()["binarize"] is True
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert {"loss", "reconstruction", "kl"} <= set(history)
    assert "sample" in export.signature_names(tmp_path / "run" / "export" / "1")


@pytest.mark.parametrize("name", ["vae", "vq_vae"])
def test_generate_command_writes_samples_interpolations_and_traversals(
    name, tmp_path, capsys, tfds_dir
):
    from aezoo.apps import generate

    kwargs = {"filters": (4,)}
    if name == "vq_vae":
        kwargs.update(codebook_size=8, prior_filters=8, prior_blocks=1)
    ae = build(name, (28, 28, 1), **kwargs)
    ae.save(tmp_path / "model.keras")
    out = tmp_path / "generated"
    argv = ["--model", str(tmp_path / "model.keras"), "--out", str(out), "--samples", "16",
            "--rows", "2", "--steps", "4"] + (["--dimensions", "3"] if name == "vae" else [])
    assert generate.main(argv + ["--seed", "4294967296"]) == 2  # read as the options are
    assert "argument --seed: expected an integer from -2147483648 to 2147483647" in \
        capsys.readouterr().err
    if name == "vq_vae":
        assert generate.main(argv + ["--dimensions", "3"]) == 2
        assert "--dimensions applies to VAEs only" in capsys.readouterr().err
        assert generate.main(argv) == 2
        assert "prior has not been trained" in capsys.readouterr().err
        assert generate.main(argv + ["--fit-prior", "no_such_dataset"]) == 2
        assert "no_such_dataset" in capsys.readouterr().err
        assert not out.exists()  # refused before --out is made
        argv += ["--fit-prior", "mnist", "--prior-examples", "64", "--prior-epochs", "1"]
    assert generate.main(argv) == 0, capsys.readouterr().err
    written = {p.name for p in out.iterdir()}
    expected = {"samples.png", "interpolations.png", "generate.json"}
    expected |= {"traversals.png"} if name == "vae" else {"model.keras"}
    assert written == expected
    summary = json.loads((out / "generate.json").read_text())
    assert summary["samples"] == 16
    assert generate.main(argv) == 2  # never overwrites without --overwrite
    if name == "vq_vae":  # the model with its trained prior generates by itself now
        assert keras.models.load_model(out / "model.keras").prior_trained
        (out / "traversals.png").write_bytes(b"a VAE's, from an earlier run")
        assert generate.main(["--model", str(out / "model.keras"), "--out", str(out),
                              *argv[4:10], "--overwrite"]) == 0
        assert not (out / "traversals.png").exists()  # not left beside this model's
    else:
        capsys.readouterr()
        assert generate.main(argv + ["--overwrite", "--dimensions", "999"]) == 0
        latent = json.loads((out / "generate.json").read_text())["traversed_dimensions"]
        assert len(latent) == ae.encoder.outputs[0].shape[-1]  # all, and said so
        assert f"The latent has {len(latent)} dimensions" in capsys.readouterr().out


def test_interpolations_return_the_decoded_points_between_prior_draws(tmp_path):
    ae = build("vae", (12, 20, 3), filters=(4, 8))
    grid = generative.interpolations(ae, tmp_path / "i.png", rows=2, steps=3, seed=5)
    assert grid.shape == (2, 3, 12, 20, 3) and (tmp_path / "i.png").is_file()
    # Row r runs from prior draw r to draw rows + r, through their midpoint.
    z = ae.prior_draws(4, 5).numpy()
    a, b = z[:2], z[2:]
    for column, point in enumerate((a, (a + b) / 2, b)):
        np.testing.assert_allclose(grid[:, column], ae.decoder.predict(point, verbose=0),
                                   atol=1e-5)  # (float32 rounding of the mixed points)
    # A model that generates nothing is refused in words (it failed on a missing method).
    plain = build("conv", (12, 20, 3), filters=(4, 8))
    for draw in (generative.sample_grid, generative.interpolations):
        with pytest.raises(ValueError, match="is not a generative autoencoder"):
            draw(plain, tmp_path / "x.png")


def test_frechet_distance_of_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20_000, 3))
    b = rng.standard_normal((20_000, 3)) * 2.0 + [1.0, 0.0, 0.0]
    # |mu_a - mu_b|^2 + tr(I + 4I - 2 * 2I) = 1 + 3; sampling error ~0.05 at this size.
    assert abs(generative.frechet_distance(a, b) - 4.0) < 0.15
    assert generative.frechet_distance(a, a) < 1e-6


def test_frechet_distance_counts_features_constant_within_each_set():
    """A feature constant in both sets but at other values moves the means: |0 - 1|^2 a
    feature (the covariance terms are 0 for them)."""
    rng = np.random.default_rng(0)
    a, b = np.zeros((100, 4)), np.ones((100, 4))
    assert generative.frechet_distance(a, b) == pytest.approx(4.0)
    varying = rng.standard_normal((100, 3))
    mixed_a = np.hstack([varying, np.zeros((100, 1))])
    mixed_b = np.hstack([varying, np.full((100, 1), 10.0)])
    assert generative.frechet_distance(mixed_a, mixed_b) == pytest.approx(100.0)
    for bad in (np.zeros((1, 4)), np.zeros((100, 3)), np.zeros(100)):
        with pytest.raises(ValueError, match="at least 2 feature vectors of one length"):
            generative.frechet_distance(a, bad)
    with pytest.raises(ValueError, match="finite"):
        generative.frechet_distance(a, np.where(b > 0, np.nan, b))


@pytest.mark.parametrize("rank", [6, 3], ids=["full-rank", "singular"])
def test_frechet_distance_takes_the_trace_of_scipys_matrix_square_root(rank):
    from scipy import linalg

    rng = np.random.default_rng(rank)
    a = rng.standard_normal((500, rank)) @ rng.standard_normal((rank, 6))
    b = rng.standard_normal((400, rank)) @ rng.standard_normal((rank, 6)) + 0.5
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = np.eye(6) * 1e-12 * (rank < 6)  # sqrtm of a singular product: barely regular
    root = np.real(linalg.sqrtm((s_a + offset) @ (s_b + offset)))
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a + s_b - 2 * root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Matrix is singular" from the singular case
        assert generative.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
