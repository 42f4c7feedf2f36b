"""The denoising application (applications/denoise.py), its noise models and its metrics."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from aezoo import metrics, noise
from aezoo.denoising import denoise as denoise_image
from conftest import ROOT

spec = importlib.util.spec_from_file_location("denoise_app", ROOT / "applications" / "denoise.py")
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)

# A small, quick denoiser: enough to learn MNIST digits at sigma 0.4 in a few epochs.
SMALL = ["--filters", "16", "32", "--latent-dim", "32"]


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A denoiser trained briefly on 2,000 MNIST digits with Gaussian noise of sigma 0.4."""
    if not Path(os.environ.get("TFDS_DATA_DIR", ""), "mnist").is_dir():
        pytest.skip("needs the prepared tensorflow-datasets (TFDS_DATA_DIR)")
    out = tmp_path_factory.mktemp("mnist") / "run"
    status = app.main([
        "train", "--dataset", "mnist", "--split", "train[:2000]", "--val-split", "test[:200]",
        "--noise", "gaussian:102", "--epochs", "4", "--batch-size", "32", *SMALL,
        "--out", str(out),
    ])
    assert status == 0
    return out


def write_image(path, shape, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels.squeeze()).save(path)
    return path


# --------------------------------------------------------------------- noise models

# 2**18 draws: a sample mean is within 5 standard errors of its expectation except with
# probability < 1e-6, so these bounds are the definitions' own, not tuned to the generator.
N = 2**18


def within(value, expected, standard_error):
    return abs(value - expected) < 5 * standard_error


