"""aezoo.metrics: PSNR and SSIM against independent computations."""

import numpy as np
import pytest
import tensorflow as tf

from aezoo import metrics


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_and_ssim_agree_with_independent_computations(channels):
    rng = np.random.default_rng(0)
    clean = rng.random((48, 40, channels))
    test = clean + rng.normal(0, 0.1, clean.shape)  # overshoots [0, 1]: metrics clip it
    clipped = np.clip(test, 0, 1)
    by_hand = 10 * np.log10(1.0 / np.mean((clipped - clean) ** 2))
    assert metrics.psnr(clean, test) == pytest.approx(by_hand, abs=1e-9)  # same float64 sums
    # TensorFlow's SSIM: the same Wang et al. window (11x11 Gaussian, sigma 1.5), K1, K2 and
    # population covariances, over the pixels the window covers whole (scikit-image crops
    # the same border); it computes in float32, hence the tolerance.
    reference = tf.image.ssim(
        tf.constant(clean, tf.float32), tf.constant(clipped, tf.float32), max_val=1.0,
        filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03,
    )
    assert metrics.ssim(clean, test) == pytest.approx(float(reference), abs=1e-5)
    assert metrics.ssim(clean, clean) == pytest.approx(1.0)


def test_psnr_of_8_bit_images_is_taken_on_the_0_255_scale():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)
    assert metrics.psnr(a, a) == float("inf")



def test_psnr_agrees_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_ssim_says_the_smallest_side_it_measures():
    # scikit-image's Gaussian window of sigma 1.5 spans 11 pixels; its own message spoke
    # of 7x7 and channel_axis.
    rng = np.random.default_rng(0)
    image = rng.random((11, 11))
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 11x11 pixels; this one is 10x11"):
        metrics.ssim(image[:, :10], image[:, :10] * 0.9)
