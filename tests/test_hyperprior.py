"""The hyperprior codecs (`compression_hyperprior`, `compression_meanscale`) and .aez format
version 2: the integer hyper-synthesis decides every table and mean, so another process
(without oneDNN, on one thread) decodes the same latents; corrupted files are refused;
version-1 files still decode; decoding takes bounded memory; files match the rate estimate.

Small grayscale models (filters 8/8, stride 8, z 32 times smaller than the image) trained
for seconds on MNIST digits, once per module.
"""

import gzip
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, shared_data
from PIL import Image

import aezoo
from aezoo import codec, runs
from aezoo.apps import compress as compress_app
from aezoo.models import compression

SMALL = {"latent_dim": 8, "filters": (8, 8), "hyper_filters": (8, 8, 8), "lmbda": 0.05}


def mnist(count: int) -> np.ndarray:
    path = shared_data("raw", "mnist", "t10k-images-idx3-ubyte.gz")
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16)[: count * 784].reshape(count, 28, 28, 1)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return mnist(512)


@pytest.fixture(scope="module")
def image(digits) -> np.ndarray:
    """A 45x79 grayscale picture of tiled digits: odd sizes, 2 x 3 hyper-latent positions."""
    tiled = np.vstack([np.hstack(list(digits[500 + 3 * i: 503 + 3 * i])) for i in range(2)])
    return np.ascontiguousarray(tiled[5:50, 2:81])


@pytest.fixture(scope="module")
def meanscale_run(digits, tmp_path_factory):
    """A mean-scale codec trained with `aezoo compress train` in bfloat16 mixed precision."""
    folder = tmp_path_factory.mktemp("digits")
    for i, digit in enumerate(digits[:64]):
        Image.fromarray(digit[..., 0]).save(folder / f"digit{i:02d}.png")
    out = tmp_path_factory.mktemp("run") / "meanscale"
    status = compress_app.main([
        "train", "--model", "compression_meanscale", "--images", str(folder), "--patch", "24",
        "--patches-per-image", "8", "--lmbda", "0.05", "--latent-dim", "8", "--filters", "8",
        "8", "--hyper-filters", "8", "8", "8", "--epochs", "4", "--batch-size", "16",
        "--learning-rate", "3e-3", "--strategy", "cpu", "--mixed-precision", "mixed_bfloat16",
        "--out", str(out),
    ])
    assert status == 0
    return out


@pytest.fixture(scope="module")
def meanscale(meanscale_run):
    return runs.load_run(meanscale_run).model


