"""aezoo.denoise: tiles give the one-pass result, and evaluation agrees with the metrics."""

import warnings

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
    tiled = denoise.denoise(model, image, tile=80, margin=24)  # 4 x 5 tiles
    # This two-level U-Net's receptive field is 46 pixels wide (3x3 convolutions: 2 a level
    # down, 2 at the bottom, 2 a level up and 1 out, each widened by the pooling below it,
    # so a radius of 23); with margins of 24
    # and tiles on its pooling grid every kept pixel sees exactly what it sees in one pass,
    # so only float32 round-off may differ.
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_progress_counts_every_tile_of_every_view(unet):
    """`progress(done, total)` after each tile: 1, 2 .. 20 of the tiles above (centres of
    32 pixels: 80 less two margins of 24; 4 x 5 of them) and of 8 times as many with the
    ensemble; the result unchanged."""
    image = np.random.default_rng(0).random((100, 150, 1)).astype(np.float32)
    calls, views = [], []
    tiled = denoise.denoise(unet, image, tile=80, margin=24,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, 20) for done in range(1, 21)]
    np.testing.assert_array_equal(tiled, denoise.denoise(unet, image, tile=80, margin=24))
    denoise.denoise(unet, image, tile=80, margin=24, ensemble=True,
                    progress=lambda done, total: views.append((done, total)))
    assert views == [(done, 160) for done in range(1, 161)]


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


def test_a_fixed_size_model_takes_smaller_and_larger_images():
    """A smaller image is mirrored up to the model's size and cropped back; a larger one is
    cut into windows of that size whose margins (a quarter of its side, 3 here) cover a
    3x3 convolution's radius of 1: both as the same convolution over the whole image."""
    import keras

    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(1, 3, padding="same")
    inputs = keras.Input((12, 16, 1))
    fixed = keras.Model(inputs, conv(inputs))
    anywhere = keras.Sequential([keras.Input((None, None, 1)), conv])  # the same weights
    rng = np.random.default_rng(3)
    small = rng.random((9, 10, 1)).astype(np.float32)
    mirrored = np.pad(small, [(0, 3), (0, 6), (0, 0)], mode="symmetric")
    np.testing.assert_allclose(denoise.denoise(fixed, small),
                               np.asarray(anywhere(mirrored[None]))[0, :9, :10], atol=1e-6)
    large = rng.random((31, 45, 1)).astype(np.float32)
    np.testing.assert_allclose(denoise.denoise(fixed, large),
                               np.asarray(anywhere(large[None]))[0], atol=1e-6)


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
    # Poisson noise of a low peak lies far outside [0, 1] (counts / 0.1: 0, 10, 20...):
    # evaluated all the same, though `denoise` alone would take it for 0-255 pixels.
    low_peak = denoise.evaluate(unet, images[:1], ("poisson", 0.1), methods=("noisy", "aezoo"))
    assert np.isfinite(low_peak["methods"]["aezoo"]["psnr"])


def test_evaluate_checks_its_images_and_noise_before_scoring(unet):
    rng = np.random.default_rng(2)
    image = rng.random((24, 20), dtype=np.float32)
    # A (height, width) image is one channel, as for `denoise`; one method by its name.
    flat = denoise.evaluate(unet, [image], ("gaussian", 0.1), methods="aezoo")
    noisy = noise.add_noise(image[..., None], "gaussian", 0.1, (0, 0)).numpy()
    assert flat["per_image"]["aezoo"] == pytest.approx(
        [metrics.psnr(image[..., None], denoise.denoise(unet, noisy))], rel=1e-6)
    for images, message in (
        ([image, (image * 255).astype(np.uint8)],
         r"`images\[1\]` must be floats in \[0, 1\] \(divide 8-bit pixels by 255\)"),
        ([np.stack([image] * 3, axis=-1)], r"takes 1-channel images; `images\[0\]` has 3"),
        ([], "`images` is empty"),
    ):
        with pytest.raises(ValueError, match=message):
            denoise.evaluate(unet, images, ("gaussian", 0.1))
    with pytest.raises(ValueError, match=r"`noise_spec` must be a \(kind, level\) pair"):
        denoise.evaluate(unet, [image], "gaussian:25")


