"""What the GPU trainers of this folder share: images on the device, a time budget with its
learning-rate schedule, and weights written the way aezoo's presets store them.

The GPU machines lent to this project carry JAX but no TensorFlow (whose wheels, with their
CUDA libraries, are far over what can be sent there), so these trainers run Keras 3 on JAX
and never import aezoo; they rebuild the training-time graph of an aezoo model with the same
layer names, so that the weights come back 1:1 (`weights.npz`, keys `layer/weight`, as in
`aezoo/presets/*/weights.npz`).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def image_files(folder: str | os.PathLike) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"error: no images in {folder}")
    return files


def read_image(path: str | os.PathLike, channels: int) -> np.ndarray:
    """An image file as uint8 (height, width, channels)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    return array[..., None] if array.ndim == 2 else array


def load_images(folder: str | os.PathLike, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """All images as one uint8 array (N, H, W, channels), portrait ones turned to landscape
    (np.rot90, counter-clockwise) so that they stack, then centre-cropped to the common
    size; and whether each was portrait (a trainer that wants upright patches turns those
    images' patches back)."""
    images, portrait = [], []
    for path in image_files(folder):
        image = read_image(path, channels)
        portrait.append(image.shape[0] > image.shape[1])
        images.append(np.rot90(image) if portrait[-1] else image)
    height = min(i.shape[0] for i in images)
    width = min(i.shape[1] for i in images)
    cropped = sum(i.shape[:2] != (height, width) for i in images)
    if cropped:
        print(f"{cropped} images centre-cropped to {height}x{width}", flush=True)

    def centre(image):
        top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
        return image[top: top + height, left: left + width]

    return np.stack([centre(i) for i in images]), np.array(portrait)


class Budget:
    """A wall-clock budget in minutes, counted from `started` (a `time.monotonic()` reading;
    default now), and the learning rate at each moment of it.

    The rate is aezoo's schedule (`aezoo.training.Schedule`) driven by time instead of
    epochs, because the step rate on a shared GPU is not known in advance: a linear warm-up
    by the factor (step + 1) / (warmup + 1) over the first `warmup` steps, times a cosine
    from `learning_rate` to 0 between `begin()` (call it once the step is compiled, so that
    compiling, which takes 20-120 s, eats no part of the decay) and the end of the budget."""

    def __init__(self, minutes: float, learning_rate: float, warmup: int,
                 started: float | None = None):
        self.start = time.monotonic() if started is None else started
        self.end = self.start + 60.0 * minutes
        self.began = self.start
        self.learning_rate, self.warmup = learning_rate, warmup

    def begin(self) -> None:
        """Starts the cosine now."""
        self.began = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return time.monotonic() - self.start

    @property
    def left(self) -> float:
        return self.end - time.monotonic()

    @property
    def over(self) -> bool:
        return self.left <= 0

    def rate(self, step: int) -> float:
        progress = (time.monotonic() - self.began) / max(self.end - self.began, 1e-9)
        rate = self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        if self.warmup and step <= self.warmup:
            rate *= min(1.0, (step + 1) / (self.warmup + 1))
        return rate


def save_weights(path: str | os.PathLike, weights: dict[str, np.ndarray]) -> None:
    """Writes `weights` (name -> array) as aezoo's presets store them (compressed `.npz`,
    floating-point arrays as float16, integer ones as they are), atomically: a run killed
    while saving leaves the previous file whole, and the file is on disk before it replaces
    the old one, because run.sh bundles it into $OUT while the trainer runs."""
    path = Path(path)
    arrays = {name: np.asarray(value, np.float16)
              if np.issubdtype(np.asarray(value).dtype, np.floating) else np.asarray(value)
              for name, value in weights.items()}
    fd, temporary = tempfile.mkstemp(prefix=".weights.", suffix=".partial.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez_compressed(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp's file is private (0600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def log_line(path: str | os.PathLike, row: dict) -> None:
    """Appends `row` to a CSV file, with a header when the file is new."""
    path = Path(path)
    new = not path.exists()
    with path.open("a") as file:
        if new:
            file.write(",".join(row) + "\n")
        file.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                            for v in row.values()) + "\n")