@pytest.fixture(scope="module")
def hyperprior(digits):
    """A scale-hyperprior codec trained with `fit`."""
    keras.utils.set_random_seed(2)
    model = aezoo.MODELS["compression_hyperprior"](input_shape=(None, None, 1), **SMALL)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = digits[:256, 2:26, 2:26].astype(np.float32) / 255.0
    model.fit(x, x, epochs=4, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def models(meanscale, hyperprior):
    return {"compression_meanscale": meanscale, "compression_hyperprior": hyperprior}


# ------------------------------------------------------------------ integer network


def test_integer_convolutions_equal_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    # Small integers: float64 TensorFlow is exact on them, so the results must be equal.
    for height, width in ((5, 7), (1, 1), (4, 6)):
        a = rng.integers(-50, 50, (height, width, 6))
        kernel = rng.integers(-50, 50, (5, 5, 4, 6))  # (k, k, out, in)
        expected = tf.nn.conv2d_transpose(
            a[None].astype(np.float64), kernel.astype(np.float64),
            [1, 2 * height, 2 * width, 4], 2, "SAME")[0]
        np.testing.assert_array_equal(compression.integer_conv2d_transpose(a, kernel), expected)
        kernel = rng.integers(-50, 50, (3, 3, 6, 5))  # (k, k, in, out)
        expected = tf.nn.conv2d(a[None].astype(np.float64), kernel.astype(np.float64), 1,
                                "SAME")[0]
        np.testing.assert_array_equal(compression.integer_conv2d(a, kernel), expected)


def test_float64_products_are_exact_at_the_integer_networks_bounds():
    """The largest activations times the largest kernels over the most channels: products
    and sums up to 2**52, which int64 holds exactly and float64 must not round."""
    rng = np.random.default_rng(1)
    k = compression.MAX_CHANNELS
    a = rng.choice([compression.ACTIVATION_MAX, compression.ACTIVATION_MAX - 1, 1], (4, k))
    w = rng.choice([compression.WEIGHT_MAX, -compression.WEIGHT_MAX, 3], (k, 3))
    a[0], w[:, 0] = compression.ACTIVATION_MAX, compression.WEIGHT_MAX  # the extreme sum
    np.testing.assert_array_equal(compression._exact_matmul(a, w), a @ w)  # int64 @ int64
    assert abs(int((a @ w)[0, 0])) > 2**51


def test_table_indexes_are_integer_comparisons():
    thresholds = np.array([10, 20, 30])
    values = np.array([-5, 10, 11, 20, 21, 30, 31, 2**31 - 1])
    np.testing.assert_array_equal(compression.table_indexes(values, thresholds),
                                  [0, 0, 1, 1, 2, 2, 3, 3])


def test_gaussian_tables_hold_each_scales_probabilities(meanscale):
    layer = meanscale.gaussian_conditional
    counts = layer.table_counts.numpy()
    lengths, offsets = layer.table_lengths.numpy(), layer.table_offsets.numpy()
    scales = compression.scale_table()
    assert len(scales) == 64 and scales[0] == 0.11 and scales[-1] == 256
    for k in range(64):
        row = counts[k, : lengths[k] + 1]
        assert row.sum() == 2**16 and row.min() >= 1 and not counts[k, lengths[k] + 1:].any()
        assert offsets[k] == -(lengths[k] // 2)  # centred on 0
    # The float likelihood of the window sums to the table's mass, the escape's aside.
    k = 40
    values = np.arange(offsets[k], offsets[k] + lengths[k], dtype=np.float32)
    p = np.asarray(layer.likelihood(values, np.full_like(values, scales[k])), np.float64)
    expected = counts[k, : lengths[k]] / 2**16
    # Counts round to 2**-16 and the smallest are lifted to 1, which the mode's count pays
    # for (`quantise_pmf`): within 2**-16 elsewhere, and 1e-3 at the mode.
    mode = np.argmax(p)
    assert np.max(np.abs(np.delete(p - expected, mode))) <= 2**-16
    assert abs(p[mode] - expected[mode]) < 1e-3 and abs(p.sum() - 1) < 1e-6
    # Boundaries between neighbouring scales are their geometric means, in units of 2**-16.
    np.testing.assert_allclose(layer.scale_thresholds.numpy() / 2**16,
                               np.sqrt(scales[:-1] * scales[1:]), rtol=1e-4)



def test_factorized_likelihoods_are_cdf_differences_and_sum_to_one_over_all_bins():
    layer = compression.EntropyBottleneck(filters=(3, 3, 3))
    layer.build((None, 4, 4, 2))
    # Zero biases make every channel's density symmetric about 0 (the logits of its
    # cumulative are odd), so the logits at -0.5 and +0.5 cancel exactly: the bin of 0,
    # the likeliest, once came out at the likelihood bound, 1e-9 (30 bits).
    for bias in layer.biases:
        bias.assign(tf.zeros_like(bias))
    values = np.arange(-300, 301, dtype=np.float32)
    p = np.asarray(layer.likelihood(tf.constant(np.stack([values, values], -1)[None, None])),
                   np.float64)[0, 0]
    edges = np.arange(-300.5, 301, dtype=np.float32)
    logits = layer.logits_cumulative(tf.constant(np.stack([edges, edges])[:, None, :]))
    cdf = 1 / (1 + np.exp(-np.asarray(logits, np.float64)[:, 0, :]))  # the sigmoid, in NumPy
    expected = np.diff(cdf, axis=1).T
    np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)
    assert p[300, 0] == p.max()  # the bin of 0

@pytest.mark.parametrize("name", ["compression_meanscale", "compression_hyperprior"])
def test_the_integer_hyper_synthesis_tracks_the_float_one(models, name, image):
    model = models[name]
    packer = codec.Codec(model)
    parts = model.analysis_model()(image[None].astype(np.float32) / 255.0)
    z_hat = np.asarray(parts["z_hat"])[0].astype(np.int64)
    params = np.asarray(parts["params"], np.float64)[0]
    integer = model.hyper_synthesis.integer_call(z_hat) / 2.0**16
    # Rounding the activations to 2**-13 and the kernels to 15 bits: errors of a few
    # 2**-13 after three levels of small networks, far below the 13 % between tables.
    assert np.max(np.abs(integer - params)) < 2e-3
    indexes, means = packer.entropy_parameters(z_hat)
    m = model.get_config()["latent_dim"]
    scales = params[..., m:] if model.gaussian_conditional.means else params
    float_indexes = np.searchsorted(np.sqrt(compression.scale_table()[:-1]
                                            * compression.scale_table()[1:]), scales)
    assert np.mean(indexes != float_indexes) < 0.02
    if means is not None:
        np.testing.assert_allclose(means / 2**16, params[..., :m], atol=2e-3)


def test_hyper_synthesis_tiles_give_exactly_one_pass(meanscale, monkeypatch):
    packer = codec.Codec(meanscale)
    z_hat = np.random.default_rng(3).integers(-6, 7, (13, 11, 8))
    out = compression.integer_hyper_synthesis(z_hat, packer.hyper_parameters)
    whole = packer.entropy_parameters(z_hat)
    monkeypatch.setattr(codec, "DECODE_MEMORY", 1)  # tiles of 4 x 4 positions of z
    tiled = packer.entropy_parameters(z_hat)
    for a, b in zip(whole, tiled):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(tiled[1], out[..., :8])
    np.testing.assert_array_equal(tiled[0], compression.table_indexes(
        out[..., 8:], packer.scale_thresholds))


def test_synthesis_tiles_join_without_seams(meanscale, monkeypatch):
    packer = codec.Codec(meanscale)
    # Random latents of the size of a 150x170 image: 8 x 8 tiles of 4 x 4 latent positions.
    y_hat = np.random.default_rng(4).normal(0, 3, (20, 24, 8)).astype(np.float32)
    one_pass = packer.synthesise(y_hat, 150, 170)
    monkeypatch.setattr(codec, "DECODE_MEMORY", 1)
    assert packer.tile_size() == 4
    tiled = packer.synthesise(y_hat, 150, 170)
    # Tiles with margins that cover the receptive field compute the same sums; float32
    # may order them differently (other shapes, other kernels): a grey level at most.
    assert np.max(np.abs(tiled.astype(int) - one_pass)) <= 1
    assert np.mean(tiled == one_pass) > 0.99


# ------------------------------------------------------------------- files and rates


@pytest.mark.parametrize("name", ["compression_meanscale", "compression_hyperprior"])
def test_files_match_the_rate_estimate_and_decode_to_the_image(models, name, image):
    # (Speed is benchmarks/compression_kodak.py's: its encode and decode seconds.)
    model = models[name]
    packer = codec.Codec(model)
    data = packer.compress(image)
    decoded = packer.decompress(data)
    assert data[4] == 2 and decoded.shape == image.shape and decoded.dtype == np.uint8
    latents = packer.encode_latents(image)
    payload_bits = 8 * (len(data) - codec.HEADER_V2.size)
    table_bits = packer.information_bits(latents["z_hat"], latents["symbols"])
    # Two range-coded streams: each the tables' information plus at most its flush (two
    # words) and a loss of at most 2**-8 relative.
    assert table_bits <= payload_bits <= table_bits * (1 + 2**-8) + 128
    # The model's estimate uses its float parameters and continuous densities; the file
    # uses the integer network's, the nearest of 64 scales and 16-bit tables.
    estimate = model.estimate_bits(image[None].astype(np.float32) / 255.0)
    assert abs(payload_bits - estimate) <= 0.05 * estimate + 128
    # Better than storing the pixels, even for this small codec.
    assert len(data) < image.size / 4
    # And better than the best flat picture (seconds of training do no more).
    def psnr(picture):
        return 10 * np.log10(255**2 / np.mean((picture.astype(float) - image) ** 2))

    assert psnr(decoded) > psnr(np.full(image.shape, image.mean())) + 1


def test_the_codec_decodes_what_the_model_computes(meanscale, image):
    """The file's y_hat is q + mean with the integer mean, the model's uses its float mean:
    they differ by the means' difference, and by one where the two round y differently."""
    packer = codec.Codec(meanscale)
    latents = packer.decompress_latents(packer.compress(image))
    x = image[None].astype(np.float32) / 255.0
    y_hat = np.asarray(meanscale.encoder(x)["y_hat"])[0]
    assert np.mean(np.abs(latents["y_hat"] - y_hat) < 2e-3) > 0.98
    # The codec's synthesis (in tiles, cropped) is the model's decoder.
    x_hat = np.asarray(meanscale.decoder.predict(
        {"y_hat": y_hat[None], "image_size": np.array([image.shape[:2]], np.int32)},
        verbose=0))[0]
    decoded = packer.synthesise(y_hat, *image.shape[:2])
    np.testing.assert_array_equal(decoded, np.round(np.clip(x_hat, 0, 1) * 255))


# --------------------------------------------------------------- another process


DECODER_SCRIPT = """
import sys, json
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import aezoo
from aezoo import codec
for job in json.loads(sys.argv[1]):
    model = aezoo.load_model(job["model"])
    packer = codec.Codec(model)
    data = open(job["file"], "rb").read()
    latents = packer.decompress_latents(data)
    indexes, means = packer.entropy_parameters(latents["z_hat"])
    params = model.hyper_synthesis(latents["z_hat"][None].astype(np.float32))
    np.savez(job["out"], image=packer.decompress(data), indexes=indexes,
             params=np.asarray(params)[0], **latents)
print(tf.config.threading.get_intra_op_parallelism_threads())
"""


def decode_elsewhere(jobs: list[dict]) -> None:
    """Decodes in a fresh process without oneDNN, on one thread (this one uses oneDNN's
    kernels where TensorFlow has them, on two threads)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run([sys.executable, "-c", DECODER_SCRIPT, json.dumps(jobs)],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"


def boundary_model(model, image, path):
    """A copy of `model` whose float hyper-synthesis puts one scale of every channel (at the
    first position) on a boundary between two tables, where float rounding decides."""
    model.save(path)
    model = aezoo.load_model(path)
    synthesis = model.hyper_synthesis
    m = model.get_config()["latent_dim"]
    params = np.asarray(model.analysis_model()(image[None].astype(np.float32) / 255.0)
                        ["params"], np.float64)[0]
    scales = params[0, 0, -m:]
    boundaries = np.sqrt(compression.scale_table()[:-1] * compression.scale_table()[1:])
    nearest = boundaries[np.argmin(np.abs(np.log(np.maximum(scales, 0.01))[:, None]
                                          - np.log(boundaries)[None]), axis=1)]
    bias = synthesis.biases[-1].numpy().astype(np.float64)
    bias[-m:] += nearest - scales
    synthesis.biases[-1].assign(bias.astype(np.float32))
    synthesis.finalise()  # the integer network of the new weights
    model.save(path)
    return model, nearest


def test_another_process_without_onednn_decodes_the_same_latents(models, image, tmp_path):
    jobs, originals = [], {}
    for name, model in models.items():
        path = tmp_path / f"{name}.keras"
        model.save(path)
        originals[name] = model
        jobs.append({"name": name, "model": str(path)})
    # And a model whose float scales sit on table boundaries.
    model, boundaries = boundary_model(models["compression_meanscale"], image,
                                       tmp_path / "boundary.keras")
    originals["boundary"] = model
    jobs.append({"name": "boundary", "model": str(tmp_path / "boundary.keras")})
    for job in jobs:
        packer = codec.Codec(originals[job["name"]])
        job["file"] = str(tmp_path / f"{job['name']}.aez")
        job["out"] = str(tmp_path / f"{job['name']}.npz")
        (tmp_path / f"{job['name']}.aez").write_bytes(packer.compress(image))
    decode_elsewhere(jobs)

    for job in jobs:
        packer = codec.Codec(originals[job["name"]])
        data = (tmp_path / f"{job['name']}.aez").read_bytes()
        here = packer.decompress_latents(data)
        there = np.load(job["out"])
        # The latents (and the tables and means behind them) are the same bits...
        for key in ("z_hat", "symbols", "y_hat"):
            np.testing.assert_array_equal(there[key], here[key])
        np.testing.assert_array_equal(there["indexes"], packer.entropy_parameters(
            here["z_hat"])[0])
        # ...and the pixels, from float32 convolutions computed otherwise, within a grey level.
        assert np.max(np.abs(there["image"].astype(int) - packer.decompress(data))) <= 1

    # On the boundary model, the float scales at the first position are within float32
    # round-off of a boundary: a relative change of 2e-5 (float outputs of oneDNN and
    # Eigen differ by up to about that) moves every one of them to the other table.
    model = originals["boundary"]
    m = model.get_config()["latent_dim"]
    params = model.analysis_model()(image[None].astype(np.float32) / 255.0)["params"]
    scales = np.asarray(params, np.float64)[0, 0, 0, -m:]
    np.testing.assert_allclose(scales, boundaries, rtol=1e-5)
    table_boundaries = np.sqrt(compression.scale_table()[:-1] * compression.scale_table()[1:])
    below = np.searchsorted(table_boundaries, scales * (1 - 2e-5))
    above = np.searchsorted(table_boundaries, scales * (1 + 2e-5))
    assert np.all(above == below + 1)
    # The integer network decided those elements, the same way in both processes (above).
    there = np.load(jobs[-1]["out"])
    print("float scales on the boundaries here and without oneDNN:", scales,
          there["params"][0, 0, -m:])


def test_a_preset_decodes_through_its_postfilter_within_a_grey_level_elsewhere(tmp_path):
    """A codec preset's file, decoded through `codec_postfilter` (auto) by a process without
    oneDNN on one thread: the post-filter's float pixels, like the synthesis's, within one
    grey level of this process's."""
    photo = np.asarray(Image.open(shared_data("raw", "kodak", "kodim23.png")))[:128, :192]
    packer = codec.open_codec("codec_0.004")
    assert packer.postfilter is not None
    (tmp_path / "photo.aez").write_bytes(packer.compress(photo))
    script = ("import sys, numpy as np, tensorflow as tf\n"
              "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
              "from aezoo import codec\n"
              "np.save(sys.argv[2], codec.open_codec('codec_0.004').read(sys.argv[1]))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_ENABLE_ONEDNN_OPTS": "0"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "photo.aez"),
                             str(tmp_path / "there.npy")], capture_output=True, text=True,
                            env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    there = np.load(tmp_path / "there.npy").astype(int)
    here = packer.read(tmp_path / "photo.aez")
    assert np.max(np.abs(there - here)) <= 1
    # (and the filter did act: the synthesis alone gives other pixels)
    assert not np.array_equal(here, codec.Codec(packer.model).read(tmp_path / "photo.aez"))


