"""Latent refinement (`aezoo compress compress --refine N`): file size, PSNR and encode time
against the number of iterations, on Kodak.

    python benchmarks/refinement.py --model codec_0.01 --iterations 0 25 50 100 200 \\
        --max-images 6
    python benchmarks/refinement.py --model codec_0.01 --iterations 0 5 \\
        --max-images 1                                               # a smoke test
    python benchmarks/refinement.py --iterations 0 100 --precision float32 bfloat16

`--precision`: of the search (`aezoo.refinement.Refiner`), one table each (default: the
precision `search_precision()` picks for this machine).

For each iteration count, every image is compressed with `Codec.compress(image, refine=N)`
and decoded by the ordinary decoder; bits are counted from the files and PSNR from the
decoded pixels.  The table gives the means over images, the model's loss (bpp + lmbda *
MSE on the 0-255 scale, what refinement minimises) relative to no refinement, and the gain
in PSNR at the rate of no refinement, moved there along the slope that lmbda implies
(`_slope`; the rates differ by a few percent at most).  Run it on a quiet machine: encode
seconds are wall-clock times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from offline import DATA

from aezoo.apps import cli


@cli.guarded("refinement.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="codec_0.01", help="a preset or run folder")
    parser.add_argument("--iterations", type=cli.non_negative_int, nargs="+",
                        default=[0, 25, 50, 100, 200])
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "kodak")
    parser.add_argument("--max-images", type=cli.positive_int, default=6,
                        help="the first N images (default 6)")
    parser.add_argument("--precision", nargs="+", choices=("float32", "bfloat16"),
                        help="of the search (default: what this machine does best)")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import codec, data, refinement, runs

    model = runs.load_run(args.model, task="compress").model
    files = data.list_images(args.images)[: args.max_images]
    channels = int(model.encoder.input_shape[-1])
    images = [data.read_image(path, channels=channels) for path in files]
    for precision in args.precision or [None]:  # None: the Refiner's own choice
        packer = codec.Codec(model, refinement.Refiner(model, precision))
        _table(args, packer, files, images)
    return 0


def _table(args, packer, files, images) -> None:
    from aezoo import metrics

    lmbda = packer.model.lmbda
    rows = {}
    for iterations in sorted(set([0, *args.iterations])):
        bpp, psnr, loss, seconds = [], [], [], []
        for path, image in zip(files, images):
            started = time.perf_counter()
            blob = packer.compress(image, refine=iterations)
            seconds.append(time.perf_counter() - started)
            decoded = packer.decompress(blob, path.name)
            bpp.append(8 * len(blob) / (image.shape[0] * image.shape[1]))
            psnr.append(metrics.psnr(image, decoded))
            mse = np.mean((decoded.astype(np.float64) - image) ** 2)
            loss.append(bpp[-1] + lmbda * mse)
        rows[iterations] = {"bpp": np.mean(bpp), "psnr": np.mean(psnr), "loss": np.mean(loss),
                            "seconds": np.median(seconds)}
        print(f"  {iterations} iterations: {rows[iterations]['bpp']:.4f} bpp, "
              f"{rows[iterations]['psnr']:.3f} dB", flush=True)
    base = rows[0]
    print(f"\n{args.model} on the first {len(images)} images of {args.images.name}, "
          f"searching in {packer.refiner().precision}\n")
    print("| iterations | bpp | PSNR (dB) | loss / loss at 0 | dB at equal rate | "
          "encode (s, median) |")
    print("|---|---|---|---|---|---|")
    for iterations, row in rows.items():
        # The gain at the rate of no refinement: the point moved there along `_slope`.
        gain = (row["psnr"] - base["psnr"]
                - _slope(lmbda, base["psnr"]) * (row["bpp"] - base["bpp"]))
        print(f"| {iterations} | {row['bpp']:.4f} | {row['psnr']:.3f} | "
              f"{row['loss'] / base['loss']:.4f} | {gain:+.3f} | {row['seconds']:.2f} |")


def _slope(lmbda: float, psnr: float) -> float:
    """dB per bpp of the rate-distortion curve at `psnr`, as the model's trade-off implies:
    where bpp + lmbda * MSE is least, d(bpp) / d(MSE) = -lmbda, so d(PSNR) / d(bpp) =
    10 / ln(10) / (lmbda * MSE)."""
    mse = 255.0**2 * 10 ** (-psnr / 10)
    return 10 / np.log(10) / (lmbda * mse)


if __name__ == "__main__":
    sys.exit(main())
