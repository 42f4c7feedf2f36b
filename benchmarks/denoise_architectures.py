"""Which `denoising` architecture learns most per CPU second: each variant trains for the same
CPU time (not wall time, so that other jobs on a shared machine do not skew it) on 380 of the
Train400 images (random 64x64 patches, Gaussian noise of sigma 25, batch 16, Adam 1e-3), and
is scored by PSNR on the other 20, whole and with noise of a fixed seed.  Never on BSD68.

    python benchmarks/denoise_architectures.py                 # all variants, 300 CPU s each
    python benchmarks/denoise_architectures.py --cpu-seconds 900 --variants default narrow_first
    python benchmarks/denoise_architectures.py --mixed-precision mixed_bfloat16
    python benchmarks/denoise_architectures.py --cpu-seconds 2 --variants default \\
        --json /tmp/architectures.json                              # a smoke test

Prints a Markdown table and writes --json (default: denoise_architectures.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from offline import DATA, write_json

from aezoo.apps import cli

VARIANTS = {
    "default": {"filters": (32, 64), "latent_dim": 128},
    "three_levels": {"filters": (32, 64, 128), "latent_dim": 256},
    "narrow_first": {"filters": (16, 32, 64), "latent_dim": 128},
    "four_levels": {"filters": (16, 32, 64, 128), "latent_dim": 256},
}
SIGMA = 25 / 255


def run(name: str, kwargs: dict, files: list[Path], val: np.ndarray, args) -> dict:
    import keras

    from aezoo import MODELS, data, metrics, noise

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(args.mixed_precision)
    model = MODELS["denoising"](input_shape=(None, None, 1), corruption=None, **kwargs)
    keras.config.set_dtype_policy("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=False)
    examples = data.from_directory(files[0].parent, channels=1, patch_size=64,
                                   patches_per_image=8, seed=0)
    batches = iter(data.pipeline(examples, 16, noise=("gaussian", SIGMA), seed=0).repeat())
    cpu, wall, steps = time.process_time(), time.perf_counter(), 0
    while time.process_time() - cpu < args.cpu_seconds:
        model.train_on_batch(*next(batches))
        steps += 1
    noisy = noise.add_noise(val, "gaussian", SIGMA, (0, 0)).numpy()
    denoised = model.predict(noisy, batch_size=4, verbose=0)
    return {
        "variant": name, **{k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
        "params": model.count_params(), "steps": steps,
        "cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall,
        "val_psnr": float(np.mean([metrics.psnr(c, d) for c, d in zip(val, denoised)])),
    }


@cli.guarded("denoise_architectures.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "train400")
    parser.add_argument("--cpu-seconds", type=cli.positive_float, default=300)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--mixed-precision", default="float32",
                        choices=("float32", "mixed_bfloat16"))
    parser.add_argument("--json", type=Path, default=Path("denoise_architectures.json"))
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import data

    files = data.list_images(args.images)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for path in files[:-20]:  # the training images, linked into a folder of their own
            (Path(folder) / path.name).symlink_to(path.resolve())
        val = np.stack([data.read_image(p, 1) for p in files[-20:]]).astype(np.float32) / 255
        train_files = sorted(Path(folder).iterdir())
        print("| variant | filters | latent | params | steps | CPU s | wall s | val PSNR (dB) |")
        print("|---|---|---|---|---|---|---|---|")
        for name in args.variants:
            row = run(name, VARIANTS[name], train_files, val, args)
            rows.append(row)
            print(f"| {name} | {row['filters']} | {row['latent_dim']} | {row['params']} | "
                  f"{row['steps']} | {row['cpu_s']:.0f} | {row['wall_s']:.0f} | "
                  f"{row['val_psnr']:.2f} |", flush=True)
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
