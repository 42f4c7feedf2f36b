"""The commands at the scale a user brings: a large photo, a long CSV, a long training.

    python benchmarks/scale.py                        # 4000x3000 photo, 41 x ECG5000 rows
    python benchmarks/scale.py --size 6000 4000 --repeat 41 --out scale.json

Each command runs as its own process (`python -m aezoo ...`), as a user runs it, and is
measured from outside: wall seconds and peak resident memory (the process's `ru_maxrss`),
and the bytes it leaves on disk.  The photo is Kodak's images tiled to `--size` (the
denoiser and codecs take them only as inputs); the CSV is `ecg.csv` repeated `--repeat`
times (41: 204,918 rows, 323 MB), scored with the `ecg5000` preset.  The training is
`aezoo denoise train --init denoise_gray` for `--epochs` epochs of one step, with every
checkpoint kept and with `--keep-checkpoints 2`: the bytes of its checkpoints.

Measured with aezoo 0.6.4 on the 2 shared CPU cores of the review machine (another job
running beside it), 4000x3000 / 6000x4000: `denoise denoise` 47 / 89 s, 2.7 / 3.3 GB;
`compress compress` 13 / 30 s, 2.4 / 3.8 GB; `compress decompress` 72 / 132 s, 2.8 / 3.3
GB.  `anomalies score` of 204,918 rows: 3.2 GB before `read_csv` read in blocks, 1.0 GB
after.  Checkpoints: 22.4 MB an epoch for `denoise_gray`; 12 epochs, 307 MB in the run
folder, 83 MB with `--keep-checkpoints 2`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offline import DATA, write_json

from aezoo.apps import cli


def measure(argv: list[str], cwd: Path) -> dict:
    """Seconds and peak memory of one `python -m aezoo ARGV` process, which must succeed."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:  # (a pipe could fill while we wait)
        process = subprocess.Popen([sys.executable, "-m", "aezoo", *argv], cwd=cwd,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = code = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        error = stderr.read().decode(errors="replace").strip().splitlines()
    if code != 0:
        raise ValueError(f"aezoo {' '.join(argv)} failed ({code}): "
                         f"{error[-1] if error else ''}")
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(usage.ru_maxrss / 2**20, 2)}


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def tiled_photo(width: int, height: int, path: Path) -> None:
    from PIL import Image

    kodak = [Image.open(p).convert("RGB") for p in sorted((DATA / "raw" / "kodak").glob("*.png"))]
    if not kodak:
        raise FileNotFoundError(f"No Kodak images in {DATA / 'raw' / 'kodak'}")
    photo, i = Image.new("RGB", (width, height)), 0
    for y in range(0, height, 512):
        for x in range(0, width, 768):
            tile = kodak[i % len(kodak)]
            photo.paste(tile if tile.size == (768, 512) else tile.rotate(90, expand=True), (x, y))
            i += 1
    photo.save(path)


@cli.guarded("scale.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=cli.positive_int, nargs=2, default=(4000, 3000),
                        metavar=("W", "H"), help="the photo's size (default 4000 3000)")
    parser.add_argument("--repeat", type=cli.positive_int, default=41,
                        help="copies of ecg.csv's rows in the CSV (default 41: 204,918 rows)")
    parser.add_argument("--epochs", type=cli.positive_int, default=12,
                        help="epochs of the training (default 12)")
    parser.add_argument("--out", type=Path, help="write the figures to this JSON file too")
    args = parser.parse_args(argv)
    ecg = DATA / "raw" / "ecg5000" / "ecg.csv"
    if not ecg.is_file():
        raise FileNotFoundError(f"No {ecg}")
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        width, height = args.size
        tiled_photo(width, height, work / "photo.png")
        name = f"{width}x{height}"
        for key, command in (
            (f"denoise denoise {name}", ["denoise", "denoise", "photo.png", "--out", "clean"]),
            (f"compress compress {name}", ["compress", "compress", "photo.png", "--out", "aez"]),
            (f"compress decompress {name}", ["compress", "decompress", "aez/photo.aez", "--out",
                                              "png"]),
        ):
            results[key] = measure(command, work)
            print(key, results[key], flush=True)
        rows = ecg.read_bytes()
        with open(work / "long.csv", "wb") as f:
            for _ in range(args.repeat):
                f.write(rows)
        count = args.repeat * rows.count(b"\n")
        key = f"anomalies score {count} rows"
        results[key] = measure(["anomalies", "score", "--model", "ecg5000", "--csv", "long.csv",
                                "--out", "scores"], work)
        print(key, results[key], flush=True)
        train = ["denoise", "train", "--images", str(DATA / "raw" / "train400"), "--init",
                 "denoise_gray", "--noise", "gaussian:0-55", "--epochs", str(args.epochs),
                 "--steps-per-epoch", "1", "--batch-size", "4"]
        for key, extra in (("all", []), ("--keep-checkpoints 2", ["--keep-checkpoints", "2"])):
            run = f"run_{len(extra)}"
            figures = measure([*train, *extra, "--out", run], work)
            figures["checkpoint_bytes"] = disk_bytes(work / run / "checkpoints")
            figures["run_bytes"] = disk_bytes(work / run)
            results[f"denoise train {args.epochs} epochs, checkpoints {key}"] = figures
            print(f"denoise train, checkpoints {key}", figures, flush=True)
    print("\n| command | seconds | peak RSS (GB) | checkpoints on disk |")
    print("|---|---|---|---|")
    for key, figures in results.items():
        disk = figures.get("checkpoint_bytes")
        print(f"| {key} | {figures['seconds']} | {figures['peak_rss_gb']} | "
              f"{'' if disk is None else f'{disk / 1e6:.1f} MB'} |")
    if args.out:
        write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
