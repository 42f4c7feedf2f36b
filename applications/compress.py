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
bit-exactly anywhere), RUN_DIR/tables.npz (the same tables, for inspection), history.json,
loss.png, checkpoints, and RUN_DIR/saved_model/1 for TF Serving (see aezoo.export: `encode`
gives the rounded latent `y_hat` and the `image_size`, `decode` takes them back; the entropy
coding itself runs in Python with constriction).  Killed, the same command resumes it.
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

from aezoo import codec, data, export, plots, rd, training  # noqa: E402
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
    train.add_argument("--clipnorm", type=float, default=1.0,
                       help="clip gradients to this global norm (default 1; 0: no clipping)")
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--strategy", default="auto", choices=training.STRATEGIES)
    train.add_argument("--mixed-precision", default="off", choices=training.MIXED_PRECISION,
                       help="e.g. mixed_bfloat16: about 1.6x faster on CPUs with AVX512-BF16, "
                       "no loss of quality measured; the entropy model stays float32")
    train.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, required=True, help="run folder")

    pack = actions.add_parser("compress", help="compress images to .aez files")
    pack.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    pack.add_argument("images", type=Path, nargs="+", help="PNG/JPEG files")
    pack.add_argument("--out", type=Path, required=True, help="folder of the .aez files")
    pack.add_argument("--overwrite", action="store_true", help="replace existing .aez files")

    unpack = actions.add_parser("decompress", help="decompress .aez files to PNG images")
    unpack.add_argument("--model", type=Path, required=True, metavar="RUN_DIR")
    unpack.add_argument("files", type=Path, nargs="+", help=".aez files")
    unpack.add_argument("--out", type=Path, required=True, help="folder of the PNG files")
    unpack.add_argument("--overwrite", action="store_true", help="replace existing PNG files")

    evaluate = actions.add_parser(
        "evaluate", help="rate-distortion of models against JPEG, WebP and JPEG 2000"
    )
    evaluate.add_argument("--model", type=Path, nargs="+", required=True, metavar="RUN_DIR",
                          help="one run folder per rate point")
    evaluate.add_argument("--images", type=Path, required=True, help="folder of test images")
    evaluate.add_argument("--out", type=Path, required=True, help="folder of the results")
    evaluate.add_argument("--max-images", type=int, metavar="N", help="the first N images only")
    evaluate.add_argument("--codecs", nargs="*", default=list(rd.CODECS), choices=rd.CODECS,
                          help="classical codecs to compare with (default: all)")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------ train


