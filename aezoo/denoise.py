"""Denoising with a trained model: any image size (in tiles when large), and measurement
against the classical denoisers of `aezoo.baselines` on clean images noised with a known seed.

>>> from aezoo import denoise
>>> clean = denoise.denoise(model, noisy)        # float (height, width, channels) in [0, 1]
>>> better = denoise.denoise(model, noisy, ensemble=True)   # 8 passes, averaged
>>> results = denoise.evaluate(model, images, ("gaussian", 25 / 255), seed=0)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence

import keras
import numpy as np

from aezoo import baselines, metrics, noise
from aezoo.models.base import check_int, is_float_dtype
from aezoo.models.layers import PadToMultiple

# What `evaluate` compares: the noisy input, the classical denoisers and the model, in one
# pass and as the self-ensemble of `denoise(..., ensemble=True)`.
METHODS = ("noisy", *baselines.CLASSICAL, "aezoo", "aezoo_x8")


def denoise(model: keras.Model, image, tile: int = 1024, margin: int = 32,
            ensemble: bool = False, progress=None, luminance: keras.Model | None = None):
    """Denoises one image with a model that maps images to images of the same shape.

    An image larger than `tile` on a side goes through the model in overlapping tiles: each
    tile gives only its centre, `margin` pixels or more from its edges (except at the image's
    own border), and tiles start on the grid of the model's pooling, so every output pixel
    is computed as in one pass over the whole image, up to what lies beyond the margin: no
    seams show.  A model of fixed input size gets tiles of exactly that size, the image
    mirrored at its border when it is smaller.

    Args:
        model: a Keras model from (batch, height, width, channels) to the same shape.
        image: float array (height, width, channels) in [0, 1] (noisy values may overshoot).
        tile: side of the largest piece a fully convolutional model sees at once (memory).
        margin: context kept around each tile's centre; at least the model's receptive-field
            radius for results identical to one whole-image pass.
        ensemble: the mean of the model's outputs for the image turned and mirrored by the
            8 symmetries of the square (each output turned back), at 8 times the cost; the
            4 that keep the shape for a model of fixed, non-square input.  A network trained
            on turned patches is still not exactly symmetric, and its errors on the 8 views
            partly cancel: the `denoise_gray` preset gains 0.05-0.06 dB on BSD68 (31.56 /
            29.12 / 26.18 dB at sigma 15 / 25 / 50 become 31.62 / 29.17 / 26.24), and
            `denoise_rgb` 0.10-0.11 on CBSD68 (docs/denoising.md).
        progress: `progress(done, total)` is called after every tile the model denoises
            (of all 8 views with `ensemble`): a 12-megapixel photo takes 16-33 s on 2 cores.
        luminance: a grayscale denoiser (`aezoo.from_preset("denoise_gray")`) that first
            denoises the mean of a colour image's channels, which then replaces that mean,
            before `model` denoises the rest.  For noise correlated between the channels,
            as a photo's often is: a colour model trained on independent noise in each
            channel (as `denoise_rgb`) leaves the shared part (12 CBSD68 photos at sigma
            25 with a correlation of 0.5: 24.34 dB, and 29.06 this way; with independent
            noise 31.14 and 29.42; `benchmarks/denoise_correlated.py`).

    Returns:
        The denoised image, float32 (height, width, channels), not clipped; (height, width)
        for a (height, width) image.

    Raises:
        ValueError: an image that is not one finite float image in [0, 1] with the model's
            channels, or a bad `tile` or `margin`.
    """
    image = _checked_image(model, image)
    tile, margin = check_int("tile", tile), check_int("margin", margin, minimum=0)
    if not isinstance(ensemble, (bool, np.bool_)):
        raise ValueError(f"`ensemble` must be True or False. Received: ensemble={ensemble!r}")
    if image.ndim == 2:
        return _denoise(model, image[..., None], tile, margin, ensemble, progress)[..., 0]
    if luminance is not None:
        if image.shape[-1] != 3 or luminance.input_shape[-1] != 1:
            raise ValueError("`luminance` is a grayscale denoiser for a colour image's mean "
                             f"(channels: the image's {image.shape[-1]}, the luminance "
                             f"model's {luminance.input_shape[-1]}).")
        mean = image.mean(axis=-1, keepdims=True)
        steps = None if progress is None else (
            lambda done, total: progress(done, 2 * total))
        cleaned = _denoise(luminance, mean, tile, margin, ensemble, steps)
        image = image - mean + cleaned
        if progress is not None:
            progress = lambda done, total, first=progress: first(total + done, 2 * total)
    return _denoise(model, image, tile, margin, ensemble, progress)


def _denoise(model: keras.Model, image: np.ndarray, tile: int = 1024, margin: int = 32,
             ensemble: bool = False, progress=None) -> np.ndarray:
    """`denoise` of a checked float32 (height, width, channels) image."""
    if ensemble:
        fixed = model.input_shape[1:3]
        turns = (0, 1, 2, 3) if None in fixed or fixed[0] == fixed[1] else (0, 2)
        views = [(turn, mirror) for turn in turns for mirror in (False, True)]
        total = np.zeros(image.shape, np.float32)
        for number, (turn, mirror) in enumerate(views):
            # A view's tiles, counted among all views' (a turned view has as many).
            step = None if progress is None else (
                lambda done, tiles, before=number: progress(before * tiles + done,
                                                            len(views) * tiles))
            view = _view(image, turn, mirror)
            total += _unview(_denoise(model, view, tile, margin, progress=step), turn, mirror)
        return total / len(views)
    height, width = image.shape[:2]
    fixed = model.input_shape[1:3]
    if None in fixed:
        size, align, exact = (tile, tile), _pad_multiple(model), False
    else:
        size, margin, align, exact = fixed, min(margin, min(fixed) // 4), 1, True
        # Mirror a smaller image up to the model's size (cropped off again below).
        pad = [(0, max(0, size[0] - height)), (0, max(0, size[1] - width)), (0, 0)]
        image = np.pad(image, pad, mode="symmetric")
    out = np.empty(image.shape, np.float32)
    run = _graph(model)
    rows = _windows(image.shape[0], size[0], margin, align, exact)
    columns = _windows(image.shape[1], size[1], margin, align, exact)
    for number, ((y0, y1, top, bottom), (x0, x1, left, right)) in enumerate(
            itertools.product(rows, columns), start=1):
        result = np.asarray(run(image[None, y0:y1, x0:x1]))[0]
        out[top:bottom, left:right] = result[top - y0 : bottom - y0, left - x0 : right - x0]
        if progress is not None:
            progress(number, len(rows) * len(columns))
    return out[:height, :width]


def _graph(model: keras.Model):
    """`model` as a TensorFlow graph of one image of any height and width (of its fixed
    size, for a model that has one), traced on its first call (about 0.4 s) and kept on the
    model: Keras's eager call, layer by layer, took 20 % more time on a Kodak image
    (denoise_rgb: 0.60 s against 0.50; the same output bits)."""
    graph = getattr(model, "_aezoo_graph", None)
    if graph is None:
        import tensorflow as tf

        from aezoo._keras_fixes import graph as traced

        def call(x):
            return model(x, training=False)

        # (a model of fixed input size, whose layers need it, is traced at that size)
        spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)
        graph = traced(call, input_signature=[spec], autograph=False)
        model._aezoo_graph = graph
    return graph


def _checked_image(model: keras.Model, image, name: str = "`image`") -> np.ndarray:
    """`image` as float32 for `model`, or a ValueError a user can act on: 8-bit pixels and
    0-255 floats would be denoised as if they were hugely bright, without an error.
    `name`: the argument, as the messages call it."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a Keras model (aezoo.from_preset('denoise_gray'), "
                         f"aezoo.load_model(path)). Received: {type(model).__name__}")
    array = np.asarray(image)
    if not is_float_dtype(array.dtype):
        hint = " (divide 8-bit pixels by 255)" if np.issubdtype(array.dtype, np.integer) else ""
        raise ValueError(f"{name} must be floats in [0, 1]{hint}. Received: {array.dtype} "
                         f"values of shape {array.shape}")
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"{name} must be one image, (height, width, channels) or (height, "
                         f"width). Received: shape {array.shape}")
    channels, given = model.input_shape[-1], array.shape[2] if array.ndim == 3 else 1
    if given != channels:
        raise ValueError(f"The model takes {channels}-channel images; {name} has {given} "
                         f"(aezoo.data.read_image(path, channels={channels}) converts a file).")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN or infinite pixels.")
    # Noisy images overshoot [0, 1]: Gaussian noise of sigma 1 reaches +-6 in a photo,
    # Poisson counts at a peak of 1 reach about 10.  Past 16 they are most likely 0-255
    # pixels; `evaluate`, which makes its own noisy images, does not ask (a Poisson peak of
    # 0.1 gives values of 10, 20, 30...).
    if array.max() > 16 or array.min() < -16:
        raise ValueError(f"{name} must be in [0, 1] (noise may overshoot it); its values "
                         f"span {array.min():.4g} to {array.max():.4g} (divide 0-255 pixels "
                         "by 255).")
    return array.astype(np.float32)