def test_gaussian_noise_has_the_asked_mean_and_variance():
    x = np.full((N // 256, 256, 1), 0.5, np.float32)
    e = noise.add_noise(x, "gaussian", 0.1, (1, 2)).numpy() - x
    assert within(e.mean(), 0.0, 0.1 / np.sqrt(N))
    # var of a sample variance of normals: 2 sigma^4 / n
    assert within(e.var(), 0.01, np.sqrt(2 * 0.1**4 / N))


def test_salt_and_pepper_flips_the_asked_fraction_of_pixels_half_each_way():
    p = 0.2
    x = np.full((N // 256, 256, 3), 0.5, np.float32)
    y = noise.add_noise(x, "salt_pepper", p, (3, 4)).numpy()
    flipped = (y != 0.5).any(axis=-1)
    assert (y[flipped] == y[flipped][:, :1]).all(), "all channels of a pixel flip together"
    pixels = flipped.size
    assert within(flipped.mean(), p, np.sqrt(p * (1 - p) / pixels))
    salt = (y[..., 0] == 1).mean()
    assert within(salt, p / 2, np.sqrt(p / 2 * (1 - p / 2) / pixels))
    assert set(np.unique(y)) <= {0.0, 0.5, 1.0}


def test_mask_noise_zeroes_the_asked_fraction_of_pixels():
    p = 0.3
    x = np.full((N // 256, 256, 1), 0.7, np.float32)
    y = noise.add_noise(x, "mask", p, (5, 6)).numpy()
    assert set(np.unique(y)) == {0.0, np.float32(0.7)}
    assert within((y == 0).mean(), p, np.sqrt(p * (1 - p) / N))


def test_poisson_noise_has_the_mean_and_variance_of_photon_counts():
    peak, level = 30.0, 0.4  # counts ~ Poisson(12): mean 12/30, variance 12/30**2
    x = np.full((N // 256, 256, 1), level, np.float32)
    y = noise.add_noise(x, "poisson", peak, (7, 8)).numpy()
    variance = level / peak
    assert within(y.mean(), level, np.sqrt(variance / N))
    assert np.allclose(y * peak, np.round(y * peak), atol=1e-4), "whole photon counts"
    # var of a sample variance: (mu4 - var^2) / n, with mu4 = var^2 (3 + 1/lambda) for Poisson
    lam = level * peak
    assert within(y.var(), variance, np.sqrt(variance**2 * (2 + 1 / lam) / N))


def test_the_same_seed_gives_the_same_noise_and_another_seed_other_noise():
    x = np.full((4, 8, 8, 1), 0.5, np.float32)
    a = noise.add_noise(x, "gaussian", 0.1, (0, 1)).numpy()
    np.testing.assert_array_equal(a, noise.add_noise(x, "gaussian", 0.1, (0, 1)).numpy())
    assert not np.array_equal(a, noise.add_noise(x, "gaussian", 0.1, (0, 2)).numpy())


def test_noise_specs_are_parsed_on_the_8_bit_scale():
    assert noise.parse_noise("gaussian:25") == ("gaussian", 25 / 255)
    assert noise.parse_noise("salt_pepper:0.1") == ("salt_pepper", 0.1)
    assert noise.parse_noise("poisson:30") == ("poisson", 30.0)
    for bad in ("speckle:3", "gaussian", "gaussian:x", "mask:2"):
        with pytest.raises(ValueError):
            noise.parse_noise(bad)


# ------------------------------------------------------------------------ metrics


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


# ------------------------------------------------------------------- application


def test_short_training_on_mnist_beats_the_noisy_input_by_far(mnist_run, tmp_path):
    assert {"model.keras", "denoiser.json", "history.json", "loss.png", "samples.png"} <= {
        p.name for p in mnist_run.iterdir()
    }
    assert json.loads((mnist_run / "denoiser.json").read_text())["level"] == pytest.approx(0.4)
    # The SavedModel for TF Serving denoises as the Keras model does (any size: 20x36 here).
    x = np.random.default_rng(0).random((2, 20, 36, 1)).astype(np.float32)
    served = tf.saved_model.load(str(mnist_run / "export" / "1")).signatures["serving_default"]
    model, _ = app.load_denoiser(mnist_run)
    np.testing.assert_allclose(served(x=tf.constant(x))["reconstruction"], model(x), atol=1e-5)
    out = tmp_path / "eval"
    status = app.main([
        "evaluate", "--model", str(mnist_run), "--dataset", "mnist", "--limit", "6",
        "--noise", "gaussian:102", "--seed", "0", "--out", str(out),
    ])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"noise", "images", "methods"} and results["images"] == 6
    assert set(results["methods"]) == {"noisy", "gaussian", "median", "nlm", "bm3d", "aezoo"}
    scores = results["methods"]
    # Noisy MNIST at sigma 0.4 is about 10.7 dB; a denoiser that learnt anything about digits
    # gains several dB (over 15 dB after these four short epochs when this test was written).
    assert scores["aezoo"]["psnr"] > scores["noisy"]["psnr"] + 4
    assert scores["aezoo"]["ssim"] > scores["noisy"]["ssim"]
    assert (out / "samples.png").stat().st_size > 0 and "| aezoo |" in (out / "results.md").read_text()


def test_denoise_writes_one_png_per_input_with_its_size_and_mode(mnist_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = {"odd.png": (33, 47), "digit.png": (28, 28), "wide.jpg": (20, 90, 3)}
    for i, (name, shape) in enumerate(shapes.items()):
        write_image(inputs / name, shape, seed=i)
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    out = tmp_path / "out"
    assert app.main(["denoise", "--model", str(mnist_run), str(inputs), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["digit.png", "odd.png", "wide.png"]
    for name, shape in shapes.items():
        with Image.open(out / (name.split(".")[0] + ".png")) as image:
            assert image.size == (shape[1], shape[0])
            assert image.mode == "L"  # the model is grayscale: colour input is converted
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_an_rgb_model_writes_rgb_pngs(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    for i in range(4):
        write_image(images / f"{i}.png", (24, 30, 3), seed=i)
    run = tmp_path / "run"
    assert app.main([
        "train", "--images", str(images), "--patch", "16", "--noise", "gaussian:25",
        "--epochs", "1", "--batch-size", "4", "--filters", "4", "8", "--latent-dim", "8",
        "--out", str(run),
    ]) == 0
    assert json.loads((run / "denoiser.json").read_text())["channels"] == 3
    out = tmp_path / "out"
    gray = write_image(tmp_path / "gray.png", (17, 21))
    assert app.main(["denoise", "--model", str(run), str(images / "0.png"), str(gray),
                     "--out", str(out)]) == 0
    for name, size in (("0.png", (30, 24)), ("gray.png", (21, 17))):
        with Image.open(out / name) as image:
            assert (image.mode, image.size) == ("RGB", size)


def test_tiles_join_without_seams(mnist_run):
    model, _ = app.load_denoiser(mnist_run)
    image = np.random.default_rng(0).random((100, 150, 1)).astype(np.float32)
    whole = denoise_image(model, image)
    tiled = denoise_image(model, image, tile=80, margin=24)  # 2 x 4 tiles
    # This two-level U-Net's receptive field is 46 pixels wide (3x3 convolutions: 2 a level
    # down, 2 at the bottom, 2 a level up and 1 out, each widened by the pooling below it,
    # so a radius of 23); with margins of 24
    # and tiles on its pooling grid every kept pixel sees exactly what it sees in one pass,
    # so only float32 round-off may differ.
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_existing_outputs_are_refused_and_inputs_never_overwritten(mnist_run, tmp_path, capsys):
    source = write_image(tmp_path / "a.png", (30, 30))
    original = source.read_bytes()
    args = ["denoise", "--model", str(mnist_run), str(source)]
    assert app.main([*args, "--out", str(tmp_path)]) == 2
    assert app.main([*args, "--out", str(tmp_path), "--overwrite"]) == 2
    assert source.read_bytes() == original
    out = tmp_path / "out"
    assert app.main([*args, "--out", str(out)]) == 0
    written = (out / "a.png").read_bytes()
    capsys.readouterr()
    assert app.main([*args, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == written


def assert_one_line_error(capsys, argv, words):
    assert app.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


def test_an_unreadable_image_is_one_clear_error(mnist_run, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    argv = ["denoise", "--model", str(mnist_run), str(bad), "--out", str(out)]
    assert_one_line_error(capsys, argv, "not a readable PNG or JPEG")
    assert not out.exists()


def test_a_model_that_is_not_a_denoiser_is_one_clear_error(mnist_run, tmp_path, capsys):
    image = str(write_image(tmp_path / "a.png", (28, 28)))
    out = str(tmp_path / "out")
    # A run folder without denoiser metadata (e.g. one of python -m aezoo.train).
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.keras").write_bytes((mnist_run / "model.keras").read_bytes())
    assert_one_line_error(capsys, ["denoise", "--model", str(plain), image, "--out", out],
                          "is not a denoiser")
    # A denoiser's metadata beside a model that does not map images to images.
    import keras

    other = tmp_path / "classifier"
    other.mkdir()
    (other / "denoiser.json").write_text((mnist_run / "denoiser.json").read_text())
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs))).save(
        other / "model.keras"
    )
    assert_one_line_error(capsys, ["denoise", "--model", str(other), image, "--out", out],
                          "is not a denoiser")
    # A file that is no model at all.
    (other / "model.keras").write_text("not a zip file")
    assert_one_line_error(capsys, ["denoise", "--model", str(other), image, "--out", out],
                          "not a Keras model")


def test_an_unknown_noise_spec_is_one_clear_error(mnist_run, tmp_path, capsys):
    assert_one_line_error(
        capsys, ["train", "--dataset", "mnist", "--noise", "speckle:3", "--out", str(tmp_path / "r")],
        "Unknown noise spec",
    )
    assert not (tmp_path / "r").exists()
    assert_one_line_error(
        capsys, ["evaluate", "--model", str(mnist_run), "--dataset", "mnist", "--noise",
                 "gaussian:abc", "--out", str(tmp_path / "e")],
        "must be a number",
    )