def train(args: argparse.Namespace) -> int:
    for name in ("patch", "patches_per_image", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.clipnorm < 0:
        raise ValueError(f"--clipnorm must be 0 (no clipping) or more. Received: {args.clipnorm}")
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
            given = list(value) if key == "filters" else value
            if args.init is not None and kwargs[key] != given:
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

    decay_epoch = args.epochs - args.epochs // 5
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
        # Without clipping, a rate point fine-tuned at learning rate 3e-4 blew up after 11
        # epochs (MSE from 0.002 to 9e4; GDN's divisive terms amplify a large step).  Clipping
        # at 1 is also CompressAI's default for these models.
        clipnorm=args.clipnorm or None,
        mixed_precision=args.mixed_precision,
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
    if not export.versions(args.out / "saved_model"):  # (a resumed run may have one)
        # From the file: float32 even when trained under mixed precision, as the codec runs.
        export.export_saved_model(codec.load_model(args.out), args.out / "saved_model")
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


# ----------------------------------------------------------- compress, decompress


def compress(args: argparse.Namespace) -> int:
    model = codec.load_model(args.model)
    packer = codec.Codec(model)
    targets = cli.output_paths(args.images, args.out, ".aez", args.overwrite)
    for path in args.images:
        data.probe_image(path)  # every input is readable before anything is written
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (path, target) in enumerate(zip(args.images, targets), start=1):
        image = data.read_image(path, channels=packer.channels)
        started = time.perf_counter()
        blob = packer.compress(image)
        seconds = time.perf_counter() - started
        target.write_bytes(blob)
        bpp = 8 * len(blob) / (image.shape[0] * image.shape[1])
        print(f"[{i}/{len(targets)}] {path.name} -> {target} ({image.shape[1]}x"
              f"{image.shape[0]}, {len(blob)} bytes, {bpp:.3f} bpp, {seconds:.2f} s)", flush=True)
    return 0


def decompress(args: argparse.Namespace) -> int:
    from PIL import Image

    model = codec.load_model(args.model)
    unpacker = codec.Codec(model)
    targets = cli.output_paths(args.files, args.out, ".png", args.overwrite)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (path, target) in enumerate(zip(args.files, targets), start=1):
        started = time.perf_counter()
        image = unpacker.read(path)
        seconds = time.perf_counter() - started
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(target)
        print(f"[{i}/{len(targets)}] {path.name} -> {target} ({image.shape[1]}x"
              f"{image.shape[0]}, {seconds:.2f} s)", flush=True)
    return 0


# --------------------------------------------------------------------- evaluate


def evaluate(args: argparse.Namespace) -> int:
    files = data.list_images(args.images)[: args.max_images]
    if args.max_images is not None and args.max_images < 1:
        raise ValueError("--max-images must be at least 1.")
    models = [codec.load_model(run) for run in args.model]  # all load before the long part
    channels = {int(m.encoder.input_shape[-1]) for m in models}
    if len(channels) > 1:
        raise ValueError("The models differ in channels (grayscale and RGB); evaluate them apart.")
    channels = channels.pop()
    images = [data.read_image(path, channels=channels) for path in files]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Evaluating on {len(images)} images of {args.images}", flush=True)

    curves: dict[str, list[dict]] = {"aezoo": []}
    for run, model in zip(args.model, models):
        curves["aezoo"].append(_evaluate_model(run, model, images, files))
        _print_point("aezoo", curves["aezoo"][-1])
    for name in args.codecs:
        curves[name] = []
        for setting in rd.DEFAULT_SWEEPS[name]:
            curves[name].append(_evaluate_classical(name, setting, images))
            _print_point(name, curves[name][-1])

    results = {
        "images": [str(path) for path in files],
        "curves": curves,
        "bd_rate": _bd_rates(curves),
        "psnr_at_bpp": {
            name: {str(rate): rd.quality_at_rate(_points(points, "psnr"), rate)
                   for rate in (0.25, 0.5, 1.0)}
            for name, points in curves.items()
        },
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "results.md").write_text(_markdown(results))
    _plot(curves, args.out / "rd.png", title=f"{args.images.name} ({len(images)} images)")
    print((args.out / "results.md").read_text())
    print(f"Wrote {args.out / 'results.json'}, results.md and rd.png")
    return 0


def _evaluate_model(run: Path, model, images, files) -> dict:
    packer = codec.Codec(model)
    rows = []
    for path, image in zip(files, images):
        started = time.perf_counter()
        blob = packer.compress(image)
        encoded = time.perf_counter()
        decoded = packer.decompress(blob, path.name)
        finished = time.perf_counter()
        pixels = image.shape[0] * image.shape[1]
        estimate = _rate_estimate(model, image) / pixels
        rows.append(_measure(image, decoded, blob, encoded - started, finished - encoded))
        rows[-1]["estimated_bpp"] = estimate
    point = _mean(rows)
    point.update(setting=str(run), lmbda=model.lmbda)
    return point


def _rate_estimate(model, image) -> float:
    """The model's own estimate, in bits: the sum of -log2 p(y_hat) under its continuous
    density (what training minimised, at the rounded latent)."""
    x = image[None].astype(np.float32) / 255.0
    y_hat = model.encoder(x, training=False)["y_hat"]
    p = model.entropy_bottleneck.likelihood(y_hat)
    return float(-np.sum(np.log2(np.asarray(p, np.float64))))


def _evaluate_classical(name: str, setting, images) -> dict:
    rows = []
    for image in images:
        blob, decoded, encode_s, decode_s = rd.classical_codec(name, image, setting)
        rows.append(_measure(image, decoded, blob, encode_s, decode_s))
    point = _mean(rows)
    point["setting"] = setting
    return point


def _measure(image, decoded, blob: bytes, encode_s: float, decode_s: float) -> dict:
    return {
        "bpp": 8 * len(blob) / (image.shape[0] * image.shape[1]),
        "psnr": rd.psnr(image, decoded),
        "ms_ssim": rd.ms_ssim(image, decoded),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }


def _mean(rows: list[dict]) -> dict:
    """Means over images (PSNR: the mean of per-image PSNRs, as is customary)."""
    point = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        point[key] = None if any(v is None for v in values) else float(np.mean(values))
    return point


def _points(points: list[dict], quality: str) -> list[tuple[float, float]]:
    def value(point):
        if quality == "ms_ssim_db":
            return None if point["ms_ssim"] is None else -10 * np.log10(1 - point["ms_ssim"])
        return point[quality]

    return [(p["bpp"], value(p)) for p in points if value(p) is not None and p["bpp"] > 0]


def _bd_rates(curves: dict[str, list[dict]]) -> dict:
    """BD-rate (%) of our curve against each classical codec, in PSNR and MS-SSIM (dB),
    over all the rates both cover and over the anchor's 0.25-1.0 bpp."""
    ours = curves["aezoo"]
    results = {}
    for name, points in curves.items():
        if name == "aezoo":
            continue
        results[name] = {}
        for quality in ("psnr", "ms_ssim_db"):
            for label, rate_range in (("all", None), ("0.25-1.0bpp", (0.25, 1.0))):
                try:
                    value = rd.bd_rate(_points(points, quality), _points(ours, quality),
                                       rate_range=rate_range)
                except ValueError:  # fewer than two points: no curve
                    value = None
                results[name][f"{quality}_{label}"] = value
    return results


def _print_point(name: str, point: dict) -> None:
    ssim = "-" if point["ms_ssim"] is None else f"{point['ms_ssim']:.4f}"
    print(f"  {name} {point['setting']}: {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB, "
          f"MS-SSIM {ssim}, encode {point['encode_s']:.3f} s, decode {point['decode_s']:.3f} s",
          flush=True)


def _markdown(results: dict) -> str:
    def number(value, digits):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = ["## Rate-distortion", "",
             "| codec | setting | bpp | PSNR (dB) | MS-SSIM | encode (s) | decode (s) |",
             "|---|---|---|---|---|---|---|"]
    for name, points in results["curves"].items():
        for p in points:
            setting = Path(p["setting"]).name if name == "aezoo" else p["setting"]
            lines.append(f"| {name} | {setting} | {p['bpp']:.3f} | {p['psnr']:.2f} | "
                         f"{number(p['ms_ssim'], 4)} | {p['encode_s']:.3f} | {p['decode_s']:.3f} |")
    lines += ["", "## BD-rate of aezoo against each codec (%, negative: fewer bits)", "",
              "| anchor | PSNR, all | PSNR, 0.25-1.0 bpp | MS-SSIM dB, all | "
              "MS-SSIM dB, 0.25-1.0 bpp |", "|---|---|---|---|---|"]
    for name, values in results["bd_rate"].items():
        cells = [number(values[f"{q}_{r}"], 1) for q in ("psnr", "ms_ssim_db")
                 for r in ("all", "0.25-1.0bpp")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## PSNR (dB) at equal rate (interpolated)", "",
              "| codec | 0.25 bpp | 0.5 bpp | 1.0 bpp |", "|---|---|---|---|"]
    for name, values in results["psnr_at_bpp"].items():
        lines.append(f"| {name} | " + " | ".join(number(v, 2) for v in values.values()) + " |")
    return "\n".join(lines) + "\n"


def _plot(curves: dict[str, list[dict]], path: Path, title: str) -> None:
    fig, axes = plots.subplots(1, 2, figsize=(11, 4.5))
    for name, points in curves.items():
        style = {"marker": "o", "linewidth": 2.5 if name == "aezoo" else 1.2}
        for ax, quality in zip(axes, ("psnr", "ms_ssim_db")):
            xy = sorted(_points(points, quality))
            if xy:
                ax.plot([x for x, _ in xy], [y for _, y in xy], label=name, **style)
    for ax, label in zip(axes, ("PSNR (dB)", "MS-SSIM (dB)")):
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(label)
        ax.set_xlim(0, 2.0)
        ax.grid(True, alpha=0.3)
        if ax.lines:  # (no MS-SSIM for images under rd.MS_SSIM_MIN_SIDE pixels a side)
            ax.legend()
    fig.suptitle(title)
    plots.save(fig, path)


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    actions = {"train": train, "compress": compress, "decompress": decompress,
               "evaluate": evaluate}
    return actions[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
