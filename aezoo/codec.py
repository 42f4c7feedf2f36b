"""The .aez file format: images entropy-coded with a trained `compression` model.

A file is a fixed 38-byte header, then the payload (all integers little-endian):

| bytes | field | |
|---|---|---|
| 4 | magic | `b"AEZ\\x1a"` |
| 1 | format version | 1 |
| 1 | channels | 1 (grayscale) or 3 (RGB) |
| 2 | reserved | 0 |
| 4 + 4 | image height, width | the true size; the codec pads, then crops to it |
| 2 + 2 + 2 | latent height, width, channels | ceil(height / stride), ceil(width / stride), M |
| 8 | model fingerprint | first 8 bytes of the SHA-256 of the model's weights and tables |
| 4 | payload length | bytes after the header |
| 4 | checksum | CRC-32 of the header's first 34 bytes and the payload |

The payload is a range-coded stream (`constriction`'s `RangeEncoder`, 32-bit words).  Channel
by channel, each latent value is coded with that channel's integer table (values inside its
window, or an escape symbol), followed by the channel's escaped values, each as a sign
(`Uniform(2)`), an Elias-gamma exponent (`Uniform(32)`) and its mantissa bits
(`Uniform(2**n)`, at most 16 bits per symbol), so every integer is coded losslessly.

The tables are integers (counts summing to 2**16) fixed when the model was finalised.
`constriction`'s `Categorical(perfect=True)` is given `counts / 2**16`, which is exact in
float64; its quantiser (integer arithmetic and IEEE float64 steps in Rust, no platform maths
library) keeps exactly these counts (scaled to its 24-bit precision; tested), so the same
file decodes to the same latent in any process on any machine.  The synthesis transform then
runs in float32: on the same machine and TensorFlow build its pixels are identical too.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aezoo.models.compression import CompressionAutoencoder

MAGIC = b"AEZ\x1a"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIHHH8sII")
# Limits checked before anything is allocated: a header claiming more is refused.
MAX_SIDE = 2**15
MAX_PIXELS = 2**25  # 33.5 megapixels; decoding takes about 1 KiB of memory per pixel
MAX_LATENT_CHANNELS = 2**12


def tables(model) -> dict[str, np.ndarray]:
    """The integer tables of a finalised model: counts, offsets, lengths (int32)."""
    layer = model.entropy_bottleneck
    return {
        "counts": layer.table_counts.numpy(),
        "offsets": layer.table_offsets.numpy(),
        "lengths": layer.table_lengths.numpy(),
    }


def save_tables(model, path: str | os.PathLike) -> None:
    """Writes the integer tables and the model's fingerprint to an .npz file."""
    np.savez(path, fingerprint=np.frombuffer(fingerprint(model), np.uint8), **tables(model))


def fingerprint(model) -> bytes:
    """8 bytes of the SHA-256 of every weight (names, shapes, dtypes, little-endian values),
    integer tables included: files made by another model are recognised."""
    digest = hashlib.sha256()
    for variable in model.weights:
        value = np.asarray(variable.numpy())
        digest.update(f"{variable.path}:{value.dtype.str[1:]}:{value.shape};".encode())
        digest.update(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.digest()[:8]


class FormatError(ValueError):
    """A file that this codec cannot decode: not .aez, truncated, corrupted, or made by
    another model.  The message is one sentence a user can act on."""


@dataclass(frozen=True)
class Header:
    channels: int
    height: int
    width: int
    latent_shape: tuple[int, int, int]
    fingerprint: bytes
    payload_length: int
    checksum: int

    def pack(self) -> bytes:
        return HEADER.pack(*self._fields_before_checksum(), self.checksum)

    def _fields_before_checksum(self):
        return (MAGIC, VERSION, self.channels, 0, self.height, self.width,
                *self.latent_shape, self.fingerprint, self.payload_length)


def checksum(header_fields: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(header_fields))


def read_header(data: bytes, file_size: int, name: str = "the file") -> Header:
    """Parses and checks a header against hard limits, before any payload is read.

    Args:
        data: at least the first `HEADER.size` bytes of the file (fewer if it is shorter).
        file_size: the file's size in bytes.
        name: the file's name, for messages.

    Raises:
        FormatError: not an .aez file, an unknown version, a size beyond the limits or
            inconsistent, or a payload length that does not match the file's size.
    """
    if data[:4] != MAGIC[: len(data[:4])] or len(data) < 4:
        raise FormatError(f"{name} is not an .aez file (no AEZ magic bytes).")
    if len(data) < HEADER.size:
        raise FormatError(f"{name} is truncated: {len(data)} bytes, shorter than a header.")
    (_, version, channels, reserved, height, width, lh, lw, lc, print_, length, crc) = (
        HEADER.unpack_from(data)
    )
    if version != VERSION:
        raise FormatError(f"{name} has .aez format version {version}; this codec reads {VERSION}.")
    if (
        channels not in (1, 3)
        or reserved != 0
        or not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE)
        or height * width > MAX_PIXELS
        or not 1 <= lc <= MAX_LATENT_CHANNELS
    ):
        raise FormatError(
            f"{name} claims an impossible or absurd image ({height}x{width}x{channels}, "
            f"latent channels {lc}); the limits are {MAX_SIDE} per side and {MAX_PIXELS} "
            "pixels. The file is corrupted."
        )
    if file_size < HEADER.size + length:
        raise FormatError(
            f"{name} is truncated: its header announces {length} bytes of payload, "
            f"{file_size - HEADER.size} are there."
        )
    if file_size > HEADER.size + length:
        raise FormatError(f"{name} is corrupted: {file_size - HEADER.size - length} bytes "
                          "more than its header announces.")
    return Header(channels, height, width, (lh, lw, lc), print_, length, crc)


