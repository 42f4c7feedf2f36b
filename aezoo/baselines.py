"""Classical denoisers to measure learned ones against, each set from the known noise level.

`CLASSICAL[name](noisy, sigma)` denoises one image (float (height, width, channels) in [0, 1]
units, any range) given the standard deviation `sigma` of its noise in the same units:

| name       | method                                   | parameter from sigma                    |
|------------|------------------------------------------|-----------------------------------------|
| `gaussian` | Gaussian filter (scipy.ndimage)          | its sigma, tuned per noise level        |
| `median`   | median filter (scipy.ndimage)            | its window, tuned per noise level       |
| `nlm`      | non-local means (scikit-image, fast mode) | h = 0.8 sigma, 5x5 patches, 13x13 search |
| `bm3d`     | BM3D (the `bm3d` package, both stages)   | sigma_psd = sigma                       |

The Gaussian's sigma and the median's window were tuned once, on training images only:
`benchmarks/tune_classical.py` searches a grid for the best mean PSNR on 40 Train400 images at
each noise level of the table below (never on a test set).  Between the tabulated levels the
Gaussian's sigma is interpolated linearly and the median takes the window of the nearest level.
Non-local means uses scikit-image's recommended settings for a known sigma, and BM3D its
authors' default profile.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# benchmarks/tune_classical.py on Train400 (every 10th image): noise sigma (0-255 scale) ->
# the best Gaussian filter sigma (pixels) and median window (pixels).
TUNED_ON_TRAIN400 = {
    5: (0.4, 3),
    10: (0.5, 3),
    15: (0.6, 3),
    25: (0.8, 3),
    35: (1.1, 5),
    50: (1.4, 7),
    75: (2.0, 9),
    102: (2.7, 11),
}


def gaussian_filter_sigma(sigma: float) -> float:
    """The Gaussian filter's sigma (pixels) for noise of std `sigma` in [0, 1] units."""
    levels = sorted(TUNED_ON_TRAIN400)
    return float(np.interp(sigma * 255, levels, [TUNED_ON_TRAIN400[s][0] for s in levels]))


def median_filter_size(sigma: float) -> int:
    """The median filter's window (pixels) for noise of std `sigma` in [0, 1] units."""
    nearest = min(TUNED_ON_TRAIN400, key=lambda level: abs(level - sigma * 255))
    return TUNED_ON_TRAIN400[nearest][1]


def gaussian(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    s = gaussian_filter_sigma(sigma)
    return ndimage.gaussian_filter(noisy, (s, s, 0))  # not across channels


def median(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    k = median_filter_size(sigma)
    return ndimage.median_filter(noisy, size=(k, k, 1))


def nlm(noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    denoised = denoise_nl_means(
        noisy, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6,
        channel_axis=-1,
    )
    return denoised.reshape(noisy.shape)  # scikit-image drops a single channel axis


def bm3d(noisy: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d as bm3d_lib

    if noisy.shape[-1] == 3:
        return bm3d_lib.bm3d_rgb(noisy, sigma_psd=sigma)
    return bm3d_lib.bm3d(noisy[..., 0], sigma_psd=sigma)[..., None]


CLASSICAL: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "gaussian": gaussian,
    "median": median,
    "nlm": nlm,
    "bm3d": bm3d,
}


def describe(name: str, sigma: float) -> str:
    """The parameters `CLASSICAL[name]` uses for noise of std `sigma`, for reports."""
    return {
        "gaussian": f"sigma {gaussian_filter_sigma(sigma):.2f} px",
        "median": f"{median_filter_size(sigma)}x{median_filter_size(sigma)} window",
        "nlm": f"h {0.8 * sigma * 255:.1f}/255, 5x5 patches, 13x13 search, fast mode",
        "bm3d": f"sigma_psd {sigma * 255:.1f}/255, both stages",
    }[name]
