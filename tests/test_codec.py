"""aezoo.codec: the .aez format's exact integer tables, lossless escapes, rates and limits."""

import tracemalloc

import keras
import numpy as np
import pytest
from PIL import Image

from aezoo import codec, runs


def absurd_header(data: bytes) -> bytes:
    """A well-formed header (valid checksum) claiming a 30000 x 30000 image."""
    fields = bytearray(data[: codec.HEADER.size - 4])
    fields[8:16] = (30000).to_bytes(4, "little") * 2
    payload = data[codec.HEADER.size:]
    return bytes(fields) + codec.checksum(bytes(fields), payload).to_bytes(4, "little") + payload


def test_an_absurd_header_is_refused_before_anything_is_allocated(packed):
    data = absurd_header((packed / "tall.aez").read_bytes())
    tracemalloc.start()
    with pytest.raises(codec.FormatError, match="absurd"):
        codec.read_header(data[: codec.HEADER.size], len(data))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # A 30000 x 30000 image would take 900 MB as uint8; the check itself takes a few KiB.
    assert peak < 100_000


def test_what_is_not_a_model_or_an_image_is_refused_by_name(codec_run):
    with pytest.raises(ValueError, match=r"str 'codec_run' is not a compression model.*"
                                         r"from_preset"):
        codec.Codec("codec_run")
    packer = codec.Codec(runs.load_run(codec_run).model)
    for empty in (np.zeros((0, 5), np.uint8), np.zeros((4, 0, 1), np.uint8)):
        with pytest.raises(ValueError, match="The image is empty"):
            packer.compress(empty)
    with pytest.raises(ValueError, match=r"Expected a uint8 image of shape \(height, width, 1\)"):
        packer.compress(np.zeros((4, 4, 1), np.float32))


def test_python_values_for_no_postfilter_and_refinement_steps_are_taken(codec_run):
    """None for no post-filter and NumPy integers for `refine` (a sweep's) mean what "none"
    and Python integers do; a model given where a run is asked for is refused in words
    (each failed inside pathlib or was refused)."""
    assert codec.open_codec("codec_0.01", postfilter=None).postfilter is None
    assert codec.open_codec("codec_0.01").postfilter is not None  # (its card names one)
    packer = codec.open_codec(codec_run)
    image = np.random.default_rng(0).integers(0, 256, (16, 24, 1), dtype=np.uint8)
    assert packer.compress(image, refine=np.int64(2)) == packer.compress(image, refine=2)
    with pytest.raises(TypeError, match=r"`source` must be a preset name or the path of a "
                                        r"run folder. Received: CompressionAutoencoder"):
        codec.open_codec(packer.model)


def test_constriction_keeps_the_integer_tables_exactly(codec_run):
    """Probes constriction's quantised model with an ANS decoder: a state whose low 24 bits
    are q decodes to the symbol whose interval [cdf_k, cdf_k+1) holds q.  Every boundary of
    every table must be where our integer counts (scaled from 2**16 to 2**24) put it."""
    import constriction

    packer = codec.Codec(runs.load_run(codec_run).model)

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


def test_values_far_outside_the_tables_are_coded_losslessly(codec_run):
    packer = codec.Codec(runs.load_run(codec_run).model)
    rng = np.random.default_rng(1)
    latent = rng.integers(-300, 300, size=(3, 7, packer.latent_channels))
    edges = [packer.offsets[0] - 1, packer.offsets[0] + packer.lengths[0], 2**30, -(2**30),
             packer.offsets[0] + packer.lengths[0] + 2**16 - 1, packer.offsets[0] - 2**16 - 1]
    latent[0, : len(edges), 0] = edges
    payload = packer.encode_symbols(latent)
    np.testing.assert_array_equal(packer.decode_symbols(payload, latent.shape), latent)


def test_payload_size_agrees_with_the_rate_estimates(codec_run, odd_images):
    model = runs.load_run(codec_run).model
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


def test_the_graphs_of_many_codecs_raise_no_retracing_warning(codec_run, odd_images):
    # A Codec per rate point, each with graphs of its own traced once: TensorFlow counted
    # them as one function retraced and warned from the fifth (aezoo._keras_fixes.graph).
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        model = runs.load_run(codec_run).model
        image = np.asarray(Image.open(odd_images / "tall.png"))[..., None]
        decoded = [codec.Codec(model).decompress(codec.Codec(model).compress(image), "tall")
                   for _ in range(7)]
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    assert all(np.array_equal(d, decoded[0]) for d in decoded)
    assert [r.getMessage()[:80] for r in records if "retracing" in r.getMessage()] == []


def test_a_reloaded_model_has_the_same_fingerprint_and_tables(codec_run, tmp_path):
    model = runs.load_run(codec_run).model
    model.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    assert codec.fingerprint(again) == codec.fingerprint(model)
    for name, table in codec.tables(model).items():
        np.testing.assert_array_equal(codec.tables(again)[name], table)




