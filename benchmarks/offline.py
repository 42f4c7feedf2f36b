"""Where the benchmark scripts find the offline datasets: `../shared/data` beside this
checkout (the machines of this project cannot download)."""

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
