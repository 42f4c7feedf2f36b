"""Train the codec presets' post-filters (`codec_postfilter`, `codec_postfilter_high` and
`codec_postfilter_0.004` / `0.01` / `0.025`).

The codec presets' synthesis transforms are small (N = 64); a U-Net run on their decoded
pixels removes part of what they leave (ringing, blur, colour bleeding).  It starts from
`denoise_rgb` (a blind denoiser, already +0.01-0.04 dB on decoded Kodak images as it is) and
learns the codecs' artefacts from CBSD432 photos coded by every codec preset:

    python benchmarks/postfilter.py prepare --out /work/postfilter_data    # about 5 min
    nice python benchmarks/postfilter.py train --data /work/postfilter_data \\
        --minutes 70 --out /work/runs/codec_postfilter
    python benchmarks/presets.py pack codec_postfilter /work/runs/codec_postfilter \\
        --card card.json --compare

then one filter for each group of rates, each fine-tuned from that one on its group's
decodings only (the low presets' filter stays `codec_postfilter`; the cards name them):

    nice python benchmarks/postfilter.py train --data /work/postfilter_data \\
        --codecs codec_0.025 codec_0.05 codec_0.1 --init codec_postfilter --minutes 55 \\
        --step-seconds 0.4 --learning-rate 5e-5 --warmup 100 --out /work/runs/pf_high
    nice python benchmarks/postfilter.py train --data /work/postfilter_data \\
        --codecs codec_0.0018 codec_0.004 codec_0.01 --init codec_postfilter --minutes 50 \\
        --step-seconds 0.4 --learning-rate 5e-5 --warmup 100 --out /work/runs/pf_low
    python benchmarks/presets.py pack codec_postfilter_high /work/runs/pf_high \\
        --card card.json --compare
    python benchmarks/presets.py pack codec_postfilter /work/runs/pf_low --then "..." \\
        --time "..." --compare

and last one filter for each preset within 0.25-1.0 bpp on Kodak (codec_0.004, 0.01 and
0.025), fine-tuned from its group's on that preset's decodings alone (24-56 minutes each;
the cards give each one's exact command; the other presets keep their group's filter, and
codec_0.05's own, +0.03 dB, was not kept):

    nice python benchmarks/postfilter.py train --data /work/postfilter_data \\
        --codecs codec_0.01 --init codec_postfilter --minutes 60 --step-seconds 0.4 \\
        --learning-rate 5e-5 --warmup 100 --out /work/runs/pf_mid
    python benchmarks/presets.py pack codec_postfilter_0.01 /work/runs/pf_mid \\
        --card card.json --compare

`prepare` compresses and decompresses every CBSD432 photo with each codec (one `.npy` of
decoded uint8 images per codec, and the photos).  `train` fine-tunes the filter on random
96x96 crops, each from a random photo coded by a random codec (crops on the 16-pixel grid
of the codecs' blocks, turned and mirrored by one of the 8 symmetries of the square), MSE,
Adam with a linear warm-up and a cosine decay over `--minutes`, in mixed bfloat16.  It holds
out 32 photos, and every `--report` steps prints the PSNR each codec gains on 16 of them.
The run folder (`run.json`, `weights.npz` in float32) is rewritten every 100 steps, and the
same command resumes it.  Kodak, the test set, is never seen.
"""

from __future__ import annotations

import argparse
import sys
import json
import math
import time
from pathlib import Path

import numpy as np

from aezoo.apps import cli
from offline import DATA

CODECS = ("codec_0.0018", "codec_0.004", "codec_0.01", "codec_0.025", "codec_0.05",
          "codec_0.1", "codec_0.2")
STEPS = 100  # between saves


def prepare(args: argparse.Namespace) -> None:
    import aezoo
    from aezoo import codec, data

    args.out.mkdir(parents=True, exist_ok=True)
    files = data.list_images(args.images)
    photos = [data.read_image(path, channels=3) for path in files]
    np.save(args.out / "photos.npy", np.array(photos, dtype=object), allow_pickle=True)
    for name in args.codecs:
        packer, started = codec.Codec(aezoo.from_preset(name)), time.perf_counter()
        decoded, bits = [], 0.0
        for photo in photos:
            blob = packer.compress(photo)
            bits += 8 * len(blob) / (photo.shape[0] * photo.shape[1])
            decoded.append(packer.decompress(blob))
        np.save(args.out / f"{name}.npy", np.array(decoded, dtype=object), allow_pickle=True)
        print(f"{name}: {bits / len(photos):.4f} bpp on {len(photos)} photos, "
              f"{time.perf_counter() - started:.0f} s", flush=True)


