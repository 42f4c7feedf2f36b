"""`aezoo denoise`: training, denoising files and evaluating, as a user runs them."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import aezoo
from aezoo import runs
from aezoo.apps import denoise as app

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




def test_short_training_on_mnist_beats_the_noisy_input_by_far(mnist_run, tmp_path):
    assert {"model.keras", "run.json", "history.json", "loss.png", "samples.png"} <= {
        p.name for p in mnist_run.iterdir()
    }
    run = runs.load_run(mnist_run, task="denoise")
    assert run.application["level"] == pytest.approx(0.4)
    # The SavedModel for TF Serving denoises as the Keras model does (any size: 20x36 here).
    x = np.random.default_rng(0).random((2, 20, 36, 1)).astype(np.float32)
    served = tf.saved_model.load(str(mnist_run / "export" / "1")).signatures["serving_default"]
    np.testing.assert_allclose(served(x=tf.constant(x))["reconstruction"], run.model(x),
                               atol=1e-5)
    out = tmp_path / "eval"
    status = app.main([
        "evaluate", "--model", str(mnist_run), "--dataset", "mnist", "--limit", "6",
        "--noise", "gaussian:102", "--seed", "0", "--out", str(out),
    ])
    assert status == 0
    results = json.loads((out / "results.json").read_text())
    assert {"noise", "images", "methods", "per_image"} <= set(results) and results["images"] == 6
    assert set(results["methods"]) == {"noisy", "gaussian", "median", "nlm", "bm3d", "aezoo",
                                       "aezoo_x8"}
    scores = results["methods"]
    # Noisy MNIST at sigma 0.4 is about 10.7 dB; a denoiser that learnt anything about digits
    # gains several dB (over 15 dB after these four short epochs when this test was written).
    assert scores["aezoo"]["psnr"] > scores["noisy"]["psnr"] + 4
    assert scores["aezoo_x8"]["psnr"] > scores["noisy"]["psnr"] + 4
    assert scores["aezoo"]["ssim"] > scores["noisy"]["ssim"]
    assert (out / "samples.png").stat().st_size > 0 and "| aezoo |" in (out / "results.md").read_text()


def test_denoise_writes_one_png_per_input_with_its_size_and_mode(mnist_run, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = {"odd.png": (33, 47), "digit.png": (28, 28), "wide.jpg": (20, 90, 3)}
    for i, (name, shape) in enumerate(shapes.items()):
        write_image(inputs / name, shape, seed=i)
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    out = tmp_path / "out"
    assert app.main(["denoise", "--model", str(mnist_run), str(inputs), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["digit.png", "odd.png", "wide.png"]
    # The colour JPEG's line, and only its, says it was made gray; the noise of the image
    # 20 pixels high is estimated, as that of the others.
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines if "colour read as grayscale" in line] == [
        str(inputs / "wide.jpg")]
    assert all("estimated" in line for line in lines)
    write_image(tmp_path / "tiny.png", (5, 9))
    assert app.main(["denoise", "--model", str(mnist_run), str(tmp_path / "tiny.png"),
                     "--out", str(tmp_path / "tiny")]) == 0
    captured = capsys.readouterr()
    assert "too small to estimate its noise" in captured.out and captured.err == ""
    for name, shape in shapes.items():
        with Image.open(out / (name.split(".")[0] + ".png")) as image:
            assert image.size == (shape[1], shape[0])
            assert image.mode == "L"  # the model is grayscale: colour input is converted
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before
    # --ensemble writes the self-ensemble of aezoo.denoise, computed here in-process.
    assert app.main(["denoise", "--model", str(mnist_run), str(inputs / "odd.png"),
                     "--ensemble", "--out", str(tmp_path / "x8")]) == 0
    from aezoo import denoise

    noisy = np.asarray(Image.open(inputs / "odd.png"), np.float32)[..., None] / 255
    # (a model trained on Gaussian noise gets the file's 0s and 255s unclipped first)
    expected = denoise.denoise(runs.load_run(mnist_run).model, denoise.unclip(noisy),
                               ensemble=True)
    assert (tmp_path / "x8" / "odd.png").read_bytes() == denoise.png_bytes(expected)
    assert (tmp_path / "x8" / "odd.png").read_bytes() != (out / "odd.png").read_bytes()


@pytest.mark.usefixtures("no_export")
def test_an_rgb_model_writes_rgb_pngs_and_gray_ones_for_gray_photos(tmp_path, capsys):
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
    assert runs.load_run(run).application["channels"] == 3
    out = tmp_path / "out"
    gray = write_image(tmp_path / "gray.png", (17, 21))
    capsys.readouterr()
    assert app.main(["denoise", "--model", str(run), str(images / "0.png"), str(gray),
                     "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["grayscale read as colour (R = G = B), given back as grayscale" in line
            for line in lines] == [False, True]
    # a grayscale photo's noise is the same in the three channels: the luminance first
    assert ["luminance denoised first" in line for line in lines] == [False, True]
    with Image.open(out / "0.png") as image:
        assert (image.mode, image.size) == ("RGB", (30, 24))
    # The grayscale photo comes back grayscale: the mean of the three channels that the
    # Python API gives for it (the colour model after denoise_gray's luminance).
    from aezoo import denoise

    noisy = np.repeat(np.asarray(Image.open(gray), np.float32)[..., None] / 255, 3, axis=-1)
    noisy = denoise.unclip(noisy, denoise.estimate_sigma(noisy))
    colour = denoise.denoise(runs.load_run(run).model, noisy,
                             luminance=aezoo.from_preset("denoise_gray"))
    assert np.ptp(denoise.to_8bit(colour).astype(int), axis=-1).max() > 0  # not gray as is
    with Image.open(out / "gray.png") as image:
        assert (image.mode, image.size) == ("L", (21, 17))
        np.testing.assert_array_equal(np.asarray(image), denoise.to_8bit(colour.mean(-1)))


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
    # --skip-existing denoises only the new input, and leaves the one done
    other = write_image(tmp_path / "b.png", (20, 30))
    (out / "a.png").write_bytes(b"kept")
    assert app.main(["denoise", "--model", str(mnist_run), str(source), str(other), "--out",
                     str(out), "--skip-existing"]) == 0
    printed = capsys.readouterr().out
    assert "Skipping 1 of 2 files" in printed and "a.png ->" not in printed
    assert (out / "a.png").read_bytes() == b"kept"
    with Image.open(out / "b.png") as image:
        assert image.size == (30, 20)


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
    # A run folder of another command (here a plain `aezoo train` run).
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.keras").write_bytes((mnist_run / "model.keras").read_bytes())
    runs.write_run(plain, task="train", model="denoising", options={})
    assert_one_line_error(capsys, ["denoise", "--model", str(plain), image, "--out", out],
                          "not of `aezoo denoise train`")
    # A denoiser's run.json beside a model that does not map images to images.
    import keras

    other = tmp_path / "classifier"
    other.mkdir()
    (other / "run.json").write_text((mnist_run / "run.json").read_text())
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs))).save(
        other / "model.keras"
    )
    assert_one_line_error(capsys, ["denoise", "--model", str(other), image, "--out", out],
                          "is not a denoiser")
    # A file that is no model at all.
    (other / "model.keras").write_text("not a zip file")
    assert_one_line_error(capsys, ["denoise", "--model", str(other), image, "--out", out],
                          "is damaged or truncated")


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


def test_an_8bit_noisy_photo_is_denoised_about_as_well_as_its_unclipped_noise(tmp_path, capsys):
    """A file clips the Gaussian noise of a photo's dark and bright parts to 0 and 255;
    `denoise` puts back the noise's expected value there (`aezoo.denoise.unclip`) before
    `denoise_gray`, which was trained on unclipped noise.  Measured on the written PNG."""
    from conftest import shared_data

    import aezoo
    from aezoo import data, denoise, metrics

    clean = data.read_image(shared_data("raw", "bsd68", "test002.png"), channels=1) / 255
    noisy = clean + np.random.default_rng(0).standard_normal(clean.shape) * 50 / 255
    pixels = np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)  # 19 % at 0 or 255
    Image.fromarray(pixels[..., 0]).save(tmp_path / "noisy.png")
    assert app.main(["denoise", "--model", "denoise_gray", str(tmp_path / "noisy.png"),
                     "--out", str(tmp_path / "out")]) == 0
    assert "of its pixels clipped" in capsys.readouterr().out
    written = metrics.psnr(clean, data.read_image(tmp_path / "out" / "noisy.png"))
    model = aezoo.from_preset("denoise_gray")
    as_read = metrics.psnr(clean, denoise.denoise(model, pixels.astype(np.float32) / 255))
    unclipped = metrics.psnr(clean, denoise.denoise(model, noisy.astype(np.float32)))
    # Measured: 27.04 dB written, 24.10 from the 8-bit pixels as they are, 27.23 from the
    # noise before the file clipped it.
    assert written > as_read + 2
    assert written > unclipped - 0.3


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_png_is_denoised_at_its_full_depth_and_written_as_16_bits(channels, tmp_path,
                                                                         capsys):
    """A scan's 16-bit PNG keeps its bits: read whole (not its high byte), denoised, and
    written as a 16-bit PNG: what the Python API gives for its samples / 65535."""
    from conftest import shared_data

    from aezoo import data, denoise

    folder = "bsd68" if channels == 1 else "cbsd68"
    clean = data.read_image(shared_data("raw", folder, "test002.png" if channels == 1
                                        else "101085.png"), channels=channels)[:96, :128] / 255
    noisy = clean + np.random.default_rng(0).standard_normal(clean.shape) * 10 / 255
    samples = np.round(np.clip(noisy, 0, 1) * 65535).astype(np.uint16)
    (tmp_path / "scan.png").write_bytes(tf.io.encode_png(samples).numpy())
    assert app.main(["denoise", str(tmp_path / "scan.png"), "--out", str(tmp_path / "out")]) == 0
    line = capsys.readouterr().out
    assert "16 bits a sample, kept" in line and "read as 8-bit" not in line
    # Noise of sigma 10 (under the 15 from which the channels' correlation is looked at),
    # drawn for each channel: the model alone.
    assert "luminance denoised first" not in line
    written = tf.io.decode_png((tmp_path / "out" / "scan.png").read_bytes(), dtype=tf.uint16)
    assert written.shape == samples.shape and written.dtype == tf.uint16
    model = aezoo.from_preset("denoise_gray" if channels == 1 else "denoise_rgb")
    sigma = denoise.estimate_sigma(samples / 65535)
    expected = denoise.denoise(model, denoise.unclip(samples / 65535, sigma))
    expected = np.round(np.clip(expected, 0, 1) * 65535)
    assert np.abs(written.numpy() - expected).max() <= 1
    assert len(np.unique(written.numpy())) > 1024  # not 256 levels


def test_noise_beyond_what_the_model_was_trained_for_is_said_so(tmp_path, capsys):
    """`denoise_gray` was trained on sigma 0-55: a photo with more noise than that gets a
    warning on its line; one within the range does not."""
    from conftest import shared_data

    from aezoo import data

    clean = data.read_image(shared_data("raw", "bsd68", "test002.png"), channels=1)[..., 0]
    rng = np.random.default_rng(0)
    for sigma in (25, 90):
        noisy = clean + rng.standard_normal(clean.shape) * sigma
        Image.fromarray(np.round(np.clip(noisy, 0, 255)).astype(np.uint8)).save(
            tmp_path / f"sigma{sigma}.png")
    assert app.main(["denoise", "--model", "denoise_gray", str(tmp_path / "sigma25.png"),
                     str(tmp_path / "sigma90.png"), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["more than the 55 the model was trained for" in line for line in lines] == [
        False, True]


def test_noise_shared_by_the_channels_is_denoised_luminance_first(tmp_path, capsys):
    """A photo whose noise is mostly the same in the three channels: `denoise_rgb` alone
    leaves most of it (`--luminance-first off`, which says so); the default (auto) denoises
    the channels' mean with `denoise_gray` first, for that photo only.  A grayscale model
    refuses `--luminance-first on` in one line."""
    from conftest import shared_data

    from aezoo import data, metrics

    clean = data.read_image(sorted(shared_data("raw", "cbsd68").glob("*.png"))[5], 3)
    rng = np.random.default_rng(0)
    for name, rho in (("own", 0.0), ("shared", 0.9)):
        noise = 25 * (np.sqrt(rho) * rng.standard_normal(clean.shape[:2] + (1,))
                      + np.sqrt(1 - rho) * rng.standard_normal(clean.shape))
        Image.fromarray(np.round(np.clip(clean + noise, 0, 255)).astype(np.uint8)).save(
            tmp_path / f"{name}.png")
    inputs = [str(tmp_path / "own.png"), str(tmp_path / "shared.png")]
    assert app.main(["denoise", "--model", "denoise_rgb", *inputs,
                     "--out", str(tmp_path / "auto")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["luminance denoised first" in line for line in lines] == [False, True]
    assert app.main(["denoise", "--model", "denoise_rgb", "--luminance-first", "off", *inputs,
                     "--out", str(tmp_path / "off")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["drop --luminance-first off" in line for line in lines] == [False, True]
    scores = {folder: [metrics.psnr(clean, data.read_image(tmp_path / folder / name))
                       for name in ("own.png", "shared.png")] for folder in ("auto", "off")}
    assert scores["auto"][0] == scores["off"][0]  # independent noise: the model alone
    assert scores["auto"][1] > scores["off"][1] + 5, scores  # measured: 32.8 and 22.2 dB
    assert app.main(["denoise", "--model", "denoise_gray", "--luminance-first", "on",
                     inputs[0], "--out", str(tmp_path / "gray")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--luminance-first is for colour models" in err
    assert not (tmp_path / "gray").exists()


def test_with_no_model_each_file_goes_through_the_blind_preset_of_its_colour(tmp_path, capsys):
    """No --model: a grayscale file gets denoise_gray and a colour one denoise_rgb, in one
    run; the PNGs are those each preset writes when named, and each line names it."""
    from conftest import shared_data

    rng = np.random.default_rng(3)
    gray = np.asarray(Image.open(shared_data("raw", "bsd68", "test002.png")))[:64, :80]
    colour = np.asarray(Image.open(shared_data("raw", "cbsd68", "101085.png")))[:64, :80]
    for name, clean in (("gray", gray), ("colour", colour)):
        noisy = clean + rng.standard_normal(clean.shape) * 25
        Image.fromarray(np.round(np.clip(noisy, 0, 255)).astype(np.uint8)).save(
            tmp_path / f"{name}.png")
    capsys.readouterr()
    assert app.main(["denoise", str(tmp_path / "gray.png"), str(tmp_path / "colour.png"),
                     "--out", str(tmp_path / "found")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["(80x64, denoise_gray, " in lines[0], "(80x64, denoise_rgb, " in lines[1]] \
        == [True, True], lines
    for name, preset, mode in (("gray", "denoise_gray", "L"), ("colour", "denoise_rgb", "RGB")):
        assert app.main(["denoise", "--model", preset, str(tmp_path / f"{name}.png"),
                         "--out", str(tmp_path / preset)]) == 0
        with Image.open(tmp_path / "found" / f"{name}.png") as found:
            assert found.mode == mode
            assert np.array_equal(np.asarray(found),
                                  np.asarray(Image.open(tmp_path / preset / f"{name}.png")))


def test_evaluate_with_no_model_measures_the_blind_preset_of_the_images_colour(tmp_path,
                                                                               capsys):
    """No --model: a folder of grayscale photos is measured with denoise_gray, one holding a
    colour photo with denoise_rgb; the figures are those of naming the preset."""
    from conftest import shared_data

    gray, colour = tmp_path / "gray", tmp_path / "colour"
    gray.mkdir(), colour.mkdir()
    for i, name in enumerate(("test001.png", "test002.png")):
        crop = np.asarray(Image.open(shared_data("raw", "bsd68", name)))[:48, :64]
        Image.fromarray(crop).save(gray / name)
        Image.fromarray(crop).save(colour / name)
    Image.fromarray(np.asarray(Image.open(shared_data("raw", "cbsd68", "101085.png")))[
        :48, :64]).save(colour / "rgb.png")
    for folder, preset in ((gray, "denoise_gray"), (colour, "denoise_rgb")):
        scores, said = [], []
        for model in ([], ["--model", preset]):
            out = tmp_path / f"{folder.name}_{len(model)}"
            capsys.readouterr()
            assert app.main(["evaluate", *model, "--images", str(folder), "--noise",
                             "gaussian:25", "--methods", "aezoo", "--out", str(out)]) == 0
            said.append(capsys.readouterr().out.splitlines())
            results = json.loads((out / "results.json").read_text())
            assert results["model"] == preset
            scores.append(results["per_image"])
        assert said[0][0].startswith(f"Evaluating {preset}, the blind preset for ")
        assert not any(line.startswith("Evaluating") for line in said[1])  # named: no line
        assert scores[0] == scores[1]
    found = json.loads((tmp_path / "colour_0" / "results.json").read_text())
    assert found["images"] == 3


def test_evaluate_with_overwrite_that_fails_halfway_keeps_the_old_results_whole(
        tmp_path, monkeypatch, capsys):
    """A full disk at the last file: results.md, results.json and samples.png stay those of
    the first evaluation, never new tables beside an old plot."""
    from conftest import shared_data

    from aezoo import runs

    folder = tmp_path / "gray"
    folder.mkdir()
    crop = np.asarray(Image.open(shared_data("raw", "bsd68", "test001.png")))[:48, :64]
    Image.fromarray(crop).save(folder / "a.png")
    out = tmp_path / "results"
    args = ["evaluate", "--model", "denoise_gray", "--images", str(folder), "--methods",
            "noisy", "aezoo", "--out", str(out)]
    assert app.main([*args, "--noise", "gaussian:25"]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["results.json", "results.md", "samples.png"]
    write_text = runs.write_text

    def full_at_json(path, text):
        if path.name == "results.json":
            raise OSError(28, "No space left on device", str(path))
        write_text(path, text)

    monkeypatch.setattr(runs, "write_text", full_at_json)
    capsys.readouterr()
    assert app.main([*args, "--noise", "gaussian:50", "--overwrite"]) == 2
    assert capsys.readouterr().err.endswith("No space left on device (" + str(out / "results.json")
                                            + ")\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first


def test_train_refuses_a_corruption_on_top_of_its_noise(tmp_path, capsys):
    """`denoise train --noise gaussian:25 --corruption gaussian` added the model's own noise
    on top of the noisy inputs, silently (a loss 5 times higher); its help said the
    denoising model's default was 'gaussian', where denoise train gives it none."""
    np.save(tmp_path / "x.npy", np.zeros((8, 8, 8, 1), np.float32))
    out = tmp_path / "run"
    assert app.main(["train", "--arrays", str(tmp_path / "x.npy"), "--noise", "gaussian:25",
                         "--corruption", "gaussian", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--corruption adds noise inside the model" in err
    assert not out.exists()
    assert app.main(["train", "--help"]) == 0
    assert "(default none: --noise makes the noisy inputs)" in " ".join(
        capsys.readouterr().out.split())
