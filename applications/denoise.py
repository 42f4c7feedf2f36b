"""Clean scans and photos with a denoising autoencoder, and measure it against classical
denoisers (Gaussian and median filters, non-local means, BM3D).

Train on MNIST with Gaussian noise of sigma 102/255 (0.4 of the range; noise levels are on
the 0-255 scale), on one device:

    python applications/denoise.py train --dataset mnist --noise gaussian:102 --epochs 2 \\
        --out runs/mnist

Train on a folder of photos, in random 64x64 patches (fresh patches and noise each epoch),
here the 400 Train400 images for the BSD68 benchmark:

    python applications/denoise.py train --images ../shared/data/raw/train400 --patch 64 \\
        --patches-per-image 8 --noise gaussian:25 --epochs 60 --lr-schedule cosine \\
        --batch-size 16 --out runs/train400

All GPUs of this machine (`--strategy mirrored`), or several machines: the same command on
each, with TF_CONFIG naming the cluster and this task:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python applications/denoise.py train --dataset mnist --noise gaussian:102 \\
        --strategy multiworker --out runs/mnist_mw

Denoise image files of any size (and the images of folders) into PNGs of the same names:

    python applications/denoise.py denoise --model runs/train400 scan.jpg photos/ --out clean/

Measure PSNR and SSIM against the classical denoisers, with noise of a fixed seed:

    python applications/denoise.py evaluate --model runs/train400 \\
        --images ../shared/data/raw/bsd68 --noise gaussian:25 --seed 0 --out results/bsd68
    python applications/denoise.py evaluate --model runs/mnist --dataset mnist --limit 1000 \\
        --noise gaussian:102 --seed 0 --out results/mnist

`train` writes RUN_DIR/model.keras, the SavedModel RUN_DIR/export/1/ for TF Serving,
denoiser.json (the training noise and channels, which `denoise` and `evaluate` read),
history.json, loss.png, samples.png (clean / noisy / denoised) and a checkpoint per epoch;
a killed run continues when the command is run again.
`evaluate` writes results.json, results.md and samples.png.  No command overwrites a file
unless given --overwrite, and none ever writes over its inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import keras  # noqa: E402
import numpy as np  # noqa: E402

from aezoo import baselines, data, metrics, noise, plots  # noqa: E402
from aezoo import train as train_lib  # noqa: E402
from aezoo.denoising import denoise as denoise_image  # noqa: E402
from aezoo.export import export_saved_model  # noqa: E402

METADATA = "denoiser.json"  # what makes a run folder a denoiser's
METHODS = ("noisy", *baselines.CLASSICAL, "aezoo")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="denoise.py", description=__doc__.splitlines()[0] + " ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a denoiser on clean data, noised on the fly")
    train_lib.add_data_arguments(train)
    cli.add_model_arguments(train, default_model="denoising")
    train_lib.add_training_arguments(train)

    run = commands.add_parser("denoise", help="denoise image files into PNGs of the same names")
    run.add_argument("--model", type=Path, required=True, help="RUN_DIR of `train`")
    run.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image or folder")
    run.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    run.add_argument("--overwrite", action="store_true", help="replace existing output PNGs")
    run.add_argument("--tile", type=int, default=1024, help="larger images go in tiles of this side")

    evaluate = commands.add_parser("evaluate", help="PSNR/SSIM against classical denoisers")
    evaluate.add_argument("--model", type=Path, required=True, help="RUN_DIR of `train`")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of clean PNG/JPEG images")
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    evaluate.add_argument("--split", default="test", help="tfds split (default: test)")
    evaluate.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    evaluate.add_argument("--limit", type=int, help="the first N images only")
    evaluate.add_argument("--noise", required=True, help="gaussian:SIGMA (0-255), salt_pepper:P, "
                          "poisson:PEAK or mask:P")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the noise")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for the results")
    evaluate.add_argument("--overwrite", action="store_true", help="replace earlier results")
    evaluate.add_argument("--samples", type=int, default=4, help="images shown in samples.png")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------- train


def train(args: argparse.Namespace) -> None:
    if not args.noise:
        raise ValueError("train needs --noise, e.g. --noise gaussian:25 (0-255 scale).")
    kind, level = noise.parse_noise(args.noise)
    if args.images and args.patch is None and args.image_size is None:
        args.patch = 64  # photos differ in size and are large: train on random patches
    model, _, examples = train_lib.run(args)
    if model is None:  # a worker other than the chief: it writes nothing
        return
    metadata = {
        "noise": args.noise,
        "kind": kind,
        "level": level,
        "channels": int(model.input_shape[-1]),
        "model": args.model,
        "data": args.dataset or str(args.images or args.arrays),
    }
    (args.out / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    # The model as saved (float32 also after mixed-precision training), for serving anywhere.
    model, _ = load_denoiser(args.out)
    export_saved_model(model, args.out / "export")  # for TF Serving: export/1/
    clean = train_lib.first_examples(examples, 8)
    noisy = noise.add_noise(clean, kind, level, (args.seed, 0)).numpy()
    denoised = model.predict(noisy, verbose=0)
    plots.image_grid(
        [clean, noisy, denoised], args.out / "samples.png",
        row_titles=["clean", "noisy", "denoised"], title=f"{args.model}, {args.noise}",
    )
    print(f"Saved the denoiser in {args.out} (PSNR on these samples: "
          f"noisy {_mean_psnr(clean, noisy):.2f} dB, denoised {_mean_psnr(clean, denoised):.2f} dB)")


def _mean_psnr(clean, test) -> float:
    return float(np.mean([metrics.psnr(c, t) for c, t in zip(clean, test)]))


def load_denoiser(path: Path) -> tuple[keras.Model, dict]:
    """The model of a `train` run folder (or a .keras file in one) and its denoiser.json.

    A denoiser is a model saved by `train` (its folder has denoiser.json) that maps images of
    the recorded channels to images of the same shape.

    Raises:
        FileNotFoundError: no such folder or file.
        ValueError: anything else, a model that is not a denoiser included.
    """
    if not path.exists():
        raise FileNotFoundError(f"No such model folder or file: {path}")
    model_file = path / "model.keras" if path.is_dir() else path
    # The run folder: the folder given, or the one holding the file (or its checkpoints/).
    candidates = [path] if path.is_dir() else [path.parent, path.parent.parent]
    run_dir = next((d for d in candidates if (d / METADATA).is_file()), None)
    if run_dir is None:
        raise ValueError(
            f"{path} is not a denoiser: no {METADATA} beside it (run folders of "
            "`denoise.py train` have one)."
        )
    try:
        metadata = json.loads((run_dir / METADATA).read_text())
        channels = int(metadata["channels"])
        noise.check_noise(metadata["kind"], metadata["level"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{run_dir / METADATA} is damaged; train the model again.") from None
    if not model_file.is_file():
        raise FileNotFoundError(f"{run_dir} has no {model_file.name}: was its training finished?")
    try:
        import aezoo.model  # noqa: F401  (registers aezoo's classes for loading)

        model = keras.models.load_model(model_file)
    except Exception as error:  # Keras raises many types for files it cannot read
        raise ValueError(
            f"{model_file} is not a Keras model that aezoo can load ({type(error).__name__})."
        ) from None
    shape_in, shape_out = tuple(model.input_shape), tuple(model.output_shape)
    if len(shape_in) != 4 or shape_in[-1] != channels or shape_out != shape_in:
        raise ValueError(
            f"{model_file} is not a denoiser of {channels}-channel images: it maps "
            f"{shape_in} to {shape_out}."
        )
    return model, metadata


# ----------------------------------------------------------------------- denoise


def denoise(args: argparse.Namespace) -> None:
    jobs = plan_outputs(args.inputs, args.out, args.overwrite)
    model, metadata = load_denoiser(args.model)
    channels = metadata["channels"]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (source, target) in enumerate(jobs, start=1):
        start = time.perf_counter()
        height, width, own_channels = data.probe_image(source)
        image = data.read_image(source, channels=channels) / 255.0
        write_png(denoise_image(model, image, tile=args.tile), target)
        converted = "" if own_channels == channels else f", {own_channels}->{channels} channels"
        print(f"[{i}/{len(jobs)}] {source} -> {target} ({width}x{height}{converted}, "
              f"{time.perf_counter() - start:.1f} s)", flush=True)


def plan_outputs(inputs: Sequence[Path], out: Path, overwrite: bool) -> list[tuple[Path, Path]]:
    """(input, output PNG) pairs, all checked before anything is written.

    Raises:
        FileNotFoundError, ValueError: a missing or unreadable input, two inputs of the same
            name, an output that is an input; FileExistsError: an existing output without
            `overwrite`.
    """
    files = []
    for path in inputs:
        files += data.list_images(path) if path.is_dir() else [path]
    for path in files:
        data.probe_image(path)
    return list(zip(files, cli.output_paths(files, out, ".png", overwrite)))


def write_png(image: np.ndarray, path: Path) -> None:
    """Saves an image in [0, 1] as 8-bit PNG (grayscale or RGB); a temporary file renamed
    into place, so an interrupted run leaves no half-written file."""
    from PIL import Image

    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    fd, temporary = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(pixels).save(temporary, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# ---------------------------------------------------------------------- evaluate


def evaluate(args: argparse.Namespace) -> None:
    kind, level = noise.parse_noise(args.noise)
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1.")
    if args.samples < 1:
        raise ValueError("--samples must be at least 1.")
    results_file = args.out / "results.json"
    if results_file.exists() and not args.overwrite:
        raise FileExistsError(f"{results_file} exists; choose another --out or pass --overwrite.")
    model, metadata = load_denoiser(args.model)
    names, images = load_clean_images(args, metadata["channels"])
    if metadata["noise"] != args.noise:
        print(f"Note: the model was trained on {metadata['noise']} noise, evaluated on {args.noise}.")

    scores = {method: {"psnr": [], "ssim": []} for method in METHODS}
    seconds = dict.fromkeys(METHODS, 0.0)
    samples = {method: [] for method in ("clean", *METHODS)}
    for i, (name, clean) in enumerate(zip(names, images)):
        noisy = noise.add_noise(clean, kind, level, (args.seed, i)).numpy()
        # The classical methods get the noise's standard deviation: sigma itself for Gaussian
        # noise, the measured (oracle) one for the other kinds.
        sigma = level if kind == "gaussian" else float(np.sqrt(np.mean((noisy - clean) ** 2)))
        outputs = {"noisy": noisy}
        for method in METHODS[1:]:
            start = time.perf_counter()
            if method == "aezoo":
                outputs[method] = denoise_image(model, noisy)
            else:
                outputs[method] = baselines.CLASSICAL[method](noisy, sigma)
            seconds[method] += time.perf_counter() - start
        for method, output in outputs.items():
            scores[method]["psnr"].append(metrics.psnr(clean, output))
            scores[method]["ssim"].append(metrics.ssim(clean, output))
        if i < args.samples:
            samples["clean"].append(_crop(clean))
            for method, output in outputs.items():
                samples[method].append(_crop(output))
        line = "  ".join(f"{m} {scores[m]['psnr'][-1]:.2f}" for m in METHODS)
        print(f"[{i + 1}/{len(images)}] {name}: PSNR {line}", flush=True)

    results = {
        "noise": args.noise,
        "images": len(images),
        "methods": {
            method: {key: float(np.mean(values)) for key, values in score.items()}
            for method, score in scores.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.dataset or args.images
    title = f"{args.noise} noise (seed {args.seed}) on {len(images)} images of {source}"
    table = markdown_table(results, seconds, level if kind == "gaussian" else None)
    (args.out / "results.md").write_text(f"## {title}\n\nModel: {args.model}\n\n{table}\n")
    results_file.write_text(json.dumps(results, indent=2) + "\n")
    plots.image_grid(
        [samples[key] for key in samples], args.out / "samples.png",
        row_titles=list(samples), title=title,
    )
    print(table)
    print(f"Wrote {results_file}, results.md and samples.png in {args.out}")


def load_clean_images(args: argparse.Namespace, channels: int) -> tuple[list[str], list[np.ndarray]]:
    """Names and clean images in [0, 1] with the model's channels."""
    if args.images:
        files = data.list_images(args.images)[: args.limit]
        for path in files:
            data.probe_image(path)  # every file readable before hours of work begin
        return [p.name for p in files], [data.read_image(p, channels) / 255.0 for p in files]
    examples = data.from_tfds(args.dataset, args.split, data_dir=args.data_dir)
    if args.limit:
        examples = examples.take(args.limit)
    images = [_to_channels(np.asarray(x), channels) for x in examples]
    return [f"{args.dataset}[{i}]" for i in range(len(images))], images


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[-1] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=-1)
    return image @ np.array([[0.299], [0.587], [0.114]], dtype=image.dtype)  # ITU-R 601 luma


def _crop(image: np.ndarray, size: int = 128) -> np.ndarray:
    """The central size x size part of an image, so that sample grids show the noise."""
    top, left = max(0, (image.shape[0] - size) // 2), max(0, (image.shape[1] - size) // 2)
    return image[top : top + size, left : left + size]


def markdown_table(results: dict, seconds: dict, sigma: float | None) -> str:
    n = results["images"]
    rows = ["| method | PSNR (dB) | SSIM | seconds per image | parameters |", "|---|---|---|---|---|"]
    for method, score in results["methods"].items():
        if method in baselines.CLASSICAL:
            setting = baselines.describe(method, sigma) if sigma is not None else "oracle sigma"
        else:
            setting = {"noisy": "the input", "aezoo": "this model"}[method]
        rows.append(f"| {method} | {score['psnr']:.2f} | {score['ssim']:.4f} | "
                    f"{seconds[method] / n:.3f} | {setting} |")
    return "\n".join(rows)


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    {"train": train, "denoise": denoise, "evaluate": evaluate}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
