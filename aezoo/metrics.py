"""Image quality metrics, with the conventions of the denoising literature fixed once.

Both take images in [0, 1] (float, (height, width) or (height, width, channels)), or 8-bit
images (uint8, taken as value / 255), clip them to [0, 1] first (a denoiser's output is saved
as 8-bit, so values outside cannot count), and call scikit-image:

* `psnr`: 10 log10(1 / MSE), data range 1, over all pixels and channels (for colour images
  the "RGB PSNR" of the compression literature); infinite for identical images.
* `ssim`: Wang et al. (2004) as published: an 11x11 Gaussian window of sigma 1.5, population
  (not sample) covariances, K1 = 0.01, K2 = 0.03, averaged over the image and the channels.
  scikit-image's own default (a 7x7 uniform window) gives other numbers than papers report.
"""

from __future__ import annotations

import math

import numpy as np


def _unit(image) -> np.ndarray:
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    return np.clip(image.astype(np.float64) / scale, 0, 1)


def _pair(clean, test) -> tuple[np.ndarray, np.ndarray]:
    clean, test = _unit(clean), _unit(test)
    if clean.shape != test.shape:
        raise ValueError(f"Images differ in shape: {clean.shape} and {test.shape}.")
    if clean.ndim == 3 and clean.shape[-1] == 1:
        clean, test = clean[..., 0], test[..., 0]
    return clean, test


def psnr(clean, test) -> float:
    """Peak signal-to-noise ratio in dB of `test` against `clean`, both in [0, 1]."""
    from skimage.metrics import peak_signal_noise_ratio

    clean, test = _pair(clean, test)
    if np.array_equal(clean, test):
        return math.inf
    return float(peak_signal_noise_ratio(clean, test, data_range=1.0))


# The smallest side SSIM measures: its Gaussian window (sigma 1.5, to 3.5 sigma, as
# scikit-image cuts it) spans 11 pixels.
SSIM_MIN_SIDE = 11


def ssim(clean, test) -> float:
    """Structural similarity of `test` to `clean` (Wang et al. 2004 settings), both in [0, 1].

    Raises:
        ValueError: for images under `SSIM_MIN_SIDE` pixels a side.
    """
    from skimage.metrics import structural_similarity

    clean, test = _pair(clean, test)
    if min(clean.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} "
                         f"pixels; this one is {clean.shape[1]}x{clean.shape[0]}.")
    return float(
        structural_similarity(
            clean,
            test,
            data_range=1.0,
            channel_axis=-1 if clean.ndim == 3 else None,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )
