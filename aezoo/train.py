"""Train any model of the zoo on your data.

One device (or all GPUs of this machine, with --strategy auto):

    python -m aezoo.train --model conv --dataset mnist --latent-dim 32 --epochs 10 \\
        --strategy auto --out runs/mnist_conv

A folder of images cut into 64x64 patches, or a NumPy array file:

    python -m aezoo.train --model denoising --images photos/ --patch 64 --noise gaussian:25 \\
        --out runs/photos
    python -m aezoo.train --model dense --arrays x.npy --output-activation linear --out runs/x

Data parallelism on a machine without GPUs (to try it: the replicas share the same cores):

    python -m aezoo.train --model conv --dataset mnist --strategy mirrored --cpu-devices 2 \\
        --out runs/mnist_mirrored

Several machines: the same command on each, with TF_CONFIG naming the cluster and this task:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python -m aezoo.train --model conv --dataset mnist --strategy multiworker --out runs/mw

Writes OUT/model.keras, OUT/history.json, OUT/loss.png and OUT/reconstructions.png, plus a
checkpoint per epoch in OUT/checkpoints/.  If the run is killed, the same command continues
from the last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from aezoo import data, noise, plots, training  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="python -m aezoo.train",
        description="Train an aezoo model under a tf.distribute strategy.",
    )
    add_data_arguments(parser)
    cli.add_model_arguments(parser, default_model="conv")
    add_training_arguments(parser)
    # Only here, not in add_training_arguments: it must act before the strategy is made.
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=1,
        metavar="N",
        help="split the CPU into N logical devices, so that --strategy mirrored has N "
        "replicas without GPUs (to try data-parallel training; not faster)",
    )
    return parser.parse_args(argv)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--dataset | --images | --arrays and their options (shared with the applications)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    source.add_argument("--images", type=Path, help="folder of PNG/JPEG images")
    source.add_argument("--arrays", type=Path, help=".npy or .npz file of examples (N, ...)")
    group = parser.add_argument_group("data options")
    group.add_argument("--split", default="train", help="tfds split to train on")
    group.add_argument(
        "--val-split", default="auto", help="tfds split to validate on ('auto': test if any; 'none')"
    )
    group.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    group.add_argument("--key", help="array name in an .npz file")
    group.add_argument("--channels", type=int, choices=(1, 3), help="images: 1 gray, 3 RGB")
    group.add_argument("--patch", type=int, help="images: random square patches of this side")
    group.add_argument("--patches-per-image", type=int, default=1, metavar="N")
    group.add_argument("--augment", action="store_true",
                       help="images with --patch: random rotations and mirror images of patches")
    group.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="images: resize")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training options")
    group.add_argument("--out", type=Path, required=True, help="output folder of the run")
    group.add_argument("--epochs", type=int, default=10)
    group.add_argument("--batch-size", type=int, default=128, help="global batch size")
    group.add_argument("--learning-rate", type=float, default=1e-3)
    group.add_argument(
        "--lr-schedule", default="constant", choices=("constant", "cosine"),
        help="cosine: decay the learning rate to 1%% of --learning-rate over the epochs",
    )
    group.add_argument(
        "--time-limit", type=float, metavar="MINUTES",
        help="stop after the first epoch that ends past this many minutes of training",
    )
    group.add_argument("--loss", default="mse", choices=("mse", "bce"))
    group.add_argument("--noise", help="train a denoiser: gaussian:SIGMA (0-255), salt_pepper:P, "
                       "poisson:PEAK or mask:P")
    group.add_argument(
        "--strategy",
        default="auto",
        choices=training.STRATEGIES,
        help="auto: all GPUs of this machine, else the CPU; multiworker: the cluster in TF_CONFIG",
    )
    group.add_argument("--mixed-precision", default="off", choices=training.MIXED_PRECISION)
    group.add_argument("--jit-compile", default="auto", choices=("auto", "on", "off"))
    group.add_argument("--steps-per-epoch", type=int)
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--log-dir", type=Path, help="TensorBoard log folder")


def training_options(args: argparse.Namespace) -> dict:
    """`training.train`'s keyword arguments from the options of `add_training_arguments`.

    Raises:
        ValueError: for fewer than one epoch or example per batch, or a bad noise spec.
    """
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    return dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        out_dir=args.out,
        loss=args.loss,
        learning_rate=args.learning_rate,
        noise=noise.parse_noise(args.noise) if args.noise else None,
        mixed_precision=args.mixed_precision,
        jit_compile={"on": True, "off": False}.get(args.jit_compile, "auto"),
        seed=args.seed,
        log_dir=args.log_dir,
        steps_per_epoch=args.steps_per_epoch,
        verbose=1 if sys.stdout.isatty() else 2,
    )


def load_data(args: argparse.Namespace):
    """(training examples, validation examples or None) for the data options."""
    if args.dataset:
        train = data.from_tfds(args.dataset, args.split, data_dir=args.data_dir)
        val_split = args.val_split
        if val_split == "auto":
            val_split = "test" if args.split != "test" and _has_split(args, "test") else "none"
        val = None if val_split == "none" else data.from_tfds(args.dataset, val_split, data_dir=args.data_dir)
        return train, val
    if args.images:
        images = data.from_directory(
            args.images,
            channels=args.channels,
            patch_size=args.patch,
            patches_per_image=args.patches_per_image,
            augment=args.augment,
            image_size=tuple(args.image_size) if args.image_size else None,
            seed=args.seed,
        )
        return images, None
    # The array itself, not a dataset of its rows: `training.train` batches an array by index
    # and gathers a batch at a time, which is faster (see `aezoo.data.pipeline`).
    return data.load_array(args.arrays, key=args.key), None


def first_examples(examples: tf.data.Dataset | np.ndarray, count: int) -> np.ndarray:
    """Up to `count` examples, as an array, from what `run` returns (for sample plots)."""
    if isinstance(examples, np.ndarray):
        return examples[:count]
    return np.stack([np.asarray(e) for e in examples.take(count)])


def _has_split(args: argparse.Namespace, split: str) -> bool:
    import tensorflow_datasets as tfds

    try:
        return split in tfds.builder(args.dataset, data_dir=args.data_dir).info.splits
    except Exception:  # an unknown dataset is reported by from_tfds with a clear message
        return False


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model, history, examples = run(args)
    if model is None:  # a worker other than the chief: it writes nothing
        return 0
    x = first_examples(examples, 8)
    # From the saved file, outside the strategy: predicting with `model` under
    # MultiWorkerMirroredStrategy would wait for the other workers, which have finished.
    saved = keras.models.load_model(args.out / "model.keras")
    plots.plot_reconstructions(saved, x, args.out / "reconstructions.png", title=args.model)
    summary = ", ".join(f"{k} {v[-1]:.5f}" for k, v in history.items() if k.endswith("loss"))
    print(f"Saved {args.out / 'model.keras'} ({summary})")
    return 0


def run(args: argparse.Namespace, callbacks: Sequence[keras.callbacks.Callback] = ()):
    """Trains as the parsed options say; writes OUT/model.keras, history.json and loss.png.

    The applications call it with their own parsers built from the same argument groups.

    Returns:
        (model, history, examples): the trained model (None on a worker that is not the
        chief, which writes nothing), its history, and the validation examples (the
        training examples when there are none) for sample plots.
    """
    cpu_devices = getattr(args, "cpu_devices", 1)  # only `python -m aezoo.train` has it
    if args.patches_per_image < 1 or cpu_devices < 1:
        name = "--patches-per-image" if args.patches_per_image < 1 else "--cpu-devices"
        raise ValueError(f"{name} must be at least 1.")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError("--time-limit must be a positive number of minutes.")
    if args.time_limit is not None and args.strategy == "multiworker":
        # Each worker would read its own clock and stop after a different epoch.
        raise ValueError("--time-limit cannot be used with --strategy multiworker.")
    kwargs = cli.model_kwargs(args)
    options = training_options(args)
    training.split_cpu(cpu_devices)  # before TensorFlow starts
    if args.strategy == "multiworker":
        task = training.check_tf_config(os.environ.get("TF_CONFIG"))["task"]
        # Creating the strategy waits until every worker of TF_CONFIG has started.
        print(f"Joining the cluster of TF_CONFIG as {task['type']} {task['index']}...", flush=True)
    # The strategy comes before any dataset: multi-worker collectives must be set up first.
    strategy = training.resolve_strategy(args.strategy)
    print(training.describe_strategy(strategy), flush=True)
    train_examples, val_examples = load_data(args)
    if (training.run_dir(args.out, strategy) / "backup").exists():
        print(f"Resuming the interrupted run in {args.out}", flush=True)

    schedule = Schedule(args.learning_rate, args.lr_schedule, args.epochs, args.time_limit)
    model, history = training.train(
        args.model,
        train_examples,
        model_kwargs=kwargs,
        validation_data=val_examples,
        strategy=strategy,
        callbacks=[schedule, *callbacks],
        **options,
    )
    if not training.is_chief(strategy):
        return None, history, None
    (args.out / "history.json").write_text(json.dumps(history, indent=2))
    plots.plot_history(history, args.out / "loss.png", title=f"{args.model} on {_source(args)}")
    return model, history, val_examples if val_examples is not None else train_examples


class Schedule(keras.callbacks.Callback):
    """`--lr-schedule` and `--time-limit`: sets the learning rate before each epoch and stops
    at the end of the first epoch that ends past the time limit.

    With "cosine" the rate falls from its start to 1% of it along half a cosine of the
    progress, the larger of the fraction of epochs done and the fraction of the time limit
    used, so that a run cut short by its time limit still ends at a low rate.  The time
    limit counts from the start of this process's training (a resumed run starts anew).
    """

    def __init__(self, learning_rate: float, schedule: str, epochs: int, minutes: float | None):
        super().__init__()
        self.start, self.schedule, self.epochs = learning_rate, schedule, epochs
        self.seconds = None if minutes is None else 60.0 * minutes

    def on_train_begin(self, logs=None):
        self.began = time.monotonic()

    def _time_used(self) -> float:
        return 0.0 if self.seconds is None else (time.monotonic() - self.began) / self.seconds

    def on_epoch_begin(self, epoch, logs=None):
        if self.schedule == "cosine":
            progress = min(1.0, max(epoch / self.epochs, self._time_used()))
            rate = self.start * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
            self.model.optimizer.learning_rate.assign(rate)

    def on_epoch_end(self, epoch, logs=None):
        if self._time_used() >= 1.0:
            print(f"Stopping after epoch {epoch + 1}: the time limit is reached.", flush=True)
            self.model.stop_training = True


def _source(args: argparse.Namespace) -> str:
    return args.dataset or str(args.images or args.arrays)


if __name__ == "__main__":
    sys.exit(main())
