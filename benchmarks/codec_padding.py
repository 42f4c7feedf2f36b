"""What a codec's pad costs on images whose sizes are not multiples of its stride.

    python benchmarks/codec_padding.py --images ../shared/data/raw/cbsd68
    python benchmarks/codec_padding.py --images ../shared/data/raw/kodak --crop 450 700

The mean-scale codecs code images in blocks of 64x64 pixels (their stride times the
hyper-stride), so a 481x321 photo is padded to 512x384: 27 % more pixels, which cost bits
though the decoder crops them away.  The encoder pads them itself (`PadToMultiple`, mode
"blur" since aezoo 0.2.2: each padded row or column is the image's last one blurred by a
Gaussian of sigma its distance from the image).  This compresses every image as the codec
does, and again after padding it first with `np.pad` in another mode, so that the
encoder's own pad has nothing left to do: "edge" (aezoo 0.2.1's pad), "constant" (zeros)
and "reflect".  Bits are counted from the .aez bytes and divided by the image's own pixels;
PSNR is on the image's own pixels, RGB.  It prints bpp and PSNR for each preset and mode,
and each mode's BD-rate against the encoder's own pad over the presets' range.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from offline import DATA

from aezoo.apps import cli

MODES = ("own pad", "edge", "constant", "reflect")


@cli.guarded("codec_padding.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "cbsd68",
                        help="a folder of images (default: cbsd68 of the offline data, "
                        "../shared/data beside this checkout)")
    parser.add_argument("--presets", nargs="+",
                        default=["codec_0.004", "codec_0.01", "codec_0.025", "codec_0.05"])
    parser.add_argument("--crop", type=cli.positive_int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="crop each image to its top-left HEIGHT x WIDTH pixels first")
    parser.add_argument("--limit", type=cli.positive_int, help="the first N images only")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import data, metrics, runs
    from aezoo.codec import Codec
    from aezoo.rate_distortion import bd_rate

    images = [data.read_image(path, channels=3)
              for path in data.list_images(args.images)[: args.limit]]
    if args.crop:
        images = [image[: args.crop[0], : args.crop[1]] for image in images]
    sizes = sorted({image.shape[:2] for image in images})
    print(f"{len(images)} images of {args.images}, sizes {sizes}\n")
    print("| preset | " + " | ".join(f"{mode}: bpp, dB" for mode in MODES) + " | seconds |")
    print("|---|" + "---|" * (len(MODES) + 1))
    curves = {mode: [] for mode in MODES}
    for name in args.presets:
        start = time.perf_counter()
        codec = Codec(runs.from_preset(name))
        block = codec.stride * codec.hyper_stride
        cells = []
        for mode in MODES:
            bits = pixels = 0
            scores = []
            for image in images:
                height, width = image.shape[:2]
                given = image if mode == "own pad" else np.pad(
                    image, ((0, -height % block), (0, -width % block), (0, 0)), mode=mode)
                blob = codec.compress(given)
                decoded = codec.decompress(blob)[:height, :width]
                bits += 8 * len(blob)
                pixels += height * width
                scores.append(metrics.psnr(image, decoded))
            curves[mode].append((bits / pixels, float(np.mean(scores))))
            cells.append(f"{bits / pixels:.4f}, {np.mean(scores):.3f}")
        print(f"| `{name}` | " + " | ".join(cells) +
              f" | {time.perf_counter() - start:.0f} |", flush=True)
    if len(args.presets) > 1:
        print("\nBD-rate against the encoder's own pad (PSNR): " + ", ".join(
            f"{mode} {bd_rate(curves['own pad'], curves[mode]):+.1f} %"
            for mode in MODES[1:]))


if __name__ == "__main__":
    sys.exit(main())