def test_a_photo_is_padded_to_the_codec_blocks_at_a_small_cost_in_bits():
    """A mean-scale preset pads a 481x321 photo to 512x384 (27 % more pixels) with each
    padded row and column blurred by its distance (`PadToMultiple(mode="blur")`).  Against
    the same photo padded first by repeating its last row and column (aezoo 0.2.1's pad),
    its files are over 5 % smaller (9 % on CBSD68, benchmarks/codec_padding.py) and its
    PSNR on the photo's own pixels is within 0.05 dB."""
    from conftest import shared_data

    packer = codec.Codec(runs.from_preset("codec_0.004"))
    files = sorted(shared_data("raw", "cbsd68").glob("*.png"))[:2]
    sizes = {"blur": 0, "edge": 0}
    psnr = {"blur": [], "edge": []}
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"))
        height, width = image.shape[:2]
        assert height % 64 and width % 64
        edge = np.pad(image, ((0, -height % 64), (0, -width % 64), (0, 0)), mode="edge")
        for mode, given in (("blur", image), ("edge", edge)):
            data = packer.compress(given)
            decoded = packer.decompress(data)[:height, :width].astype(np.float64)
            sizes[mode] += len(data)
            mse = np.mean((decoded - image) ** 2)
            psnr[mode].append(10 * np.log10(255**2 / mse))
    assert sizes["blur"] < 0.95 * sizes["edge"], sizes
    assert np.mean(psnr["blur"]) > np.mean(psnr["edge"]) - 0.05, psnr


def with_flags(data: bytes, flags: int, size: int) -> bytes:
    """`data` (an .aez file whose header is `size` bytes) with other header flags and a
    valid checksum, as a forger or a later version would write it."""
    fields = bytearray(data[: size - 4])
    fields[6:8] = flags.to_bytes(2, "little")
    payload = data[size:]
    return bytes(fields) + codec.checksum(bytes(fields), payload).to_bytes(4, "little") + payload


def test_a_grayscale_photo_given_to_a_colour_codec_decodes_to_grayscale():
    """R = G = B given to an RGB preset sets the header's gray flag, and the file decodes to
    R = G = B: the rounded mean of the channels the synthesis gives (recomputed here from
    the same file with the flag cleared), which is nearer the photo than they are.  A
    colour photo keeps its channels; flags of no meaning, or gray on a one-channel file,
    are refused."""
    from conftest import shared_data

    packer = codec.Codec(runs.from_preset("codec_0.004"))
    gray = np.asarray(Image.open(shared_data("raw", "bsd68", "test003.png")))[:128, :192]
    given = np.repeat(gray[..., None], 3, axis=-1)
    data = packer.compress(given)
    size = codec.HEADER_V2.size
    assert codec.read_header(data, len(data)).flags == codec.FLAG_GRAY
    decoded = packer.decompress(data)
    channels = packer.decompress(with_flags(data, 0, size)).astype(np.int64)
    assert decoded.shape == given.shape
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 1])
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    np.testing.assert_array_equal(decoded[..., 0], np.round(channels.mean(-1)))

    def psnr(a, b):
        return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))

    assert psnr(decoded[..., 0], gray) > psnr(channels, given)
    colour = np.asarray(Image.open(shared_data("raw", "kodak", "kodim05.png")))[:128, :192]
    coded = packer.compress(colour)
    assert codec.read_header(coded, len(coded)).flags == 0
    for flags in (2, 0x8001):
        with pytest.raises(codec.FormatError, match="corrupted"):
            forged = with_flags(data, flags, size)
            codec.read_header(forged, len(forged))
    one_channel = bytearray(with_flags(data, codec.FLAG_GRAY, size))
    one_channel[5] = 1
    with pytest.raises(codec.FormatError, match="corrupted"):
        codec.read_header(bytes(one_channel), len(one_channel))


@pytest.fixture(scope="module")
def postfilter_run(tmp_path_factory):
    """A grayscale post-filter run folder: a small untrained `denoising` U-Net (its output
    differs from its input, so the filter's effect shows), packed as a run of role
    "postfilter"."""
    from aezoo.models import MODELS

    keras.utils.set_random_seed(3)
    model = MODELS["denoising"](input_shape=(None, None, 1), filters=[8, 16], latent_dim=16)
    folder = tmp_path_factory.mktemp("postfilter")
    info = {"task": "compress", "model": "denoising", "options": {},
            "application": {"role": codec.POSTFILTER, "channels": 1}}
    runs.pack(runs.Run(folder, info, model), folder, float16=False)
    return folder


def test_a_postfilter_denoises_what_the_synthesis_decodes(codec_run, postfilter_run, packed,
                                                          odd_images):
    from aezoo import denoise

    plain = codec.open_codec(codec_run)  # a run folder names no post-filter
    assert plain.postfilter is None
    filtered = codec.open_codec(codec_run, str(postfilter_run))
    data = (packed / "tall.aez").read_bytes()
    decoded = plain.decompress(data)
    # Recomputed: the post-filter's model on the plain decoding, rounded to 8 bits.
    model = runs.load_run(postfilter_run).model
    expected = np.round(np.clip(np.asarray(model(decoded[None] / np.float32(255)))[0], 0, 1)
                        * 255).astype(np.uint8)
    got = filtered.decompress(data)
    assert got.shape == decoded.shape and not np.array_equal(got, decoded)
    assert np.abs(got.astype(int) - expected).max() <= 1  # (float round-off of 1e-6)
    assert np.array_equal(got, denoise.to_8bit(denoise.denoise(model, decoded / np.float32(255))))
    # The file is the model's alone: the filtered codec writes the same bytes.
    image = np.asarray(Image.open(odd_images / "tall.png"))
    assert filtered.compress(image[..., None]) == plain.compress(image[..., None])


def test_what_is_not_a_postfilter_is_refused_by_name(codec_run):
    with pytest.raises(ValueError, match="is not a post-filter"):
        codec.open_codec(codec_run, str(codec_run))
    with pytest.raises(ValueError, match="denoise_gray is not a post-filter"):
        codec.open_codec(codec_run, "denoise_gray")  # a denoiser, of Gaussian noise
    with pytest.raises(ValueError, match="not a denoiser of 1-channel images"):
        codec.open_codec(codec_run, "codec_postfilter")  # an RGB filter for a gray codec