class Codec:
    """Compresses uint8 images to .aez bytes and back with a finalised compression model.

    >>> codec = Codec(aezoo.load_run("runs/compress_0.01").model)
    >>> data = codec.compress(image)          # uint8 (height, width, channels) -> bytes
    >>> image2 = codec.decompress(data)       # -> uint8, the decoded image
    """

    def __init__(self, model):
        import constriction

        if not isinstance(model, CompressionAutoencoder):
            raise ValueError(f"Model '{model.name}' is not a compression model; .aez files "
                             "are made by the `compression` models of aezoo.MODELS.")
        if not model.entropy_bottleneck.finalised:
            raise ValueError("The model has no integer tables yet: call "
                             "model.entropy_bottleneck.finalise() after training.")
        self.model = model
        self.channels = int(model.encoder.input_shape[-1])
        self.stride = model.stride
        self.fingerprint = fingerprint(model)
        table = tables(model)
        self.offsets = table["offsets"].astype(np.int64)
        self.lengths = table["lengths"].astype(np.int64)
        self.counts = table["counts"].astype(np.int64)
        self.latent_channels = len(self.lengths)
        # counts / 2**16 is exact in float64; constriction keeps these exact probabilities
        # (tests/test_compress.py checks every boundary of every table).
        self._models = [
            constriction.stream.model.Categorical(
                self.counts[c, : self.lengths[c] + 1] / 2.0**16, perfect=True
            )
            for c in range(self.latent_channels)
        ]

    # ----------------------------------------------------------------- images

    def encode_latent(self, image: np.ndarray) -> np.ndarray:
        """The integer latent (latent_h, latent_w, M) of a uint8 image."""
        image = self._check_image(image)
        x = image[None].astype(np.float32) / 255.0
        y = np.asarray(self.model.encoder(x, training=False)["y_hat"])[0]
        # Far beyond any trained latent; keeps the int32 conversion defined on any input.
        return np.clip(y, -(2**30), 2**30).astype(np.int64)

    def decode_latent(self, latent: np.ndarray, height: int, width: int) -> np.ndarray:
        """The uint8 image (height, width, channels) that a latent decodes to."""
        codes = {"y_hat": latent[None].astype(np.float32),
                 "image_size": np.array([[height, width]], np.int32)}
        x_hat = np.asarray(self.model.decoder(codes, training=False))[0]
        return np.round(np.clip(x_hat, 0.0, 1.0) * 255.0).astype(np.uint8)

    def compress(self, image: np.ndarray) -> bytes:
        """A uint8 (height, width, channels) image -> the bytes of an .aez file."""
        image = self._check_image(image)
        latent = self.encode_latent(image)
        payload = self.encode_symbols(latent)
        header = Header(self.channels, image.shape[0], image.shape[1], latent.shape,
                        self.fingerprint, len(payload), 0)
        fields = header.pack()[: HEADER.size - 4]
        return fields + struct.pack("<I", checksum(fields, payload)) + payload

    def decompress(self, data: bytes, name: str = "the file") -> np.ndarray:
        """The bytes of an .aez file -> the uint8 image.

        Raises:
            FormatError: see `read_header`; also a checksum mismatch, another model's file,
                or a payload that does not decode.
        """
        header = read_header(data[: HEADER.size], len(data), name)
        payload = data[HEADER.size:]
        return self.decompress_payload(header, data[: HEADER.size - 4], payload, name)

    def read(self, path: str | os.PathLike) -> np.ndarray:
        """Decodes an .aez file, reading its header first so that nothing is read or
        allocated for a file whose header is wrong."""
        header, fields, payload, name = self._read_checked(path)
        return self.decode_payload(header, payload, name)

    def check_file(self, path: str | os.PathLike) -> Header:
        """Checks an .aez file's header, size, checksum and model without decoding it.

        Raises:
            FileNotFoundError: no such file.
            FormatError: as `decompress`, but for a payload that does not decode.
        """
        return self._read_checked(path)[0]

    def _read_checked(self, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No such file: {path}")
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            header = read_header(head, size, path.name)
            payload = f.read(header.payload_length)
        fields = head[: HEADER.size - 4]
        self._check(header, fields, payload, path.name)
        return header, fields, payload, path.name

    def decompress_payload(self, header: Header, fields: bytes, payload: bytes, name: str):
        self._check(header, fields, payload, name)
        return self.decode_payload(header, payload, name)

    def _check(self, header: Header, fields: bytes, payload: bytes, name: str) -> None:
        if checksum(fields, payload) != header.checksum:
            raise FormatError(f"{name} is corrupted (checksum mismatch).")
        if header.fingerprint != self.fingerprint:
            raise FormatError(
                f"{name} was made by another model (fingerprint {header.fingerprint.hex()}, "
                f"this model's is {self.fingerprint.hex()})."
            )
        expected = self.latent_shape(header.height, header.width)
        if header.channels != self.channels or header.latent_shape != expected:
            raise FormatError(f"{name} is corrupted (its shapes do not fit this model).")

    def decode_payload(self, header: Header, payload: bytes, name: str) -> np.ndarray:
        """The image of a checked payload."""
        try:
            latent = self.decode_symbols(payload, header.latent_shape)
        except (ValueError, RuntimeError, OverflowError) as error:
            raise FormatError(f"{name} is corrupted (the payload does not decode: {error}).")
        return self.decode_latent(latent, header.height, header.width)

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return (-(-height // self.stride), -(-width // self.stride), self.latent_channels)

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
        if not (height <= MAX_SIDE and width <= MAX_SIDE and height * width <= MAX_PIXELS):
            raise ValueError(f"The image is {height}x{width}; the .aez limits are {MAX_SIDE} "
                             f"per side and {MAX_PIXELS} pixels.")
        return image

    # ---------------------------------------------------------------- symbols

    def encode_symbols(self, latent: np.ndarray) -> bytes:
        """Range-codes an integer latent (h, w, M) with the integer tables."""
        import constriction

        encoder = constriction.stream.queue.RangeEncoder()
        uniform = constriction.stream.model.Uniform()
        for c in range(self.latent_channels):
            values = latent[..., c].ravel()
            index = values - self.offsets[c]
            escaped = (index < 0) | (index >= self.lengths[c])
            symbols = np.where(escaped, self.lengths[c], index).astype(np.int32)
            encoder.encode(symbols, self._models[c])
            if escaped.any():
                escapes = _escape_symbols(values[escaped], self.offsets[c], self.lengths[c])
                for symbols, sizes in escapes:
                    encoder.encode(symbols, uniform, sizes)
        words = encoder.get_compressed().astype("<u4")
        return words.tobytes()

    def decode_symbols(self, payload: bytes, latent_shape: tuple[int, int, int]) -> np.ndarray:
        """Inverse of `encode_symbols`."""
        import constriction

        if len(payload) % 4:
            raise ValueError("the payload is not whole 32-bit words")
        words = np.frombuffer(payload, "<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        uniform = constriction.stream.model.Uniform()
        height, width, channels = latent_shape
        latent = np.empty((channels, height * width), np.int64)
        for c in range(channels):
            symbols = decoder.decode(self._models[c], height * width).astype(np.int64)
            values = symbols + self.offsets[c]
            escaped = symbols == self.lengths[c]
            if escaped.any():
                values[escaped] = _decode_escapes(decoder, uniform, int(escaped.sum()),
                                                  self.offsets[c], self.lengths[c])
            latent[c] = values
        return latent.T.reshape(height, width, channels)

    def information_bits(self, latent: np.ndarray) -> float:
        """The exact information content of a latent under the integer tables, in bits
        (what an ideal entropy coder would spend; the range coder adds a few words)."""
        bits = 0.0
        for c in range(self.latent_channels):
            values = latent[..., c].ravel()
            index = values - self.offsets[c]
            escaped = (index < 0) | (index >= self.lengths[c])
            index = np.where(escaped, self.lengths[c], index)
            bits += float(np.sum(TABLE_BITS - np.log2(self.counts[c, index])))
            for _, sizes in _escape_symbols(values[escaped], self.offsets[c], self.lengths[c]):
                bits += float(np.sum(np.log2(sizes)))
        return bits


TABLE_BITS = 16  # log2 of the tables' total count (aezoo.compression.TABLE_PRECISION)


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
    above = decoder.decode(uniform, np.full(count, 2, np.int32)).astype(bool)
    exponent = decoder.decode(uniform, np.full(count, 32, np.int32)).astype(np.int64)
    mantissa = np.zeros(count, np.int64)
    has_low, has_high = exponent > 0, exponent > 16
    if has_low.any():
        sizes = (1 << np.minimum(exponent[has_low], 16)).astype(np.int32)
        mantissa[has_low] = decoder.decode(uniform, sizes)
    if has_high.any():
        sizes = (1 << (exponent[has_high] - 16)).astype(np.int32)
        mantissa[has_high] += decoder.decode(uniform, sizes).astype(np.int64) << 16
    distance = (1 << exponent) + mantissa
    return np.where(above, offset + length + distance - 1, offset - distance)
