"""Inference speed: the exported SavedModel's signatures against `model.predict` and calling
the model, across batch sizes; and the compression codec's encode/decode time per image.

    python benchmarks/inference.py                               # default conv, 28x28x1
    python benchmarks/inference.py --model runs/mnist_conv       # a run, preset or .keras
    python benchmarks/inference.py --codec runs/compress_0.01 --images ../shared/data/raw/kodak
    python benchmarks/inference.py --json results/inference.json
    python benchmarks/inference.py --repeats 1 --batches 1 4     # a smoke test

Part "model": for batch sizes 1, 32 and 256 (--batches), the median time per batch (and
images per second) of
  * `serving_default` of the SavedModel written by `aezoo.export` and loaded with
    `tf.saved_model.load` (what TF Serving runs, without its network layer),
  * its `encode` signature, then `decode` on what `encode` returned,
  * `model.predict(x, batch_size=len(x))` (Keras's loop: a tf.data adapter, callbacks),
  * `model(x, training=False)` (eager call of the functional model),
  * `model.predict_on_batch(x)` (Keras's compiled predict function, no loop).
The weights do not change the time, so without --model an untrained default `conv` model is
timed.

Part "codec" (with --codec RUN: a run folder of `aezoo compress train`, or a compression
preset): `aezoo.codec.Codec.compress` and `decompress` of each image of --images (full
size), the median seconds per image and the bits per pixel.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from offline import write_json

from aezoo.apps import cli

BATCHES = (1, 32, 256)


def timed(function, repeats: int, min_seconds: float = 0.5) -> float:
    """Median seconds of one call of `function`, after two warm-up calls; at least
    `repeats` calls and at least `min_seconds` of them."""
    function()
    function()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - began < min_seconds:
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def part_model(model, repeats: int, batches=BATCHES) -> list[dict]:
    import tensorflow as tf

    from aezoo import export

    with tempfile.TemporaryDirectory() as tmp:
        path = export.export_saved_model(model, Path(tmp) / "export")
        loaded = tf.saved_model.load(str(path))
        serve = loaded.signatures["serving_default"]
        encode, decode = loaded.signatures["encode"], loaded.signatures["decode"]
        rows = []
        shape = tuple(d if d is not None else 64 for d in model.input_shape[1:])
        rng = np.random.default_rng(0)
        for batch in batches:
            x = rng.random((batch, *shape), dtype=np.float32)
            tx = tf.constant(x)
            methods = {
                "SavedModel serving_default": lambda: serve(x=tx),
                "SavedModel encode + decode": lambda: decode(**encode(x=tx)),
                "model.predict": lambda: model.predict(x, batch_size=batch, verbose=0),
                "model(x) (eager)": lambda: model(tx, training=False),
                "model.predict_on_batch": lambda: model.predict_on_batch(x),
            }
            for name, function in methods.items():
                seconds = timed(function, repeats)
                rows.append({"method": name, "batch": batch, "ms_per_batch": 1e3 * seconds,
                             "images_per_s": batch / seconds})
                print(f"  batch {batch:3d}  {name:28s} {1e3 * seconds:9.2f} ms", flush=True)
    return rows


def part_codec(run: str, images_dir: Path, limit: int | None) -> dict:
    from aezoo import codec, data, runs

    packer = codec.Codec(runs.load_run(run, task="compress").model)
    files = data.list_images(images_dir)[:limit]
    encode_s, decode_s, bpp = [], [], []
    packer.decompress(packer.compress(data.read_image(files[0], channels=packer.channels)))
    for path in files:
        image = data.read_image(path, channels=packer.channels)
        start = time.perf_counter()
        blob = packer.compress(image)
        middle = time.perf_counter()
        decoded = packer.decompress(blob)
        end = time.perf_counter()
        if decoded.shape != image.shape:
            raise AssertionError(f"{path}: decoded {decoded.shape}, expected {image.shape}")
        encode_s.append(middle - start)
        decode_s.append(end - middle)
        bpp.append(8 * len(blob) / (image.shape[0] * image.shape[1]))
        print(f"  {path.name}: {image.shape[1]}x{image.shape[0]}, encode "
              f"{encode_s[-1]:.3f} s, decode {decode_s[-1]:.3f} s, {bpp[-1]:.3f} bpp", flush=True)
    return {
        "run": str(run),
        "images": len(files),
        "encode_s_median": statistics.median(encode_s),
        "encode_s_max": max(encode_s),
        "decode_s_median": statistics.median(decode_s),
        "decode_s_max": max(decode_s),
        "bpp_mean": float(np.mean(bpp)),
    }


@cli.guarded("inference.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run folder, preset or .keras file (default: an "
                        "untrained conv)")
    parser.add_argument("--input-shape", type=cli.positive_int, nargs="+", default=[28, 28, 1])
    parser.add_argument("--batches", type=cli.positive_int, nargs="+", default=list(BATCHES))
    parser.add_argument("--repeats", type=cli.positive_int, default=20)
    parser.add_argument("--codec", metavar="RUN", help="run folder of `aezoo compress train`, "
                        "or a compression preset")
    parser.add_argument("--images", type=Path, help="images for --codec (e.g. Kodak)")
    parser.add_argument("--limit", type=cli.positive_int, help="the first N images only")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.codec is not None and args.images is None:
        parser.error("--codec needs --images")
    cli.start_tensorflow()
    import keras
    import tensorflow as tf

    from aezoo import MODELS, runs

    if args.model is not None:
        model = runs.open_model(args.model)
    else:
        model = MODELS["conv"](input_shape=tuple(args.input_shape), latent_dim=32)
    results: dict = {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "cpus": os.cpu_count(), "model": str(args.model or "conv (untrained)"),
                     "input_shape": list(model.input_shape[1:])}
    print(f"Model {results['model']}, input {tuple(model.input_shape[1:])}", flush=True)
    rows = part_model(model, args.repeats, args.batches)
    results["model_rows"] = rows
    print("\n| method | " + " | ".join(f"batch {b}: ms (img/s)" for b in args.batches) + " |")
    print("|---|" + "---|" * len(args.batches))
    for method in dict.fromkeys(row["method"] for row in rows):
        cells = [f"{r['ms_per_batch']:.2f} ({r['images_per_s']:.0f})"
                 for b in args.batches for r in rows if r["method"] == method and r["batch"] == b]
        print(f"| {method} | " + " | ".join(cells) + " |")

    if args.codec is not None:
        print(f"\nCodec {args.codec} on {args.images}", flush=True)
        codec_result = part_codec(args.codec, args.images, args.limit)
        results["codec"] = codec_result
        print("\n| codec | images | bpp | encode s (median, max) | decode s (median, max) |")
        print("|---|---|---|---|---|")
        print(f"| {args.codec} | {codec_result['images']} | {codec_result['bpp_mean']:.3f} | "
              f"{codec_result['encode_s_median']:.3f}, {codec_result['encode_s_max']:.3f} | "
              f"{codec_result['decode_s_median']:.3f}, {codec_result['decode_s_max']:.3f} |")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
