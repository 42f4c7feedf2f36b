"""aezoo.latent: codes of every kind of encoder, and a walk that starts and ends at the
examples' own codes."""

import keras
import numpy as np

import aezoo
from aezoo import latent


def test_codes_are_flat_vectors_of_a_vector_a_map_or_a_dict_of_maps():
    assert latent.codes_of(np.zeros((3, 5))).shape == (3, 5)
    assert latent.codes_of(np.zeros((3, 4, 4, 2))).shape == (3, 32)
    assert latent.codes_of({"latent": np.zeros((3, 2, 2, 8)), "skip1": np.ones((3, 9))}).shape \
        == (3, 32)


def test_a_walk_decodes_the_ends_to_the_examples_reconstructions(tmp_path):
    keras.utils.set_random_seed(0)
    model = aezoo.MODELS["dense"](input_shape=(6, 6, 1), latent_dim=3, units=(8,))
    x = np.random.default_rng(0).random((5, 6, 6, 1)).astype(np.float32)
    labels = np.array([0, 0, 1, 1, 2])
    ends = latent.walk(model, x, labels, None, 4, tmp_path / "walk.png")
    assert ends == [0, 2]  # the first example and the first of another label
    codes = model.encoder.predict(x[ends], verbose=0)
    path = codes[0] + np.linspace(0, 1, 4)[:, None] * (codes[1] - codes[0])
    walked = model.decoder.predict(path, verbose=0)
    np.testing.assert_allclose(walked[[0, -1]], model.predict(x[ends], verbose=0), atol=1e-6)
    assert (tmp_path / "walk.png").stat().st_size > 1000
