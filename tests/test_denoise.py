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




def test_evaluate_scores_every_method_on_the_same_noisy_images(unet):
    rng = np.random.default_rng(0)
    images = [rng.random((24, 20, 1)).astype(np.float32) for _ in range(3)]
    sigma = 25 / 255
    results = denoise.evaluate(unet, images, ("gaussian", sigma), seed=7,
                               methods=("noisy", "gaussian", "aezoo"))
    assert results["images"] == 3
    # Image i gets the noise of seed (7, i): recompute the noisy PSNRs independently.
    noisy = [noise.add_noise(x, "gaussian", sigma, (7, i)).numpy() for i, x in enumerate(images)]
    expected = [metrics.psnr(x, y) for x, y in zip(images, noisy)]
    np.testing.assert_allclose(results["per_image"]["noisy"], expected)
    assert results["methods"]["noisy"]["psnr"] == pytest.approx(np.mean(expected))
    denoised = [denoise.denoise(unet, y) for y in noisy]
    np.testing.assert_allclose(results["per_image"]["aezoo"],
                               [metrics.psnr(x, d) for x, d in zip(images, denoised)], rtol=1e-6)
    with pytest.raises(ValueError, match="one noise level"):
        denoise.evaluate(unet, images, ("gaussian", (0.0, 0.1)))


def test_the_noise_estimate_follows_the_true_sigma():
    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(0.5, 0.02, (128, 128, 1)), 0, 1)  # nearly flat
    for sigma in (10 / 255, 25 / 255, 50 / 255):
        noisy = clean + rng.normal(0, sigma, clean.shape)
        assert denoise.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15)
