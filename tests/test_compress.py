"""The compression application and its .aez format, on a small grayscale model trained on
MNIST-size images in seconds (once per test module)."""

import gzip
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from aezoo import codec, rd
from conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "applications"))
import compress  # noqa: E402


def read_idx_images(path: Path, count: int) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16)[: count * 784].reshape(count, 28, 28)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """64 MNIST test digits as PNG files, plus two odd-sized images (tiled digits)."""
    images = read_idx_images(shared_data("raw", "mnist", "t10k-images-idx3-ubyte.gz"), 64)
    folder = tmp_path_factory.mktemp("digits")
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"digit{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory) -> Path:
    """A grayscale codec (stride 8) trained for a few seconds through the application."""
    out = tmp_path_factory.mktemp("run") / "gray"
    status = compress.main([
        "train", "--images", str(digits), "--patch", "24", "--patches-per-image", "4",
        "--lmbda", "0.05", "--latent-dim", "8", "--filters", "8", "8", "--epochs", "3",
        "--batch-size", "16", "--learning-rate", "3e-3", "--strategy", "cpu", "--out", str(out),
    ])
    assert status == 0
    return out


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory) -> Path:
    """Grayscale images whose sizes are not multiples of the stride (8): 37x45 and 9x60."""
    images = read_idx_images(shared_data("raw", "mnist", "t10k-images-idx3-ubyte.gz"), 8)
    folder = tmp_path_factory.mktemp("odd")
    tiled = np.vstack([np.hstack(images[:2]), np.hstack(images[2:4])])
    Image.fromarray(tiled[:37, :45]).save(folder / "tall.png")
    Image.fromarray(np.hstack(images[4:7])[10:19, :60]).save(folder / "strip.png")
    return folder


