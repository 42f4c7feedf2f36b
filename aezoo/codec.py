"""The .aez file format: images entropy-coded with a trained compression model.

A file is a fixed header, then the payload (all integers little-endian).  Version 1 (the
factorized-prior `compression` model) has a 38-byte header and one stream; version 2 (the
hyperprior models `compression_hyperprior` and `compression_meanscale`) has a 42-byte
header and two streams, the side information `z` then the latent `y`:

| bytes | field | |
|---|---|---|
| 4 | magic | `b"AEZ\\x1a"` |
| 1 | format version | 1 or 2 |
| 1 | channels | 1 (grayscale) or 3 (RGB) |
| 2 | flags | bit 0: the image was grayscale (R = G = B) and is decoded so again; other bits 0 |
| 4 + 4 | image height, width | the true size; the codec pads, then crops to it |
| 2 + 2 + 2 | latent height, width, channels | of `y`: the padded size / stride, M |
| 8 | model fingerprint | first 8 bytes of the SHA-256 of the model's weights and tables |
| 4 | payload length (v1) | bytes after the header |
| 4 + 4 | side, main length (v2) | bytes of the `z` stream, then of the `y` stream |
| 4 | checksum | CRC-32 of the header's other bytes and the payload |

Each stream is range-coded (`constriction`'s `RangeEncoder`, 32-bit words).  A factorized
stream (v1's `y`, v2's `z`) codes channel by channel, each value with its channel's integer
table (values inside its window, or an escape symbol), followed by the channel's escaped
values, each as a sign (`Uniform(2)`), an Elias-gamma exponent (`Uniform(32)`) and its
mantissa bits (`Uniform(2**n)`, at most 16 bits per symbol), so every integer is coded
losslessly.  v2's `y` stream codes the integers `q = round(y - mean)` (mean 0 for the scale
hyperprior), grouped by table: for each of the Gaussian tables in turn, the elements that
use it in raster order, then their escaped values.  The decoder knows every element's table
before reading the `y` stream, from `z_hat` and the integer hyper-synthesis
(`aezoo.models.compression.integer_hyper_synthesis`), which is integer arithmetic only: its
table indexes and fixed-point means are the same bits on every machine, so `y_hat = q + mean`
is too.

All tables are integers (counts summing to 2**16) fixed when the model was finalised.
`constriction`'s `Categorical(perfect=True)` is given `counts / 2**16`, which is exact in
float64; its quantiser (integer arithmetic and IEEE float64 steps in Rust, no platform maths
library) keeps exactly these counts (scaled to its 24-bit precision; tested), so the same
file decodes to the same latents in any process on any machine.  The synthesis transform then
runs in float32: on the same machine and TensorFlow build its pixels are identical too, on
another they may differ by a grey level.

A `Codec` may run a post-filter on the decoded pixels (`open_codec` gives each codec preset
the one its card names, a `codec_postfilter*` preset trained on what that preset decodes):
a float32 network after the exact part, which changes what a file decodes to, not
the file.

Decoding takes bounded memory whatever a header claims: the synthesis transform runs on
tiles of the latent (with margins that cover its receptive field, so tiles join without
seams) of at most `DECODE_MEMORY` bytes of activations each, and the integer hyper-synthesis
on tiles of `z`.  A file of a few bytes claiming a huge image takes time, not memory.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aezoo import denoise, presets
from aezoo.models.base import check_int
from aezoo.models.compression import (
    SCALE_LEVELS,
    CompressionAutoencoder,
    HyperpriorAutoencoder,
    integer_hyper_synthesis,
    table_indexes,
)

MAGIC = b"AEZ\x1a"
# Header flag: a grayscale image coded by an RGB model (decoded to the mean of the three
# channels, which is 0.18 dB nearer the image than each channel: BSD68, codec_0.01).
FLAG_GRAY = 1
HEADER = struct.Struct("<4sBBHIIHHH8sII")  # version 1
HEADER_V2 = struct.Struct("<4sBBHIIHHH8sIII")
HEADERS = {1: HEADER, 2: HEADER_V2}
# Limits checked before anything is allocated: a header claiming more is refused.
MAX_SIDE = 2**15
MAX_PIXELS = 2**25  # 33.5 megapixels
MAX_LATENT_CHANNELS = 2**12
# Working memory of one tile of the synthesis transform (its activations), in bytes.
DECODE_MEMORY = 2**28
# Latent values are clipped to +-2**30 (far beyond any trained latent), so that every value
# fits an int32 and its escape code is defined.
LATENT_LIMIT = 2**30
# Pixels of the largest window the analysis transform runs on at once.  Its activations
# take about 350 bytes a pixel (8.3 GB, and 27 s of mostly page faults, for a 24-megapixel
# photo in one pass); windows of 4 megapixels cap that near 1.4 GB.
ENCODE_PIXELS = 2**22


def check_size(height: int, width: int, what: str = "The image") -> None:
    """Refuses an image larger than a .aez file holds (`MAX_SIDE` a side, `MAX_PIXELS`);
    commands call it with the file's name and the size from its header, before any work.

    Raises:
        ValueError: naming `what` and its width x height.
    """
    if not (height <= MAX_SIDE and width <= MAX_SIDE and height * width <= MAX_PIXELS):
        raise ValueError(f"{what} is {width}x{height} pixels; a .aez file holds at most "
                         f"{MAX_SIDE} a side and {MAX_PIXELS / 1e6:.1f} megapixels (scale it "
                         "down first).")


def block_size(model) -> int:
    """The side of the blocks a compression model codes images in: the multiple its
    encoder pads them to (stride, times the hyper-stride for the hyperprior models)."""
    return model.encoder.get_layer("pad").multiple


def analysis_margin(model) -> int:
    """Pixels of context around a window's core that the analysis (and hyper-analysis) of
    `model` may reach, rounded up to its blocks (stride * hyper-stride): each layer of
    kernel k reaches ceil(k / 2) of its inputs past a position ("same" padding), times the
    stride of those inputs.  (Measured on `codec_0.01`: a z position reaches 142 pixels
    past its block, under the 221 this bounds it by.)"""
    config = model.get_config()
    kernel = int(config["kernel_size"])
    reach = sum(-(-kernel // 2) * 2**level for level in range(len(config["filters"]) + 1))
    if isinstance(model, HyperpriorAutoencoder):
        hyper = list(config["hyper_filters"])
        # The first hyper layer is 3x3 of stride 1, the others 5x5 of stride 2 (the builder).
        reach += model.stride * (2 + sum(3 * 2**level for level in range(len(hyper) - 1)))
    block = block_size(model)
    return -(-reach // block) * block


def block_tiles(blocks_h: int, blocks_w: int, block: int, tile_pixels: int,
                margin_blocks: int):
    """(core, around) for each tile of an image of blocks_h x blocks_w blocks of `block`
    pixels: slices of blocks in height and width.  The cores tile the image, and each with
    `margin_blocks` blocks around it (inside the image) holds at most `tile_pixels`
    pixels.  The codec's windowed analysis and the refinement's tiles both use it."""
    side = max(math.isqrt(tile_pixels // block**2) - 2 * margin_blocks, 1)
    for top in range(0, blocks_h, side):
        for left in range(0, blocks_w, side):
            core = (slice(top, min(top + side, blocks_h)),
                    slice(left, min(left + side, blocks_w)))
            around = tuple(slice(max(c.start - margin_blocks, 0), min(c.stop + margin_blocks, n))
                           for c, n in zip(core, (blocks_h, blocks_w)))
            yield core, around


def keep_core(whole: np.ndarray, part: np.ndarray, core, around, per_block: int) -> None:
    """Writes into `whole` (1, h, w, c: an image's latent) the positions of `core` from
    `part`, the same latent computed for the blocks `around` it (`block_tiles`'s slices);
    the margins are dropped.  `per_block`: latent positions a block."""
    inner = tuple(slice((c.start - a.start) * per_block, (c.stop - a.start) * per_block)
                  for c, a in zip(core, around))
    outer = tuple(slice(c.start * per_block, c.stop * per_block) for c in core)
    whole[(slice(None), *outer)] = part[(slice(None), *inner)]


def analyse_in_windows(analyse, model, x: np.ndarray, strides: dict[str, int],
                       window_pixels: int | None = None) -> dict:
    """`analyse(x)`'s spatial outputs for one image (1, height, width, channels), computed
    window by window when the image is larger than `window_pixels` (default
    `ENCODE_PIXELS`), so that its memory stays bounded.

    `analyse` runs the analysis of the compression model `model` (whose encoder pads its
    input).  A large image is padded once by that pad; each window is then a core of whole
    blocks (stride * hyper-stride) with `analysis_margin(model)` pixels of the image around
    it, so that every core position sees what it sees in one pass (up to float round-off:
    the convolutions run on other sizes).  `strides`: the outputs kept and the stride of
    each; others are dropped.
    """
    window_pixels = ENCODE_PIXELS if window_pixels is None else window_pixels
    block = block_size(model)
    height, width = (-(-size // block) * block for size in x.shape[1:3])
    if height * width <= window_pixels:
        outputs = analyse(x)
        return {key: np.asarray(outputs[key]) for key in strides}
    x = np.asarray(model.encoder.get_layer("pad")(x))
    result = {}
    for core, around in block_tiles(height // block, width // block, block, window_pixels,
                                    analysis_margin(model) // block):
        window = x[:, around[0].start * block: around[0].stop * block,
                   around[1].start * block: around[1].stop * block]
        outputs = analyse(window)
        for key, stride in strides.items():
            value = np.asarray(outputs[key])
            if key not in result:
                result[key] = np.empty((1, height // stride, width // stride,
                                        value.shape[-1]), value.dtype)
            keep_core(result[key], value, core, around, block // stride)
    return result


def tables(model) -> dict[str, np.ndarray]:
    """The integer tables of a finalised model's factorized prior (of `y` for the
    `compression` model, of `z` for the hyperprior ones): counts, offsets, lengths (int32)."""
    layer = model.entropy_bottleneck
    return {
        "counts": layer.table_counts.numpy(),
        "offsets": layer.table_offsets.numpy(),
        "lengths": layer.table_lengths.numpy(),
    }


def _categoricals(counts: np.ndarray, lengths: np.ndarray) -> list:
    """constriction's models of integer tables: row i's first lengths[i] + 1 counts (its
    window and the escape symbol), as probabilities counts / 2**16, exact in float64, which
    constriction keeps exactly (`perfect=True`; tests/test_codec.py checks every boundary
    of every table)."""
    import constriction

    return [constriction.stream.model.Categorical(row[: length + 1] / 2.0**16, perfect=True)
            for row, length in zip(counts, lengths)]


def fingerprint(model) -> bytes:
    """8 bytes of the SHA-256 of every weight (names, shapes, dtypes, little-endian values),
    integer tables included: files made by another model are recognised."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        digest.update(f"{variable.path}:{value.dtype.str[1:]}:{value.shape};".encode())
        digest.update(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.digest()[:8]


# What a post-filter's run.json says it is (its application's "role"), and the card field
# by which a codec preset names its post-filter.
POSTFILTER = "postfilter"


def open_codec(source, postfilter: str = "auto") -> "Codec":
    """The `Codec` of a compression run or preset, with its post-filter.

    Args:
        source: a codec preset's name (`codec_0.01`) or a compression run folder.
        postfilter: "auto": the post-filter a preset's card names (a `codec_postfilter*`
            preset, trained on what that preset decodes; a preset's folder given by its
            path too), none for a run folder (a model
            trained elsewhere has other artefacts); "none" or None; or a post-filter's
            preset name or run folder.

    Raises:
        ValueError: a run of another task, or a `postfilter` that is not a post-filter.
    """
    from aezoo import runs

    run = runs.load_run(source, task="compress")
    if postfilter == "auto":
        # The card in the folder, not PRESETS[source]: a preset's folder given by its path
        # (or a copy of it) is the same preset.
        card = run.path / "card.json"
        postfilter = (json.loads(card.read_text()) if card.is_file() else {}).get(
            POSTFILTER, "none")
    if postfilter is None or postfilter == "none":
        return Codec(run.model)
    filter_run = runs.load_run(postfilter)
    if filter_run.task != "compress" or filter_run.application.get("role") != POSTFILTER:
        raise ValueError(f"{postfilter} is not a post-filter (a denoiser of a codec's decoded "
                         "images, as the preset codec_postfilter).")
    return Codec(run.model, postfilter=filter_run.model, postfilter_name=str(postfilter))


def preset_of(path: str | os.PathLike) -> str:
    """The codec preset that made an .aez file, found by the fingerprint in its header (the
    codec `aezoo compress decompress` uses when it is given no --model).

    Raises:
        FileNotFoundError: no such file.
        FormatError: not an .aez file, or one whose model is no preset (a run trained
            elsewhere: open it with `open_codec(run)`).
    """
    path = Path(path)
    header = _file_header(path)[0]
    name = presets.codec_for(header.fingerprint)
    if name is None:
        raise FormatError(f"{path.name} was made by a model that is not a codec preset "
                          f"(fingerprint {header.fingerprint.hex()}): give the run that made "
                          "it, --model RUN.")
    return name


def _file_header(path: Path) -> tuple["Header", bytes]:
    """An .aez file's header, checked by `read_header`, and the bytes it was read from.

    Raises:
        FileNotFoundError: no such file.
        FormatError: as `read_header`.
    """
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    with open(path, "rb") as f:
        head = f.read(HEADER_V2.size)
    return read_header(head, path.stat().st_size, path.name), head


class FormatError(ValueError):
    """A file that this codec cannot decode: not .aez, truncated, corrupted, or made by
    another model.  The message is one sentence a user can act on."""


@dataclass(frozen=True)
class Header:
    """A parsed header.  `payload_length` counts every byte after the header; in version 2
    the first `side_length` of them are the `z` stream."""

    channels: int
    height: int
    width: int
    latent_shape: tuple[int, int, int]
    fingerprint: bytes
    payload_length: int
    checksum: int
    version: int = 1
    side_length: int = 0
    flags: int = 0

    @property
    def size(self) -> int:
        return HEADERS[self.version].size

    def pack(self) -> bytes:
        fields = (MAGIC, self.version, self.channels, self.flags, self.height, self.width,
                  *self.latent_shape, self.fingerprint)
        if self.version == 1:
            return HEADER.pack(*fields, self.payload_length, self.checksum)
        return HEADER_V2.pack(*fields, self.side_length,
                              self.payload_length - self.side_length, self.checksum)


def checksum(header_fields: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(header_fields))


def read_header(data: bytes, file_size: int, name: str = "the file") -> Header:
    """Parses and checks a header against hard limits, before any payload is read.

    Args:
        data: at least the first `HEADER_V2.size` bytes of the file (fewer if it is shorter;
            more are ignored).
        file_size: the file's size in bytes.
        name: the file's name, for messages.

    Raises:
        FormatError: not an .aez file, an unknown version, a size beyond the limits or
            inconsistent, or a payload length that does not match the file's size.
    """
    if data[:4] != MAGIC[: len(data[:4])] or len(data) < 4:
        raise FormatError(f"{name} is not an .aez file (no AEZ magic bytes).")
    if len(data) < 5:
        raise FormatError(f"{name} is truncated: {len(data)} bytes, shorter than a header.")
    version = data[4]
    if version not in HEADERS:
        raise FormatError(f"{name} has .aez format version {version}; this codec reads "
                          f"versions {' and '.join(map(str, HEADERS))}.")
    layout = HEADERS[version]
    if len(data) < layout.size:
        raise FormatError(f"{name} is truncated: {len(data)} bytes, shorter than a header.")
    fields = layout.unpack_from(data)
    _, _, channels, flags, height, width, lh, lw, lc, print_ = fields[:10]
    side = 0 if version == 1 else fields[10]
    length = fields[10] if version == 1 else fields[10] + fields[11]
    crc = fields[-1]
    if (
        channels not in (1, 3)
        or flags & ~FLAG_GRAY
        or (flags & FLAG_GRAY and channels != 3)
        or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE)
        or height * width > MAX_PIXELS
        or not 1 <= lc <= MAX_LATENT_CHANNELS
    ):
        raise FormatError(
            f"{name} claims an impossible or absurd image ({height}x{width}x{channels}, "
            f"latent channels {lc}); the limits are {MAX_SIDE} per side and {MAX_PIXELS} "
            "pixels. The file is corrupted."
        )
    if file_size < layout.size + length:
        raise FormatError(
            f"{name} is truncated: its header announces {length} bytes of payload, "
            f"{file_size - layout.size} are there."
        )
    if file_size > layout.size + length:
        raise FormatError(f"{name} is corrupted: {file_size - layout.size - length} bytes "
                          "more than its header announces.")
    return Header(channels, height, width, (lh, lw, lc), print_, length, crc, version, side,
                  flags)


class Codec:
    """Compresses uint8 images to .aez bytes and back with a finalised compression model.

    >>> codec = Codec(aezoo.load_run("runs/compress_0.01").model)
    >>> data = codec.compress(image)          # uint8 (height, width, channels) -> bytes
    >>> image2 = codec.decompress(data)       # -> uint8, the decoded image

    A `compression` model writes version-1 files; `compression_hyperprior` and
    `compression_meanscale` models write version 2.
    """

    def __init__(self, model, refiner=None, postfilter=None, postfilter_name=None):
        """`refiner`: the `aezoo.refinement.Refiner` of `model` that `compress(refine=N)`
        uses (default: one built on first use, in `search_precision()`).  `postfilter`: a
        denoiser of decoded images (the `codec_postfilter*` presets, which `open_codec` gives
        the codec presets) that `decompress` runs on the synthesis's pixels; None: none.
        Files do not depend on it: it changes what they decode to, not what they hold.
        `postfilter_name`: what reports call it (`open_codec` gives its preset or run;
        default: the Keras model's name)."""
        if not isinstance(model, CompressionAutoencoder):
            name = getattr(model, "name", None)
            what = (f"Model '{name}'" if name is not None
                    else f"{type(model).__name__} {model!r:.40}")
            raise ValueError(f"{what} is not a compression model; .aez files are made by the "
                             "`compression` models of aezoo.MODELS (a preset: "
                             "Codec(aezoo.from_preset('codec_0.01'))).")
        if not model.finalised:
            raise ValueError("The model has no integer tables yet: call model.finalise() "
                             "after training.")
        self.model = model
        self.version = 2 if isinstance(model, HyperpriorAutoencoder) else 1
        self.channels = int(model.encoder.input_shape[-1])
        self.stride = model.stride
        self.hyper_stride = model.hyper_stride if self.version == 2 else 1
        self.fingerprint = fingerprint(model)
        # The factorized prior's tables: y's in version 1, z's in version 2.
        table = tables(model)
        self.offsets = table["offsets"].astype(np.int64)
        self.lengths = table["lengths"].astype(np.int64)
        self.counts = table["counts"].astype(np.int64)
        self._models = _categoricals(self.counts, self.lengths)
        config = model.get_config()
        self.latent_channels = int(config["latent_dim"]) if self.version == 2 else len(
            self.lengths)
        # Margin (latent positions) that covers the synthesis's receptive field: each
        # stride-2 transposed convolution of kernel k reaches ceil((k - 1) / 4) of its input
        # positions beyond a tile (derived from TensorFlow's "same" padding), and the levels
        # below add halves of that: less than twice it in all.
        self.margin = 2 * math.ceil((int(config["kernel_size"]) - 1) / 4)
        # Measured: the synthesis holds 1.4 (N = 128) to 2 (N = 8) float32 copies of its
        # widest level per image pixel, whatever the tile size.
        widest = max(*config["filters"], self.channels)
        self._bytes_per_position = 2 * 4 * self.stride**2 * widest
        if self.version == 2:
            conditional = model.gaussian_conditional
            self.means = conditional.means
            self.hyper_channels = len(self.lengths)
            self.gaussian_counts = conditional.table_counts.numpy().astype(np.int64)
            self.gaussian_offsets = conditional.table_offsets.numpy().astype(np.int64)
            self.gaussian_lengths = conditional.table_lengths.numpy().astype(np.int64)
            self.scale_thresholds = conditional.scale_thresholds.numpy().astype(np.int64)
            self._gaussian_models = _categoricals(self.gaussian_counts, self.gaussian_lengths)
            self.hyper_parameters = model.hyper_synthesis.integer_parameters()
        self._analyse, self._synthesise = self._graphs(model)
        if refiner is not None and refiner.model is not model:
            raise ValueError("The refiner is another model's.")
        self._refiner = refiner
        if postfilter is not None:
            denoise.check_denoiser(postfilter, self.channels, "The post-filter")
        self.postfilter = postfilter
        self.postfilter_name = None if postfilter is None else postfilter_name or postfilter.name

    def _graphs(self, model):
        """The analysis (image -> y_hat, or y and z_hat) and the synthesis (a tile of y_hat
        -> pixels) as TensorFlow graphs taking any height and width: run eagerly, Keras's
        per-layer calls took half the time of a Kodak image (0.12 s of analysis, against
        0.06 s as a graph; the outputs are the same bits). Tracing each costs about 0.4 s
        once, on the first image."""
        import tensorflow as tf

        from aezoo._keras_fixes import graph

        analysis = model.analysis_model() if self.version == 2 else model.encoder
        latent = (None, None, self.latent_channels)
        analyse = graph(
            lambda x: analysis(x, training=False),
            input_signature=[tf.TensorSpec((1, None, None, self.channels), tf.float32)])
        synthesise = graph(
            lambda y_hat, size: model.decoder({"y_hat": y_hat, "image_size": size},
                                              training=False),
            input_signature=[tf.TensorSpec((1, *latent), tf.float32),
                             tf.TensorSpec((1, 2), tf.int32)])
        return analyse, synthesise

    # ----------------------------------------------------------------- images

    def encode_latent(self, image: np.ndarray, refine: int = 0, progress=None) -> np.ndarray:
        """The integer latent (latent_h, latent_w, M) of a uint8 image (version 1; see
        `encode_latents` for version 2); `refine`, `progress`: see `compress`."""
        if self.version != 1:
            raise ValueError("A hyperprior model's file carries z_hat and round(y - mean): "
                             "use encode_latents().")
        image = self._check_image(image)
        x = image[None].astype(np.float32) / 255.0
        if refine:
            y = np.rint(self.refiner().refine(x, refine, progress)["y"][0])
        else:
            y = self.analyse(x)["y_hat"][0]
        return np.clip(y, -LATENT_LIMIT, LATENT_LIMIT).astype(np.int64)

    def encode_latents(self, image: np.ndarray, refine: int = 0,
                       progress=None) -> dict[str, np.ndarray]:
        """What a version-2 file carries for a uint8 image: `z_hat` (zh, zw, hyper channels)
        and `symbols`, `round(y - mean)` (h, w, M), both int64; and the `indexes` of the
        tables that code the symbols (what `entropy_parameters` gives for `z_hat`).
        `refine`, `progress`: see `compress` (0: the analysis's latents)."""
        image = self._check_image(image)
        x = image[None].astype(np.float32) / 255.0
        if refine:
            parts = self.refiner().refine(x, refine, progress)
            parts["z_hat"] = np.rint(parts.pop("z"))
        else:
            parts = self.analyse(x)
        z_hat = np.clip(np.asarray(parts["z_hat"], np.float64)[0], -LATENT_LIMIT, LATENT_LIMIT)
        z_hat = z_hat.astype(np.int64)
        indexes, means = self.entropy_parameters(z_hat)
        y = np.asarray(parts["y"], np.float64)[0]
        if means is not None:
            y = y - means * 2.0**-16  # exact in float64
        symbols = np.clip(np.rint(y), -LATENT_LIMIT, LATENT_LIMIT).astype(np.int64)
        return {"z_hat": z_hat, "symbols": symbols, "indexes": indexes}

    def analyse(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The analysis of one image (1, height, width, channels) in [0, 1]: `y_hat`
        (version 1), or `y` and `z_hat` (version 2); in windows for a large image
        (`analyse_in_windows`), so that its memory stays bounded."""
        keys = ({"y_hat": self.stride} if self.version == 1
                else {"y": self.stride, "z_hat": block_size(self.model)})
        return analyse_in_windows(self._analyse, self.model, x, keys)

    def refiner(self):
        """The model's `aezoo.refinement.Refiner` (built on first use)."""
        if self._refiner is None:
            from aezoo.refinement import Refiner

            self._refiner = Refiner(self.model)
        return self._refiner

    def synthesise(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        """Runs the synthesis transform on `y_hat` (h, w, M) in tiles of bounded memory
        (see `tile_size`) and returns the uint8 image (height, width, channels).

        Each tile is decoded with `margin` more latent positions on each side (fewer at the
        latent's borders, which the model pads with zeros as in one pass), and only its
        interior is kept.
        """
        latent_h, latent_w = y_hat.shape[:2]
        tile = self.tile_size()
        stride, margin = self.stride, self.margin
        image = np.empty((height, width, self.channels), np.uint8)
        for top in range(0, -(-height // stride), tile):
            for left in range(0, -(-width // stride), tile):
                bottom, right = min(top + tile, latent_h), min(left + tile, latent_w)
                r0, r1 = max(top - margin, 0), min(bottom + margin, latent_h)
                c0, c1 = max(left - margin, 0), min(right + margin, latent_w)
                size = np.array([[(r1 - r0) * stride, (c1 - c0) * stride]], np.int32)
                x_hat = np.asarray(self._synthesise(y_hat[None, r0:r1, c0:c1], size))[0]
                rows = min(bottom * stride, height) - top * stride
                cols = min(right * stride, width) - left * stride
                part = x_hat[(top - r0) * stride:, (left - c0) * stride:][:rows, :cols]
                image[top * stride: top * stride + rows,
                      left * stride: left * stride + cols] = denoise.to_8bit(part)
        return image

    def filtered(self, image: np.ndarray, progress=None) -> np.ndarray:
        """A decoded uint8 image after the post-filter (in tiles of bounded memory, as
        `aezoo.denoise.denoise` runs a denoiser), rounded back to uint8.  `progress(done,
        total)` is called after each tile (a 24-megapixel photo takes about 25 s on 2 cores)."""
        cleaned = denoise.denoise(self.postfilter, image.astype(np.float32) / 255.0,
                                  progress=progress)
        return denoise.to_8bit(cleaned)

    def tile_size(self) -> int:
        """Side, in latent positions, of the tiles `synthesise` keeps from each run: the
        largest whose run (with its margins) fits `DECODE_MEMORY`."""
        positions = DECODE_MEMORY // self._bytes_per_position
        return max(math.isqrt(positions) - 2 * self.margin, 4)

    def compress(self, image: np.ndarray, refine: int = 0, progress=None) -> bytes:
        """A uint8 (height, width, channels) image -> the bytes of an .aez file.

        `refine`: iterations of latent refinement (`aezoo.refinement`): smaller files of
        better quality, 0.1-0.4 s an iteration for a Kodak image on 2 cores; 0 (the
        default) codes the analysis transform's latents, in a fraction of a second.
        `progress(done, total)`: called after every step of the refinement.
        """
        refine = check_int("refine", refine, minimum=0)  # (a sweep's NumPy integers too)
        image = self._check_image(image)
        height, width = image.shape[:2]
        if self.version == 1:
            latent = self.encode_latent(image, refine, progress)
            side, main = b"", self.encode_symbols(latent)
        else:
            latents = self.encode_latents(image, refine, progress)
            latent = latents["symbols"]
            side, main = self.encode_streams(latents["z_hat"], latents["symbols"],
                                             latents["indexes"])
        # A grayscale image given to an RGB model (R = G = B) decodes to grayscale.
        gray = self.channels == 3 and bool(
            np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 0], image[..., 2]))
        header = Header(self.channels, height, width, latent.shape, self.fingerprint,
                        len(side) + len(main), 0, self.version, len(side),
                        FLAG_GRAY if gray else 0)
        fields = header.pack()[: header.size - 4]
        payload = side + main
        return fields + struct.pack("<I", checksum(fields, payload)) + payload

    def decompress(self, data: bytes, name: str = "the file") -> np.ndarray:
        """The bytes of an .aez file -> the uint8 image.

        Raises:
            FormatError: see `read_header`; also a checksum mismatch, another model's file,
                or a payload that does not decode.
        """
        header = read_header(data[: HEADER_V2.size], len(data), name)
        payload = data[header.size:]
        self._check(header, data[: header.size - 4], payload, name)
        return self._decode_payload(header, payload, name)

    def decompress_latents(self, data: bytes, name: str = "the file") -> dict[str, np.ndarray]:
        """The decoded latents of the bytes of an .aez file, checked as by `decompress`:
        `y_hat` (float32, what the synthesis transform gets) and, for version 2, `z_hat`
        and `symbols` (int64)."""
        header = read_header(data[: HEADER_V2.size], len(data), name)
        payload = data[header.size:]
        self._check(header, data[: header.size - 4], payload, name)
        return self._decode_latents(header, payload, name)

    def read(self, path: str | os.PathLike, progress=None) -> np.ndarray:
        """Decodes an .aez file, reading its header first so that nothing is read or
        allocated for a file whose header is wrong.  `progress`: see `filtered`."""
        header, fields, payload, name = self._read_checked(path)
        return self._decode_payload(header, payload, name, progress)

    def check_file(self, path: str | os.PathLike) -> Header:
        """Checks an .aez file's header, size, checksum and model without decoding it.

        Raises:
            FileNotFoundError: no such file.
            FormatError: as `decompress`, but for a payload that does not decode.
        """
        return self._read_checked(path)[0]

    def _read_checked(self, path: str | os.PathLike):
        path = Path(path)
        header, head = _file_header(path)
        with open(path, "rb") as f:
            f.seek(header.size)
            payload = f.read(header.payload_length)
        fields = head[: header.size - 4]
        self._check(header, fields, payload, path.name)
        return header, fields, payload, path.name

    def _check(self, header: Header, fields: bytes, payload: bytes, name: str) -> None:
        if checksum(fields, payload) != header.checksum:
            raise FormatError(f"{name} is corrupted (checksum mismatch).")
        if header.fingerprint != self.fingerprint:
            made = presets.codec_for(header.fingerprint)
            if made is not None:
                raise FormatError(f"{name} was made by another model, the preset {made} "
                                  f"(give --model {made}, or no --model).")
            raise FormatError(
                f"{name} was made by another model (fingerprint {header.fingerprint.hex()}, "
                f"this model's is {self.fingerprint.hex()})."
            )
        expected = self.latent_shape(header.height, header.width)
        if (header.version != self.version or header.channels != self.channels
                or header.latent_shape != expected):
            raise FormatError(f"{name} is corrupted (its shapes do not fit this model).")

    def _decode_payload(self, header: Header, payload: bytes, name: str,
                       progress=None) -> np.ndarray:
        """The image of a checked payload, uint8 (height, width, channels): the synthesis's
        pixels, then the post-filter's if the codec has one.  A grayscale image coded by an
        RGB model (`FLAG_GRAY`) decodes to R = G = B again: the rounded mean of the decoded
        channels.  `progress`: see `filtered`."""
        y_hat = self._decode_latents(header, payload, name)["y_hat"]
        image = self.synthesise(y_hat, header.height, header.width)
        if self.postfilter is not None:
            image = self.filtered(image, progress)
        if header.flags & FLAG_GRAY:
            total = image.astype(np.uint16).sum(axis=-1, keepdims=True)
            gray = ((total + 1) // 3).astype(np.uint8)  # round(sum / 3), in integers
            return np.repeat(gray, 3, axis=-1)
        return image

    def _decode_latents(self, header: Header, payload: bytes, name: str) -> dict:
        try:
            if self.version == 1:
                latent = self.decode_symbols(payload, header.latent_shape)
                return {"y_hat": latent.astype(np.float32)}
            side = payload[: header.side_length]
            main = payload[header.side_length:]
            latents = self.decode_streams(side, main, header.latent_shape)
        except (ValueError, RuntimeError, OverflowError) as error:
            raise FormatError(f"{name} is corrupted (the payload does not decode: {error}).")
        return latents

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """The shape of `y` for an image: its padded size divided by the stride."""
        multiple = self.stride * self.hyper_stride
        return (-(-height // multiple) * self.hyper_stride,
                -(-width // multiple) * self.hyper_stride, self.latent_channels)

    def hyper_latent_shape(self, latent_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """The shape of `z` (version 2) for a latent shape."""
        return (latent_shape[0] // self.hyper_stride, latent_shape[1] // self.hyper_stride,
                self.hyper_channels)

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != self.channels:
            raise ValueError(
                f"Expected a uint8 image of shape (height, width, {self.channels}); got "
                f"{image.dtype} {image.shape}."
            )
        height, width = image.shape[:2]
        if not (height and width):
            raise ValueError(f"The image is empty ({height}x{width} pixels).")
        check_size(height, width)
        return image

    # ------------------------------------------------------- the hyper-synthesis

    def entropy_parameters(self, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The table index (uint8) of every element of `y`, and its mean (int32, units of
        2**-16; None for the scale hyperprior), from an integer `z_hat` (zh, zw, channels)
        by the integer hyper-synthesis: the same bits on every machine.

        Runs on tiles of `z_hat` with margins that cover the network's receptive field;
        integer arithmetic makes the tiles' results exactly those of one pass.
        """
        z_hat = np.asarray(z_hat, np.int64)
        up = self.hyper_stride
        channels = self.latent_channels
        shape = (z_hat.shape[0] * up, z_hat.shape[1] * up, channels)
        indexes = np.empty(shape, np.uint8)
        means = np.empty(shape, np.int32) if self.means else None
        # Each 5x5 stride-2 transposed convolution reaches one input position beyond a tile
        # (and the levels below half of that), the final 3x3 convolution one position of y.
        margin = 3
        # About three int64 copies of the widest level at the resolution of y.
        widest = max(max(k.shape[2:]) for k in self.hyper_parameters["kernels"])
        side = max(math.isqrt(DECODE_MEMORY // (3 * 8 * up * up * widest)) - 2 * margin, 4)
        height, width = z_hat.shape[:2]
        for top in range(0, height, side):
            for left in range(0, width, side):
                bottom, right = min(top + side, height), min(left + side, width)
                r0, r1 = max(top - margin, 0), min(bottom + margin, height)
                c0, c1 = max(left - margin, 0), min(right + margin, width)
                out = integer_hyper_synthesis(z_hat[r0:r1, c0:c1], self.hyper_parameters)
                out = out[(top - r0) * up: (bottom - r0) * up, (left - c0) * up: (right - c0) * up]
                rows = slice(top * up, bottom * up)
                cols = slice(left * up, right * up)
                if self.means:
                    means[rows, cols] = out[..., :channels]
                    out = out[..., channels:]
                indexes[rows, cols] = table_indexes(out, self.scale_thresholds)
        return indexes, means

    def dequantise(self, symbols: np.ndarray, means: np.ndarray | None) -> np.ndarray:
        """`y_hat = symbols + mean` as float32: exact in int64 and float64, then rounded
        once to float32 (IEEE round-to-nearest, the same everywhere)."""
        if means is None:
            return symbols.astype(np.float32)
        fixed = np.asarray(symbols, np.int64) * 2**16 + means
        return (fixed * 2.0**-16).astype(np.float32)

    # ---------------------------------------------------------------- symbols

    def encode_symbols(self, latent: np.ndarray) -> bytes:
        """Range-codes an integer latent (h, w, channels) with the factorized prior's
        tables (version 1's payload; version 2's side stream)."""
        import constriction

        encoder = constriction.stream.queue.RangeEncoder()
        self._encode_factorized(encoder, latent)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode_symbols(self, payload: bytes, latent_shape: tuple[int, int, int]) -> np.ndarray:
        """Inverse of `encode_symbols`."""
        return self._decode_factorized(_range_decoder(payload), latent_shape)

    def encode_streams(self, z_hat: np.ndarray, symbols: np.ndarray,
                       indexes: np.ndarray | None = None) -> tuple[bytes, bytes]:
        """Version 2's side stream (`z_hat`, factorized prior) and main stream (`symbols`,
        the Gaussian table that the integer hyper-synthesis picks for each; `indexes`, when
        `encode_latents` has them already)."""
        import constriction

        side = self.encode_symbols(z_hat)
        if indexes is None:
            indexes, _ = self.entropy_parameters(z_hat)
        encoder = constriction.stream.queue.RangeEncoder()
        self._encode_indexed(encoder, symbols.ravel(), indexes.ravel())
        return side, encoder.get_compressed().astype("<u4").tobytes()

    def decode_streams(self, side: bytes, main: bytes,
                       latent_shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
        """Inverse of `encode_streams`: `z_hat`, `symbols` and `y_hat` (float32)."""
        z_hat = self.decode_symbols(side, self.hyper_latent_shape(latent_shape))
        indexes, means = self.entropy_parameters(z_hat)
        decoder = _range_decoder(main)
        symbols = self._decode_indexed(decoder, indexes.ravel()).reshape(latent_shape)
        return {"z_hat": z_hat, "symbols": symbols, "y_hat": self.dequantise(symbols, means)}

    def information_bits(self, latent: np.ndarray, symbols: np.ndarray | None = None) -> float:
        """The exact information content under the integer tables, in bits (what an ideal
        entropy coder would spend; the range coder adds a few words): of a version-1 latent,
        or of version 2's `z_hat` (`latent`) and `symbols`."""
        bits = 0.0
        for c in range(len(self.lengths)):
            bits += _table_bits(latent[..., c].ravel(), self.offsets[c], self.lengths[c],
                                self.counts[c])
        if symbols is not None:
            indexes, _ = self.entropy_parameters(latent)
            indexes, values = indexes.ravel(), symbols.ravel()
            for k in range(SCALE_LEVELS):
                bits += _table_bits(values[indexes == k], self.gaussian_offsets[k],
                                    self.gaussian_lengths[k], self.gaussian_counts[k])
        return bits

    def _encode_factorized(self, encoder, latent: np.ndarray) -> None:
        for c in range(len(self.lengths)):
            _encode_group(encoder, latent[..., c].ravel(), self._models[c], self.offsets[c],
                          self.lengths[c])

    def _decode_factorized(self, decoder, latent_shape: tuple[int, int, int]) -> np.ndarray:
        height, width, channels = latent_shape
        latent = np.empty((channels, height * width), np.int64)
        for c in range(channels):
            latent[c] = _decode_group(decoder, height * width, self._models[c],
                                      self.offsets[c], self.lengths[c])
        return latent.T.reshape(height, width, channels)

    def _encode_indexed(self, encoder, values: np.ndarray, indexes: np.ndarray) -> None:
        for k in range(SCALE_LEVELS):
            selected = values[indexes == k]
            if len(selected):
                _encode_group(encoder, selected, self._gaussian_models[k],
                              self.gaussian_offsets[k], self.gaussian_lengths[k])

    def _decode_indexed(self, decoder, indexes: np.ndarray) -> np.ndarray:
        # int32: the encoder clips to +-LATENT_LIMIT; a forged stream's larger escapes are
        # clipped alike rather than taking twice the memory.
        values = np.empty(len(indexes), np.int32)
        for k in range(SCALE_LEVELS):
            selected = indexes == k
            count = int(np.count_nonzero(selected))
            if count:
                group = _decode_group(decoder, count, self._gaussian_models[k],
                                      self.gaussian_offsets[k], self.gaussian_lengths[k])
                values[selected] = np.clip(group, -LATENT_LIMIT, LATENT_LIMIT)
        return values


TABLE_BITS = 16  # log2 of the tables' total count (aezoo.compression.TABLE_PRECISION)


def _range_decoder(payload: bytes):
    import constriction

    if len(payload) % 4:
        raise ValueError("the payload is not whole 32-bit words")
    words = np.frombuffer(payload, "<u4").astype(np.uint32)
    return constriction.stream.queue.RangeDecoder(words)


def _encode_group(encoder, values: np.ndarray, model, offset: int, length: int) -> None:
    """Codes integers with one table: window symbols, then the escaped values."""
    import constriction

    index = values - offset
    escaped = (index < 0) | (index >= length)
    symbols = np.where(escaped, length, index).astype(np.int32)
    encoder.encode(symbols, model)
    if escaped.any():
        uniform = constriction.stream.model.Uniform()
        for symbols, sizes in _escape_symbols(values[escaped], offset, length):
            encoder.encode(symbols, uniform, sizes)


def _decode(decoder, model, counts):
    """`decoder.decode`, with invalid data reported as ValueError: constriction's range
    decoder raises AssertionError when a stream cannot have come from the model (found by
    fuzzing random payloads with a valid checksum)."""
    try:
        return decoder.decode(model, counts)
    except AssertionError as error:
        raise ValueError(str(error)) from None


def _decode_group(decoder, count: int, model, offset: int, length: int) -> np.ndarray:
    import constriction

    symbols = _decode(decoder, model, count).astype(np.int64)
    values = symbols + offset
    escaped = symbols == length
    if escaped.any():
        uniform = constriction.stream.model.Uniform()
        values[escaped] = _decode_escapes(decoder, uniform, int(escaped.sum()), offset, length)
    return values


def _table_bits(values: np.ndarray, offset: int, length: int, counts: np.ndarray) -> float:
    index = values - offset
    escaped = (index < 0) | (index >= length)
    index = np.where(escaped, length, index)
    bits = float(np.sum(TABLE_BITS - np.log2(counts[index])))
    for _, sizes in _escape_symbols(values[escaped], offset, length):
        bits += float(np.sum(np.log2(sizes)))
    return bits


def _escape_symbols(values: np.ndarray, offset: int, length: int):
    """(symbols, Uniform sizes) groups coding values outside [offset, offset + length):
    signs, then Elias-gamma exponents n of d + 1 (d = distance from the window), then the
    low min(n, 16) mantissa bits where n > 0, then the high n - 16 bits where n > 16."""
    above = values >= offset + length
    distance = np.where(above, values - (offset + length), offset - 1 - values) + 1
    exponent = (np.frexp(distance.astype(np.float64))[1] - 1).astype(np.int64)  # exact
    mantissa = distance - (1 << exponent)
    low_bits = np.minimum(exponent, 16)
    groups = [(above.astype(np.int32), np.full(len(values), 2, np.int32)),
              (exponent.astype(np.int32), np.full(len(values), 32, np.int32))]
    has_low, has_high = exponent > 0, exponent > 16
    groups.append(((mantissa & 0xFFFF)[has_low].astype(np.int32),
                   (1 << low_bits[has_low]).astype(np.int32)))
    groups.append(((mantissa >> 16)[has_high].astype(np.int32),
                   (1 << (exponent[has_high] - 16)).astype(np.int32)))
    return [(s, n) for s, n in groups if len(s)]


def _decode_escapes(decoder, uniform, count: int, offset: int, length: int) -> np.ndarray:
    above = _decode(decoder, uniform, np.full(count, 2, np.int32)).astype(bool)
    exponent = _decode(decoder, uniform, np.full(count, 32, np.int32)).astype(np.int64)
    mantissa = np.zeros(count, np.int64)
    has_low, has_high = exponent > 0, exponent > 16
    if has_low.any():
        sizes = (1 << np.minimum(exponent[has_low], 16)).astype(np.int32)
        mantissa[has_low] = _decode(decoder, uniform, sizes)
    if has_high.any():
        sizes = (1 << (exponent[has_high] - 16)).astype(np.int32)
        mantissa[has_high] += _decode(decoder, uniform, sizes).astype(np.int64) << 16
    distance = (1 << exponent) + mantissa
    return np.where(above, offset + length + distance - 1, offset - distance)
