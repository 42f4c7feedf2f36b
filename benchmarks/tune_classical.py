"""Tunes the Gaussian and median filters of `aezoo.baselines` once, on training images.

Their one parameter (the Gaussian's sigma, the median's window) is chosen per noise level by
a grid search for the best mean PSNR on every 10th image of Train400 (40 grayscale 180x180
crops of BSDS500 train/test images, none of BSD68), with Gaussian noise of fixed seed.  The
table it prints is `TUNED_ON_TRAIN400` in aezoo/baselines.py; it is never tuned on a test
set.

    python benchmarks/tune_classical.py [--images ../shared/data/raw/train400] [--json out.json]
    python benchmarks/tune_classical.py --limit 2      # a smoke test: 2 images
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from offline import DATA
from scipy import ndimage

from aezoo.apps import cli

SIGMAS = (5, 10, 15, 25, 35, 50, 75, 102)  # on the 0-255 scale
GAUSSIAN_GRID = np.round(np.arange(0.3, 4.01, 0.1), 2)
MEDIAN_GRID = (3, 5, 7, 9, 11, 13, 15)


@cli.guarded("tune_classical.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "train400")
    parser.add_argument("--limit", type=cli.positive_int, help="the first N of every 10th image only")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    cli.start_tensorflow()  # aezoo.data reads images with TensorFlow
    from aezoo import data, metrics

    files = data.list_images(args.images)[::10][: args.limit]
    clean = [data.read_image(path, channels=1)[..., 0] / 255.0 for path in files]
    rng = np.random.default_rng(0)
    table = {}
    print(f"{len(clean)} images of {args.images}")
    print("| sigma | noisy PSNR | Gaussian sigma | its PSNR | median size | its PSNR |")
    print("|---|---|---|---|---|---|")
    for sigma in SIGMAS:
        noisy = [x + rng.normal(0, sigma / 255, x.shape) for x in clean]

        def mean_psnr(denoise):
            return float(np.mean([metrics.psnr(x, denoise(z)) for x, z in zip(clean, noisy)]))

        gauss = {s: mean_psnr(lambda z: ndimage.gaussian_filter(z, float(s)))
                 for s in GAUSSIAN_GRID}
        median = {k: mean_psnr(lambda z: ndimage.median_filter(z, size=k)) for k in MEDIAN_GRID}
        best_g, best_m = max(gauss, key=gauss.get), max(median, key=median.get)
        table[sigma] = {"gaussian_sigma": float(best_g), "median_size": int(best_m),
                        "psnr_noisy": mean_psnr(lambda z: z),
                        "psnr_gaussian": gauss[best_g], "psnr_median": median[best_m]}
        row = table[sigma]
        print(f"| {sigma} | {row['psnr_noisy']:.2f} | {best_g:.1f} | {gauss[best_g]:.2f} | "
              f"{best_m} | {median[best_m]:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