@pytest.fixture(scope="module")
def packed(run, odd_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed")
    images = sorted(str(p) for p in odd_images.iterdir())
    assert compress.main(["compress", "--model", str(run), *images, "--out", str(out)]) == 0
    return out


def test_training_writes_a_finalised_model_and_its_tables(run):
    for name in ("model.keras", "tables.npz", "history.json", "loss.png",
                 "saved_model/1/saved_model.pb"):
        assert (run / name).is_file()
    model = codec.load_model(run)
    tables = np.load(run / "tables.npz")
    np.testing.assert_array_equal(tables["counts"], model.entropy_bottleneck.table_counts.numpy())
    # Every channel's table: counts >= 1 for its window and escape, summing to 2**16.
    for counts, length in zip(tables["counts"], tables["lengths"]):
        assert 1 <= length <= 255
        assert np.all(counts[: length + 1] >= 1) and np.all(counts[length + 1:] == 0)
        assert counts.sum() == 2**16
    history = json.loads((run / "history.json").read_text())
    assert len(history["bpp"]) == 3 and history["loss"][-1] < history["loss"][0]


def test_compressed_files_decode_to_images_of_the_original_size(run, odd_images, packed, tmp_path):
    assert sorted(p.name for p in packed.iterdir()) == ["strip.aez", "tall.aez"]
    files = sorted(str(p) for p in packed.iterdir())
    assert compress.main(["decompress", "--model", str(run), *files, "--out", str(tmp_path)]) == 0
    for name in ("strip", "tall"):
        original = np.asarray(Image.open(odd_images / f"{name}.png"))
        with Image.open(tmp_path / f"{name}.png") as decoded:
            assert decoded.mode == "L"
            assert decoded.size == (original.shape[1], original.shape[0])


def run_script(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "applications" / "compress.py"), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_another_process_writes_the_same_bits_and_decodes_the_same_pixels(
    run, odd_images, packed, tmp_path
):
    images = sorted(odd_images.iterdir())
    run_script("compress", "--model", str(run), *map(str, images), "--out", str(tmp_path / "aez"))
    run_script("decompress", "--model", str(run), *map(str, sorted((tmp_path / "aez").iterdir())),
               "--out", str(tmp_path / "png"))
    this_process = codec.Codec(codec.load_model(run))
    psnrs = []
    for image_path in images:
        name = image_path.stem
        blob = (tmp_path / "aez" / f"{name}.aez").read_bytes()
        # The integer tables give the same bits in both processes...
        assert blob == (packed / f"{name}.aez").read_bytes()
        # ...and the other process's pixels are this process's, bit for bit.
        decoded = np.asarray(Image.open(tmp_path / "png" / f"{name}.png"))
        np.testing.assert_array_equal(decoded, this_process.decompress(blob)[..., 0])
        psnrs.append(rd.psnr(np.asarray(Image.open(image_path)), decoded))

    out = tmp_path / "rd"
    assert compress.main(["evaluate", "--model", str(run), "--images", str(odd_images),
                          "--codecs", "jpeg", "--out", str(out)]) == 0
    ours = json.loads((out / "results.json").read_text())["curves"]["aezoo"][0]
    # Same pixels, so the same PSNR up to float64 round-off in the mean.
    assert ours["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)
    # Bits per pixel are the file's bits: 8 x file size / pixels, per image, averaged.
    bpps = [8 * (packed / f"{p.stem}.aez").stat().st_size / np.prod(Image.open(p).size)
            for p in images]
    assert ours["bpp"] == pytest.approx(np.mean(bpps), abs=1e-12)
    assert (out / "rd.png").is_file() and "| aezoo |" in (out / "results.md").read_text()


# -------------------------------------------------------------------- corruption


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:]


def set_length(data: bytes, change: int) -> bytes:
    """The payload length field (bytes 30-33) changed by `change`."""
    length = int.from_bytes(data[30:34], "little") + change
    return data[:30] + length.to_bytes(4, "little") + data[34:]


def absurd_header(data: bytes) -> bytes:
    """A well-formed header (valid checksum) claiming a 30000 x 30000 image."""
    fields = bytearray(data[: codec.HEADER.size - 4])
    fields[8:16] = (30000).to_bytes(4, "little") * 2
    payload = data[codec.HEADER.size:]
    return bytes(fields) + codec.checksum(bytes(fields), payload).to_bytes(4, "little") + payload


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
    corruption, run, packed, tmp_path, capsys
):
    change, words = CORRUPTIONS[corruption]
    bad = tmp_path / "tall.aez"
    bad.write_bytes(change((packed / "tall.aez").read_bytes()))
    capsys.readouterr()
    status = compress.main(["decompress", "--model", str(run), str(bad), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "tall.png").exists()


def test_a_file_made_by_another_model_is_rejected(run, packed, tmp_path, capsys):
    other = codec.load_model(run)
    weights = other.get_weights()
    weights[0] = weights[0] + 1e-3  # a slightly different model: its fingerprint differs
    other.set_weights(weights)
    other_run = tmp_path / "other"
    other_run.mkdir()
    other.save(other_run / "model.keras")
    capsys.readouterr()
    status = compress.main(["decompress", "--model", str(other_run), str(packed / "tall.aez"),
                            "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "made by another model" in err


def test_an_absurd_header_is_refused_before_anything_is_allocated(packed):
    data = absurd_header((packed / "tall.aez").read_bytes())
    tracemalloc.start()
    with pytest.raises(codec.FormatError, match="absurd"):
        codec.read_header(data[: codec.HEADER.size], len(data))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A 30000 x 30000 image would take 900 MB as uint8; the check itself takes a few KiB.
    assert peak < 100_000


def test_outputs_never_overwrite_inputs_or_existing_files(
    run, odd_images, packed, tmp_path, capsys
):
    image = odd_images / "tall.png"
    before = image.read_bytes()
    (tmp_path / "tall.aez").write_bytes((packed / "tall.aez").read_bytes())
    # decompressing next to the original PNG would replace it
    status = compress.main(["decompress", "--model", str(run), str(tmp_path / "tall.aez"),
                            "--out", str(odd_images)])
    assert status == 2 and "exists" in capsys.readouterr().err
    assert image.read_bytes() == before
    status = compress.main(["compress", "--model", str(run), str(image), "--out", str(packed)])
    assert status == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("option, value", [("--clipnorm", "-1"), ("--epochs", "0")])
def test_bad_training_options_give_one_line_and_status_2(digits, tmp_path, capsys, option, value):
    status = compress.main(["train", "--images", str(digits), "--patch", "16", option, value,
                            "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and option in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ entropy coding


def test_constriction_keeps_the_integer_tables_exactly(run):
    """Probes constriction's quantised model with an ANS decoder: a state whose low 24 bits
    are q decodes to the symbol whose interval [cdf_k, cdf_k+1) holds q.  Every boundary of
    every table must be where our integer counts (scaled from 2**16 to 2**24) put it."""
    import constriction

    packer = codec.Codec(codec.load_model(run))

    def decoded_symbol(model, quantile):
        ans = constriction.stream.stack.AnsCoder()
        ans.seek(0, (1 << 40) | int(quantile))
        return ans.decode(model)

    def boundaries_hold(model, counts):
        cdf = np.concatenate([[0], np.cumsum(counts)]) * 2**8
        return all(
            decoded_symbol(model, cdf[k]) == k and decoded_symbol(model, cdf[k + 1] - 1) == k
            for k in range(len(counts))
        )

    for c, model in enumerate(packer._models):
        assert boundaries_hold(model, packer.counts[c, : packer.lengths[c] + 1])
    # The probe is sharp: moving one count between two symbols is detected.
    counts = packer.counts[0, : packer.lengths[0] + 1].copy()
    moved = counts.copy()
    k = int(np.argmax(counts))
    moved[k] -= 1
    moved[(k + 1) % len(moved)] += 1
    assert not boundaries_hold(packer._models[0], moved)


def test_values_far_outside_the_tables_are_coded_losslessly(run):
    packer = codec.Codec(codec.load_model(run))
    rng = np.random.default_rng(1)
    latent = rng.integers(-300, 300, size=(3, 7, packer.latent_channels))
    edges = [packer.offsets[0] - 1, packer.offsets[0] + packer.lengths[0], 2**30, -(2**30),
             packer.offsets[0] + packer.lengths[0] + 2**16 - 1, packer.offsets[0] - 2**16 - 1]
    latent[0, : len(edges), 0] = edges
    payload = packer.encode_symbols(latent)
    np.testing.assert_array_equal(packer.decode_symbols(payload, latent.shape), latent)


def test_payload_size_agrees_with_the_rate_estimates(run, odd_images):
    model = codec.load_model(run)
    packer = codec.Codec(model)
    image = np.asarray(Image.open(odd_images / "tall.png"))[..., None]
    latent = packer.encode_latent(image)
    payload_bits = 8 * len(packer.encode_symbols(latent))
    table_bits = packer.information_bits(latent)
    # The range coder spends the tables' information content plus at most the final
    # flush (two 32-bit words) and a truncation loss of at most 2**-8 relative per symbol.
    assert table_bits <= payload_bits <= table_bits * (1 + 2**-8) + 64
    # The model's own estimate (its continuous density at the rounded latent) differs from
    # the tables by their quantisation to 16 bits (counts >= 1, the escape symbol): a few
    # percent at most, plus the flush.
    estimate = float(-np.sum(np.log2(np.asarray(
        model.entropy_bottleneck.likelihood(latent[None].astype(np.float32)), np.float64))))
    assert abs(payload_bits - estimate) <= 0.05 * estimate + 64


# -------------------------------------------------------------------- BD-rate


def test_bd_rate_of_a_curve_shifted_by_a_constant_rate_factor_is_that_factor():
    anchor = [(0.2, 26.0), (0.35, 28.5), (0.6, 31.0), (1.0, 33.2), (1.6, 35.9)]
    test = [(0.8 * r, q) for r, q in anchor]
    for method in ("pchip", "cubic"):
        assert rd.bd_rate(anchor, test, method=method) == pytest.approx(-20.0, abs=1e-9)
        assert rd.bd_rate(anchor, test, method=method, rate_range=(0.25, 1.0)) == pytest.approx(
            -20.0, abs=1e-9
        )
        assert rd.bd_rate(test, anchor, method=method) == pytest.approx(25.0, abs=1e-9)


def test_bd_rate_of_polynomial_curves_matches_the_integral_by_hand():
    # log10 R_anchor(q) = (q - 30) / 10 and log10 R_test(q) = log10 R_anchor(q) + 0.01 (q - 30):
    # cubic fits are exact, and over the shared interval [28, 34] the mean log-rate
    # difference is 0.01 * (31 - 30) = 0.01, so the BD-rate is 10**0.01 - 1.
    qa = np.array([26.0, 28.0, 30.0, 32.0, 34.0])
    qt = np.array([28.0, 30.0, 32.0, 34.0, 36.0])
    anchor = [(10 ** ((q - 30) / 10), q) for q in qa]
    test = [(10 ** ((q - 30) / 10 + 0.01 * (q - 30)), q) for q in qt]
    expected = 100 * (10**0.01 - 1)
    assert rd.bd_rate(anchor, test, method="cubic") == pytest.approx(expected, rel=1e-9)


def test_bd_rate_needs_overlapping_curves_of_enough_points():
    anchor = [(0.2, 26.0), (0.4, 28.0), (0.8, 30.0), (1.6, 32.0)]
    assert rd.bd_rate(anchor, [(0.1, 35.0), (0.2, 37.0)]) is None
    with pytest.raises(ValueError, match="at least 4 points"):
        rd.bd_rate(anchor, [(0.2, 27.0), (0.4, 29.0)], method="cubic")


def test_psnr_agrees_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a + rng.integers(-9, 10, a.shape), 0, 255).astype(np.uint8)
    assert rd.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)


def test_a_reloaded_model_has_the_same_fingerprint_and_tables(run, tmp_path):
    model = codec.load_model(run)
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    assert codec.fingerprint(again) == codec.fingerprint(model)
    for name, table in codec.tables(model).items():
        np.testing.assert_array_equal(codec.tables(again)[name], table)


@pytest.mark.slow
def test_training_under_a_mirrored_strategy_on_two_cpu_devices(digits, tmp_path):
    """compute_loss divides by the number of replicas: the reported loss (which Keras
    multiplies back) must equal rate + lmbda * 255**2 * MSE as on one device."""
    script = f"""
import sys, json
sys.path.insert(0, {str(ROOT / "applications")!r})
import compress  # imports TensorFlow quietly, before any device is used
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.exit(compress.main(["train", "--images", {str(digits)!r}, "--patch", "24",
    "--latent-dim", "8", "--filters", "8", "8", "--epochs", "2", "--batch-size", "16",
    "--lmbda", "0.05", "--strategy", "mirrored", "--out", {str(tmp_path / "mirrored")!r}]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    history = json.loads((tmp_path / "mirrored" / "history.json").read_text())
    for loss, bpp, mse in zip(history["loss"], history["bpp"], history["mse"]):
        # Epoch means of per-batch values: equal up to float32 round-off.
        assert loss == pytest.approx(bpp + 0.05 * 255**2 * mse, rel=1e-4)
    assert codec.load_model(tmp_path / "mirrored").entropy_bottleneck.finalised


def test_training_in_bfloat16_gives_a_float32_codec(digits, odd_images, tmp_path):
    out = tmp_path / "bf16"
    assert compress.main([
        "train", "--images", str(digits), "--patch", "24", "--latent-dim", "8", "--filters",
        "8", "8", "--epochs", "1", "--batch-size", "16", "--strategy", "cpu",
        "--mixed-precision", "mixed_bfloat16", "--out", str(out),
    ]) == 0
    model = codec.load_model(out)
    assert {layer.compute_dtype for layer in model.encoder.layers} == {"float32"}
    packer = codec.Codec(model)
    image = np.asarray(Image.open(odd_images / "tall.png"))[..., None]
    assert packer.decompress(packer.compress(image)).shape == image.shape
