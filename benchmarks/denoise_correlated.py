"""A colour denoiser on noise correlated between the channels, with and without
`--luminance-first`.

    python benchmarks/denoise_correlated.py --images ../shared/data/raw/cbsd68 --limit 12

Benchmarks (CBSD68's, FFDNet's) add noise independent in each channel, and `denoise_rgb`
was trained on such noise; a photo's noise is often partly the same in the three channels
(demosaicing, luminance noise, JPEG's colour subsampling).  For each correlation `rho` the
noise of each channel is `sigma * (sqrt(rho) * shared + sqrt(1 - rho) * own)`, so every
channel has noise of standard deviation sigma and any two are correlated by rho.  This
prints the PSNR of the noisy images, of the model alone, and of `luminance=denoise_gray`
(the mean of the channels denoised first: what `aezoo denoise denoise --luminance-first`
does), with the correlation `aezoo.denoise.channel_correlation` estimates.  One pass; the
same noise (seeded by image) for every method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from offline import DATA

from aezoo.apps import cli


def correlation(text: str) -> float:
    """A correlation of the channels' noise: sqrt(1 - rho) must exist."""
    value = cli.non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a correlation in [0, 1], got {text!r}")
    return value


@cli.guarded("denoise_correlated.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="denoise_rgb", help="a colour preset or run")
    parser.add_argument("--luminance", default="denoise_gray", help="a grayscale preset or run")
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "cbsd68",
                        help="a folder of images (default: cbsd68 of the offline data, "
                        "../shared/data beside this checkout)")
    parser.add_argument("--sigma", type=cli.positive_float, default=25)
    parser.add_argument("--rhos", type=correlation, nargs="+", default=[0, 0.25, 0.5, 0.75, 1],
                        help="correlations of the noise between the channels, each in [0, 1]")
    parser.add_argument("--limit", type=cli.positive_int, help="the first N images only")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import data, metrics, runs
    from aezoo import denoise as denoising

    model = runs.load_run(args.model, task="denoise").model
    luminance = runs.load_run(args.luminance, task="denoise").model
    images = [data.read_image(path, channels=3).astype(np.float32) / 255
              for path in data.list_images(args.images)[: args.limit]]
    print(f"{args.model} on {len(images)} images of {args.images}, sigma {args.sigma:g}\n")
    print("| correlation | estimated | noisy | model alone | luminance first | seconds |")
    print("|---|---|---|---|---|---|")
    for rho in args.rhos:
        start = time.perf_counter()
        scores = {"noisy": [], "alone": [], "first": []}
        estimates = []
        for i, clean in enumerate(images):
            rng = np.random.default_rng(i)
            shared = rng.standard_normal(clean.shape[:2] + (1,))
            own = rng.standard_normal(clean.shape)
            noise = args.sigma / 255 * (np.sqrt(rho) * shared + np.sqrt(1 - rho) * own)
            noisy = (clean + noise).astype(np.float32)
            estimates.append(denoising.channel_correlation(noisy))
            scores["noisy"].append(metrics.psnr(clean, noisy))
            scores["alone"].append(metrics.psnr(clean, denoising.denoise(model, noisy)))
            scores["first"].append(metrics.psnr(
                clean, denoising.denoise(model, noisy, luminance=luminance)))
        mean = {key: float(np.mean(value)) for key, value in scores.items()}
        print(f"| {rho:g} | {np.mean(estimates):.2f} | {mean['noisy']:.2f} | "
              f"{mean['alone']:.2f} | {mean['first']:.2f} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
