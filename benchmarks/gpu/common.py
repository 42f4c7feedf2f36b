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
    """A wall-clock budget in minutes, and the learning rate at each moment of it: a linear
    warm-up over the first `warmup` steps, then a cosine decay that reaches 0 when the
    budget ends (by time, because the step rate on a shared GPU is not known in advance)."""

    def __init__(self, minutes: float, learning_rate: float, warmup: int):
        self.start = time.monotonic()
        self.seconds = 60.0 * minutes
        self.learning_rate, self.warmup = learning_rate, warmup

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def over(self) -> bool:
        return self.elapsed >= self.seconds

    def rate(self, step: int) -> float:
        fraction = min(self.elapsed / self.seconds, 1.0)
        rate = self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * fraction))
        return rate * min(1.0, (step + 1) / self.warmup) if self.warmup else rate


def save_weights(path: str | os.PathLike, weights: dict[str, np.ndarray]) -> None:
    """Writes `weights` (name -> array) as float16 `.npz`, as aezoo's presets store them;
    atomically, so that a run killed while saving leaves the previous file whole."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, **{k: np.asarray(v, np.float16) for k, v in weights.items()})
    os.replace(temporary, path)


def log_line(path: str | os.PathLike, row: dict) -> None:
    """Appends `row` to a CSV file, with a header when the file is new."""
    path = Path(path)
    new = not path.exists()
    with path.open("a") as file:
        if new:
            file.write(",".join(row) + "\n")
        file.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v)
                            for v in row.values()) + "\n")
