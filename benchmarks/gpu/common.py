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


def load_images(folder: str | os.PathLike, channels: int) -> np.ndarray:
    """Every PNG/JPEG of `folder` as one uint8 array (count, height, width, channels).

    Portrait images are turned to landscape, and all are cut (top-left) to the smallest
    height and width among them, so that they stack into one array the GPU can crop from.
    """
    paths = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not paths:
        raise SystemExit(f"error: no images in {folder}")
    mode = "L" if channels == 1 else "RGB"
    images = []
    for path in paths:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[0] > array.shape[1]:
            array = array.transpose(1, 0, 2)
        images.append(array)
    height = min(a.shape[0] for a in images)
    width = min(a.shape[1] for a in images)
    return np.stack([a[:height, :width] for a in images])


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