@pytest.mark.parametrize("spec,filter_sigma,window", [
    (("gaussian", 25 / 255), 0.8, 3),  # a level of the tuned table: its own parameters
    (("gaussian", 40 / 255), 1.2, 5),  # between 35 and 50: 1.1 + 5/15 * (1.4 - 1.1); 35's
    (("salt_pepper", 0.1), None, None),  # no sigma: the noise's measured one, looked up
])
def test_evaluate_runs_the_classical_filters_on_the_same_noisy_images(unet, spec, filter_sigma,
                                                                      window):
    """The classical rows of `denoise evaluate`: SciPy's filters on image i's noisy copy
    (seed (seed, i)), with the parameters tuned for the noise's level (the table of
    aezoo.baselines; for noise with no sigma, at its measured standard deviation)."""
    from scipy import ndimage

    from aezoo.baselines import TUNED_ON_TRAIN400

    rng = np.random.default_rng(2)
    images = [rng.random((24, 20, 1)).astype(np.float32) for _ in range(2)]
    results = denoise.evaluate(unet, images, spec, seed=5, methods=("gaussian", "median"))
    levels = sorted(TUNED_ON_TRAIN400)
    for method in ("gaussian", "median"):
        expected = []
        for i, x in enumerate(images):
            noisy = noise.add_noise(x, *spec, (5, i)).numpy()
            if filter_sigma is None:
                sigma = 255 * np.sqrt(np.mean((noisy - x) ** 2))
                s = np.interp(sigma, levels, [TUNED_ON_TRAIN400[v][0] for v in levels])
                k = TUNED_ON_TRAIN400[min(levels, key=lambda v: abs(v - sigma))][1]
            else:
                s, k = filter_sigma, window
            output = (ndimage.gaussian_filter(noisy, (s, s, 0)) if method == "gaussian"
                      else ndimage.median_filter(noisy, size=(k, k, 1)))
            expected.append(metrics.psnr(x, output))
        np.testing.assert_allclose(results["per_image"][method], expected, rtol=1e-6)


def test_evaluate_8_bit_gives_the_model_the_file_as_denoise_reads_it(unet):
    rng = np.random.default_rng(1)
    images = [rng.random((24, 20, 1)).astype(np.float32) for _ in range(2)]
    sigma = 50 / 255
    results = denoise.evaluate(unet, images, ("gaussian", sigma), seed=3,
                               methods=("noisy", "aezoo"), eight_bit=True)
    # The same noise as without --8-bit, then clipped and rounded as a PNG would hold it.
    files = [np.round(np.clip(noise.add_noise(x, "gaussian", sigma, (3, i)).numpy(), 0, 1)
                      * 255) / 255 for i, x in enumerate(images)]
    np.testing.assert_allclose(results["per_image"]["noisy"],
                               [metrics.psnr(x, f) for x, f in zip(images, files)], rtol=1e-6)
    # ... and the outputs rounded to 8 bits, as `denoise` writes them.
    denoised = [np.round(np.clip(denoise.denoise(unet, denoise.unclip(f.astype(np.float32))),
                                 0, 1) * 255) / 255 for f in files]
    np.testing.assert_allclose(results["per_image"]["aezoo"],
                               [metrics.psnr(x, d) for x, d in zip(images, denoised)], rtol=1e-6)


