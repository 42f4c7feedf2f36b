"""`aezoo compress`: training, files, evaluation and one-line refusals, on the small grayscale
codec of conftest.py (trained on MNIST-size images in seconds, once per session)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from test_codec import absurd_header
from PIL import Image

from aezoo import codec, metrics, presets, runs
from aezoo.apps import compress


def test_training_writes_a_finalised_model_and_its_tables(codec_run):
    for name in ("model.keras", "run.json", "history.json", "loss.png", "samples.png",
                 "export/1/saved_model.pb"):
        assert (codec_run / name).is_file()
    model = runs.load_run(codec_run, task="compress").model
    # The tables were made at the end of training and saved with the model.
    tables = codec.tables(model)
    # Every channel's table: counts >= 1 for its window and escape, summing to 2**16.
    for counts, length in zip(tables["counts"], tables["lengths"]):
        assert 1 <= length <= 255
        assert np.all(counts[: length + 1] >= 1) and np.all(counts[length + 1:] == 0)
        assert counts.sum() == 2**16
    history = json.loads((codec_run / "history.json").read_text())
    assert len(history["bpp"]) == 3 and history["loss"][-1] < history["loss"][0]


def test_compressed_files_decode_to_images_of_the_original_size(
    codec_run, odd_images, packed, tmp_path, capsys, monkeypatch
):
    # (none kept decoded: each is decoded again to be written, and said decoded once)
    monkeypatch.setattr(compress.cli, "KEEP_DECODED_BYTES", 0)
    assert sorted(p.name for p in packed.iterdir()) == ["strip.aez", "tall.aez"]
    files = sorted(str(p) for p in packed.iterdir())
    assert compress.main(["decompress", "--model", str(codec_run), *files, "--out",
                          str(tmp_path)]) == 0
    # Each file says when it is decoded (all are, before any is written), then written.
    lines = [line.split(" (")[0] for line in capsys.readouterr().out.splitlines()]
    assert lines == ["[1/2] strip.aez: decoded", "[2/2] tall.aez: decoded",
                     f"[1/2] strip.aez -> {tmp_path / 'strip.png'}",
                     f"[2/2] tall.aez -> {tmp_path / 'tall.png'}"]
    for name in ("strip", "tall"):
        original = np.asarray(Image.open(odd_images / f"{name}.png"))
        with Image.open(tmp_path / f"{name}.png") as decoded:
            assert decoded.mode == "L"
            assert decoded.size == (original.shape[1], original.shape[0])


def test_transparency_that_the_codec_drops_is_said_so(codec_run, odd_images, tmp_path,
                                                       capsys):
    """An alpha channel or a transparent colour is not coded (the decoded PNG is opaque):
    the line of such a file says so, that of an opaque file does not."""
    gray = np.asarray(Image.open(odd_images / "tall.png"))
    Image.fromarray(np.stack([gray, np.full_like(gray, 128)], axis=-1), "LA").save(
        tmp_path / "alpha.png")
    Image.fromarray(gray).save(tmp_path / "keyed.png", transparency=0)
    Image.fromarray(gray).save(tmp_path / "opaque.png")
    files = [str(tmp_path / f"{name}.png") for name in ("alpha", "keyed", "opaque")]
    assert compress.main(["compress", "--model", str(codec_run), *files, "--out",
                          str(tmp_path / "packed")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["transparency dropped" in line for line in lines] == [True, True, False]


def test_a_photo_turned_by_its_exif_orientation_comes_back_upright(codec_run, odd_images,
                                                                   tmp_path, capsys):
    """A phone stores a photo taken upright-on-its-side as it was shot, with EXIF
    orientation 6: viewers turn it.  The decompressed PNG has no orientation, so the codec
    codes the pixels turned upright, and says so."""
    gray = np.asarray(Image.open(odd_images / "tall.png"))  # 37x45
    image = Image.fromarray(gray)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "phone.png", exif=exif)
    assert compress.main(["compress", "--model", str(codec_run), str(tmp_path / "phone.png"),
                          "--out", str(tmp_path / "packed")]) == 0
    assert "turned upright (EXIF orientation 6)" in capsys.readouterr().out
    assert compress.main(["decompress", "--model", str(codec_run), str(tmp_path / "packed"),
                          "--out", str(tmp_path / "unpacked")]) == 0
    decoded = np.asarray(Image.open(tmp_path / "unpacked" / "phone.png"), np.float64)
    upright = np.rot90(gray, -1).astype(np.float64)  # turned clockwise: 45 rows, 37 columns
    assert decoded.shape == upright.shape == (45, 37)
    # Lossy, but far closer to the upright photo than to anything else of that shape.
    assert np.mean((decoded - upright) ** 2) < 0.5 * np.mean((decoded - upright[::-1]) ** 2)


def test_a_colour_image_to_a_gray_codec_is_coded_gray_and_said_so(
    codec_run, odd_images, tmp_path, capsys
):
    colour = tmp_path / "colour.png"
    gray = np.asarray(Image.open(odd_images / "tall.png"))
    Image.fromarray(np.stack([gray, gray[::-1], gray[:, ::-1]], axis=-1)).save(colour)
    assert compress.main(["compress", "--model", str(codec_run), str(colour), str(odd_images /
                          "tall.png"), "--out", str(tmp_path / "packed")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ["colour read as grayscale" in line for line in lines] == [True, False]
    assert compress.main(["decompress", "--model", str(codec_run), str(tmp_path / "packed"),
                          "--out", str(tmp_path / "unpacked")]) == 0
    with Image.open(tmp_path / "unpacked" / "colour.png") as decoded:
        assert decoded.mode == "L"


def test_a_folder_stands_for_its_images_and_its_aez_files(
    codec_run, odd_images, packed, tmp_path, capsys
):
    # (its other files are named, not read: a TIFF scan, notes; hidden ones are not named)
    folder = shutil.copytree(odd_images, tmp_path / "photos")
    for name in ("scan.tif", "notes.txt", "._tall.png"):
        (folder / name).write_bytes(b"not an image")
    assert compress.main(["compress", "--model", str(codec_run), str(folder), "--out",
                          str(tmp_path / "packed")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{folder}: 2 other files skipped (notes.txt, scan.tif); only PNG and JPEG images "
        "are read")
    for name in ("strip.aez", "tall.aez"):  # the same bytes as the files named one by one
        assert (tmp_path / "packed" / name).read_bytes() == (packed / name).read_bytes()
    assert compress.main(["decompress", "--model", str(codec_run), str(packed), "--out",
                          str(tmp_path / "unpacked")]) == 0
    assert sorted(p.name for p in (tmp_path / "unpacked").iterdir()) == ["strip.png", "tall.png"]
    (tmp_path / "empty").mkdir()
    assert compress.main(["decompress", "--model", str(codec_run), str(tmp_path / "empty"),
                          "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def run_script(*args: str) -> None:
    """applications/compress.py in a process of its own, as a user runs it."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "applications" / "compress.py"), *args],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_another_process_writes_the_same_bits_and_decodes_the_same_pixels(
    codec_run, odd_images, packed, tmp_path
):
    images = sorted(odd_images.iterdir())
    run_script("compress", "--model", str(codec_run), *map(str, images),
               "--out", str(tmp_path / "aez"))
    run_script("decompress", "--model", str(codec_run),
               *map(str, sorted((tmp_path / "aez").iterdir())), "--out", str(tmp_path / "png"))
    this_process = codec.Codec(runs.load_run(codec_run).model)
    psnrs = []
    for image_path in images:
        name = image_path.stem
        blob = (tmp_path / "aez" / f"{name}.aez").read_bytes()
        # The integer tables give the same bits in both processes...
        assert blob == (packed / f"{name}.aez").read_bytes()
        # ...and the other process's pixels are this process's, bit for bit.
        decoded = np.asarray(Image.open(tmp_path / "png" / f"{name}.png"))
        np.testing.assert_array_equal(decoded, this_process.decompress(blob)[..., 0])
        psnrs.append(metrics.psnr(np.asarray(Image.open(image_path)), decoded))

    out = tmp_path / "rd"
    assert compress.main(["evaluate", "--model", str(codec_run), "--images", str(odd_images),
                          "--codecs", "jpeg", "--out", str(out)]) == 0
    ours = json.loads((out / "results.json").read_text())["curves"]["aezoo"][0]
    # Same pixels, so the same PSNR up to float64 round-off in the mean.
    assert ours["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)
    # Bits per pixel are the file's bits: 8 x file size / pixels, per image, averaged.
    bpps = [8 * (packed / f"{p.stem}.aez").stat().st_size / np.prod(Image.open(p).size)
            for p in images]
    assert ours["bpp"] == pytest.approx(np.mean(bpps), abs=1e-12)
    assert (out / "rd.png").is_file() and "| aezoo |" in (out / "results.md").read_text()


def test_evaluate_keeps_apart_two_runs_of_the_same_name(codec_run, odd_images, tmp_path, capsys):
    """A run and a copy of it in another folder (as a retrained run and the preset it started
    from): two rate points named by their paths, not one that overwrites the other."""
    copy = shutil.copytree(codec_run, tmp_path / "elsewhere" / codec_run.name)
    out = tmp_path / "rd"
    assert compress.main(["evaluate", "--model", str(codec_run), str(copy), "--images",
                          str(odd_images), "--codecs", "--out", str(out)]) == 0
    curves = json.loads((out / "results.json").read_text())["curves"]
    assert list(curves) == ["aezoo"]  # `--codecs` alone: no classical codec
    points = curves["aezoo"]
    assert [p["setting"] for p in points] == [str(codec_run), str(copy)]
    assert points[0]["bpp"] == points[1]["bpp"] and points[0]["psnr"] == points[1]["psnr"]
    table = (out / "results.md").read_text()  # and in the table, by the same names
    assert f"| aezoo | {codec_run} |" in table and f"| aezoo | {copy} |" in table
    capsys.readouterr()
    # The same run twice, however written, is refused (as is a preset named twice).
    for twice in ([str(copy), str(copy)], [str(copy), f"{copy}/"],
                  [str(copy), str(copy.parent / ".." / "elsewhere" / copy.name)],
                  ["codec_0.01", "codec_0.01"]):
        status = compress.main(["evaluate", "--model", *twice, "--images",
                                str(odd_images), "--out", str(tmp_path / "rd2")])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and "given twice" in err, twice
        assert not (tmp_path / "rd2").exists()


@pytest.mark.parametrize("flag", ["--limit", "--max-images"])
def test_evaluate_measures_the_first_n_images_as_denoise_evaluate_does(flag, codec_run,
                                                                      odd_images, tmp_path):
    """`--limit N` (or `--max-images N`) in both evaluate commands: the first N images of the
    folder in name order, the point's figures those of that image alone."""
    from aezoo import data
    from aezoo.apps import denoise

    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(data.list_images(odd_images)[0], first)
    points = []
    for images, limit in ((odd_images, [flag, "1"]), (first, [])):
        out = tmp_path / f"rd_{images.name}"
        assert compress.main(["evaluate", "--model", str(codec_run), "--images", str(images),
                              *limit, "--codecs", "--out", str(out)]) == 0
        point, = json.loads((out / "results.json").read_text())["curves"]["aezoo"]
        points.append([point[key] for key in ("bpp", "psnr", "estimated_bpp")])
    assert points[0] == points[1]
    assert denoise.build_parser().parse_args(
        ["evaluate", "--images", "x", "--noise", "gaussian:25", flag, "2", "--out", "o"]
    ).limit == 2


def test_evaluate_with_no_model_measures_every_codec_preset_as_their_cards_do(tmp_path):
    """No --model: the seven codec presets, in rate order, each point the bpp of its own
    file of the image (as `compress` writes it) and the PSNR of its decoding through the
    filter its card names (as `decompress` writes it)."""
    from conftest import shared_data

    photo = np.asarray(Image.open(shared_data("raw", "kodak", "kodim23.png")))[100:164, 200:264]
    (tmp_path / "images").mkdir()
    Image.fromarray(photo).save(tmp_path / "images" / "parrot.png")
    assert compress.main(["evaluate", "--images", str(tmp_path / "images"), "--codecs",
                          "--out", str(tmp_path / "rd")]) == 0
    points = json.loads((tmp_path / "rd" / "results.json").read_text())["curves"]["aezoo"]
    names = [p["setting"] for p in points]
    assert names == ["codec_0.0018", "codec_0.004", "codec_0.01", "codec_0.025", "codec_0.05",
                     "codec_0.1", "codec_0.2"]
    for name, point in zip(names[::3], points[::3]):  # 3 of them again, by the commands
        assert compress.main(["compress", "--model", name, str(tmp_path / "images"),
                              "--out", str(tmp_path / name), "--overwrite"]) == 0
        aez = tmp_path / name / "parrot.aez"
        assert point["bpp"] == pytest.approx(8 * aez.stat().st_size / 64**2)
        assert compress.main(["decompress", str(aez), "--out", str(tmp_path / name),
                              "--overwrite"]) == 0
        decoded = np.asarray(Image.open(tmp_path / name / "parrot.png"))
        assert point["psnr"] == pytest.approx(metrics.psnr(photo, decoded), abs=1e-3)


# -------------------------------------------------------------------- corruption


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:]


