"""How a codec spends its latent channels on Kodak: how many of the M channels of `y` carry
50 / 90 / 99 % of its bits, at each rate point.

    python benchmarks/latent_channels.py --model codec_0.0018 codec_0.01 codec_0.1 codec_0.2
    python benchmarks/latent_channels.py --model codec_0.01 --max-images 1     # a smoke test

A codec whose latents are wide enough leaves channels unused at low rates and brings them in
as the rate grows (the published hyperpriors code with a fraction of their 192 channels below
0.5 bpp); one that uses every channel at every rate is short of latent channels.  The bits
are the model's own estimate at the rounded latents (`sum(-log2 p(y_hat))`, given the
hyper-latent for a hyperprior model), summed over the images for each channel.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from offline import DATA, write_json

from aezoo.apps import cli


@cli.guarded("latent_channels.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", default=["codec_0.01"],
                        help="presets or run folders of compression models")
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "kodak")
    parser.add_argument("--max-images", type=cli.positive_int, help="the first N images")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import data, runs

    files = data.list_images(args.images)[: args.max_images]
    models = {name: runs.load_run(name, task="compress").model for name in args.model}
    rows = []
    print("| model | M | bpp of y (estimated) | channels with 50 / 90 / 99 % of the bits "
          "| channels under 0.1 % |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        channels = int(model.encoder.input_shape[-1])
        bits, pixels = 0.0, 0
        for path in files:
            image = data.read_image(path, channels=channels)
            bits = bits + channel_bits(model, image[None].astype(np.float32) / 255)
            pixels += image.shape[0] * image.shape[1]
        share = np.sort(bits / bits.sum())[::-1]
        needed = [int(np.searchsorted(np.cumsum(share), q) + 1) for q in (0.5, 0.9, 0.99)]
        row = {"model": name, "M": len(share), "bpp": float(bits.sum() / pixels),
               "channels_50_90_99": needed, "under_0.1%": int(np.sum(share < 1e-3))}
        rows.append(row)
        print(f"| {name} | {row['M']} | {row['bpp']:.3f} | {' / '.join(map(str, needed))} "
              f"| {row['under_0.1%']} |", flush=True)
    if args.json:
        write_json(args.json, rows, indent=1)
    return 0


def channel_bits(model, x) -> np.ndarray:
    """`sum(-log2 p(y_hat))` of each latent channel of the images `x`, in the model's own
    probability model (the float one training minimises)."""
    import tensorflow as tf

    from aezoo.models.compression import HyperpriorAutoencoder

    if isinstance(model, HyperpriorAutoencoder):
        parts = model.analysis_model()(x, training=False)
        conditional = model.gaussian_conditional
        means, scales = conditional.split(parts["params"])
        y_hat = conditional.quantise(tf.cast(parts["y"], tf.float32), means)
        p = conditional.likelihood(y_hat - means, scales)
    else:
        p = model.entropy_bottleneck.likelihood(model.encoder(x, training=False)["y_hat"])
    return -np.log2(np.asarray(p, np.float64)).sum(axis=(0, 1, 2))


if __name__ == "__main__":
    raise SystemExit(main())
