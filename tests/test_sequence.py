"""The sequence family: what the shared helper of test_models.py does not see."""

import keras
import numpy as np
import pytest

import aezoo


def sines(n, length, seed=0):
    """One-channel sine waves of random phase and amplitude, shape (n, length, 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    amplitude = rng.uniform(0.5, 1.0, (n, 1))
    return (amplitude * np.sin(2 * np.pi * 3 * t + phase))[..., None].astype(np.float32)


@pytest.mark.parametrize("name", ["sequence", "sequence_lstm"])
def test_a_short_training_learns_sine_waves_of_odd_length(name):
    keras.utils.set_random_seed(0)
    x = sines(256, 45)
    ae = aezoo.MODELS[name](input_shape=(45, 1), latent_dim=4)
    ae.compile(optimizer=keras.optimizers.Adam(3e-3))
    ae.fit(x, x, epochs=15, batch_size=32, verbose=0)
    held_out = sines(64, 45, seed=1)
    mse = float(np.mean((ae.predict(held_out, verbose=0) - held_out) ** 2))
    # Predicting zero (the mean signal) costs the signals' power, E[a^2]/2 ~ 0.29; a model
    # that learned the two numbers (phase, amplitude) of a sine does far better.  A factor
    # of 5 leaves room for the run-to-run spread of a 15-epoch training.
    power = float(np.mean(held_out**2))
    assert mse < power / 5


def test_mask_corruption_drops_whole_time_steps():
    ae = aezoo.MODELS["sequence"](
        input_shape=(50, 3), latent_dim=4, corruption="mask", corruption_level=0.5
    )
    x = np.ones((4, 50, 3), dtype=np.float32)
    masked = np.asarray(ae.get_layer("corruption")(x, training=True))
    dropped = masked == 0
    # Each time step loses all its channels or none of them.
    assert np.array_equal(dropped.all(axis=-1), dropped.any(axis=-1))
    # 200 time steps at p = 0.5: the fraction dropped is 0.5 +- 0.035 (1 sigma).
    assert 0.35 < dropped.all(axis=-1).mean() < 0.65


def test_the_code_is_a_vector_of_latent_dim_numbers():
    for name in ("sequence", "sequence_lstm"):
        ae = aezoo.MODELS[name](input_shape=(31, 2), latent_dim=5)
        assert ae.encoder.output_shape == (None, 5)
        assert ae.decoder.input_shape == (None, 5)