def set_length(data: bytes, change: int) -> bytes:
    """The payload length field (bytes 30-33) changed by `change`."""
    length = int.from_bytes(data[30:34], "little") + change
    return data[:30] + length.to_bytes(4, "little") + data[34:]


CORRUPTIONS = {
    # name: (how the file is changed, words the one-line message must contain)
    "magic byte": (lambda d: flip(d, 1), "not an .aez file"),
    "version byte": (lambda d: flip(d, 4), "format version"),
    "height byte": (lambda d: flip(d, 9), "corrupted"),
    "latent shape byte": (lambda d: flip(d, 16), "corrupted"),
    "fingerprint byte": (lambda d: flip(d, 22), "corrupted"),
    "length too large": (lambda d: set_length(d, +1000), "truncated"),
    "length too small": (lambda d: set_length(d, -4), "corrupted"),
    "checksum byte": (lambda d: flip(d, 35), "corrupted"),
    "payload byte": (lambda d: flip(d, len(d) - 3), "corrupted"),
    "truncated payload": (lambda d: d[:-4], "truncated"),
    "truncated header": (lambda d: d[:20], "truncated"),
    "trailing bytes": (lambda d: d + b"\0", "corrupted"),
    "random bytes": (lambda d: np.random.default_rng(0).bytes(len(d)), "not an .aez file"),
    "empty file": (lambda d: b"", "not an .aez file"),
    "absurd size": (absurd_header, "absurd"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_every_corruption_is_rejected_with_one_line_and_status_2(
    corruption, codec_run, packed, tmp_path, capsys
):
    change, words = CORRUPTIONS[corruption]
    bad = tmp_path / "tall.aez"
    bad.write_bytes(change((packed / "tall.aez").read_bytes()))
    capsys.readouterr()
    status = compress.main(["decompress", "--model", str(codec_run), str(bad), "--out",
                            str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "tall.png").exists()


def test_a_file_made_by_another_model_is_rejected(codec_run, packed, tmp_path, capsys):
    other = runs.load_run(codec_run).model
    weights = other.get_weights()
    weights[0] = weights[0] + 1e-3  # a slightly different model: its fingerprint differs
    other.set_weights(weights)
    other_run = tmp_path / "other"
    other_run.mkdir()
    other.save(other_run / "model.keras")
    (other_run / "run.json").write_text((codec_run / "run.json").read_text())
    capsys.readouterr()
    status = compress.main(["decompress", "--model", str(other_run), str(packed / "tall.aez"),
                            "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "made by another model" in err


def test_a_presets_files_decompress_without_model_and_a_wrong_model_names_the_preset(
        packed, tmp_path, capsys):
    """`decompress` with no --model decodes each file with the preset whose fingerprint its
    header carries, files of two presets in one folder included (one of them written by
    `compress` with no --model: codec_0.01): the same PNGs as with their --model.  A file of a model that is no preset, with no --model, is one line and
    status 2; the wrong preset's --model names the right one."""
    from conftest import shared_data

    photo = np.asarray(Image.open(shared_data("raw", "kodak", "kodim23.png")))[100:164, 200:296]
    Image.fromarray(photo).save(tmp_path / "low.png")
    Image.fromarray(photo[::-1]).save(tmp_path / "mid.png")
    # (mid.png by `compress` with no --model, which uses codec_0.01 and says so)
    for name, preset in (("low", "codec_0.004"), ("mid", "codec_0.01")):
        model = ["--model", preset] if name == "low" else []
        capsys.readouterr()
        assert compress.main(["compress", *model, str(tmp_path / f"{name}.png"),
                              "--out", str(tmp_path / "packed")]) == 0
        assert capsys.readouterr().out.startswith("Compressing with codec_0.01, the default") \
            == (name == "mid")
        assert compress.main(["decompress", "--model", preset,
                              str(tmp_path / "packed" / f"{name}.aez"),
                              "--out", str(tmp_path / "given")]) == 0
    capsys.readouterr()
    assert compress.main(["decompress", str(tmp_path / "packed"), "--out",
                          str(tmp_path / "found")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]
    assert [", codec_0.004, " in lines[0], ", codec_0.01, " in lines[1]] == [True, True]
    for name in ("low", "mid"):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "found" / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / "given" / f"{name}.png")))

    status = compress.main(["decompress", str(packed / "tall.aez"), "--out",
                            str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "not a codec preset" in err, err
    assert "--model RUN" in err and not (tmp_path / "none").exists()
    status = compress.main(["decompress", "--model", "codec_0.01",
                            str(tmp_path / "packed" / "low.aez"), "--out", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "the preset codec_0.004" in err, err


def test_outputs_never_overwrite_inputs_or_existing_files(
    codec_run, odd_images, packed, tmp_path, capsys
):
    image = odd_images / "tall.png"
    before = image.read_bytes()
    (tmp_path / "tall.aez").write_bytes((packed / "tall.aez").read_bytes())
    # decompressing next to the original PNG would replace it
    status = compress.main(["decompress", "--model", str(codec_run), str(tmp_path / "tall.aez"),
                            "--out", str(odd_images)])
    assert status == 2 and "exists" in capsys.readouterr().err
    assert image.read_bytes() == before
    status = compress.main(["compress", "--model", str(codec_run), str(image), "--out", str(packed)])
    assert status == 2 and "--overwrite" in capsys.readouterr().err


def test_skip_existing_goes_on_where_a_batch_stopped(codec_run, odd_images, packed, tmp_path,
                                                    capsys):
    """A batch stopped part-way (a full disk, Ctrl-C) left some outputs: --skip-existing
    does the others and leaves those as they are (before, only --overwrite of them all)."""
    images = [str(odd_images / "strip.png"), str(odd_images / "tall.png")]
    kept = b"an output of an earlier run"
    (tmp_path / "strip.aez").write_bytes(kept)
    assert compress.main(["compress", "--model", str(codec_run), *images, "--out",
                          str(tmp_path), "--skip-existing"]) == 0
    out = capsys.readouterr().out
    assert f"Skipping 1 of 2 files, whose output is in {tmp_path} already" in out
    assert "strip.png" not in out.split("already", 1)[1]
    assert (tmp_path / "strip.aez").read_bytes() == kept
    assert (tmp_path / "tall.aez").read_bytes() == (packed / "tall.aez").read_bytes()
    # All there: nothing to do, no model opened (a run folder that is not one would fail).
    assert compress.main(["compress", "--model", str(tmp_path / "nothing"), *images,
                          "--out", str(tmp_path), "--skip-existing"]) == 0
    assert "Skipping 2 of 2 files" in capsys.readouterr().out
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    (pngs / "strip.png").write_bytes(kept)
    assert compress.main(["decompress", "--model", str(codec_run), str(packed / "strip.aez"),
                          str(packed / "tall.aez"), "--out", str(pngs), "--skip-existing"]) == 0
    assert "Skipping 1 of 2 files" in capsys.readouterr().out
    assert (pngs / "strip.png").read_bytes() == kept
    assert Image.open(pngs / "tall.png").size == Image.open(odd_images / "tall.png").size
    assert compress.main(["decompress", str(packed / "tall.aez"), "--out", str(tmp_path),
                          "--skip-existing", "--overwrite"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("action", ["compress", "evaluate"])
def test_an_image_too_large_for_a_file_is_refused_by_name_before_any_work(
        action, codec_run, odd_images, tmp_path, capsys):
    # A 1x40000 strip is a small PNG but more than a .aez side holds: it is refused from
    # its header, naming it, before the first image's file is written or a model loads.
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(odd_images / "tall.png", folder / "a.png")
    Image.new("L", (40000, 1)).save(folder / "b_strip.png")
    out = tmp_path / "out"
    argv = (["compress", str(folder)] if action == "compress"
            else ["evaluate", "--images", str(folder), "--codecs"])
    assert compress.main([*argv, "--model", str(codec_run), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"aezoo compress: error: {folder / 'b_strip.png'} is 40000x1 pixels; a .aez file "
        f"holds at most {codec.MAX_SIDE} a side and 33.6 megapixels (scale it down first).\n")
    assert not out.exists()


@pytest.mark.parametrize("option, value", [("--clipnorm", "-1"), ("--epochs", "0")])
def test_bad_training_options_give_one_line_and_status_2(digits, tmp_path, capsys, option, value):
    status = compress.main(["train", "--images", str(digits), "--patch", "16", option, value,
                            "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and option in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_training_under_a_mirrored_strategy_on_two_cpu_devices(digits, tmp_path):
    """compute_loss divides by the number of replicas: the reported loss (which Keras
    multiplies back) must equal rate + lmbda * 255**2 * MSE as on one device."""
    script = f"""
import sys, json
from aezoo.apps import cli, compress
cli.start_tensorflow()
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.exit(compress.main(["train", "--model", "compression", "--images", {str(digits)!r}, "--patch", "24",
    "--latent-dim", "8", "--filters", "8", "8", "--epochs", "2", "--batch-size", "16",
    "--lmbda", "0.05", "--strategy", "mirrored", "--out", {str(tmp_path / "mirrored")!r}]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "mirrored" / "history.json").read_text())
    for loss, bpp, mse in zip(history["loss"], history["bpp"], history["mse"]):
        # Epoch means of per-batch values: equal up to float32 round-off.
        assert loss == pytest.approx(bpp + 0.05 * 255**2 * mse, rel=1e-4)
    assert runs.load_run(tmp_path / "mirrored").model.entropy_bottleneck.finalised


@pytest.mark.usefixtures("no_export")  # (the run's SavedModel is not read here)
def test_training_in_bfloat16_gives_a_float32_codec(digits, odd_images, tmp_path):
    out = tmp_path / "bf16"
    assert compress.main([
        "train", "--model", "compression", "--images", str(digits), "--patch", "24",
        "--latent-dim", "8", "--filters", "8", "8", "--epochs", "1", "--batch-size", "16", "--strategy", "cpu",
        "--mixed-precision", "mixed_bfloat16", "--out", str(out),
    ]) == 0
    model = runs.load_run(out).model
    assert {layer.compute_dtype for layer in model.encoder.layers} == {"float32"}
    packer = codec.Codec(model)
    image = np.asarray(Image.open(odd_images / "tall.png"))[..., None]
    assert packer.decompress(packer.compress(image)).shape == image.shape


def test_inputs_are_all_read_first_but_only_kept_while_they_fit(
    codec_run, odd_images, tmp_path, monkeypatch
):
    """`cli.read_first` reads every file before anything is written, keeps what fits its
    budget and reads the rest again at its turn; with no budget at all, the command writes
    the same files, and a file that does not decode still stops it before any output."""
    from aezoo.apps import cli

    reads = []

    def read(path):
        reads.append(path.name)
        return np.asarray(Image.open(path))

    files = sorted(odd_images.iterdir())  # strip.png (9x60), tall.png (37x45)
    loaders = cli.read_first(files, read, keep_bytes=9 * 60)
    assert reads == ["strip.png", "tall.png"]
    for path, load in zip(files, loaders):
        np.testing.assert_array_equal(load(), np.asarray(Image.open(path)))
    assert reads == ["strip.png", "tall.png", "tall.png"]  # only tall.png is read again

    args = ["compress", "--model", str(codec_run), *map(str, files)]
    assert compress.main([*args, "--out", str(tmp_path / "kept")]) == 0
    monkeypatch.setattr(cli, "KEEP_DECODED_BYTES", 0)
    assert compress.main([*args, "--out", str(tmp_path / "read_again")]) == 0
    for name in ("strip.aez", "tall.aez"):
        assert (tmp_path / "kept" / name).read_bytes() == (
            tmp_path / "read_again" / name).read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes((odd_images / "tall.png").read_bytes()[:200])
    assert compress.main([*args, str(broken), "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()


def test_a_grayscale_photo_comes_back_a_grayscale_png_from_a_colour_preset(tmp_path):
    from conftest import shared_data

    gray = np.asarray(Image.open(shared_data("raw", "bsd68", "test003.png")))[:96, :160]
    Image.fromarray(gray).save(tmp_path / "scan.png")
    Image.fromarray(np.stack([gray, gray[::-1], gray], axis=-1)).save(tmp_path / "colour.png")
    assert compress.main(["compress", "--model", "codec_0.004", str(tmp_path / "scan.png"),
                          str(tmp_path / "colour.png"), "--out", str(tmp_path / "packed")]) == 0
    assert compress.main(["decompress", "--model", "codec_0.004", str(tmp_path / "packed"),
                          "--out", str(tmp_path / "unpacked")]) == 0
    with Image.open(tmp_path / "unpacked" / "scan.png") as scan:
        assert (scan.mode, scan.size) == ("L", (160, 96))
    with Image.open(tmp_path / "unpacked" / "colour.png") as colour:
        assert colour.mode == "RGB"


def test_the_presets_decode_through_their_postfilter_unless_told_not_to(tmp_path, capsys):
    """`decompress` runs the post-filter that a codec preset's card names on what it decodes
    (auto), or not (`--postfilter none`); the same file either way, and the filter's pixels
    are nearer the photo.  A model that is not a post-filter is one line and exit status 2."""
    from conftest import shared_data

    from aezoo import denoise

    photo = np.asarray(Image.open(shared_data("raw", "kodak", "kodim23.png")))[100:228, 200:392]
    Image.fromarray(photo).save(tmp_path / "parrots.png")
    assert compress.main(["compress", "--model", "codec_0.004", str(tmp_path / "parrots.png"),
                          "--out", str(tmp_path / "packed")]) == 0
    aez = tmp_path / "packed" / "parrots.aez"
    for choice in ("auto", "none"):
        assert compress.main(["decompress", "--model", "codec_0.004", str(aez), "--postfilter",
                              choice, "--out", str(tmp_path / choice)]) == 0
    filtered = np.asarray(Image.open(tmp_path / "auto" / "parrots.png"))
    plain = np.asarray(Image.open(tmp_path / "none" / "parrots.png"))
    assert np.array_equal(plain, codec.Codec(runs.load_run("codec_0.004").model).read(aez))
    # Recomputed: the filter that codec_0.004's card names, on the plain decoding.
    model = runs.load_run(presets.PRESETS["codec_0.004"]["postfilter"]).model
    expected = denoise.to_8bit(denoise.denoise(model, plain / np.float32(255)))
    assert np.array_equal(filtered, expected)
    assert metrics.psnr(photo, filtered) > metrics.psnr(photo, plain) + 0.1
    capsys.readouterr()
    status = compress.main(["decompress", "--model", "codec_0.004", str(aez), "--postfilter",
                            "codec_0.01", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "is not a post-filter" in err, err
    assert not (tmp_path / "bad").exists()


def test_evaluate_says_how_far_a_long_rate_point_is(monkeypatch, capsys):
    # Unrefined: a line once 10 s have passed since the last, none after the last image
    # (the point's own line follows); refined: a line after every image.
    clock = iter([0.0, 4.0, 11.0, 15.0, 22.0, 40.0])  # start, then after images 1-5
    monkeypatch.setattr(compress.time, "perf_counter", lambda: next(clock))
    progress = compress._images_done(compress.time.perf_counter(), 10)
    for done in range(1, 6):
        progress("codec_0.01", done, 5)
    assert capsys.readouterr().out.splitlines() == [
        "  aezoo codec_0.01: 2/5 images (11 s)", "  aezoo codec_0.01: 4/5 images (22 s)"]
    clock = iter([0.0, 1.0, 2.0])
    progress = compress._images_done(compress.time.perf_counter(), 0)
    progress("codec_0.01", 1, 2)
    progress("codec_0.01", 2, 2)
    assert capsys.readouterr().out.splitlines() == [
        "  aezoo codec_0.01: 1/2 images (1 s)", "  aezoo codec_0.01: 2/2 images (2 s)"]
