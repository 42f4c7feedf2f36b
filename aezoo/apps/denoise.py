"""Clean scans and photos with a denoising autoencoder, and measure it against classical
denoisers (Gaussian and median filters, non-local means, BM3D).

Train on MNIST with Gaussian noise of sigma 102/255 (0.4 of the range; noise levels are on
the 0-255 scale), on one device:

    aezoo denoise train --dataset mnist --noise gaussian:102 --epochs 2 \\
        --out runs/mnist

Train one blind denoiser for every Gaussian noise level from 0 to 55 on a folder of photos,
in random 64x64 patches (fresh patches, turns and noise each epoch), here the 400 Train400
images for the BSD68 benchmark (the first stage of the `denoise_gray` preset; its card has
the stages that continued it with --init):

    aezoo denoise train --images ../shared/data/raw/train400 --patch 64 \\
        --patches-per-image 8 --augment --noise gaussian:0-55 --epochs 80 --batch-size 16 \\
        --lr-schedule cosine --mixed-precision mixed_bfloat16 --out runs/train400

All GPUs of this machine (`--strategy mirrored`), or several machines: the same command on
each, with TF_CONFIG naming the cluster and this task:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo denoise train --dataset mnist --noise gaussian:102 \\
        --strategy multiworker --out runs/mnist_mw

Denoise image files of any size (and the images of folders) into PNGs of the same names,
with a trained run or a preset (a blind model: the noise level need not be known; the
command prints the level it estimates in each image and, for a model trained on Gaussian
noise, first puts back the noise the 8-bit file clipped at 0 and 255: aezoo.denoise.unclip):

    aezoo denoise denoise --model denoise_gray scan.jpg photos/ --out clean/

With no --model, each file goes through the blind preset of its colour (denoise_gray for a
grayscale file, denoise_rgb for a colour one), which its line names:

    aezoo denoise denoise scan.jpg photos/ --out clean/

The same, averaging the model over the 8 turns and mirror images of each image (8 times the
time; the presets gain 0.05 dB on BSD68, 0.1 on CBSD68):

    aezoo denoise denoise --model denoise_gray --ensemble scan.jpg photos/ --out clean/

A colour model denoises the mean of the channels with denoise_gray first where a photo's
noise is shared by its channels, which a model trained on independent noise leaves (auto,
the default; on, off):

    aezoo denoise denoise --model denoise_rgb --luminance-first on photos/ --out clean/

Measure PSNR and SSIM against the classical denoisers, with noise of a fixed seed (with
no --model, the blind preset of the images' colour, denoise_gray for BSD68):

    aezoo denoise evaluate --images ../shared/data/raw/bsd68 --noise gaussian:25 \\
        --seed 0 --out results/bsd68
    aezoo denoise evaluate --model runs/train400 \\
        --images ../shared/data/raw/bsd68 --noise gaussian:25 --seed 0 --out results/bsd68
    aezoo denoise evaluate --model runs/mnist --dataset mnist --limit 1000 \\
        --noise gaussian:102 --seed 0 --out results/mnist

The same with the noisy images clipped and rounded to 8 bits, as files hold them and
`denoise` reads them (the model gets them as `denoise` gives them, through unclip) and the
outputs rounded to 8 bits as `denoise` writes them:

    aezoo denoise evaluate --model denoise_gray --images ../shared/data/raw/bsd68 \\
        --noise gaussian:50 --8-bit --seed 0 --out results/bsd68_8bit

`train` writes a run folder (aezoo.runs: model.keras, run.json with the training noise and
channels, the SavedModel export/1/, history, loss.png, samples.png with clean / noisy /
denoised rows, a checkpoint per epoch); a killed run continues when the command is run
again.
`evaluate` writes results.json, results.md and samples.png.  No command overwrites a file
unless given --overwrite, and none ever writes over its inputs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aezoo.apps import cli
from aezoo.apps.train import train_run

PROG = "aezoo denoise"
METHODS = ("noisy", "gaussian", "median", "nlm", "bm3d", "aezoo", "aezoo_x8")  # aezoo.denoise's


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Denoise images with a denoising autoencoder, and measure it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a denoiser on clean data, noised on the fly")
    cli.add_data_arguments(train, patch="64 for --images without --image-size")
    cli.add_model_arguments(train, default_model="denoising", own_defaults={
        "corruption": "none: --noise makes the noisy inputs"})
    cli.add_training_arguments(train)
    train.add_argument("--noise", required=True,
                       help="gaussian:SIGMA or gaussian:LOW-HIGH (0-255 scale; a range trains "
                       "one blind denoiser), salt_pepper:P, poisson:PEAK or mask:P")

    run = commands.add_parser("denoise", help="denoise image files into PNGs of the same names")
    run.add_argument("--model", help="run folder of `train`, or a preset name (default: the "
                     "blind presets, denoise_gray for grayscale files and denoise_rgb for "
                     "colour ones)")
    run.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="image or folder")
    run.add_argument("--out", type=cli.folder, required=True, help="folder for the PNGs")
    cli.add_output_arguments(run, "output PNGs")
    run.add_argument("--tile", type=cli.at_least(128), default=1024,
                     help="larger images go in tiles of this side, at least 128 (each keeps "
                          "its centre, 32 pixels or more from its edges)")
    run.add_argument("--ensemble", action="store_true",
                     help="average the model over the 8 turns and mirror images of each image "
                     "(8 times the time; the presets gain 0.05 dB on BSD68, 0.1 on "
                     "CBSD68)")
    run.add_argument("--luminance-first", choices=("auto", "on", "off"), default="auto",
                     help="for a colour model: denoise the mean of the channels with "
                     "denoise_gray first, for noise shared by the channels, which a colour "
                     "model leaves (auto, the default: for grayscale files, and where the "
                     "noise's estimated correlation between channels is above 0.6 at a "
                     "sigma of 15 or more)")

    evaluate = commands.add_parser("evaluate", help="PSNR/SSIM against classical denoisers")
    evaluate.add_argument("--model", help="run folder of `train`, or a preset name (default: "
                          "the blind preset of the images' colour, denoise_gray where all are "
                          "grayscale, else denoise_rgb)")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, help="folder of clean PNG/JPEG images")
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    evaluate.add_argument("--split", default="test", help="tfds split (default: test)")
    evaluate.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    evaluate.add_argument("--limit", "--max-images", dest="limit", metavar="N",
                          type=cli.positive_int, help="the first N images only")
    evaluate.add_argument("--noise", required=True, help="gaussian:SIGMA (0-255), salt_pepper:P, "
                          "poisson:PEAK or mask:P")
    evaluate.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                          help="what to compare (default: all; aezoo_x8 is the model with "
                          "--ensemble of denoise)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the noise")
    evaluate.add_argument("--8-bit", dest="eight_bit", action="store_true",
                          help="noisy images clipped and rounded to 8 bits, as files hold "
                          "them and `denoise` reads them, and outputs rounded as `denoise` "
                          "writes them (default: unclipped and unrounded, as benchmarks)")
    evaluate.add_argument("--out", type=cli.folder, required=True, help="folder for the results")
    evaluate.add_argument("--overwrite", action="store_true", help="replace earlier results")
    evaluate.add_argument("--samples", type=int, default=4, choices=range(1, 5),
                          metavar="1-4", help="images shown in samples.png")
    cli.name_actions(commands)
    return parser


# ------------------------------------------------------------------------- train


def train(args: argparse.Namespace) -> None:
    from aezoo import noise, plots

    kind, level = noise.parse_noise(args.noise)
    if vars(args).get("model_corruption") is not None:
        # (it was silently added on top of --noise's pairs)
        raise ValueError("--corruption adds noise inside the model, on top of the noisy "
                         "inputs that --noise makes: give --noise only (aezoo train takes "
                         "--corruption).")
    if args.images and args.patch is None and args.image_size is None:
        args.patch = 64  # photos differ in size and are large: train on random patches

    def application(model) -> dict:
        return {"noise": args.noise, "kind": kind, "level": level,
                "channels": int(model.input_shape[-1])}

    def samples(model, clean, path) -> None:
        noisy = noise.add_noise(clean, kind, level, (args.seed, 0)).numpy()
        plots.image_grid([clean, noisy, model.predict(noisy, verbose=0)], path,
                         row_titles=["clean", "noisy", "denoised"],
                         title=f"{args.model}, {args.noise}")

    run = train_run(args, task="denoise", application=application, samples=samples)
    if run is not None:
        print(f"Saved the denoiser in {args.out}")


# ----------------------------------------------------------------------- denoise


def denoise(args: argparse.Namespace) -> None:
    import numpy as np

    from aezoo import data, runs
    from aezoo import denoise as denoising

    files = cli.expand_folders(args.inputs, data.list_images)
    files, targets = cli.files_to_write(files, args.out, ".png", args)
    if not files:
        return
    # every input readable before anything is written
    own_channels = [data.probe_image(path)[2] for path in files]
    # Each file's model: --model, or the blind preset of its colour.
    names = ([args.model] * len(files) if args.model is not None else
             ["denoise_gray" if own == 1 else "denoise_rgb" for own in own_channels])
    # Each run loaded once: denoise_gray can be a file's model and the luminance model both.
    load = functools.cache(lambda source: runs.load_run(source, task="denoise"))
    models = {name: Denoiser(name, args.luminance_first, load) for name in dict.fromkeys(names)}
    if args.luminance_first == "on" and args.model is not None \
            and models[args.model].channels != 3:
        raise ValueError(f"--luminance-first is for colour models; {args.model} takes "
                         "grayscale images.")
    # all decode first; upright, as the PNGs written have no orientation of their own
    channels_of = {path: models[name].channels for path, name in zip(files, names)}
    # (a 16-bit PNG, a scan's, with all its bits: written back as 16 bits)
    images = cli.read_first(files, lambda path: data.read_image(
        path, channels=channels_of[path], upright=True, full_depth=True))
    args.out.mkdir(parents=True, exist_ok=True)
    notes = [cli.reading_notes(path, own, models[name].channels, "denoise_rgb denoises colour",
                               full_depth=True)
             for path, own, name in zip(files, own_channels, names)]
    for n, (own, name) in enumerate(zip(own_channels, names)):
        if models[name].channels == 3 and models[name].luminance is None and own == 1:
            # A colour denoiser learns noise that differs between channels; a gray photo's
            # is the same in all three, and denoise_rgb leaves it (6 BSD68 photos at sigma
            # 50: 15.02 dB in, 15.33 out).
            notes[n] += (", its noise is the same in all three channels, which a colour "
                         "model leaves: drop --luminance-first off, or use denoise_gray")
    for i, (source, load, target, note, own, name) in enumerate(zip(
            files, images, targets, notes, own_channels, names), start=1):
        image = load()
        model, channels, luminance = (models[name].model, models[name].channels,
                                      models[name].luminance)
        gaussian, trained = models[name].gaussian, models[name].trained
        start = time.perf_counter()
        peak = np.iinfo(image.dtype).max  # 255, or 65535 for a 16-bit PNG
        noisy = image / peak
        sigma = denoising.estimate_sigma(noisy) * 255
        level = ("too small to estimate its noise" if math.isnan(sigma)
                 else f"noise sigma ~{sigma:.1f} estimated")
        if gaussian and not math.isnan(sigma):
            # A file clips the noise of dark and bright parts; the model was trained on
            # unclipped noise (see denoising.unclip).
            clipped = float(np.mean((image == 0) | (image == peak)))
            noisy = denoising.unclip(noisy, sigma / 255)
            if clipped and sigma / 255 >= denoising.UNCLIP_MIN_SIGMA:  # unclip acted
                level += f", {clipped:.1%} of its pixels clipped"
            if trained is not None and sigma > trained:
                level += (f", more than the {trained:g} the model was trained for: expect "
                          "noise left")
        # The luminance model, where this image's noise calls for it (None where there
        # is none: a grayscale model, or --luminance-first off).
        first = luminance if args.luminance_first == "on" or own == 1 else None
        if channels == 3 and not math.isnan(sigma) and sigma >= 15:
            # Texture reads as noise shared by the channels: 3 of CBSD68's 68 clean photos
            # are estimated at sigma 10-12 with a correlation of 0.97-1, and the luminance
            # first costs them 2-8 dB (47 -> 39 at worst).  From sigma 15 up, independent
            # noise reads at most 0.4 on CBSD68; a correlation of 0.25 already costs the
            # colour model alone 1.4 dB (benchmarks/denoise_correlated.py).
            correlation = denoising.channel_correlation(noisy)
            if correlation > 0.6:
                level += f", noise correlated between channels (~{correlation:.1f})"
                first = luminance
                if luminance is None:
                    level += ", which a colour model leaves: drop --luminance-first off"
        if first is not None:
            level += ", luminance denoised first with denoise_gray"
        progress = cli.quarters(f"[{i}/{len(files)}] {source}", start, "denoised")
        clean = denoising.denoise(model, noisy, tile=args.tile, ensemble=args.ensemble,
                                  progress=progress, luminance=first)
        if own == 1 and channels == 3:
            # A gray photo comes back gray: the mean of the channels, the gray image nearest
            # the colour model's output (which differs between them by a few levels).
            clean = clean.mean(axis=-1, keepdims=True)
        runs.write_bytes(target, denoising.png_bytes(clean, bits=8 if peak == 255 else 16))
        chosen = "" if args.model is not None else f"{name}, "  # the preset it chose
        print(f"[{i}/{len(files)}] {source} -> {target} ({image.shape[1]}x{image.shape[0]}, "
              f"{chosen}{level}{note}, "
              f"{time.perf_counter() - start:.1f} s)",
              flush=True)


class Denoiser:
    """A denoising run as `denoise` uses it: its model and channels, whether it was trained
    on Gaussian noise and the most it was trained on (0-255), and the luminance model that
    goes first for a colour model (None for a gray one, or with --luminance-first off)."""

    def __init__(self, source: str, luminance_first: str, load: Callable[[str], Any]):
        """`load(source)`: the run of a preset name or run folder (`aezoo.runs.load_run`)."""
        from aezoo import denoise as denoising

        run = load(source)
        self.model, self.channels = run.model, int(run.application["channels"])
        denoising.check_denoiser(self.model, self.channels, source)
        self.luminance = (load("denoise_gray").model
                          if self.channels == 3 and luminance_first != "off" else None)
        self.gaussian = run.application.get("kind") == "gaussian"
        # The most noise the model was trained on (0-255 scale): a level or a range's top.
        level = run.application.get("level")
        self.trained = (255 * (max(level) if isinstance(level, (list, tuple)) else level)
                        if self.gaussian and level is not None else None)


# ---------------------------------------------------------------------- evaluate


def evaluate(args: argparse.Namespace) -> None:
    from aezoo import denoise as denoising
    from aezoo import noise, plots, runs

    kind, level = noise.parse_noise(args.noise)
    cli.check_outputs(args.out, ("results.json", "results.md", "samples.png"), args.overwrite)
    if args.model is None:
        # As `denoise` chooses a file's preset; one model measures the whole set.
        gray = _all_grayscale(args)
        args.model = "denoise_gray" if gray else "denoise_rgb"
        print(f"Evaluating {args.model}, the blind preset for "
              f"{'grayscale' if gray else 'colour'} images (--model for another)", flush=True)
    run = runs.load_run(args.model, task="denoise")
    denoising.check_denoiser(run.model, int(run.application["channels"]), f"{args.model}")
    names, images = load_clean_images(args, int(run.application["channels"]))
    trained_on = run.application.get("noise")
    if trained_on != args.noise:
        print(f"Note: the model was trained on {trained_on} noise, evaluated on {args.noise}.")

    def progress(i, name, psnr):
        line = "  ".join(f"{m} {v:.2f}" for m, v in psnr.items())
        print(f"[{i + 1}/{len(images)}] {name}: PSNR {line}", flush=True)

    results = denoising.evaluate(run.model, images, (kind, level), seed=args.seed,
                                 methods=args.methods, names=names, progress=progress,
                                 eight_bit=args.eight_bit)
    shown = min(args.samples, len(images), 4)
    rows = {"clean": [denoising.centre(x) for x in images[:shown]]}
    rows.update({m: [denoising.centre(x) for x in out[:shown]]
                 for m, out in results.pop("outputs").items()})
    source = args.dataset or args.images
    bits = ", 8-bit noisy images" if args.eight_bit else ""
    title = (f"{args.noise} noise (seed {args.seed}{bits}) on "
             f"{cli.counted(len(images), 'image')} of {source}")
    table = denoising.markdown_table(results, level if kind == "gaussian" else None)
    results = {"noise": args.noise, "model": str(args.model), "seed": args.seed,
               "eight_bit": args.eight_bit, **results}
    args.out.mkdir(parents=True, exist_ok=True)
    with runs.together():  # (with --overwrite: never new tables beside old samples)
        with runs.writing(args.out / "samples.png") as path:
            plots.image_grid(list(rows.values()), path, row_titles=list(rows), title=title)
        runs.write_text(args.out / "results.md",
                        f"## {title}\n\nModel: {args.model}\n\n{table}\n")
        runs.write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(table)
    print(f"Wrote results.json, results.md and samples.png in {args.out}")


def _all_grayscale(args: argparse.Namespace) -> bool:
    """Whether every image `evaluate` will read is grayscale (from the files' headers, or
    the dataset's channels)."""
    from aezoo import data

    if args.images:
        return all(data.probe_image(path)[2] == 1
                   for path in data.list_images(args.images)[: args.limit])
    examples = data.from_tfds(args.dataset, args.split, data_dir=args.data_dir)
    return examples.element_spec.shape[-1] == 1


def load_clean_images(args: argparse.Namespace, channels: int):
    """Names and clean images in [0, 1] with the model's channels."""
    import numpy as np

    from aezoo import data, metrics
    from aezoo import denoise as denoising

    def check(name, height, width):  # before hours of work begin
        if min(height, width) < metrics.SSIM_MIN_SIDE:
            raise ValueError(f"{name} is {width}x{height} pixels; evaluate measures SSIM, which "
                             f"needs {metrics.SSIM_MIN_SIDE} pixels a side or more.")

    if args.images:
        files = data.list_images(args.images)[: args.limit]
        for path in files:
            check(path, *data.probe_image(path)[:2])  # and readable
        return [p.name for p in files], [data.read_image(p, channels) / 255.0 for p in files]
    examples = data.from_tfds(args.dataset, args.split, data_dir=args.data_dir)
    if args.limit:
        examples = examples.take(args.limit)
    images = [denoising.to_channels(np.asarray(x), channels) for x in examples]
    names = [f"{args.dataset}[{i}]" for i in range(len(images))]
    for name, image in zip(names, images):
        check(name, *image.shape[:2])
    return names, images


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow()
    {"train": train, "denoise": denoise, "evaluate": evaluate}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