def train(args: argparse.Namespace) -> None:
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    from aezoo import __version__, codec, denoise, metrics, runs

    photos = list(np.load(args.data / "photos.npy", allow_pickle=True))
    decoded = [list(np.load(args.data / f"{name}.npy", allow_pickle=True))
               for name in args.codecs]
    order = np.random.default_rng(0).permutation(len(photos))
    held_out, kept = order[: args.holdout], order[args.holdout:]
    model = runs.open_model(args.init)
    state = args.out / "state.json"
    done = json.loads(state.read_text())["steps"] if state.is_file() else 0
    if done:
        with np.load(args.out / runs.WEIGHTS_FILE) as stored:
            for variable in model.weights:
                variable.assign(stored[variable.path].astype(variable.dtype))
    horizon = int(args.minutes * 60 / args.step_seconds)  # the cosine's length, in steps

    def batches():
        rng = np.random.default_rng([args.seed, done])
        size = args.patch
        while True:
            inputs, targets = [], []
            for _ in range(args.batch_size):
                i, k = kept[rng.integers(len(kept))], rng.integers(len(decoded))
                photo, coded = photos[i], decoded[k][i]
                top = 16 * rng.integers((photo.shape[0] - size) // 16 + 1)
                left = 16 * rng.integers((photo.shape[1] - size) // 16 + 1)
                pair = [a[top:top + size, left:left + size] for a in (coded, photo)]
                turn, mirror = rng.integers(4), rng.integers(2)
                pair = [np.rot90(a, turn)[:, ::-1] if mirror else np.rot90(a, turn)
                        for a in pair]
                inputs.append(pair[0])
                targets.append(pair[1])
            yield (np.stack(inputs).astype(np.float32) / 255,
                   np.stack(targets).astype(np.float32) / 255)

    spec = tf.TensorSpec((None, args.patch, args.patch, 3), tf.float32)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(spec, spec)).prefetch(4)

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32) + done
            warm = tf.minimum(1.0, (step + 1) / args.warmup)
            return args.learning_rate * warm * 0.5 * (
                1 + tf.cos(math.pi * tf.minimum(step / horizon, 1.0)))

    model.compile(optimizer=keras.optimizers.Adam(Schedule()), loss="mse", jit_compile=False)

    def gains():
        """PSNR gained by the filter on 16 held-out photos, per codec (dB)."""
        result = []
        for coded in decoded:
            gain = []
            for i in held_out[:16]:
                x, photo = coded[i].astype(np.float32) / 255, photos[i]
                output = np.asarray(model(x[None], training=False), np.float32)[0]
                gain.append(metrics.psnr(photo, denoise.to_8bit(output))
                            - metrics.psnr(photo, coded[i]))
            result.append(round(float(np.mean(gain)), 3))
        return result

    args.out.mkdir(parents=True, exist_ok=True)
    options = {key: str(value) if isinstance(value, Path) else value
               for key, value in vars(args).items() if key != "action"}
    info = {"task": "compress", "model": "denoising", "options": options,
            "application": {"role": codec.POSTFILTER, "channels": 3},
            "aezoo_version": __version__, "config": model.get_config()}
    print(f"step {done}: held-out gain (dB) {dict(zip(args.codecs, gains()))}", flush=True)
    started = time.perf_counter()
    while time.perf_counter() - started < args.minutes * 60 and done < horizon:
        history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=0)
        done += STEPS
        arrays = {v.path: np.asarray(v, np.float32) for v in model.weights}
        with runs.writing(args.out / runs.WEIGHTS_FILE) as path, open(path, "wb") as file:
            np.savez(file, **arrays)
        runs.write_text(args.out / runs.RUN_FILE, json.dumps(info, indent=2) + "\n")
        runs.write_text(state, json.dumps({"steps": done}) + "\n")
        report = (f", held-out gain (dB) {dict(zip(args.codecs, gains()))}"
                  if done % args.report == 0 else "")
        print(f"step {done}: loss {history.history['loss'][-1]:.4e}, "
              f"{time.perf_counter() - started:.0f} s{report}", flush=True)


@cli.guarded("postfilter.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    first = actions.add_parser("prepare", help="decode CBSD432 through the codecs")
    first.add_argument("--images", type=Path, default=DATA / "raw" / "cbsd432")
    first.add_argument("--codecs", nargs="+", default=list(CODECS))
    first.add_argument("--out", type=Path, required=True)
    second = actions.add_parser("train", help="fine-tune the post-filter")
    second.add_argument("--data", type=Path, required=True, help="the folder of `prepare`")
    second.add_argument("--codecs", nargs="+", default=list(CODECS))
    second.add_argument("--init", default="denoise_rgb")
    second.add_argument("--minutes", type=cli.positive_float, default=70)
    second.add_argument("--step-seconds", type=cli.positive_float, default=0.33,
                        help="expected seconds a step (sets the cosine's length)")
    second.add_argument("--learning-rate", type=cli.positive_float, default=1e-4)
    second.add_argument("--warmup", type=cli.non_negative_int, default=200)
    second.add_argument("--batch-size", type=cli.positive_int, default=16)
    second.add_argument("--patch", type=cli.positive_int, default=96)
    second.add_argument("--holdout", type=cli.non_negative_int, default=32)
    second.add_argument("--report", type=cli.positive_int, default=500)
    second.add_argument("--seed", type=int, default=0)
    second.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    {"prepare": prepare, "train": train}[args.action](args)


if __name__ == "__main__":
    sys.exit(main())
