"""aezoo.denoise: tiles give the one-pass result, and evaluation agrees with the metrics."""

import numpy as np
import pytest

import aezoo
from aezoo import denoise, metrics, noise


@pytest.fixture(scope="module")
def unet():
    """An untrained two-level U-Net: tiling is a property of the architecture."""
    import keras

    keras.utils.set_random_seed(0)
    return aezoo.MODELS["denoising"](input_shape=(None, None, 1), filters=(8, 16),
                                     latent_dim=16, corruption=None)


def test_tiles_join_without_seams(unet):
    model = unet
    image = np.random.default_rng(0).random((100, 150, 1)).astype(np.float32)
    whole = denoise.denoise(model, image)
    tiled = denoise.denoise(model, image, tile=80, margin=24)  # 2 x 4 tiles
    # This two-level U-Net's receptive field is 46 pixels wide (3x3 convolutions: 2 a level
    # down, 2 at the bottom, 2 a level up and 1 out, each widened by the pooling below it,
    # so a radius of 23); with margins of 24
    # and tiles on its pooling grid every kept pixel sees exactly what it sees in one pass,
    # so only float32 round-off may differ.
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def dihedral_mean(model, image, transposes=(False, True)):
    """The model's mean output over the flips (and transpositions) of an image, each
    output brought back: flips and the transposition undo themselves."""
    outputs = []
    for transpose in transposes:
        for flip in (lambda x: x, np.flipud, np.fliplr, lambda x: np.flipud(np.fliplr(x))):
            swap = (lambda x: np.transpose(x, (1, 0, 2))) if transpose else (lambda x: x)
            view = np.ascontiguousarray(swap(flip(image)))
            outputs.append(flip(swap(np.asarray(model(view[None]))[0])))
    return np.mean(outputs, axis=0)


def test_the_ensemble_is_the_mean_over_the_eight_views(unet):
    image = np.random.default_rng(1).random((20, 28, 1)).astype(np.float32)
    ensemble = denoise.denoise(unet, image, ensemble=True)
    np.testing.assert_allclose(ensemble, dihedral_mean(unet, image), atol=1e-6)
    # An untrained network is far from symmetric: the views do differ.
    assert np.max(np.abs(ensemble - denoise.denoise(unet, image))) > 1e-3


def test_a_fixed_non_square_model_averages_the_four_views_of_its_shape():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(inputs))
    image = np.random.default_rng(2).random((12, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(denoise.denoise(model, image, ensemble=True),
                               dihedral_mean(model, image, transposes=(False,)), atol=1e-6)


def test_evaluate_scores_every_method_on_the_same_noisy_images(unet):
    rng = np.random.default_rng(0)
    images = [rng.random((24, 20, 1)).astype(np.float32) for _ in range(3)]
    sigma = 25 / 255
    results = denoise.evaluate(unet, images, ("gaussian", sigma), seed=7,
                               methods=("noisy", "gaussian", "aezoo", "aezoo_x8"))
    assert results["images"] == 3
    # Image i gets the noise of seed (7, i): recompute the noisy PSNRs independently.
    noisy = [noise.add_noise(x, "gaussian", sigma, (7, i)).numpy() for i, x in enumerate(images)]
    expected = [metrics.psnr(x, y) for x, y in zip(images, noisy)]
    np.testing.assert_allclose(results["per_image"]["noisy"], expected)
    assert results["methods"]["noisy"]["psnr"] == pytest.approx(np.mean(expected))
    denoised = [denoise.denoise(unet, y) for y in noisy]
    np.testing.assert_allclose(results["per_image"]["aezoo"],
                               [metrics.psnr(x, d) for x, d in zip(images, denoised)], rtol=1e-6)
    averaged = [dihedral_mean(unet, y) for y in noisy]
    np.testing.assert_allclose(results["per_image"]["aezoo_x8"],
                               [metrics.psnr(x, d) for x, d in zip(images, averaged)], rtol=1e-5)
    with pytest.raises(ValueError, match="one noise level"):
        denoise.evaluate(unet, images, ("gaussian", (0.0, 0.1)))


def test_the_noise_estimate_follows_the_true_sigma():
    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(0.5, 0.02, (128, 128, 1)), 0, 1)  # nearly flat
    for sigma in (10 / 255, 25 / 255, 50 / 255):
        noisy = clean + rng.normal(0, sigma, clean.shape)
        assert denoise.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15)