def _view(image: np.ndarray, turn: int, mirror: bool) -> np.ndarray:
    """The image turned by `turn` quarter turns, then mirrored left to right."""
    view = np.rot90(image, turn)
    return np.ascontiguousarray(view[:, ::-1] if mirror else view)


def _unview(image: np.ndarray, turn: int, mirror: bool) -> np.ndarray:
    """Undoes `_view`."""
    return np.rot90(image[:, ::-1] if mirror else image, -turn)


def _windows(
    length: int, size: int, margin: int, align: int = 1, exact: bool = False
) -> list[tuple[int, int, int, int]]:
    """(window start, end, centre start, end) along one axis: windows of about `size`
    (exactly `size` if `exact`) whose centres, `margin` from the window's edges where the
    axis allows, tile [0, length).  Without `exact`, windows start on multiples of `align`."""
    if length <= size:
        return [(0, length, 0, length)]
    margin = -(-margin // align) * align
    step = (size - 2 * margin) // align * align
    if step < 1:
        raise ValueError(f"Tiles of {size} pixels leave no centre with a margin of {margin}.")
    windows = []
    for start in range(0, length, step):
        end = min(start + step, length)
        if exact:
            first = min(max(start - margin, 0), length - size)
            windows.append((first, first + size, start, end))
        else:
            windows.append((max(start - margin, 0), min(end + margin, length), start, end))
    return windows


def _pad_multiple(model: keras.layers.Layer) -> int:
    """The multiple a model pads images to (its pooling grid), or 1."""
    multiple = getattr(model, "multiple", 1) if isinstance(model, PadToMultiple) else 1
    for layer in getattr(model, "layers", []):
        multiple = max(multiple, _pad_multiple(layer))
    return multiple


def evaluate(
    model: keras.Model,
    images: Sequence[np.ndarray],
    noise_spec: tuple[str, float],
    *,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    names: Sequence[str] | None = None,
    progress=None,
    eight_bit: bool = False,
) -> dict:
    """PSNR and SSIM of `model` and the classical denoisers on noisy copies of `images`.

    Image `i` gets the noise of seed `(seed, i)`, so every method sees the same noisy
    image and runs are repeatable.  The classical methods get the noise's standard
    deviation: sigma itself for Gaussian noise, the measured (oracle) one for the other
    kinds.

    Args:
        model: the denoiser (images to images of the same shape).
        images: clean images, float (height, width, channels) in [0, 1] with the model's
            channels, or (height, width).
        noise_spec: `(kind, level)` as `aezoo.noise.parse_noise` returns it (one level).
        seed: seed of the noise.
        methods: which of `METHODS` to run ("noisy" and "aezoo" included), or one of them.
        names: one name per image, for `progress`.
        progress: called after each image with (index, name, {method: PSNR}).
        eight_bit: the noisy images as an 8-bit file holds them, clipped to [0, 1] and
            rounded to 1/255, as `aezoo denoise denoise` reads them; the model then gets
            them as that command gives them, through `unclip` (Gaussian noise; sigma
            estimated), and every method's output is rounded to 8 bits as that command
            writes it.  Benchmarks (DnCNN's, FFDNet's) use unclipped noise and unrounded
            outputs: the default.

    Returns:
        {"methods": {method: {"psnr": mean, "ssim": mean, "seconds": mean per image}},
         "per_image": {method: [PSNR of each image]}, "images": count,
         "outputs": {method: [first images' outputs]}} (the first 4 of each, for plots).

    Raises:
        ValueError: no images, an image `denoise` would refuse (8-bit pixels, another
            channel count, NaN), a `noise_spec` that is not one (kind, level), or an
            unknown method.
    """
    if not (isinstance(noise_spec, (tuple, list)) and len(noise_spec) == 2):
        raise ValueError("`noise_spec` must be a (kind, level) pair, e.g. ('gaussian', 25 / "
                         "255) or aezoo.noise.parse_noise('gaussian:25'). Received: "
                         f"noise_spec={noise_spec!r}")
    kind, level = noise_spec
    if isinstance(level, (tuple, list)):
        raise ValueError("Evaluate at one noise level, e.g. gaussian:25, not a range.")
    noise.check_noise(kind, level, names=("noise_spec[0]", "noise_spec[1]"))
    if isinstance(methods, str):  # one name, not its letters
        methods = (methods,)
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; choose from {', '.join(METHODS)}.")
    # All checked before the first is scored (an image the model cannot take failed inside
    # TensorFlow, and 8-bit ones were scored as if hugely bright, without an error); a
    # (height, width) image is one channel, as for `denoise`.
    images = [_checked_image(model, clean, f"`images[{i}]`") for i, clean in enumerate(images)]
    images = [clean[..., None] if clean.ndim == 2 else clean for clean in images]
    if not images:
        raise ValueError("`images` is empty: there is nothing to evaluate.")
    scores = {m: {"psnr": [], "ssim": []} for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    outputs = {m: [] for m in methods}
    for i, clean in enumerate(images):
        noisy = noise.add_noise(clean, kind, level, (seed, i)).numpy()
        if eight_bit:
            noisy = to_8bit(noisy).astype(np.float32) / 255
        sigma = level if kind == "gaussian" else float(np.sqrt(np.mean((noisy - clean) ** 2)))
        given = unclip(noisy) if eight_bit and kind == "gaussian" else noisy
        for method in methods:
            start = time.perf_counter()
            if method == "noisy":
                output = noisy
            elif method in ("aezoo", "aezoo_x8"):
                # (unchecked: Poisson noise of a low peak lies far outside [0, 1])
                output = _denoise(model, given, ensemble=method == "aezoo_x8")
            else:
                output = baselines.CLASSICAL[method](noisy, sigma)
            seconds[method] += time.perf_counter() - start
            if eight_bit:
                output = to_8bit(output).astype(np.float32) / 255
            scores[method]["psnr"].append(metrics.psnr(clean, output))
            scores[method]["ssim"].append(metrics.ssim(clean, output))
            if i < 4:
                outputs[method].append(output)
        if progress is not None:
            name = names[i] if names is not None else str(i)
            progress(i, name, {m: scores[m]["psnr"][-1] for m in methods})
    count = len(images)
    return {
        "images": count,
        "methods": {
            m: {"psnr": float(np.mean(s["psnr"])), "ssim": float(np.mean(s["ssim"])),
                "seconds": seconds[m] / max(count, 1)}
            for m, s in scores.items()
        },
        "per_image": {m: [float(v) for v in s["psnr"]] for m, s in scores.items()},
        "outputs": outputs,
    }


def markdown_table(results: dict, sigma: float | None) -> str:
    """The results of `evaluate` as a Markdown table (method, PSNR, SSIM, time, setting)."""
    rows = ["| method | PSNR (dB) | SSIM | seconds per image | parameters |",
            "|---|---|---|---|---|"]
    for method, score in results["methods"].items():
        if method in baselines.CLASSICAL:
            setting = baselines.describe(method, sigma) if sigma is not None else "oracle sigma"
        else:
            setting = {"noisy": "the input", "aezoo": "this model",
                       "aezoo_x8": "this model, mean of 8 turned and mirrored views"}[method]
        rows.append(f"| {method} | {score['psnr']:.2f} | {score['ssim']:.4f} | "
                    f"{score['seconds']:.3f} | {setting} |")
    return "\n".join(rows)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An image (height, width, 1 or 3) with `channels` channels: gray repeated, or ITU-R
    601 luma."""
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return image @ np.array([[0.299], [0.587], [0.114]], dtype=image.dtype)


def check_denoiser(model: keras.Model, channels: int, name: str = "The model") -> None:
    """Raises ValueError unless `model` maps images of `channels` channels to images of the
    same shape."""
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if len(shape_in) != 4 or shape_in[-1] != channels or shape_out != shape_in:
        raise ValueError(f"{name} is not a denoiser of {channels}-channel images: it maps "
                         f"{shape_in} to {shape_out}.")


MIN_SIGMA_SIDE = 8  # fewer than 4x4 wavelet coefficients a channel estimate nothing


def estimate_sigma(image: np.ndarray) -> float:
    """The standard deviation of Gaussian noise in a float image in [0, 1], (height, width,
    channels) or (height, width) (Donoho's wavelet estimator, as scikit-image computes it;
    averaged over channels); NaN for an image with a side shorter than `MIN_SIGMA_SIDE`
    pixels.

    Raises:
        ValueError: integer pixels (8-bit ones would give a sigma 255 times too large).
    """
    from skimage.restoration import estimate_sigma as wavelet_sigma

    image = np.asarray(image)
    if not is_float_dtype(image.dtype):
        raise ValueError(f"`image` must be floats in [0, 1] (divide 8-bit pixels by 255). "
                         f"Received: {image.dtype} values of shape {image.shape}")
    # A (height, width) image is one channel: given as it is, scikit-image would take its
    # columns for `width` channels and estimate the noise along each column alone.
    image = np.asarray(image[..., None] if image.ndim == 2 else image, dtype=np.float64)
    if min(image.shape[:2]) < MIN_SIGMA_SIDE:
        return float("nan")
    return float(wavelet_sigma(image, channel_axis=-1, average_sigmas=True))


def channel_correlation(image: np.ndarray) -> float:
    """An estimate of the correlation of a colour image's noise between its channels, from
    the noise level of each channel and of their mean (`estimate_sigma`): 0 for noise
    independent in each channel, 1 for the same noise in all three.  Texture inflates it
    where the noise is low: on CBSD68 with independent noise it reads up to 0.40 at sigma
    15 and up to 0.80 at sigma 5 (0.23 and 0.11 at 25 and 50); NaN for a small image."""
    image = np.asarray(image, np.float32)
    channels = np.mean([estimate_sigma(image[..., k:k + 1]) ** 2 for k in range(3)])
    mean = estimate_sigma(image.mean(axis=-1, keepdims=True)) ** 2
    return float((3 * mean / channels - 1) / 2) if channels > 0 else float("nan")


# The least noise (0-1 scale) that `unclip` acts on: half a grey level.
UNCLIP_MIN_SIGMA = 0.5 / 255


def unclip(image: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """An 8-bit noisy image made to look like the unclipped Gaussian noise a denoiser is
    trained on: each pixel at 0 or 1 becomes its expected value before clipping,
    `-sigma * sqrt(2 / pi)` or `1 + sigma * sqrt(2 / pi)` (the mean of the half-normal
    tail that a pixel of clean value 0 or 1 loses), every other pixel stays.

    A file cannot hold the noise below 0 or above 1 of a noisy photo's dark and bright parts;
    a model trained on unclipped noise (as DnCNN and the presets are) reads the piled-up
    zeros and ones as image content: `denoise_gray` loses 1.1 dB on BSD68 at sigma 50 given
    8-bit noisy images, and gets all but 0.1 dB of it back this way (docs/denoising.md).
    Only for Gaussian noise: salt-and-pepper noise *is* its zeros and ones.

    Args:
        image: float (height, width[, channels]) in [0, 1].
        sigma: the noise level in [0, 1] units; None estimates it (`estimate_sigma`).  An
            image too small to estimate it, or with less noise than half a grey level, is
            returned as it is.
    """
    image = np.asarray(image, np.float32)
    sigma = estimate_sigma(image if image.ndim == 3 else image[..., None]) if sigma is None \
        else float(sigma)
    if not sigma >= UNCLIP_MIN_SIGMA:  # NaN (too small to estimate), or under a grey level
        return image
    tail = np.float32(sigma * math.sqrt(2 / math.pi))
    return np.where(image <= 0, -tail, np.where(image >= 1, 1 + tail, image))


def to_8bit(image: np.ndarray) -> np.ndarray:
    """An image in [0, 1] (or overshooting it) as the uint8 pixels an 8-bit file holds:
    clipped to [0, 1], rounded to the nearest of 256 levels."""
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def png_bytes(image: np.ndarray, bits: int = 8) -> bytes:
    """An image in [0, 1], or of uint8 pixels, (height, width, 1 or 3) or (height, width),
    as the bytes of an 8-bit PNG (grayscale or RGB); with `bits=16`, an image in [0, 1] as
    a 16-bit PNG."""
    import io

    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 2:  # (height, width), as `denoise` returns a 2-D image
        image = image[..., None]
    if bits == 16:
        import tensorflow as tf

        # (Pillow writes no 16-bit colour PNG; TensorFlow's encoder writes both.)
        pixels = np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)
        return tf.io.encode_png(pixels, compression=3).numpy()
    if bits != 8:
        raise ValueError(f"`bits` must be 8 or 16. Received: bits={bits!r}")
    # uint8 as it is: a decoded 24-megapixel photo spent 7 s in float64 copies and back.
    pixels = image if image.dtype == np.uint8 else to_8bit(image)
    buffer = io.BytesIO()
    # zlib level 3, not Pillow's 6: a 24-megapixel photo is written in 2.0 s instead of
    # 6.7, and its file is 0.1 % larger.
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
        buffer, "PNG", compress_level=3)
    return buffer.getvalue()


def centre(image: np.ndarray, size: int = 128) -> np.ndarray:
    """The central size x size part of an image, so that sample grids show the noise."""
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]
