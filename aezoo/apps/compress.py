"""Learned image compression: train a codec, compress images to .aez files and back, and
measure it against JPEG, WebP and JPEG 2000.

Train one model per rate point (larger --lmbda: more bits, better quality) on random
128x128 patches of CBSD432 (never on Kodak, the test set).  The default model is the
mean-scale hyperprior of the codec_* presets (`compression_meanscale`, .aez format version 2),
at the papers' size (N = 128, M = 192); the presets' smaller size trains faster on a CPU:

    aezoo compress train --images ../shared/data/raw/cbsd432 --patch 128 --lmbda 0.01 \\
        --filters 64 64 64 --hyper-filters 64 64 64 --latent-dim 96 --epochs 60 \\
        --mixed-precision mixed_bfloat16 --out runs/codec_0.01

The scale hyperprior (`--model compression_hyperprior`) and the factorized prior
(`--model compression`, .aez version 1, no side information: aezoo 0.1's codec, 2.8 % fewer
bits than JPEG on Kodak where the presets need 40 % fewer) are there too.

A second rate point trains faster when it starts from the first (--init):

    aezoo compress train --images ../shared/data/raw/cbsd432 --patch 128 \\
        --lmbda 0.025 --epochs 30 --learning-rate 2e-4 --lr-schedule cosine \\
        --init runs/codec_0.01 --out runs/codec_0.025

Compress and decompress (one .aez file per image, one PNG per .aez file, same stems; a
folder stands for its images, or its .aez files):

    aezoo compress compress --model runs/codec_0.01 photo.png \\
        holiday.jpg --out packed/
    aezoo compress decompress --model runs/codec_0.01 packed/*.aez \\
        --out unpacked/
    aezoo compress compress --model codec_0.01 photos/ --out packed/
    aezoo compress decompress packed/ --out unpacked/

A file made by a preset needs no --model: its header's fingerprint names the preset; and
`compress` with no --model uses codec_0.01 (about 0.5 bits a pixel).

`decompress` (and `evaluate`) run the codec presets' decoded pixels through the post-filter
their cards name (a codec_postfilter* preset: `aezoo presets codec_0.01` shows it), a U-Net
trained on what they decode (--postfilter none: the synthesis's own pixels; the files are
the same either way).

Smaller files of better quality for encoder time (--refine N: N steps of gradient descent on
each image's own latents, about 0.1 s each for a 768x512 image; decoding is unchanged):

    aezoo compress compress --model codec_0.01 photo.png --refine 100 --out packed/

Rate-distortion evaluation on Kodak against JPEG 4:2:0, WebP and JPEG 2000 (results.json,
results.md, rd.png):

    aezoo compress evaluate --model runs/codec_0.004 runs/codec_0.01 \\
        runs/codec_0.025 runs/codec_0.05 --images ../shared/data/raw/kodak --out rd/
    aezoo compress evaluate --images ../shared/data/raw/kodak --out rd/  # the presets

Several machines (training; the same command on each, with TF_CONFIG naming this task):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo compress train --images ../shared/data/raw/cbsd432 --patch 128 \\
        --lmbda 0.01 --epochs 40 --strategy multiworker --out runs/compress_mw

`train` writes a run folder (aezoo.runs): model.keras (with the integer probability tables,
made at the end of training, so it decodes bit-exactly anywhere), run.json, history,
loss.png, samples.png, checkpoints, and export/1 for TF Serving (see aezoo.export: `encode`
gives the rounded latent `y_hat` and the `image_size`, `decode` takes them back; the entropy
coding itself runs in Python with constriction).  Killed, the same command resumes it.
Training options are those of every aezoo training command, with the compression recipe as
defaults: Adam at 1e-4, ten times lower for the last fifth of the epochs (`--lr-schedule
step`), gradients clipped at global norm 1, batches of 8.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aezoo.apps import cli
from aezoo.apps.train import train_run

PROG = "aezoo compress"
CODECS = ("jpeg", "webp", "jpeg2000")  # aezoo.rate_distortion's
# The rate point `compress` uses when given no --model: the middle of the 0.25-1.0 bpp
# that the presets' BD-rates are measured over (Kodak 0.50 bpp, 32.2 dB).
DEFAULT_CODEC = "codec_0.01"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(prog=PROG, description="Learned image compression with .aez files.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True)

    train = actions.add_parser("train", help="train a codec (one rate point) on images")
    cli.add_data_arguments(train, patch="128")
    # The mean-scale hyperprior: measured the best of the three (docs/compression.md).
    cli.add_model_arguments(train, default_model="compression_meanscale")
    # Without clipping, a rate point fine-tuned at learning rate 3e-4 blew up after 11 epochs
    # (MSE from 0.002 to 9e4; GDN's divisive terms amplify a large step); clipping at 1 is
    # also CompressAI's default for these models.
    cli.add_training_arguments(train, epochs=40, batch_size=8, learning_rate=1e-4,
                               lr_schedule="step", clipnorm=1.0)
    train.set_defaults(patch=128, patches_per_image=4)

    pack = actions.add_parser("compress", help="compress images to .aez files")
    pack.add_argument("--model", help="run folder of `train`, or a preset name (default: "
                      f"{DEFAULT_CODEC}, about 0.5 bits a pixel; codec_0.0018 to codec_0.2 "
                      "give 0.17 to 1.8 on Kodak)")
    pack.add_argument("images", type=Path, nargs="+",
                      help="PNG/JPEG files, or folders (their PNG/JPEG files)")
    pack.add_argument("--out", type=cli.folder, required=True, help="folder of the .aez files")
    cli.add_output_arguments(pack, ".aez files")
    _add_refine_argument(pack)

    unpack = actions.add_parser("decompress", help="decompress .aez files to PNG images")
    unpack.add_argument("--model", help="run folder of `train`, or a preset name (default: "
                        "the codec preset that made each file, named by its header)")
    unpack.add_argument("files", type=Path, nargs="+",
                        help=".aez files, or folders (their .aez files)")
    unpack.add_argument("--out", type=cli.folder, required=True, help="folder of the PNG files")
    cli.add_output_arguments(unpack, "PNG files")
    _add_postfilter_argument(unpack)

    evaluate = actions.add_parser(
        "evaluate", help="rate-distortion of models against JPEG, WebP and JPEG 2000"
    )
    evaluate.add_argument("--model", nargs="+", metavar="RUN",
                          help="one run folder (or preset) per rate point (default: every "
                          "codec preset, codec_0.0018 to codec_0.2)")
    evaluate.add_argument("--images", type=Path, required=True, help="folder of test images")
    evaluate.add_argument("--out", type=cli.folder, required=True, help="folder of the results")
    evaluate.add_argument("--overwrite", action="store_true", help="replace earlier results")
    evaluate.add_argument("--limit", "--max-images", dest="max_images", metavar="N",
                          type=cli.positive_int, help="the first N images only")
    evaluate.add_argument("--codecs", nargs="*", default=list(CODECS), choices=CODECS,
                          help="classical codecs to compare with (default: all; --codecs "
                               "alone: none, the learned codecs only)")
    _add_refine_argument(evaluate)
    _add_postfilter_argument(evaluate)
    cli.name_actions(actions)
    return parser


def _add_postfilter_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postfilter", default="auto", metavar="auto|none|MODEL",
        help="denoiser run on the decoded pixels: auto (default), the one the model's card "
             "names (a codec_postfilter* preset for the codec_* presets, none for a run you "
             "trained); none; or a post-filter's preset or run folder. The files are the "
             "same either way")


def _add_refine_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--refine", type=cli.non_negative_int, default=0, metavar="N",
        help="encode with N iterations of latent refinement (aezoo.refinement): with N=100, "
             "0.3-0.7 dB more at equal rate on Kodak, at 0.1-0.4 s an iteration for a "
             "768x512 image on 2 cores; files decode as any other (default: 0, none)")


# ------------------------------------------------------------------------ train


def train(args: argparse.Namespace) -> int:
    from aezoo.models import MODELS

    cli.resolve_model(args)
    if "lmbda" not in MODELS.signature(args.model).parameters:  # what compression models take
        raise ValueError(f"--model {args.model} is not a compression model.")
    if args.images is not None and args.out.resolve() == args.images.resolve():
        raise ValueError("--out must not be the image folder.")
    run = train_run(args, task="compress")
    if run is not None:
        history = json.loads((run.path / "history.json").read_text())
        psnr = -10 * math.log10(history["mse"][-1])
        how = ("the rate at noisy latents, the pixels from rounded ones"
               if run.info["options"]["model"].get("straight_through")
               else "with noise for rounding")
        print(f"Saved {run.path} (bpp {history['bpp'][-1]:.3f}, PSNR {psnr:.2f} dB on "
              f"training patches, {how})")
    return 0


# ----------------------------------------------------------- compress, decompress


def compress(args: argparse.Namespace) -> int:
    from aezoo import codec, data, runs

    files = cli.expand_folders(args.images, data.list_images)
    files, targets = cli.files_to_write(files, args.out, ".aez", args)
    if not files:
        return 0
    # every input is readable, and not too large for a file, before anything is written
    own_channels = [_probe(path) for path in files]
    if args.model is None:
        args.model = DEFAULT_CODEC
        print(f"Compressing with {DEFAULT_CODEC}, the default rate point (about 0.5 bits a "
              "pixel; --model codec_0.0018 to codec_0.2 for 0.17 to 1.8)", flush=True)
    packer = codec.Codec(runs.load_run(args.model, task="compress").model)
    images = cli.read_first(files, lambda path: data.read_image(
        path, channels=packer.channels, upright=True))
    args.out.mkdir(parents=True, exist_ok=True)
    notes = [cli.reading_notes(path, own, packer.channels, "the codec_* presets code colour")
             for path, own in zip(files, own_channels)]
    for i, (path, load, target, note) in enumerate(zip(files, images, targets, notes),
                                                    start=1):
        image = load()
        if args.refine:
            print(f"[{i}/{len(targets)}] {path.name}: refining ({args.refine} iterations)",
                  flush=True)
        started = time.perf_counter()
        label = f"[{i}/{len(targets)}] {path.name}"
        blob = packer.compress(image, refine=args.refine,
                               progress=cli.quarters(label, started, "refined"))
        seconds = time.perf_counter() - started
        runs.write_bytes(target, blob)
        bpp = 8 * len(blob) / (image.shape[0] * image.shape[1])
        print(f"[{i}/{len(targets)}] {path.name} -> {target} ({image.shape[1]}x"
              f"{image.shape[0]}, {len(blob)} bytes, {bpp:.3f} bpp, {seconds:.2f} s"
              f"{note})", flush=True)
    return 0


def _probe(path: Path) -> int:
    """The channels of an image file, from its header, once it is known to be a readable
    image that fits a .aez file."""
    from aezoo import codec, data

    height, width, channels = data.probe_image(path)
    codec.check_size(height, width, str(path))
    return channels


def decompress(args: argparse.Namespace) -> int:
    import numpy as np

    from aezoo import codec, data, denoise, runs

    files = cli.expand_folders(args.files, lambda folder: data.list_files(
        folder, (".aez",), ".aez files"), ".aez files")
    files, targets = cli.files_to_write(files, args.out, ".png", args)
    if not files:
        return 0
    # Each file's codec: --model, or the preset whose fingerprint the file's header carries.
    made = (dict.fromkeys(files, args.model) if args.model is not None
            else {path: codec.preset_of(path) for path in files})
    unpackers = {model: codec.open_codec(model, args.postfilter)
                 for model in dict.fromkeys(made.values())}
    for path in files:
        unpackers[made[path]].check_file(path)  # headers and checksums, before decoding

    number = {path: i for i, path in enumerate(files, 1)}  # (no two: output_paths checked)
    said = set()  # files said decoded: read_first decodes again those it could not keep

    def timed_read(path):
        started = time.perf_counter()
        # (the post-filter of a 24-megapixel photo takes 25 s: say how far it is)
        label = f"[{number[path]}/{len(files)}] {path.name}"
        image = unpackers[made[path]].read(path, progress=cli.quarters(label, started,
                                                                        "filtered"))
        seconds = time.perf_counter() - started
        if len(files) > 1 and path not in said:  # (all decode before any is written)
            said.add(path)
            print(f"{label}: decoded ({seconds:.2f} s)", flush=True)
        return image, seconds

    decoded = cli.read_first(files, timed_read)  # every file decodes before any is written
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (path, target, load) in enumerate(zip(files, targets, decoded), 1):
        image, seconds = load()
        # A grayscale image (R = G = B, as the codec gives back a gray one) as a gray PNG.
        gray = image.shape[-1] == 3 and bool(np.all(image == image[..., :1]))
        runs.write_bytes(target, denoise.png_bytes(image[..., :1] if gray else image))
        preset = "" if args.model is not None else f", {made[path]}"
        print(f"[{i}/{len(targets)}] {path.name} -> {target} ({image.shape[1]}x"
              f"{image.shape[0]}{preset}, {seconds:.2f} s)", flush=True)
    return 0


# --------------------------------------------------------------------- evaluate


def evaluate(args: argparse.Namespace) -> int:
    from aezoo import codec, data, rate_distortion, runs

    cli.check_outputs(args.out, ("results.json", "results.md", "rd.png"), args.overwrite)
    files = data.list_images(args.images)[: args.max_images]
    if args.model is None:  # the rate points the presets' cards were measured as
        from aezoo import presets

        args.model = [name for name, card in presets.PRESETS.items()
                      if card["check"]["kind"] == "compress"]
    for path in files:
        _probe(path)  # every image readable (one line if not) before models load
    labels = _labels(args.model)
    models = {}  # all load before the long part
    for source, label in zip(args.model, labels):
        models[label] = codec.open_codec(source, args.postfilter)
    channels = {packer.channels for packer in models.values()}
    if len(channels) > 1:
        raise ValueError("The models differ in channels (grayscale and RGB); evaluate them apart.")
    channels = channels.pop()
    images = [data.read_image(path, channels=channels) for path in files]
    refined = f", latents refined ({args.refine} iterations)" if args.refine else ""
    print(f"Evaluating on {cli.counted(len(images), 'image')} of {args.images}{refined}",
          flush=True)
    # A rate point takes a minute (24 Kodak images), refined ones many: say how far it is,
    # after every refined image, else every 10 s.
    image_progress = _images_done(time.perf_counter(), 0 if args.refine else 10)
    results = rate_distortion.evaluate(models, images, [p.name for p in files], args.codecs,
                                       progress=_print_point, refine=args.refine,
                                       image_progress=image_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = rate_distortion.markdown(results)
    with runs.together():  # (with --overwrite: never new tables beside an old plot)
        with runs.writing(args.out / "rd.png") as path:
            refined = f"; aezoo refined with {args.refine} iterations" if args.refine else ""
            rate_distortion.plot(
                results["curves"], path,
                title=f"{args.images.name} ({cli.counted(len(images), 'image')}{refined})")
        runs.write_text(args.out / "results.md", markdown)
        runs.write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")
    print(markdown)
    print(f"Wrote {args.out / 'results.json'}, results.md and rd.png")
    return 0


def _labels(sources: Sequence[str]) -> list[str]:
    """Each rate point's name in the results: its folder's name (or the preset's), or, where
    two share a name (a run and the preset it started from), the path as given."""
    # The same run however it is written (runs/r, runs/r/, ./runs/r), or the same preset.
    same = [str(Path(source).resolve()) if Path(source).exists() else str(source)
            for source in sources]
    repeated = [source for source, key in zip(sources, same) if same.count(key) > 1]
    if repeated:
        raise ValueError(f"--model {repeated[0]} is given twice.")
    names = [Path(source).name for source in sources]
    return [str(source) if names.count(name) > 1 else name
            for source, name in zip(sources, names)]


def _images_done(started: float, every: float):
    """`image_progress` for `rate_distortion.evaluate`: a line after an image once `every`
    seconds have passed since the last line (none after a point's last image: the point's
    own line follows)."""
    last = [started]

    def progress(label: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if (done < total or every == 0) and now - last[0] >= every:
            last[0] = now
            print(f"  aezoo {label}: {done}/{total} images ({now - started:.0f} s)",
                  flush=True)

    return progress


def _print_point(name: str, point: dict) -> None:
    ssim = "-" if point["ms_ssim"] is None else f"{point['ms_ssim']:.4f}"
    print(f"  {name} {point['setting']}: {point['bpp']:.3f} bpp, {point['psnr']:.2f} dB, "
          f"MS-SSIM {ssim}, encode {point['encode_s']:.3f} s, decode {point['decode_s']:.3f} s",
          flush=True)


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow()
    actions = {"train": train, "compress": compress, "decompress": decompress,
               "evaluate": evaluate}
    return actions[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
