"""A denoiser given noisy photos as 8-bit files hold them: clipped to 0-255 and rounded.

    python benchmarks/denoise_8bit.py --model denoise_gray --images ../shared/data/raw/bsd68
    python benchmarks/denoise_8bit.py --model denoise_rgb --images ../shared/data/raw/cbsd68

Benchmarks (DnCNN's, FFDNet's, `aezoo denoise evaluate`'s default) add Gaussian noise in
floating point and never clip it; a file cannot hold the noise below 0 and above 1 of a
photo's dark and bright parts, and that is what `aezoo denoise denoise` reads.  For each
sigma this prints the model's PSNR on the same noise (the seeds of `evaluate --seed`): as
benchmarks give it, as a file holds it, and as a file holds it after `aezoo.denoise.unclip`
(what the `denoise` command and `evaluate --8-bit` give the model), with the share of
clipped pixels.  One pass; outputs rounded to 8 bits, as `denoise` writes them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from offline import DATA

from aezoo.apps import cli


@cli.guarded("denoise_8bit.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="denoise_gray", help="a preset or run folder")
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "bsd68",
                        help="a folder of images (default: bsd68 of the offline data, "
                        "../shared/data beside this checkout)")
    parser.add_argument("--sigmas", type=cli.positive_float, nargs="+", default=[15, 25, 50])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=cli.positive_int, help="the first N images only")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import data, metrics, noise, runs
    from aezoo import denoise as denoising

    model = runs.load_run(args.model, task="denoise").model
    channels = model.input_shape[-1]
    files = data.list_images(args.images)[: args.limit]
    images = [data.read_image(path, channels=channels).astype(np.float32) / 255
              for path in files]
    print(f"{args.model} on {len(images)} images of {args.images}, seed {args.seed}\n")
    print("| sigma | unclipped noise (benchmarks) | 8-bit file, as read | 8-bit file, unclipped "
          "(`denoise`) | pixels at 0 or 255 | seconds |")
    print("|---|---|---|---|---|---|")
    for sigma in args.sigmas:
        start = time.perf_counter()
        scores = {"float": [], "file": [], "unclipped": []}
        clipped = []
        for i, clean in enumerate(images):
            noisy = noise.add_noise(clean, "gaussian", sigma / 255, (args.seed, i)).numpy()
            file = denoising.to_8bit(noisy).astype(np.float32) / 255
            clipped.append(np.mean((file == 0) | (file == 1)))
            for key, given in (("float", noisy), ("file", file),
                               ("unclipped", denoising.unclip(file))):
                written = denoising.to_8bit(denoising.denoise(model, given))
                scores[key].append(metrics.psnr(clean, written))
        mean = {key: float(np.mean(values)) for key, values in scores.items()}
        print(f"| {sigma:g} | {mean['float']:.2f} | {mean['file']:.2f} | "
              f"{mean['unclipped']:.2f} | {np.mean(clipped):.1%} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