# ------------------------------------------------------------------------ corruption


def flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:]


def add_to_field(data: bytes, start: int, change: int) -> bytes:
    value = int.from_bytes(data[start: start + 4], "little") + change
    return data[:start] + value.to_bytes(4, "little") + data[start + 4:]


def side_length(data: bytes) -> int:
    return int.from_bytes(data[30:34], "little")


V2_CORRUPTIONS = {
    # name: (how the file is changed, words the one-line message must contain)
    "magic byte": (lambda d: flip(d, 1), "not an .aez file"),
    "version byte": (lambda d: flip(d, 4), "format version"),
    "version 2 to 1": (lambda d: d[:4] + b"\x01" + d[5:], "corrupted"),
    "channels byte": (lambda d: flip(d, 5), "corrupted"),
    "height byte": (lambda d: flip(d, 9), "corrupted"),
    "latent shape byte": (lambda d: flip(d, 16), "corrupted"),
    "fingerprint byte": (lambda d: flip(d, 22), "corrupted"),
    "side length too large": (lambda d: add_to_field(d, 30, 4), "truncated"),
    "side length too small": (lambda d: add_to_field(d, 30, -4), "corrupted"),
    "side and main lengths swapped 4 bytes": (
        lambda d: add_to_field(add_to_field(d, 30, 4), 34, -4), "corrupted"),
    "main length too large": (lambda d: add_to_field(d, 34, 1000), "truncated"),
    "main length too small": (lambda d: add_to_field(d, 34, -4), "corrupted"),
    "checksum byte": (lambda d: flip(d, 39), "corrupted"),
    "side stream byte": (lambda d: flip(d, 42), "corrupted"),
    "last side stream byte": (lambda d: flip(d, 41 + side_length(d)), "corrupted"),
    "main stream byte": (lambda d: flip(d, 42 + side_length(d)), "corrupted"),
    "last byte": (lambda d: flip(d, len(d) - 1), "corrupted"),
    "truncated main stream": (lambda d: d[:-4], "truncated"),
    "truncated to the side stream": (lambda d: d[: 42 + side_length(d)], "truncated"),
    "truncated header": (lambda d: d[:40], "truncated"),
    "trailing bytes": (lambda d: d + b"\0", "corrupted"),
    "empty file": (lambda d: b"", "not an .aez file"),
}


