"""What the benchmark scripts share: where they find the offline datasets (`../shared/data`
beside this checkout: the machines of this project cannot download), and the timer of
training steps."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def use_offline_tfds(env: MutableMapping[str, str] = os.environ) -> None:
    """Points tensorflow-datasets (in `env`: this process's environment, or a child's) at
    `DATA/tensorflow_datasets`, unless TFDS_DATA_DIR already says where to look."""
    if not env.get("TFDS_DATA_DIR") and (DATA / "tensorflow_datasets").is_dir():
        env["TFDS_DATA_DIR"] = str(DATA / "tensorflow_datasets")


def step_timer(warmup: int):
    """A Keras callback that times the training steps after the first `warmup` ones (graph
    tracing, the first batches' allocations) up to the end of training: then
    `timed_steps`, `seconds` and `steps_per_second`."""
    import time

    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.start = None
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = time.perf_counter() - self.start
            self.timed_steps = self.steps - warmup

        @property
        def steps_per_second(self) -> float:
            return self.timed_steps / self.seconds

    return StepTimer()
