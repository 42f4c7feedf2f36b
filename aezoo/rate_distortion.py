"""Rate-distortion measurement: MS-SSIM, the classical codecs (JPEG 4:2:0, WebP, JPEG 2000
through Pillow), the Bjøntegaard delta rate between two rate-distortion curves, and
`evaluate`, which measures aezoo codecs and the classical ones on the same images.

Rates are bits per pixel counted from the actual file bytes (8 * bytes / pixels), headers
included, for every codec alike; PSNR is `aezoo.metrics.psnr` on the 8-bit images.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aezoo import codec, metrics, plots

# The classical codecs and their quality sweeps (Pillow's options): JPEG and WebP take a
# quality in 0-100; JPEG 2000 (OpenJPEG, 9/7 wavelet, colour transform on) takes a target
# rate, from which a compression ratio is derived.
CODECS = ("jpeg", "webp", "jpeg2000")
DEFAULT_SWEEPS = {
    "jpeg": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "jpeg2000": (0.1, 0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0),
}


# tf.image.ssim_multiscale's 5 scales with an 11x11 window need 11 * 2**4 pixels per side.
MS_SSIM_MIN_SIDE = 176


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003, 5 scales, as tf.image.ssim_multiscale) of two uint8
    images, or None for images smaller than `MS_SSIM_MIN_SIDE` on a side."""
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    channels = reference.shape[-1]
    if channels not in _MS_SSIM:
        import tensorflow as tf

        # One graph for images of every size (run eagerly, its scales' ops went one by one:
        # 10-40 % slower, the more so on a busy machine).
        spec = tf.TensorSpec([1, None, None, channels], tf.float32)
        _MS_SSIM[channels] = tf.function(
            lambda a, b: tf.image.ssim_multiscale(a, b, max_val=255.0),
            input_signature=[spec, spec], autograph=False)
    pair = (image[None].astype(np.float32) for image in (reference, decoded))
    return float(_MS_SSIM[channels](*pair)[0])


# channels -> the traced MS-SSIM of `ms_ssim`.
_MS_SSIM: dict = {}


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
            both curves reach between these rates, so that neither curve's points outside
            the range move it (a test curve that goes on above `high` would otherwise
            stretch the interval to qualities the anchor reaches only above it).

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
        for points in (anchor, test):
            lower, upper = (quality_at_rate(points, rate) for rate in rate_range)
            low = low if lower is None else max(low, lower)
            high = high if upper is None else min(high, upper)
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


# ------------------------------------------------------------------------ evaluation


def evaluate(
    models: dict[str, Any],
    images: Sequence[np.ndarray],
    names: Sequence[str],
    codecs: Sequence[str] = CODECS,
    progress=None,
    refine: int = 0,
    image_progress=None,
) -> dict:
    """Rate-distortion of aezoo codecs (one model per rate point) and the classical codecs
    on the same uint8 images.

    Args:
        models: label -> finalised compression model, one per rate point, or its
            `codec.Codec` (`codec.open_codec`: with the post-filter that decodes its files).
        images: uint8 (height, width, channels) images.
        names: their names.
        codecs: classical codecs to compare with.
        progress: called with (codec, point) after each rate point.
        refine: iterations of latent refinement of aezoo's encoder (`Codec.compress`).
        image_progress: called with (label, images done, images) after each image that an
            aezoo model has coded.

    Returns:
        {"images", "curves": {codec: [points]}, "bd_rate", "psnr_at_bpp"}; a point holds the
        means over images of bpp, PSNR, MS-SSIM, encode and decode seconds.
    """
    curves: dict[str, list[dict]] = {"aezoo": []}
    for label, model in models.items():
        curves["aezoo"].append(
            _evaluate_model(label, model, images, names, refine, image_progress))
        if progress is not None:
            progress("aezoo", curves["aezoo"][-1])
    for name in codecs:
        curves[name] = []
        for setting in DEFAULT_SWEEPS[name]:
            curves[name].append(_evaluate_classical(name, setting, images))
            if progress is not None:
                progress(name, curves[name][-1])
    return {
        "images": list(names),
        "curves": curves,
        "bd_rate": _bd_rates(curves),
        "psnr_at_bpp": {
            name: {str(rate): quality_at_rate(_points(points, "psnr"), rate)
                   for rate in (0.25, 0.5, 1.0)}
            for name, points in curves.items()
        },
    }


def _evaluate_model(label: str, model, images, names, refine: int = 0,
                    image_progress=None) -> dict:
    packer = model if isinstance(model, codec.Codec) else codec.Codec(model)
    model = packer.model
    rows = []
    for done, (name, image) in enumerate(zip(names, images), start=1):
        started = time.perf_counter()
        blob = packer.compress(image, refine=refine)
        encoded = time.perf_counter()
        decoded = packer.decompress(blob, name)
        finished = time.perf_counter()
        rows.append(_measure(image, decoded, blob, encoded - started, finished - encoded))
        if not refine:  # (the estimate is of the analysis's latents, not refined ones)
            pixels = image.shape[0] * image.shape[1]
            rows[-1]["estimated_bpp"] = _rate_estimate(model, image) / pixels
        if image_progress is not None:
            image_progress(label, done, len(images))
    point = _mean(rows)
    point.update(setting=label, lmbda=model.lmbda, refine=refine,
                 postfilter=packer.postfilter_name)  # (None: the synthesis's pixels)
    return point