@pytest.fixture(scope="module")
def v2_file(meanscale, image) -> bytes:
    return codec.Codec(meanscale).compress(image)


@pytest.mark.parametrize("corruption", list(V2_CORRUPTIONS))
def test_every_corruption_of_a_version_2_file_is_refused_in_one_line(
    corruption, meanscale, v2_file
):
    change, words = V2_CORRUPTIONS[corruption]
    bad = change(v2_file)
    assert bad != v2_file
    with pytest.raises(codec.FormatError) as error:
        codec.Codec(meanscale).decompress(bad, "photo.aez")
    message = str(error.value)
    assert words in message and "\n" not in message and message.startswith("photo.aez")


def with_checksum(data: bytes, payload: bytes) -> bytes:
    """The header of `data` over another payload, lengths and checksum made to match."""
    size = codec.HEADER_V2.size
    fields = bytearray(data[: size - 4])
    side = min(side_length(data), len(payload))
    fields[30:34] = side.to_bytes(4, "little")
    fields[34:38] = (len(payload) - side).to_bytes(4, "little")
    return bytes(fields) + codec.checksum(bytes(fields), payload).to_bytes(4, "little") + payload


def test_fuzz_every_byte_and_random_payloads_decode_or_are_refused_in_one_line(
    meanscale, v2_file, image
):
    """Every single-byte change of a small file (two changes of each byte), and random
    payloads that pass the checksum: each decodes to an image of the header's size or is
    refused with one FormatError line, never another exception."""
    packer = codec.Codec(meanscale)
    rng = np.random.default_rng(0)
    bad = [flip(v2_file, i) for i in range(len(v2_file))]
    bad += [v2_file[:i] + bytes([(v2_file[i] + 1) % 256]) + v2_file[i + 1:]
            for i in range(len(v2_file))]
    payload_size = len(v2_file) - codec.HEADER_V2.size
    random_payloads = [with_checksum(v2_file, rng.bytes(int(n)))
                       for n in rng.integers(0, 2 * payload_size, 40)]
    decoded = 0
    for data in bad + random_payloads:
        try:
            result = packer.decompress(data, "fuzz.aez")
        except codec.FormatError as error:
            assert "\n" not in str(error) and str(error).startswith("fuzz.aez")
            continue
        assert data in random_payloads  # a changed byte always fails the checksum
        assert result.shape == image.shape
        decoded += 1
    print(f"{len(bad)} changed files refused; {decoded} of {len(random_payloads)} random "
          "payloads decoded (a range coder reads any bits), the rest refused")


