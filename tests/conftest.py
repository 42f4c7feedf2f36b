"""Shared test set-up: offline data from ../shared/data, and small helpers."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# tensorflow-datasets reads the prepared copies beside the repository when nothing else is
# set (CI sets TFDS_DATA_DIR itself); it cannot download on the test machines.
if "TFDS_DATA_DIR" not in os.environ and (SHARED_DATA / "tensorflow_datasets").is_dir():
    os.environ["TFDS_DATA_DIR"] = str(SHARED_DATA / "tensorflow_datasets")


# pytest-xdist hands each worker whole files (--dist loadfile) in collection order
# (--no-loadscope-reorder, pytest-xdist 3.8): the longest files go first, so that no worker
# is left alone with a long file at the end.  Ordered by test count, as xdist does by
# default, the files of a few long tests came last and left one core idle for a minute and
# more.  Seconds from `pytest --durations=0` on 2 cores; the files not named follow in
# their own order.
LONGEST_FIRST = [
    "test_hyperprior.py",  # 179 s
    "test_export.py",  # 167
    "test_models.py",  # 159
    "test_vae.py",  # 121
    "test_apps_options.py",  # 109
    "test_distributed.py",  # 89
    "test_refinement.py",  # 85
    "test_apps_compress.py",  # 79
    "test_apps_train.py",  # 76
    "test_apps_anomalies.py",  # 72
    "test_apps_denoise.py",  # 69
    "test_apps_explore.py",  # 62
    "test_presets.py",  # 54
    "test_training.py",  # 48
    "test_learning.py",  # 39
]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    order = {item: n for n, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), order[item]))


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


# ------------------------------------------------- a small codec, shared by the codec tests


def read_idx_images(path: Path, count: int) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, offset=16)[: count * 784].reshape(count, 28, 28)


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """64 MNIST test digits as PNG files, plus two odd-sized images (tiled digits)."""
    images = read_idx_images(shared_data("raw", "mnist", "t10k-images-idx3-ubyte.gz"), 64)
    folder = tmp_path_factory.mktemp("digits")
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"digit{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def codec_run(digits, tmp_path_factory) -> Path:
    """A grayscale factorized-prior codec (.aez version 1, stride 8) trained for a few seconds
    with `aezoo compress train`."""
    from aezoo.apps import compress

    out = tmp_path_factory.mktemp("run") / "gray"
    status = compress.main([
        "train", "--model", "compression", "--images", str(digits), "--patch", "24",
        "--patches-per-image", "4", "--lmbda", "0.05", "--latent-dim", "8", "--filters", "8",
        "8", "--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3", "--strategy", "cpu", "--out", str(out),
    ])
    assert status == 0
    return out


@pytest.fixture(scope="session")
def odd_images(tmp_path_factory) -> Path:
    """Grayscale images whose sizes are not multiples of the stride (8): 37x45 and 9x60."""
    images = read_idx_images(shared_data("raw", "mnist", "t10k-images-idx3-ubyte.gz"), 8)
    folder = tmp_path_factory.mktemp("odd")
    tiled = np.vstack([np.hstack(images[:2]), np.hstack(images[2:4])])
    Image.fromarray(tiled[:37, :45]).save(folder / "tall.png")
    Image.fromarray(np.hstack(images[4:7])[10:19, :60]).save(folder / "strip.png")
    return folder


@pytest.fixture(scope="session")
def packed(codec_run, odd_images, tmp_path_factory) -> Path:
    """The odd images compressed with `aezoo compress compress`."""
    from aezoo.apps import compress

    out = tmp_path_factory.mktemp("packed")
    images = sorted(str(p) for p in odd_images.iterdir())
    assert compress.main(["compress", "--model", str(codec_run), *images, "--out", str(out)]) == 0
    return out


@pytest.fixture
def no_export(monkeypatch):
    """Training commands without the SavedModel export that ends every run (1-12 s each):
    for tests of other things.  test_export.py and the tests that read a run's export/
    folder keep it."""
    from aezoo import export

    monkeypatch.setattr(export, "export_saved_model",
                        lambda model, base_dir, **options: Path(base_dir) / "1")