def test_images_it_would_denoise_wrongly_are_refused_and_2d_ones_kept_2d(unet):
    image = np.random.default_rng(0).random((12, 20), dtype=np.float32)
    np.testing.assert_array_equal(denoise.denoise(unet, image),
                                  denoise.denoise(unet, image[..., None])[..., 0])
    for bad, message in (
        ((image * 255).astype(np.uint8), r"floats in \[0, 1\] \(divide 8-bit pixels by 255\)"),
        (image * 255, r"its values span .*divide 0-255 pixels by 255"),
        (image[None, ..., None], r"one image.*Received: shape \(1, 12, 20, 1\)"),
        (image[:0], "one image"),
        (np.stack([image] * 3, axis=-1), "takes 1-channel images; `image` has 3"),
        (np.where(image > 0.9, np.nan, image), "NaN or infinite"),
    ):
        with pytest.raises(ValueError, match=message):
            denoise.denoise(unet, bad)
    with pytest.raises(ValueError, match="`ensemble` must be True or False"):
        denoise.denoise(unet, image, ensemble="no")
    with pytest.raises(ValueError, match="`margin` must be an integer >= 0"):
        denoise.denoise(unet, image, margin=-10)


def test_the_noise_estimate_follows_the_true_sigma():
    rng = np.random.default_rng(0)
    clean = np.clip(rng.normal(0.5, 0.02, (128, 128, 1)), 0, 1)  # nearly flat
    for sigma in (10 / 255, 25 / 255, 50 / 255):
        noisy = clean + rng.normal(0, sigma, clean.shape)
        assert denoise.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15)
        # A (height, width) image is the same one channel, not 128 channels of columns.
        assert denoise.estimate_sigma(noisy[..., 0]) == denoise.estimate_sigma(noisy)
    # 8-bit pixels would read as a noise 255 times too strong.
    with pytest.raises(ValueError, match=r"floats in \[0, 1\] \(divide 8-bit pixels by 255\)"):
        denoise.estimate_sigma(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))
    # Too small to say (scikit-image warns and returns a number, or NaN, below 5x5): NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(denoise.estimate_sigma(noisy[:7, :40]))
        assert np.isfinite(denoise.estimate_sigma(noisy[:8, :8]))


# --------------------------------------------------------------------------- widening


