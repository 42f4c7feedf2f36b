"""Rate-distortion measurement: PSNR, MS-SSIM, the classical codecs (JPEG 4:2:0, WebP,
JPEG 2000 through Pillow) and the Bjøntegaard delta rate between two rate-distortion curves.

Rates are bits per pixel counted from the actual file bytes (8 * bytes / pixels), headers
included, for every codec alike.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence

import numpy as np

from aezoo import metrics

# The classical codecs and their quality sweeps (Pillow's options): JPEG and WebP take a
# quality in 0-100; JPEG 2000 (OpenJPEG, 9/7 wavelet, colour transform on) takes a target
# rate, from which a compression ratio is derived.
CODECS = ("jpeg", "webp", "jpeg2000")
DEFAULT_SWEEPS = {
    "jpeg": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "jpeg2000": (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0),
}


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB of two uint8 images, over all pixels and channels (RGB PSNR): the same
    computation as the denoising benchmarks' (`aezoo.metrics.psnr`), on the 0-255 scale."""
    if np.array_equal(reference, decoded):
        return math.inf
    return metrics.psnr(reference / 255.0, decoded / 255.0)


# tf.image.ssim_multiscale's 5 scales with an 11x11 window need 11 * 2**4 pixels per side.
MS_SSIM_MIN_SIDE = 176


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003, 5 scales, as tf.image.ssim_multiscale) of two uint8
    images, or None for images smaller than `MS_SSIM_MIN_SIDE` on a side."""
    import tensorflow as tf

    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    a = tf.constant(reference[None], tf.float32)
    b = tf.constant(decoded[None], tf.float32)
    return float(tf.image.ssim_multiscale(a, b, max_val=255.0)[0])


def classical_codec(
    codec: str, image: np.ndarray, setting: float
) -> tuple[bytes, np.ndarray, float, float]:
    """Encodes and decodes a uint8 image with a classical codec through Pillow.

    Args:
        codec: "jpeg" (4:2:0 chroma subsampling), "webp", or "jpeg2000".
        image: uint8 (height, width, 1 or 3).
        setting: JPEG/WebP quality (0-100), or the JPEG 2000 target rate in bits per pixel.

    Returns:
        (file bytes, decoded uint8 image, encode seconds, decode seconds).
    """
    from PIL import Image

    gray = image.shape[-1] == 1
    picture = Image.fromarray(image[..., 0] if gray else image)
    started = time.perf_counter()
    buffer = io.BytesIO()
    if codec == "jpeg":
        picture.save(buffer, "JPEG", quality=int(setting), subsampling=2)
    elif codec == "webp":
        picture.save(buffer, "WEBP", quality=int(setting))
    elif codec == "jpeg2000":
        ratio = 8 * image.shape[-1] / float(setting)
        # OpenJPEG's default 6 resolution levels need 32 pixels a side; fewer for tiny images.
        levels = min(6, int(math.log2(min(image.shape[:2]))) + 1)
        picture.save(buffer, "JPEG2000", quality_mode="rates", quality_layers=[ratio],
                     irreversible=True, mct=0 if gray else 1, num_resolutions=levels)
    else:
        raise ValueError(f"`codec` must be one of {', '.join(CODECS)}. Received: codec={codec!r}")
    encoded = time.perf_counter()
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded_picture:
        decoded = np.asarray(decoded_picture.convert("L" if gray else "RGB"))
    finished = time.perf_counter()
    return data, decoded.reshape(image.shape), encoded - started, finished - encoded


def bd_rate(
    anchor: Sequence[tuple[float, float]],
    test: Sequence[tuple[float, float]],
    method: str = "pchip",
    rate_range: tuple[float, float] | None = None,
) -> float | None:
    """Bjøntegaard delta rate of `test` against `anchor`, in percent.

    The average difference of log-rate between the two curves at equal quality, over the
    quality interval both cover: `100 * (10**mean(log10 R_test - log10 R_anchor) - 1)`.
    Negative: `test` needs fewer bits for the same quality.  Each curve is log10(rate) as a
    function of quality, fitted by a piecewise cubic Hermite interpolant ("pchip", as in
    the current VCEG/JVET practice) or by one cubic polynomial ("cubic", Bjøntegaard 2001).

    Args:
        anchor, test: (rate, quality) points, e.g. (bpp, PSNR); at least 2 each (4 for
            "cubic"), with distinct qualities.
        method: "pchip" or "cubic".
        rate_range: optional (low, high) rates: limit the quality interval to the qualities
            the anchor reaches between these rates.

    Returns:
        The BD-rate in percent, or None if the curves share no quality interval.
    """
    from scipy.interpolate import PchipInterpolator

    if method not in ("pchip", "cubic"):
        raise ValueError(f"`method` must be 'pchip' or 'cubic'. Received: method={method!r}")

    def curve(points, name):
        points = sorted((float(q), math.log10(float(r))) for r, q in points)
        qualities = np.array([q for q, _ in points])
        log_rates = np.array([r for _, r in points])
        needed = 4 if method == "cubic" else 2
        if len(points) < needed or np.any(np.diff(qualities) <= 0):
            raise ValueError(f"The {name} curve needs at least {needed} points with distinct "
                             f"qualities. Received: {list(zip(10**log_rates, qualities))}")
        return qualities, log_rates

    qa, ra = curve(anchor, "anchor")
    qt, rt = curve(test, "test")
    low, high = max(qa[0], qt[0]), min(qa[-1], qt[-1])
    if rate_range is not None:
        order = np.argsort(ra)
        quality_at = PchipInterpolator(ra[order], qa[order], extrapolate=False)
        limits = quality_at(np.log10(rate_range))
        low = max(low, limits[0]) if np.isfinite(limits[0]) else low
        high = min(high, limits[1]) if np.isfinite(limits[1]) else high
    if not high > low:
        return None

    def integral(qualities, log_rates):
        if method == "pchip":
            return float(PchipInterpolator(qualities, log_rates).integrate(low, high))
        antiderivative = np.polyint(np.polyfit(qualities, log_rates, 3))
        return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))

    mean_difference = (integral(qt, rt) - integral(qa, ra)) / (high - low)
    return 100.0 * (10.0**mean_difference - 1.0)


def quality_at_rate(points: Sequence[tuple[float, float]], rate: float) -> float | None:
    """A curve's quality at `rate`, interpolated (pchip in log-rate); None outside it."""
    from scipy.interpolate import PchipInterpolator

    points = sorted((math.log10(r), q) for r, q in points)
    log_rates = np.array([r for r, _ in points])
    if len(points) < 2 or np.any(np.diff(log_rates) <= 0):
        return None
    curve = PchipInterpolator(log_rates, [q for _, q in points], extrapolate=False)
    value = curve(math.log10(rate))
    return float(value) if np.isfinite(value) else None