def _rate_estimate(model, image) -> float:
    """The model's own estimate, in bits: the sum of -log2 p of its rounded latents under
    its continuous densities (what training minimised; `estimate_bits`)."""
    return model.estimate_bits(image[None].astype(np.float32) / 255.0)


def _evaluate_classical(name: str, setting, images) -> dict:
    rows = []
    for image in images:
        blob, decoded, encode_s, decode_s = classical_codec(name, image, setting)
        rows.append(_measure(image, decoded, blob, encode_s, decode_s))
    point = _mean(rows)
    point["setting"] = setting
    return point


def _measure(image, decoded, blob: bytes, encode_s: float, decode_s: float) -> dict:
    return {
        "bpp": 8 * len(blob) / (image.shape[0] * image.shape[1]),
        "psnr": metrics.psnr(image, decoded),
        "ms_ssim": ms_ssim(image, decoded),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def _mean(rows: list[dict]) -> dict:
    """Means over images (PSNR: the mean of per-image PSNRs, as is customary)."""
    point = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        point[key] = None if any(v is None for v in values) else float(np.mean(values))
    return point


def _points(points: list[dict], quality: str) -> list[tuple[float, float]]:
    def value(point):
        if quality == "ms_ssim_db":
            return None if point["ms_ssim"] is None else -10 * np.log10(1 - point["ms_ssim"])
        return point[quality]

    return [(p["bpp"], value(p)) for p in points if value(p) is not None and p["bpp"] > 0]


def _bd_rates(curves: dict[str, list[dict]]) -> dict:
    """BD-rate (%) of our curve against each classical codec, in PSNR and MS-SSIM (dB),
    over all the rates both cover and over the qualities both reach within 0.25-1.0 bpp."""
    ours = curves["aezoo"]
    results = {}
    for name, points in curves.items():
        if name == "aezoo":
            continue
        results[name] = {}
        for quality in ("psnr", "ms_ssim_db"):
            for label, rate_range in (("all", None), ("0.25-1.0bpp", (0.25, 1.0))):
                try:
                    value = bd_rate(_points(points, quality), _points(ours, quality),
                                       rate_range=rate_range)
                except ValueError:  # fewer than two points: no curve
                    value = None
                results[name][f"{quality}_{label}"] = value
    return results


def markdown(results: dict) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["## Rate-distortion", ""]
    refine = max((p.get("refine", 0) for p in results["curves"].get("aezoo", [])), default=0)
    if refine:
        lines += [f"aezoo's latents refined with {refine} iterations (`--refine`).", ""]
    filtered = [f"{p['setting']} through {p['postfilter']}"
                for p in results["curves"].get("aezoo", []) if p.get("postfilter")]
    if filtered:
        lines += [f"Decoded through post-filters: {', '.join(filtered)}.", ""]
    lines += ["| codec | setting | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
              "|---|---|---|---|---|---|---|"]
    for name, points in results["curves"].items():
        for p in points:
            lines.append(f"| {name} | {p['setting']} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                         f"{number(p['ms_ssim'], 4)} | {p['encode_s']:.3f} | {p['decode_s']:.3f} |")
    lines += ["", "## BD-rate of aezoo against each codec (%, negative: fewer bits)", "",
              "| anchor | PSNR, all | PSNR, 0.25-1.0 bpp | MS-SSIM dB, all | "
              "MS-SSIM dB, 0.25-1.0 bpp |", "|---|---|---|---|---|"]
    for name, values in results["bd_rate"].items():
        cells = [number(values[f"{q}_{r}"], 1) for q in ("psnr", "ms_ssim_db")
                 for r in ("all", "0.25-1.0bpp")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    # Say why a cell is empty: a dash alone reads as a failure.
    if len(_points(results["curves"].get("aezoo", []), "psnr")) < 2:
        lines += ["", "BD-rate and equal-rate PSNR need a curve: 2 or more rate points of aezoo "
                      "(several --model, or none for every codec preset)."]
    elif any(value is None for values in results["bd_rate"].values()
             for value in values.values()):
        lines += ["", "-: the curves reach no common quality there (or no MS-SSIM: images "
                      f"under {MS_SSIM_MIN_SIDE} pixels a side)."]
    lines += ["", "## PSNR (dB) at equal rate (interpolated)", "",
              "| codec | 0.25 bpp | 0.5 bpp | 1.0 bpp |", "|---|---|---|---|"]
    for name, values in results["psnr_at_bpp"].items():
        lines.append(f"| {name} | " + " | ".join(number(v, 2) for v in values.values()) + " |")
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    fig, axes = plots.subplots(1, 2, figsize=(11, 4.5))
    for name, points in curves.items():
        style = {"marker": "o", "linewidth": 2.5 if name == "aezoo" else 1.2}
        for ax, quality in zip(axes, ("psnr", "ms_ssim_db")):
            xy = sorted(_points(points, quality))
            if xy:
                ax.plot([x for x, _ in xy], [y for _, y in xy], label=name, **style)
    for ax, label in zip(axes, ("PSNR (dB)", "MS-SSIM (dB)")):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        # (the classical curves go on to 4 bpp; aezoo's highest point stays in view)
        ax.set_xlim(0, max([2.0] + [1.05 * p["bpp"] for p in curves.get("aezoo", [])]))
        ax.grid(True, alpha=0.3)
        if ax.lines:  # (no MS-SSIM for images under MS_SSIM_MIN_SIDE pixels a side)
            ax.legend()
    fig.suptitle(title)
    plots.save(fig, path)
