"""What the benchmark scripts share: where they find the offline datasets (`../shared/data`
beside this checkout: the machines of this project cannot download), the timer of
training steps, and how a script writes its --json."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def use_offline_tfds(env: MutableMapping[str, str] = os.environ) -> None:
    """Points tensorflow-datasets (in `env`: this process's environment, or a child's) at
    `DATA/tensorflow_datasets`, unless TFDS_DATA_DIR already says where to look."""
    if not env.get("TFDS_DATA_DIR") and (DATA / "tensorflow_datasets").is_dir():
        env["TFDS_DATA_DIR"] = str(DATA / "tensorflow_datasets")


def write_json(path: str | os.PathLike, value: Any, indent: int = 2) -> None:
    """Writes a script's --json: its folder made if missing, the file whole or not at all
    (`aezoo.runs.write_text`: a kill or a full disk leaves the old file or none, never half
    a JSON).  aezoo.runs imports TensorFlow, which starts here, quietly, if it has not yet:
    call it in the script's own process, never in a PyTorch child."""
    from aezoo.apps import cli

    cli.start_tensorflow()
    from aezoo import runs

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.write_text(path, json.dumps(value, indent=indent) + "\n")


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
