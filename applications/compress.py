"""Learned image compression: train a codec, compress images to .aez files and back, and
measure it against JPEG, WebP and JPEG 2000.

Train one model per rate point (larger --lmbda: more bits, better quality) on random
128x128 patches of CBSD432 (never on Kodak, the test set):

    python applications/compress.py train --images ../shared/data/raw/cbsd432 --patch 128 \\
        --lmbda 0.01 --epochs 40 --strategy auto --out runs/compress_0.01

A second rate point trains faster when it starts from the first (--init):

    python applications/compress.py train --images ../shared/data/raw/cbsd432 --patch 128 \\
        --lmbda 0.02 --epochs 15 --init runs/compress_0.01 --out runs/compress_0.02

Compress and decompress (one .aez file per image, one PNG per .aez file, same stems):

    python applications/compress.py compress --model runs/compress_0.01 photo.png \\
        holiday.jpg --out packed/
    python applications/compress.py decompress --model runs/compress_0.01 packed/*.aez \\
        --out unpacked/

Rate-distortion evaluation on Kodak against JPEG 4:2:0, WebP and JPEG 2000 (results.json,
results.md, rd.png):

    python applications/compress.py evaluate --model runs/compress_0.005 runs/compress_0.01 \\
        runs/compress_0.02 runs/compress_0.04 --images ../shared/data/raw/kodak --out rd/

Several machines (training; the same command on each, with TF_CONFIG naming this task):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python applications/compress.py train --images ../shared/data/raw/cbsd432 --patch 128 \\
        --lmbda 0.01 --epochs 40 --strategy multiworker --out runs/compress_mw

`train` writes RUN_DIR/model.keras (with the integer probability tables, so it decodes
bit-exactly anywhere), RUN_DIR/tables.npz (the same tables, for inspection),
history.json, loss.png and checkpoints; killed, the same command resumes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import keras  # noqa: E402
import numpy as np  # noqa: E402

from aezoo import codec, data, plots, training  # noqa: E402
from aezoo.compression import compression  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python applications/compress.py",
        description="Learned image compression with .aez files.",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    train = actions.add_parser("train", help="train a codec on a folder of images")
    train.add_argument("--images", type=Path, required=True, help="folder of PNG/JPEG images")
    train.add_argument("--patch", type=int, default=128, help="side of the random patches")
    train.add_argument("--patches-per-image", type=int, default=4, metavar="N",
                       help="random patches cut from every image per epoch")
    train.add_argument("--channels", type=int, choices=(1, 3), help="1 gray, 3 RGB (default: "
                       "the images' own)")
    train.add_argument("--lmbda", type=float, default=0.01,
                       help="rate-distortion trade-off: loss = bpp + lmbda * 255^2 * MSE")
    train.add_argument("--latent-dim", type=int, help="channels of the latent (default 128)")
    train.add_argument("--filters", type=int, nargs="+", metavar="N",
                       help="channels of the hidden levels (default 128 128 128)")
    train.add_argument("--activation", help="'gdn' (default) or a Keras activation")
    train.add_argument("--init", type=Path, metavar="RUN_DIR",
                       help="start from this run's weights (same architecture)")
    train.add_argument("--epochs", type=int, default=40)
    train.add_argument("--batch-size", type=int, default=8, help="global batch size")
    train.add_argument("--learning-rate", type=float, default=1e-4,
                       help="Adam's rate; ten times lower for the last fifth of the epochs")
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--strategy", default="auto", choices=training.STRATEGIES)
    train.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="run folder")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------ train


def train(args: argparse.Namespace) -> int:
    for name in ("patch", "patches_per_image", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.out.resolve() == args.images.resolve():
        raise ValueError("--out must not be the image folder.")
    strategy = training.resolve_strategy(args.strategy)  # before any dataset (multi-worker)
    kwargs = {"lmbda": args.lmbda}
    init_weights = None
    if args.init is not None:
        init_model = codec.load_model(args.init, finalised=False)
        init_config = init_model.get_config()
        for key in ("latent_dim", "filters", "kernel_size", "activation", "output_activation"):
            kwargs[key] = init_config[key]
        init_weights = init_model.get_weights()
    for key in ("latent_dim", "filters", "activation"):
        value = getattr(args, key)
        if value is not None:
            if args.init is not None and kwargs[key] != (list(value) if key == "filters" else value):
                raise ValueError(f"--{key.replace('_', '-')} differs from the --init model's.")
            kwargs[key] = tuple(value) if key == "filters" else value
    patches = data.from_directory(
        args.images,
        channels=args.channels,
        patch_size=args.patch,
        patches_per_image=args.patches_per_image,
        seed=args.seed,
    )
    channels = int(patches.element_spec.shape[-1])

    def build(**builder_kwargs):
        ae = compression(**builder_kwargs)
        if init_weights is not None:
            ae.set_weights(init_weights)
        return ae

    decay_epoch = args.epochs - max(args.epochs // 5, 1)
    schedule = keras.callbacks.LearningRateScheduler(
        lambda epoch: args.learning_rate if epoch < decay_epoch else args.learning_rate / 10
    )
    if (args.out / "backup").exists():
        print(f"Resuming the interrupted run in {args.out}", flush=True)
    started, cpu_started = time.time(), time.process_time()
    model, history = training.train(
        build,
        patches,
        model_kwargs={"input_shape": (None, None, channels), **kwargs},
        epochs=args.epochs,
        batch_size=args.batch_size,
        strategy=strategy,
        out_dir=args.out,
        learning_rate=args.learning_rate,
        jit_compile={"on": True, "off": False}.get(args.jit_compile, "auto"),
        seed=args.seed,
        callbacks=[schedule],
        steps_per_epoch=args.steps_per_epoch,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    if not training.is_chief(strategy):
        return 0
    model.entropy_bottleneck.finalise()
    model.save(args.out / "model.keras")  # again, now with the integer tables
    codec.save_tables(model, args.out / "tables.npz")
    history["wall_seconds"] = [time.time() - started]
    history["cpu_seconds"] = [time.process_time() - cpu_started]
    (args.out / "history.json").write_text(json.dumps(history, indent=2))
    curves = {k: v for k, v in history.items() if k in ("loss", "bpp")}
    curves["psnr"] = [-10 * np.log10(m) for m in history.get("mse", [])]
    plots.plot_history(
        {"loss": history["loss"]}, args.out / "loss.png", title=f"compression, lmbda {args.lmbda}"
    )
    print(
        f"Saved {args.out / 'model.keras'} (bpp {history['bpp'][-1]:.3f}, "
        f"PSNR {curves['psnr'][-1]:.2f} dB on training patches, with noise for rounding)"
    )
    return 0


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return {"train": train}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