def test_the_command_refuses_a_corrupted_file_with_one_line_and_status_2(
    meanscale_run, v2_file, tmp_path, capsys
):
    for i, position in enumerate((9, 50, len(v2_file) - 2)):
        bad = tmp_path / f"bad{i}.aez"
        bad.write_bytes(flip(v2_file, position))
        capsys.readouterr()
        status = compress_app.main(["decompress", "--model", str(meanscale_run), str(bad),
                                    "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and "corrupted" in err
    assert not (tmp_path / "out").exists()


def test_the_commands_compress_decompress_and_evaluate_with_a_hyperprior_run(
    meanscale_run, meanscale, image, tmp_path
):
    Image.fromarray(image[..., 0]).save(tmp_path / "digits.png")
    packed, unpacked, rd = tmp_path / "packed", tmp_path / "unpacked", tmp_path / "rd"
    model = ["--model", str(meanscale_run)]
    assert compress_app.main(["compress", *model, str(tmp_path / "digits.png"), "--out",
                              str(packed)]) == 0
    data = (packed / "digits.aez").read_bytes()
    assert data == codec.Codec(meanscale).compress(image)
    assert compress_app.main(["decompress", *model, str(packed / "digits.aez"), "--out",
                              str(unpacked)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(unpacked / "digits.png"))[..., None],
                                  codec.Codec(meanscale).decompress(data))
    assert compress_app.main(["evaluate", *model, "--images", str(tmp_path), "--codecs", "jpeg",
                              "--out", str(rd)]) == 0
    ours = json.loads((rd / "results.json").read_text())["curves"]["aezoo"][0]
    assert ours["bpp"] == pytest.approx(8 * len(data) / image.size, abs=1e-12)
    # The file's bits (header included), and the model's estimate of its payload.
    payload_bpp = 8 * (len(data) - codec.HEADER_V2.size) / image.size
    assert ours["estimated_bpp"] == pytest.approx(payload_bpp, rel=0.05)


def test_a_file_of_another_model_is_refused(models, image):
    v2 = codec.Codec(models["compression_meanscale"]).compress(image)
    with pytest.raises(codec.FormatError, match="made by another model"):
        codec.Codec(models["compression_hyperprior"]).decompress(v2)


@pytest.fixture(scope="module")
def factorized(digits):
    keras.utils.set_random_seed(3)
    model = aezoo.MODELS["compression"](input_shape=(None, None, 1), latent_dim=8,
                                         filters=(8, 8), lmbda=0.05)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x = digits[:128, 2:26, 2:26].astype(np.float32) / 255.0
    model.fit(x, x, epochs=1, batch_size=16, verbose=0)
    return model


def test_version_1_files_still_decode(factorized, meanscale, image):
    packer = codec.Codec(factorized)
    data = packer.compress(image)
    assert data[4] == 1 and len(data) == 38 + int.from_bytes(data[30:34], "little")
    decoded = packer.decompress(data)
    assert decoded.shape == image.shape
    np.testing.assert_array_equal(decoded, packer.synthesise(
        packer.encode_latent(image).astype(np.float32), *image.shape[:2]))
    with pytest.raises(codec.FormatError, match="made by another model"):
        codec.Codec(meanscale).decompress(data)
    with pytest.raises(codec.FormatError, match="made by another model"):
        packer.decompress(codec.Codec(meanscale).compress(image))


# -------------------------------------------------------------------- bounded memory


MEMORY_SCRIPT = """
import re, sys, time
import aezoo
from aezoo import codec

def status_mib(field):
    # VmRSS: resident now; VmHWM: the peak since the last reset (clear_refs "5", Linux 4.0+)
    text = open("/proc/self/status").read()
    return int(re.search(field + r":\\s+(\\d+) kB", text).group(1)) // 1024

jobs = [(codec.Codec(aezoo.load_model(model)), path)
        for model, path in zip(sys.argv[1::2], sys.argv[2::2])]
packer, path = jobs[0]
packer.synthesise(packer.decompress_latents(open(path, "rb").read())["y_hat"][:8, :8], 64, 64)
open("/proc/self/clear_refs", "w").write("5")  # peaks of loading do not count
before = status_mib("VmRSS")  # TensorFlow, the models and their first small run
for packer, path in jobs:
    started = time.perf_counter()
    image = packer.read(path)
    print(image.shape, f"{time.perf_counter() - started:.1f} s", flush=True)
print(before, status_mib("VmHWM"))
"""


def test_a_tiny_file_claiming_4096x4096_decodes_in_bounded_memory(
    meanscale, factorized, tmp_path
):
    """Files of 38 and 42 bytes with valid checksums (empty streams decode as zeros) claim
    4096 x 4096 pixels: decoding takes time, and memory bounded by the tiles."""
    files = []
    for name, model in (("v1", factorized), ("v2", meanscale)):
        packer = codec.Codec(model)
        shape = packer.latent_shape(4096, 4096)
        header = codec.Header(1, 4096, 4096, shape, packer.fingerprint, 0, 0,
                              packer.version, 0)
        fields = header.pack()[: header.size - 4]
        data = fields + codec.checksum(fields, b"").to_bytes(4, "little")
        assert len(data) == {"v1": 38, "v2": 42}[name]
        model.save(tmp_path / f"{name}.keras")
        (tmp_path / f"{name}.aez").write_bytes(data)
        files += [str(tmp_path / f"{name}.keras"), str(tmp_path / f"{name}.aez")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, *files], capture_output=True,
                            text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].startswith("(4096, 4096, 1)") and lines[1].startswith("(4096, 4096, 1)")
    before, after = map(int, lines[2].split())
    print(result.stdout)
    # One pass over the whole image would take 2 GiB and more of activations (16.8
    # Mpixels x 8 channels x 4 bytes x 4 copies); tiles take DECODE_MEMORY (256 MiB) and a
    # little more (measured: a peak 505 MiB above the resident size before).  Only the rise
    # counts: what TensorFlow itself takes depends on the machine (0.8 GiB here, 2.4 GiB on
    # a CI machine).
    assert after - before < 1024


# ------------------------------------------------------------------ Keras contract


@pytest.mark.parametrize("name", ["compression_meanscale", "compression_hyperprior"])
def test_a_finalised_model_round_trips_through_a_keras_file(models, name, image, tmp_path):
    model = models[name]
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.get_config() == model.get_config()
    assert loaded.finalised and codec.fingerprint(loaded) == codec.fingerprint(model)
    data = codec.Codec(model).compress(image)
    assert codec.Codec(loaded).compress(image) == data
    np.testing.assert_array_equal(codec.Codec(loaded).decompress(data),
                                  codec.Codec(model).decompress(data))
    x = image[None].astype(np.float32) / 255.0
    codes = loaded.encoder(x, training=False)
    np.testing.assert_array_equal(loaded(x, training=False), loaded.decoder(codes))
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_the_run_exports_a_saved_model_that_serves_the_model(meanscale_run, meanscale, image):
    import tensorflow as tf

    served = tf.saved_model.load(str(meanscale_run / "export" / "1"))
    x = image[None].astype(np.float32) / 255.0
    out = served.signatures["serving_default"](x=tf.constant(x))["reconstruction"]
    np.testing.assert_allclose(out, meanscale.predict(x, verbose=0), atol=1e-5)
    codes = served.signatures["encode"](x=tf.constant(x))
    assert set(codes) == {"y_hat", "image_size"}


def test_training_under_bfloat16_keeps_the_entropy_models_in_float32(digits):
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = aezoo.MODELS["compression_meanscale"](input_shape=(None, None, 1), **SMALL)
    finally:
        keras.config.set_dtype_policy(policy)
    for layer in ("hyper_bottleneck", "hyper_synthesis", "gaussian_conditional"):
        assert model.encoder.get_layer(layer).compute_dtype == "float32"
    assert model.encoder.get_layer("latent_conv").compute_dtype == "bfloat16"
    # A training step's forward pass (the run of `meanscale_run` trains in bfloat16 too).
    x = digits[:4, 2:26, 2:26].astype(np.float32) / 255.0
    x_hat = model(x, training=True)
    assert x_hat.dtype == "float32" and np.all(np.isfinite(x_hat))
    assert all(loss.dtype == "float32" and np.isfinite(loss) for loss in model.losses)


def test_straight_through_training_decodes_rounded_latents_and_estimates_the_rate_on_noise():
    """The synthesis sees `round(y - mean) + mean` with the gradient of `y` (none of the
    mean's); the rate is the noisy one, the same as the plain layer's for the same seed."""
    rng = np.random.default_rng(0)
    y = tf.constant(rng.normal(0, 3, (2, 3, 4, 5)), tf.float32)
    means = tf.constant(rng.normal(0, 2, (2, 3, 4, 5)), tf.float32)
    params = tf.concat([means, tf.constant(rng.uniform(0.5, 4, (2, 3, 4, 5)), tf.float32)], -1)
    layers = [compression.GaussianConditional(means=True, seed=7, straight_through=through)
              for through in (False, True)]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([y, params])
        outputs = [layer([y, params], training=True) for layer in layers]
    noisy, rounded = (np.asarray(out) for out in outputs)
    # y + (q - y) in float32: q up to a last bit of y's.
    np.testing.assert_allclose(rounded, np.round(y.numpy() - means.numpy()) + means.numpy(),
                               rtol=0, atol=2e-6)
    assert 0 < np.abs(noisy - y.numpy()).max() <= 0.5
    assert np.abs(noisy - rounded).max() > 0.01  # the noise is not the rounding
    np.testing.assert_allclose(layers[1].losses[0], layers[0].losses[0], rtol=1e-6)
    np.testing.assert_array_equal(tape.gradient(outputs[1], y), np.ones(y.shape))
    assert tape.gradient(outputs[1], params) is None  # not connected
    # The rate's gradient reaches the parameters whichever latent the synthesis sees.
    assert np.abs(tape.gradient(layers[1].losses[0], params)).max() > 0
    # Inference is the same with or without it, and the option survives a Keras file.
    np.testing.assert_array_equal(layers[0]([y, params]), layers[1]([y, params]))
    model = aezoo.MODELS["compression_meanscale"](**SMALL, straight_through=True)
    layer = model.encoder.get_layer("gaussian_conditional")
    assert layer.straight_through and type(layer).from_config(layer.get_config()).straight_through


@pytest.mark.usefixtures("no_export")  # (the run's SavedModel is not read here)
def test_the_command_trains_with_straight_through_and_says_so(digits, tmp_path, capsys):
    for i, digit in enumerate(digits[:16]):
        Image.fromarray(digit[..., 0]).save(tmp_path / f"digit{i:02d}.png")
    status = compress_app.main([
        "train", "--images", str(tmp_path), "--patch", "16", "--lmbda", "0.05",
        "--latent-dim", "8", "--filters", "8", "8", "--hyper-filters", "8", "8", "8",
        "--straight-through", "true", "--epochs", "1", "--batch-size", "16",
        "--strategy", "cpu", "--out", str(tmp_path / "run"),
    ])
    assert status == 0
    assert "the pixels from rounded ones" in capsys.readouterr().out
    run = runs.load_run(tmp_path / "run")
    assert run.info["options"]["model"]["straight_through"] is True
    assert run.model.encoder.get_layer("gaussian_conditional").straight_through


MIRRORED_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import aezoo
from aezoo import codec
x = np.load(sys.argv[1])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = aezoo.MODELS["compression_meanscale"](input_shape=(None, None, 1), latent_dim=8,
        filters=(8, 8), hyper_filters=(8, 8, 8), lmbda=0.05)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
history = model.fit(x, x, epochs=1, batch_size=16, verbose=0).history
assert model.finalised and strategy.num_replicas_in_sync == 2
packer = codec.Codec(model)
image = (x[0] * 255).round().astype(np.uint8)
assert packer.decompress(packer.compress(image)).shape == image.shape
print(json.dumps(history))
"""


@pytest.mark.slow  # 30-40 s: a process of its own, traced for two replicas
def test_training_under_a_mirrored_strategy_on_two_cpu_devices(digits, tmp_path):
    """compute_loss divides by the number of replicas: the reported loss (which Keras
    multiplies back) must equal rate + lmbda * 255**2 * MSE as on one device."""
    np.save(tmp_path / "x.npy", digits[:48, 2:26, 2:26].astype(np.float32) / 255.0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path / "x.npy")],
                            capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout.strip().splitlines()[-1])
    for loss, bpp, mse in zip(history["loss"], history["bpp"], history["mse"]):
        # Epoch means of per-batch values: equal up to float32 round-off.
        assert loss == pytest.approx(bpp + 0.05 * 255**2 * mse, rel=1e-4)


# -------------------------------------------------------------------------- builders


@pytest.mark.parametrize("name", ["compression_meanscale", "compression_hyperprior"])
@pytest.mark.parametrize("argument,value", [
    ("hyper_filters", ()), ("hyper_filters", (8, 0)), ("lmbda", 0), ("lmbda", float("inf")),
    ("kernel_size", 0),
    ("filters", "8"), ("input_shape", (None, None, 2)), ("straight_through", "yes"),
])
def test_bad_arguments_name_themselves(name, argument, value):
    with pytest.raises(ValueError, match=f"`{argument}`.*Received: {argument}="):
        aezoo.MODELS[name](**{**SMALL, argument: value})


def test_layer_names_are_deterministic():
    model = aezoo.MODELS["compression_meanscale"](**SMALL)
    names = {layer.name for layer in model.encoder.layers}
    assert names == {
        "x", "pad", "down1_conv", "down1_gdn", "down2_conv", "down2_gdn", "latent_conv",
        "hyper_conv1", "hyper_conv2", "hyper_latent_conv", "hyper_bottleneck",
        "hyper_synthesis", "gaussian_conditional", "image_size",
    }
    scale = aezoo.MODELS["compression_hyperprior"](**SMALL)
    assert "hyper_abs" in [layer.name for layer in scale.encoder.layers]
    assert [layer.name for layer in model.decoder.layers] == [
        layer.name for layer in scale.decoder.layers]
    assert aezoo.MODELS.signature("compression_meanscale").parameters[
        "hyper_filters"].default == (128, 128, 128)


# --------------------------------------------------------------------------- widening


@pytest.mark.parametrize("name,activation", [
    ("compression_meanscale", "gdn"), ("compression", "gdn"), ("compression_hyperprior", "relu"),
])
def test_a_widened_model_computes_what_the_narrow_one_did(name, activation, image):
    """`compression.widen` copies channels (the first keep their own, the rest at random)
    and splits the next layer's weights among copies: the same function, whatever the
    weights, until training moves the copies apart."""
    kwargs = {k: v for k, v in SMALL.items() if name != "compression" or k != "hyper_filters"}
    kwargs["activation"] = activation
    build = aezoo.MODELS[name]
    narrow = build(input_shape=(None, None, 1), **kwargs)
    rng = np.random.default_rng(3)
    # GDN's gamma off its diagonal and every kernel moved: widening must carry them all.
    narrow.set_weights([w + rng.uniform(0.0, 0.05, w.shape).astype(w.dtype)
                        if w.dtype.kind == "f" else w for w in narrow.get_weights()])
    wide = build(input_shape=(None, None, 1), **{**kwargs, "filters": (11, 16)})
    compression.widen(narrow, wide)
    x = image[None, ..., None].astype(np.float32) / 255.0
    np.testing.assert_array_equal(wide.encoder(x)["y_hat"], narrow.encoder(x)["y_hat"])
    # Equal up to float32 round-off, relative to the largest value (sums of other lengths).
    expected = np.asarray(narrow(x))
    assert np.abs(np.asarray(wide(x)) - expected).max() <= 1e-5 * np.abs(expected).max()

    # Each new channel of level 2 copies the input weights of one of the first 8, but gets
    # another share of the next layer's: one training step moves them apart.
    kernel = wide.encoder.get_layer("down2_conv").get_weights()[0]
    twins = {j: [k for k in range(8) if np.array_equal(kernel[..., j], kernel[..., k])]
             for j in range(8, 16)}
    assert all(len(twin) == 1 for twin in twins.values()), twins
    shares = wide.encoder.get_layer("latent_conv").get_weights()[0]
    wide.compile(optimizer=keras.optimizers.SGD(0.1))
    wide.fit(x[:, :32, :32], x[:, :32, :32], epochs=1, verbose=0)
    moved = wide.encoder.get_layer("down2_conv").get_weights()[0]
    for j, (k,) in twins.items():
        assert not np.allclose(shares[:, :, j], shares[:, :, k])
        assert np.abs(moved[..., j] - moved[..., k]).max() > 1e-6


@pytest.mark.parametrize("name", ["compression_meanscale", "compression_hyperprior"])
def test_new_latent_channels_start_unused_and_then_learn(name, image):
    """`widen` to a larger latent_dim: the old channels' integers, the hyper-latent and the
    pixels stay; the new channels round to zero and cost next to no bits; one step gives
    their synthesis weights, which start at zero, the analysis's signal."""
    build = aezoo.MODELS[name]
    narrow = build(input_shape=(None, None, 1), **SMALL)
    rng = np.random.default_rng(4)
    narrow.set_weights([w + rng.uniform(0.0, 0.05, w.shape).astype(w.dtype)
                        if w.dtype.kind == "f" else w for w in narrow.get_weights()])
    wide = build(input_shape=(None, None, 1), **{**SMALL, "latent_dim": 13, "filters": (8, 11)})
    compression.widen(narrow, wide)
    x = image[None, ..., None].astype(np.float32) / 255.0
    old, new = narrow.analysis_model()(x), wide.analysis_model()(x)
    np.testing.assert_array_equal(new["z_hat"], old["z_hat"])
    y_hat = np.asarray(wide.encoder(x)["y_hat"])
    np.testing.assert_array_equal(y_hat[..., :8], narrow.encoder(x)["y_hat"])
    assert not np.any(y_hat[..., 8:])
    expected = np.asarray(narrow(x))
    assert np.abs(np.asarray(wide(x)) - expected).max() <= 1e-5 * np.abs(expected).max()
    # A zero under the smallest scale's Gaussian: -log2 of its mass on [-0.5, 0.5].
    per_element = -np.log2(math.erf(0.5 / (compression.SCALE_MIN * math.sqrt(2))))
    extra = per_element * y_hat[..., 8:].size
    assert wide.estimate_bits(x) - narrow.estimate_bits(x) == pytest.approx(extra, rel=1e-3,
                                                                            abs=1e-6)
    deconv = wide.decoder.get_layer("latent_deconv")
    assert not np.any(deconv.get_weights()[0][..., 8:])
    wide.compile(optimizer=keras.optimizers.SGD(0.1))
    wide.fit(x[:, :32, :32], x[:, :32, :32], epochs=1, verbose=0)
    assert np.abs(deconv.get_weights()[0][..., 8:]).max() > 1e-6


def test_a_factorized_prior_model_is_not_given_more_latent_channels():
    kwargs = {k: v for k, v in SMALL.items() if k != "hyper_filters"}
    narrow = aezoo.MODELS["compression"](input_shape=(None, None, 1), **kwargs)
    wide = aezoo.MODELS["compression"](input_shape=(None, None, 1), **{**kwargs, "latent_dim": 9})
    with pytest.raises(ValueError, match="Only a hyperprior model"):
        compression.widen(narrow, wide)


def test_init_with_wider_filters_widens_and_narrower_ones_are_refused(meanscale, digits):
    from aezoo import training

    x = digits[:32, 2:26, 2:26].astype(np.float32) / 255.0
    wide = training.train("compression_meanscale", x, init=meanscale, epochs=1, batch_size=32,
                          model_kwargs={"filters": (12, 8), "latent_dim": 10},
                          learning_rate=1e-9, strategy="cpu", verbose=0)[0]
    config = wide.get_config()
    assert tuple(config["filters"]) == (12, 8) and config["latent_dim"] == 10
    # A step of 1e-9 moves nothing that shows: the same reconstructions, and the same bits
    # but for the new latent channels' zeros (under 0.001 bit each).
    assert wide.estimate_bits(x) == pytest.approx(meanscale.estimate_bits(x), rel=1e-3)
    np.testing.assert_allclose(wide.predict(x, verbose=0), meanscale.predict(x, verbose=0),
                               atol=1e-4)
    with pytest.raises(ValueError, match="may be given wider filters"):
        training.train("compression_meanscale", x, init=meanscale, epochs=1, batch_size=32,
                       model_kwargs={"filters": (4, 8)}, strategy="cpu", verbose=0)


def test_a_model_is_widened_into_straight_through_training(meanscale, image):
    """`straight_through` sets how the synthesis trains, not its weights: a preset trained
    without it is widened into a model that trains with it (the round-18 codecs), and at
    inference it computes what the narrow model did."""
    wide = aezoo.MODELS["compression_meanscale"](
        input_shape=(None, None, 1), **{**SMALL, "filters": (16, 12)}, straight_through=True)
    compression.widen(meanscale, wide)
    x = image[None, :24, :24, None].astype(np.float32) / 255.0
    np.testing.assert_array_equal(wide.encoder(x)["y_hat"], meanscale.encoder(x)["y_hat"])
    expected = np.asarray(meanscale(x))
    assert np.abs(np.asarray(wide(x)) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert wide.get_config()["straight_through"] and not meanscale.get_config()[
        "straight_through"]


def test_weights_back_from_a_gpu_round_make_a_run_that_codes_as_the_one_they_left(
        meanscale_run, image, tmp_path, monkeypatch):
    """`benchmarks/gpu/import_weights.py`: float weights that a GPU round brings back, with
    every integer table of the file zeroed (the GPU trainer cannot compute them), become a
    run whose finalised codec writes the very files of the run the weights came from."""
    import importlib.util

    from aezoo import presets

    spec = importlib.util.spec_from_file_location(
        "import_weights", ROOT / "benchmarks" / "gpu" / "import_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(presets, "PRESET_DIR", tmp_path)
    original = runs.load_run(meanscale_run)
    digests = runs.pack(original, tmp_path / "tiny_meanscale", float16=False)
    monkeypatch.setitem(presets.PRESETS, "tiny_meanscale", {"sha256": digests})
    job = tmp_path / "job"
    job.mkdir()
    with np.load(tmp_path / "tiny_meanscale" / runs.WEIGHTS_FILE) as stored:
        tables = [k for k in stored.files if stored[k].dtype.kind in "iu"]
        np.savez(job / runs.WEIGHTS_FILE, **{
            k: np.zeros_like(stored[k]) if k in tables else stored[k] for k in stored.files})
    assert tables  # the test zeroes something
    monkeypatch.setattr(sys, "argv", ["import_weights.py", str(job), "--preset",
                                      "tiny_meanscale", "--out", str(tmp_path / "imported")])
    module.main()

    imported = runs.load_run(tmp_path / "imported")
    assert imported.info["application"] == original.info["application"]
    blob = codec.Codec(imported.model).compress(image)
    assert blob == codec.Codec(original.model).compress(image)


def test_a_large_photo_is_analysed_in_windows_as_in_one_pass(monkeypatch):
    """Above `ENCODE_PIXELS` the codec analyses a photo in windows with margins that cover
    the analysis's reach (`codec.analysis_margin`), so that its memory stays bounded (a
    24-megapixel photo: 8.3 GB in one pass, 3.8 in windows).  Windows of 1 megapixel here,
    on Kodak photos tiled to 1536x1000: six windows, the same latents as one pass, and
    the same file (the same bits: the windows' convolutions happen to round alike here;
    the latents are allowed float round-off), which decodes as usual."""
    preset = aezoo.from_preset("codec_0.004")
    packer = codec.Codec(preset)
    kodak = [np.asarray(Image.open(shared_data("raw", "kodak", f"kodim{i:02d}.png")))
             for i in (1, 2, 3, 5)]  # 768x512 each (kodim04 stands upright)
    photo = np.concatenate([np.concatenate(kodak[:2], axis=1),
                            np.concatenate(kodak[2:], axis=1)])[:1000]
    x = photo[None].astype(np.float32) / 255
    whole = packer.analyse(x)
    calls = []
    analyse = packer._analyse
    monkeypatch.setattr(codec, "ENCODE_PIXELS", 2**20)
    monkeypatch.setattr(packer, "_analyse", lambda w: calls.append(w.shape) or analyse(w))
    windowed = packer.analyse(x)
    assert len(calls) == 6 and max(h * w for _, h, w, _ in calls) <= 2**20
    np.testing.assert_allclose(windowed["y"], whole["y"], atol=1e-4)
    assert np.mean(windowed["z_hat"] == whole["z_hat"]) > 0.999
    # The margin covers what a hyper-latent position sees, measured by its gradient: the
    # pixels of a 512x512 image that z at block (4, 4) (pixels 256-319) depends on.
    margin = codec.analysis_margin(preset)
    image = tf.constant(np.random.default_rng(0).random((1, 512, 512, 3), np.float32))
    hyper = keras.Model(preset.encoder.input,
                        preset.encoder.get_layer("hyper_latent_conv").output)
    with tf.GradientTape() as tape:
        tape.watch(image)
        reached = tf.reduce_sum(hyper(image)[0, 4, 4])
    seen = np.argwhere(np.abs(tape.gradient(reached, image).numpy()[0]).max(-1) > 0)
    assert seen.min() >= 256 - margin and seen.max() <= 319 + margin, (margin, seen.min(),
                                                                        seen.max())
    # The refinement starts from the same windowed analysis (its continuous y and z).
    from aezoo.refinement import Refiner

    refiner = Refiner(preset)
    one_pass = refiner._analyse(x)
    for key, value in refiner._start(x).items():
        np.testing.assert_allclose(value, one_pass[key], atol=1e-4)
    data = packer.compress(photo)
    decoded = packer.decompress(data)
    assert decoded.shape == photo.shape
    mse = np.mean((decoded.astype(np.float64) - photo) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # codec_0.004 gives Kodak 29.3 dB
