"""Prepares `.gpu/` (ignored by git) for a GPU session: the training images, the initial
weights of models that start wider than their preset, and the Keras wheels that the GPU
machine lacks.  Runs here, with aezoo and TensorFlow.

    python benchmarks/gpu/prepare.py --widen denoise_gray:96,192,384 codec_0.01:128,128,128

A denoiser's widths are its filters then its latent_dim; a codec's are its analysis and
synthesis filters (N).  Each is written as a preset folder, `.gpu/init/NAME_W1-W2-W3/`
(run.json and weights.npz), which `denoise_jax.py --config/--weights` and `codec_jax.py
--preset` take.

Then `run.sh` there, and `import_weights.py` here on what comes back.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from aezoo import runs
from aezoo.models import MODELS
from aezoo.models import compression, denoising

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / ".gpu"
DATA = ROOT.parent / "shared" / "data" / "raw"
WHEELS = ["keras==3.15.1", "namex==0.1.0", "optree==0.20.0"]


def widened(name: str, widths: list[int]) -> None:
    """Writes the preset widened (Net2Net) as the same function, as the preset folder
    `.gpu/init/NAME_W1-W2-W3/`: a denoiser to filters W1, W2 and latent W3, a codec to
    filters W1, W2, W3 (its integer tables recomputed)."""
    run = runs.load_run(name)
    source = run.model
    codec = isinstance(source, compression.CompressionAutoencoder)
    config = {**source.get_config(), "filters": widths}
    if not codec:
        config.update(filters=widths[:-1], latent_dim=widths[-1])
    kwargs = {k: v for k, v in config.items() if k != "model"}
    target = MODELS[config["model"]](**kwargs)
    (compression if codec else denoising).widen(source, target)
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, config["input_shape"][-1]))
    drift = float(np.max(np.abs(np.asarray(source(x)) - np.asarray(target(x)))))
    stem = GPU / "init" / f"{name}_{'-'.join(map(str, widths))}"
    if codec:
        target.finalise()
    runs.pack(runs.Run(stem, dict(run.info), target), stem)
    print(f"{stem.name}: {target.count_params()} parameters, same function as {name} "
          f"(max output difference {drift:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widen", nargs="*", default=[], metavar="PRESET:W1,W2,L")
    parser.add_argument("--data", nargs="*", default=["train400", "cbsd432"])
    args = parser.parse_args()
    for spec in args.widen:
        name, widths = spec.split(":")
        widened(name, [int(w) for w in widths.split(",")])
    for folder in args.data:
        shutil.copytree(DATA / folder, GPU / "data" / folder, dirs_exist_ok=True)
    wheels = GPU / "whl"
    if not list(wheels.glob("keras-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.12",
                        "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--platform",
                        "manylinux2014_x86_64", "-d", str(wheels), *WHEELS], check=True)
    size = sum(p.stat().st_size for p in GPU.rglob("*") if p.is_file())
    print(f".gpu/: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
