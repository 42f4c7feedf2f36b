"""Kodak benchmark of the learned codec (one run folder per rate point) against JPEG 4:2:0,
WebP and JPEG 2000, and its speed on one full-size Kodak image.

    python benchmarks/compression_kodak.py --runs runs/compress_0.005 runs/compress_0.01 \\
        runs/compress_0.02 runs/compress_0.04 --out runs/rd_kodak
    python benchmarks/compression_kodak.py --runs RUN1 RUN2 --max-images 2 --codecs jpeg \\
        --repeats 1 --out /tmp/rd                                  # a smoke test

Measures the runs (trained by `aezoo compress train`; presets too) and the classical codecs
on the 24 Kodak images with `aezoo.rate_distortion.evaluate`, as
`aezoo compress evaluate --model RUN... --images KODAK --out OUT` does (results.json,
results.md and rd.png in --out), times `Codec.compress` and `Codec.decompress` of kodim01
(768x512; the first call, then the median of --repeats), and prints the targets: BD-rate
against JPEG over 0.25-1.0 bpp (below 0), PSNR at 0.25 / 0.5 / 1.0 bpp next to the
classical codecs and the published factorized-prior model, and encode/decode under 2 s.
The training time columns come from runs of aezoo 0.1, whose history recorded it ("-"
otherwise).  Writes --out/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from offline import DATA

from aezoo.apps import cli

CODECS = ("jpeg", "webp", "jpeg2000")
# Ballé et al. 2018 factorized prior, fully trained (tensorflow-compression / CompressAI
# bmshj2018-factorized), PSNR on Kodak at 0.25 / 0.5 / 1.0 bpp, as quoted in issue 6.
PUBLISHED = {"0.25": 29.2, "0.5": 31.9, "1.0": 35.5}


def progress(name: str, point: dict) -> None:
    print(f"  {name} {Path(str(point['setting'])).name}: {point['bpp']:.3f} bpp, "
          f"{point['psnr']:.2f} dB", flush=True)


def training_time(run) -> dict:
    """Epochs and hours of a run's training (None each for a preset, which keeps no history:
    its card says how it was trained)."""
    if not (run.path / "history.json").is_file():
        return {"epochs": None, "wall_hours": None, "cpu_hours": None}
    history = json.loads((run.path / "history.json").read_text())
    hours = {key: history[f"{key}_seconds"][0] / 3600 if f"{key}_seconds" in history else None
             for key in ("wall", "cpu")}
    return {"epochs": len(history["loss"]), "wall_hours": hours["wall"],
            "cpu_hours": hours["cpu"]}


@cli.guarded("compression_kodak.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True,
                        help="one run folder (or preset) per rate point")
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "kodak")
    parser.add_argument("--max-images", type=cli.positive_int, help="the first N images only")
    parser.add_argument("--codecs", nargs="*", choices=CODECS, default=list(CODECS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=cli.positive_int, default=5)
    args = parser.parse_args(argv)
    cli.start_tensorflow()
    from aezoo import codec, data, rate_distortion, runs

    opened = {Path(source).name: runs.load_run(source, task="compress") for source in args.runs}
    models = {name: run.model for name, run in opened.items()}
    channels = {int(model.encoder.input_shape[-1]) for model in models.values()}
    if len(channels) > 1:
        raise ValueError("The runs differ in channels (grayscale and RGB); measure them apart.")
    channels = channels.pop()
    files = data.list_images(args.images)[: args.max_images]
    images = [data.read_image(path, channels=channels) for path in files]
    print(f"Evaluating on {len(images)} images of {args.images}", flush=True)
    results = rate_distortion.evaluate(models, images, [p.name for p in files], args.codecs,
                                       progress=progress)
    args.out.mkdir(parents=True, exist_ok=True)
    with runs.writing(args.out / "rd.png") as path:
        rate_distortion.plot(results["curves"], path,
                             title=f"{args.images.name} ({len(images)} images)")
    runs.write_text(args.out / "results.md", rate_distortion.markdown(results))
    runs.write_text(args.out / "results.json", json.dumps(results, indent=2) + "\n")

    timings = {}
    for name, model in models.items():
        packer = codec.Codec(model)
        encode, decode = [], []
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            blob = packer.compress(images[0])
            encode.append(time.perf_counter() - started)
            started = time.perf_counter()
            packer.decompress(blob)
            decode.append(time.perf_counter() - started)
        timings[name] = {
            "encode_first_s": encode[0], "encode_median_s": statistics.median(encode[1:]),
            "decode_first_s": decode[0], "decode_median_s": statistics.median(decode[1:]),
        }
    training = {name: training_time(run) for name, run in opened.items()}

    at = results["psnr_at_bpp"]
    bd = results["bd_rate"]

    def cell(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    print(f"\n| PSNR (dB) on {args.images.name} | 0.25 bpp | 0.5 bpp | 1.0 bpp |")
    print("|---|---|---|---|")
    for name in ("aezoo", *args.codecs):
        print(f"| {name} | " + " | ".join(cell(at[name][r]) for r in PUBLISHED) + " |")
    published = " | ".join(cell(v) for v in PUBLISHED.values())
    print(f"| published factorized prior (Kodak) | {published} |")
    print("\n| BD-rate of aezoo (PSNR) | all shared rates | 0.25-1.0 bpp of both |")
    print("|---|---|---|")
    for name, values in bd.items():
        print(f"| vs {name} | {cell(values['psnr_all'], 1)} % | "
              f"{cell(values['psnr_0.25-1.0bpp'], 1)} % |")
    print(f"\n| run | epochs | training wall h | training CPU h | encode {files[0].name} s "
          "(first, median) | decode s (first, median) |")
    print("|---|---|---|---|---|---|")
    for name, t in timings.items():
        tr = training[name]
        epochs = "-" if tr["epochs"] is None else tr["epochs"]
        print(f"| {name} | {epochs} | {cell(tr['wall_hours'])} | {cell(tr['cpu_hours'])} "
              f"| {t['encode_first_s']:.2f}, {t['encode_median_s']:.2f} | "
              f"{t['decode_first_s']:.2f}, {t['decode_median_s']:.2f} |")
    target = bd["jpeg"]["psnr_0.25-1.0bpp"] if "jpeg" in bd else None
    fast = all(max(t["encode_median_s"], t["decode_median_s"]) < 2 for t in timings.values())
    print(f"\nTarget BD-rate vs JPEG over 0.25-1.0 bpp < 0: "
          f"{'met' if target is not None and target < 0 else 'NOT met'} ({cell(target, 1)} %)")
    print(f"Target encode and decode of one image < 2 s: {'met' if fast else 'NOT met'}")
    runs.write_text(args.out / "benchmark.json", json.dumps(
        {"psnr_at_bpp": at, "published": PUBLISHED, "bd_rate": bd, "timings": timings,
         "training": training}, indent=2) + "\n")
    print(f"Wrote results.json, results.md, rd.png and benchmark.json in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
