"""Shared test set-up: offline data from ../shared/data, and small helpers."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# tensorflow-datasets reads the prepared copies beside the repository when nothing else is
# set (CI sets TFDS_DATA_DIR itself); it cannot download on the test machines.
if "TFDS_DATA_DIR" not in os.environ and (SHARED_DATA / "tensorflow_datasets").is_dir():
    os.environ["TFDS_DATA_DIR"] = str(SHARED_DATA / "tensorflow_datasets")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test when that data is not there."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the offline datasets beside the repository)")
    return path


@pytest.fixture(scope="session")
def tfds_dir() -> str:
    path = os.environ.get("TFDS_DATA_DIR")
    if not path or not Path(path, "mnist").is_dir():
        pytest.skip("needs the prepared tensorflow-datasets (TFDS_DATA_DIR)")
    return path
