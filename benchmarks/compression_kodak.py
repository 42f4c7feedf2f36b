"""Kodak benchmark of the learned codec (one run folder per rate point) against JPEG 4:2:0,
WebP and JPEG 2000, and its speed on one full-size Kodak image.

    python benchmarks/compression_kodak.py --runs runs/compress_0.005 runs/compress_0.01 \\
        runs/compress_0.02 runs/compress_0.04 --out runs/rd_kodak

Runs `applications/compress.py evaluate` on the 24 Kodak images (results.json, results.md
and rd.png in --out), times `Codec.compress` and `Codec.decompress` of kodim01 (768x512;
the first call, then the median of 5), and prints the targets: BD-rate against JPEG over
0.25-1.0 bpp (below 0), PSNR at 0.25 / 0.5 / 1.0 bpp next to the classical codecs and the
published factorized-prior model, and encode/decode under 2 s.  Writes --out/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from offline import DATA  # noqa: E402  (this folder's offline.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "applications"))

import compress  # noqa: E402  (imports aezoo.cli first: TensorFlow starts quietly)

from aezoo import codec, data  # noqa: E402

# Ballé et al. 2018 factorized prior, fully trained (tensorflow-compression / CompressAI
# bmshj2018-factorized), PSNR on Kodak at 0.25 / 0.5 / 1.0 bpp, as quoted in issue 6.
PUBLISHED = {"0.25": 29.2, "0.5": 31.9, "1.0": 35.5}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--images", type=Path, default=DATA / "raw" / "kodak")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    status = compress.main(["evaluate", "--model", *map(str, args.runs),
                            "--images", str(args.images), "--out", str(args.out)])
    if status:
        return status
    results = json.loads((args.out / "results.json").read_text())

    image = data.read_image(data.list_images(args.images)[0])
    timings = {}
    for run in args.runs:
        packer = codec.Codec(codec.load_model(run))
        encode, decode = [], []
        for _ in range(args.repeats + 1):
            started = time.perf_counter()
            blob = packer.compress(image)
            encode.append(time.perf_counter() - started)
            started = time.perf_counter()
            packer.decompress(blob)
            decode.append(time.perf_counter() - started)
        timings[run.name] = {
            "encode_first_s": encode[0], "encode_median_s": statistics.median(encode[1:]),
            "decode_first_s": decode[0], "decode_median_s": statistics.median(decode[1:]),
        }

    training = {}
    for run in args.runs:
        history = json.loads((run / "history.json").read_text())
        training[run.name] = {
            "epochs": len(history["loss"]),
            "wall_hours": history.get("wall_seconds", [0])[0] / 3600,
            "cpu_hours": history.get("cpu_seconds", [0])[0] / 3600,
        }

    at = results["psnr_at_bpp"]
    bd = results["bd_rate"]

    def cell(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    print("\n| PSNR (dB) on Kodak | 0.25 bpp | 0.5 bpp | 1.0 bpp |")
    print("|---|---|---|---|")
    for name in ("aezoo", "jpeg", "webp", "jpeg2000"):
        print(f"| {name} | " + " | ".join(cell(at[name][r]) for r in PUBLISHED) + " |")
    published = " | ".join(cell(v) for v in PUBLISHED.values())
    print(f"| published factorized prior | {published} |")
    print("\n| BD-rate of aezoo (PSNR) | all shared rates | 0.25-1.0 bpp of the anchor |")
    print("|---|---|---|")
    for name, values in bd.items():
        print(f"| vs {name} | {cell(values['psnr_all'], 1)} % | "
              f"{cell(values['psnr_0.25-1.0bpp'], 1)} % |")
    print("\n| run | epochs | training wall h | training CPU h | encode kodim01 s (first, median) "
          "| decode s (first, median) |")
    print("|---|---|---|---|---|---|")
    for name, t in timings.items():
        tr = training[name]
        print(f"| {name} | {tr['epochs']} | {tr['wall_hours']:.2f} | {tr['cpu_hours']:.2f} | "
              f"{t['encode_first_s']:.2f}, {t['encode_median_s']:.2f} | "
              f"{t['decode_first_s']:.2f}, {t['decode_median_s']:.2f} |")
    target = bd["jpeg"]["psnr_0.25-1.0bpp"] if "jpeg" in bd else None
    fast = all(max(t["encode_median_s"], t["decode_median_s"]) < 2 for t in timings.values())
    print(f"\nTarget BD-rate vs JPEG over 0.25-1.0 bpp < 0: "
          f"{'met' if target is not None and target < 0 else 'NOT met'} ({cell(target, 1)} %)")
    print(f"Target encode and decode of one Kodak image < 2 s: {'met' if fast else 'NOT met'}")
    (args.out / "benchmark.json").write_text(json.dumps(
        {"psnr_at_bpp": at, "published": PUBLISHED, "bd_rate": bd, "timings": timings,
         "training": training}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
