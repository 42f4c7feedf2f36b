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

import keras
import numpy as np

MAGIC = b"AEZ\x1a"
VERSION = 1
HEADER = struct.Struct("<4sBBHIIHHH8sII")
# Limits checked before anything is allocated: a header claiming more is refused.
MAX_SIDE = 2**15
MAX_PIXELS = 2**25  # 33.5 megapixels; decoding takes about 1 KiB of memory per pixel
MAX_LATENT_CHANNELS = 2**12


def load_model(run_dir: str | os.PathLike, finalised: bool = True):
    """The `CompressionAutoencoder` of a run folder (or a .keras file).

    Raises:
        FileNotFoundError: if there is no model there.
        ValueError: if it is not a compression model, or (with `finalised`) has no tables.
    """
    import aezoo
    from aezoo.compression import CompressionAutoencoder

    path = Path(run_dir)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise FileNotFoundError(f"No model at {path} (expected a run folder with model.keras).")
    aezoo.MODELS  # registers aezoo's classes with Keras before loading
    model = keras.models.load_model(path, compile=False)
    if not isinstance(model, CompressionAutoencoder):
        raise ValueError(f"{path} is not a compression model.")
    if finalised and not model.entropy_bottleneck.finalised:
        raise ValueError(
            f"{path} has no integer probability tables; it was saved before training ended."
        )
    return model


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