def narrow_unet(**kwargs):
    """A small U-Net whose every weight is moved off its initial value (biases too), so
    that widening must carry them all."""
    import keras

    keras.utils.set_random_seed(5)
    model = aezoo.MODELS["denoising"](input_shape=(None, None, 1), filters=(4, 6),
                                      latent_dim=8, corruption=None, **kwargs)
    rng = np.random.default_rng(5)
    model.set_weights([w + rng.uniform(-0.05, 0.05, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def test_a_widened_unet_denoises_as_the_narrow_one_did():
    """`denoising.widen` copies channels and splits what reads them among the copies: the
    same output for any weights, until a training step moves the copies apart."""
    import keras
    from aezoo.models import denoising

    narrow = narrow_unet()
    wide = aezoo.MODELS["denoising"](input_shape=(None, None, 1), filters=(7, 11),
                                     latent_dim=13, corruption=None)
    denoising.widen(narrow, wide)
    # 8 images: on fewer, a channel of this small random U-Net may stay below zero on all
    # of them (a dead ReLU, no gradient), and its copy could not part from it below.
    x = np.random.default_rng(6).random((8, 21, 30, 1)).astype(np.float32)
    expected = np.asarray(narrow(x))
    np.testing.assert_allclose(np.asarray(wide(x)), expected, atol=1e-5)
    # The residual output is mostly the input: compare the predicted noise too.
    assert np.abs((np.asarray(wide(x)) - x) - (expected - x)).max() <= (
        1e-4 * np.abs(expected - x).max())

    # New channels copy the weights of one old channel each, and get another share of the
    # next layer's input weights: one step of training moves them apart.
    kernel = wide.encoder.get_layer("down2_conv1").get_weights()[0]
    twins = {j: [k for k in range(6) if np.array_equal(kernel[..., j], kernel[..., k])]
             for j in range(6, 11)}
    assert all(len(twin) == 1 for twin in twins.values()), twins
    # (A large step: this untrained U-Net's gradients are about 1e-6.)
    wide.compile(optimizer=keras.optimizers.SGD(100.0), loss="mse")
    wide.fit(x + 0.1, x, epochs=1, verbose=0)
    moved = wide.encoder.get_layer("down2_conv1").get_weights()[0]
    # Each copy's step is its twin's times the ratio of their shares (0.6-1.6, and near 1
    # for some pairs): the copies part by far more than float32 round-off (about 1e-8 here).
    for j, (k,) in twins.items():
        step = np.abs(moved[..., j] - kernel[..., j]).max()
        assert np.abs(moved[..., j] - moved[..., k]).max() > 1e-3 * step > 0


@pytest.mark.parametrize("kwargs,message", [
    ({"filters": (3, 6)}, "only the widths may grow"),
    ({"filters": (4, 6, 8)}, "only the widths may grow"),
    ({"kernel_size": 5}, "only the widths may grow"),
])
def test_a_unet_is_only_widened(kwargs, message):
    from aezoo.models import denoising

    target = aezoo.MODELS["denoising"](input_shape=(None, None, 1), **{
        "filters": (4, 6), "latent_dim": 8, "corruption": None, **kwargs})
    with pytest.raises(ValueError, match=message):
        denoising.widen(narrow_unet(), target)


def test_residual_block_unets_are_not_widened():
    from aezoo.models import denoising

    target = aezoo.MODELS["denoising"](input_shape=(None, None, 1), filters=(4, 8),
                                       latent_dim=8, blocks=1, corruption=None)
    with pytest.raises(ValueError, match="blocks=0"):
        denoising.widen(narrow_unet(blocks=1), target)


def test_init_with_a_wider_unet_starts_where_the_narrow_one_was():
    from aezoo import training

    narrow = narrow_unet()
    clean = np.random.default_rng(7).random((16, 16, 16, 1)).astype(np.float32)
    wide = training.train("denoising", clean, noise=("gaussian", 0.1), init=narrow, epochs=1,
                          batch_size=16,
                          model_kwargs={"filters": (6, 6), "latent_dim": 10},
                          learning_rate=1e-9, strategy="cpu", verbose=0)[0]
    config = wide.get_config()
    assert tuple(config["filters"]) == (6, 6) and config["latent_dim"] == 10
    np.testing.assert_allclose(wide.predict(clean, verbose=0), narrow.predict(clean, verbose=0),
                               atol=1e-4)


def test_a_photo_of_any_size_is_denoised_as_well_as_its_crop_to_the_pooling_grid():
    """The U-Net pads a photo up to a multiple of its pooling by mirroring it: a band of
    zeros there (as before) is an edge no training patch had, and its pooled levels spread
    it over the photo (denoise_gray lost 0.45 dB on BSD68's 481x321 photos at sigma 50)."""
    from conftest import shared_data

    from aezoo import data

    path = shared_data("raw", "bsd68", "test001.png")
    model = aezoo.from_preset("denoise_gray")
    clean = data.read_image(path, channels=1).astype(np.float32) / 255  # 481 x 321
    rng = np.random.default_rng(0)
    noisy = clean + rng.standard_normal(clean.shape).astype(np.float32) * 50 / 255
    height, width = (size - size % 4 for size in clean.shape[:2])
    assert (height, width) != clean.shape[:2]
    whole = denoise.denoise(model, noisy)[:height, :width]
    crop = denoise.denoise(model, noisy[:height, :width])
    target = clean[:height, :width]
    # The two differ only near the crop's edge, where the crop lacks the photo's last rows
    # and columns: 0.002 dB apart here (with zeros, 0.21 dB).
    assert abs(metrics.psnr(target, whole) - metrics.psnr(target, crop)) < 0.05


def test_unclip_puts_back_the_mean_of_the_noise_a_file_clipped():
    """At a pixel of clean value 0, the noise an 8-bit file loses is the negative part of
    sigma * N(0, 1): `unclip` gives its mean, here checked by drawing it."""
    sigma = 0.2
    draws = np.random.default_rng(0).standard_normal(4_000_000) * sigma
    lost = draws[draws < 0].mean()
    image = np.array([[0.0, 0.5, 1.0], [0.3, 0.0, 1.0]], np.float32)
    out = denoise.unclip(image, sigma)
    np.testing.assert_allclose(out[image == 0], lost, rtol=2e-3)
    np.testing.assert_allclose(out[image == 1], 1 - lost, rtol=2e-3)
    inside = (image > 0) & (image < 1)
    np.testing.assert_array_equal(out[inside], image[inside])
    # Without a sigma it is estimated: an image too small for that, or one with no noise
    # (its 0s and 1s are content), stays as it is.
    np.testing.assert_array_equal(denoise.unclip(image), image)
    halves = np.zeros((16, 16, 1), np.float32)
    halves[:, 8:] = 1
    np.testing.assert_array_equal(denoise.unclip(halves), halves)


def test_png_bytes_take_uint8_pixels_as_they_are():
    """uint8 pixels are written unchanged, as their [0, 1] floats are (decoded back here
    by Pillow, an independent reader)."""
    import io

    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    for given in (pixels, pixels / 255.0, pixels[..., :1], pixels[..., :1] / 255.0):
        with Image.open(io.BytesIO(denoise.png_bytes(given))) as image:
            written = np.asarray(image)
        expected = pixels if given.shape[-1] == 3 else pixels[..., 0]
        np.testing.assert_array_equal(written, expected)


def test_png_bytes_write_a_2d_image_as_denoise_returns_it():
    """`denoise` gives a (height, width) image for a (height, width) one: both depths write
    it as a grayscale PNG (read back by Pillow)."""
    import io

    from PIL import Image

    image = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    for bits, scale in ((8, 255), (16, 65535)):
        with Image.open(io.BytesIO(denoise.png_bytes(image, bits=bits))) as png:
            written = np.asarray(png)
        np.testing.assert_array_equal(written, np.round(image * scale))


def correlated_noise(clean: np.ndarray, sigma: float, rho: float, seed: int) -> np.ndarray:
    """Noise of standard deviation `sigma` in each channel, correlated by `rho` between
    any two: sqrt(rho) of it shared, sqrt(1 - rho) the channel's own."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(clean.shape[:2] + (1,))
    own = rng.standard_normal(clean.shape)
    return (sigma * (np.sqrt(rho) * shared + np.sqrt(1 - rho) * own)).astype(np.float32)


def test_channel_correlation_reads_the_correlation_of_pure_noise():
    flat = np.full((128, 128, 3), 0.5, np.float32)
    for rho in (0.0, 0.5, 1.0):
        noisy = flat + correlated_noise(flat, 0.1, rho, seed=int(10 * rho))
        assert abs(denoise.channel_correlation(noisy) - rho) < 0.1


def test_the_luminance_first_denoises_noise_a_colour_model_leaves():
    """`denoise_rgb`, trained on noise independent in each channel, leaves noise shared by
    them; denoising the channels' mean with `denoise_gray` first removes it.  Measured on
    two CBSD68 crops at sigma 25 with a correlation of 0.9 (benchmarks/denoise_correlated.py
    has the whole range)."""
    from conftest import shared_data

    from aezoo import data, metrics

    rgb, gray = aezoo.from_preset("denoise_rgb"), aezoo.from_preset("denoise_gray")
    files = sorted(shared_data("raw", "cbsd68").glob("*.png"))[:2]
    alone, first = [], []
    for i, path in enumerate(files):
        clean = data.read_image(path, 3)[:160, :160].astype(np.float32) / 255
        noisy = clean + correlated_noise(clean, 25 / 255, 0.9, seed=i)
        alone.append(metrics.psnr(clean, denoise.denoise(rgb, noisy)))
        both = denoise.denoise(rgb, noisy, luminance=gray)
        first.append(metrics.psnr(clean, both))
        mean = noisy.mean(axis=-1, keepdims=True)
        np.testing.assert_allclose(
            both, denoise.denoise(rgb, noisy - mean + denoise.denoise(gray, mean)), atol=1e-6)
    assert np.mean(first) > np.mean(alone) + 3, (alone, first)
    with pytest.raises(ValueError, match="grayscale denoiser"):
        denoise.denoise(rgb, noisy, luminance=rgb)
