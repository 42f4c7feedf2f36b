"""aezoo train: train any model of the zoo on your data.

One device (or all GPUs of this machine, with --strategy auto):

    aezoo train --model conv --dataset mnist --latent-dim 32 --epochs 10 --out runs/mnist_conv

A folder of images cut into 64x64 patches, or a NumPy array file:

    aezoo train --model denoising --images photos/ --patch 64 --noise gaussian:25 \\
        --out runs/photos
    aezoo train --model dense --arrays x.npy --output-activation linear --out runs/x

Data parallelism on a machine without GPUs (to try it: the replicas share the same cores):

    aezoo train --model conv --dataset mnist --strategy mirrored --cpu-devices 2 \\
        --out runs/mnist_mirrored

Several machines: the same command on each, with TF_CONFIG naming the cluster and this task:

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo train --model conv --dataset mnist --strategy multiworker --out runs/mw

Writes the run folder of `aezoo.runs` (model.keras, run.json, history, loss.png,
samples.png, the SavedModel export/1, a checkpoint per epoch).  If the run is killed, the
same command continues from the last finished epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aezoo.apps import cli

PROG = "aezoo train"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Train an aezoo model under a tf.distribute strategy.",
    )
    cli.add_data_arguments(parser)
    cli.add_model_arguments(parser, default_model="conv")
    cli.add_training_arguments(parser)
    parser.add_argument("--loss", default="mse", choices=("mse", "bce"))
    parser.add_argument("--noise", help="train a denoiser on (noisy x, x) pairs: gaussian:SIGMA "
                        "or gaussian:LOW-HIGH (0-255), salt_pepper:P, poisson:PEAK or mask:P")
    # Only here: it must act before the strategy is made.
    parser.add_argument(
        "--cpu-devices", type=cli.positive_int, default=1, metavar="N",
        help="split the CPU into N logical devices, so that --strategy mirrored has N "
        "replicas without GPUs (to try data-parallel training; not faster)",
    )
    return parser


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow()
    run = train_run(args, task="train")
    if run is not None:
        print(f"Saved the run in {args.out} ({summary(run.path)})")
    return 0


def train_run(
    args: argparse.Namespace,
    *,
    task: str,
    application: Callable[[Any], dict] | None = None,
    samples: Callable | None = None,
):
    """Trains as the parsed options say and finishes the run folder; the training
    commands of the applications call it with their own parsers, built from the same
    argument groups.

    Args:
        args: the options of `cli.add_data_arguments`, `add_model_arguments` and
            `add_training_arguments` (plus `noise`, `loss`, `cpu_devices` where present).
        task: what `run.json` records.
        application: `application(model) -> dict` of what the application stores in
            `run.json` beside the model.
        samples: `samples(model, examples, png_path)`: draws samples.png (default:
            inputs above their reconstructions).

    Returns:
        The finished run (None on a worker that is not the chief, which writes nothing).
    """
    from aezoo import noise, runs, training

    if args.augment and (args.images is None or args.patch is None):  # (before any work)
        raise ValueError("--augment turns random patches of images: it needs --images and "
                         "--patch.")
    cli.resolve_model(args)
    kwargs = cli.model_kwargs(args)
    options = cli.training_options(args)
    options["loss"] = getattr(args, "loss", "mse")
    noise_spec = getattr(args, "noise", None)
    options["noise"] = noise.parse_noise(noise_spec) if noise_spec else None
    training.check_training_options(
        **{k: options[k] for k in ("epochs", "learning_rate", "clipnorm", "steps_per_epoch",
                                   "time_limit")}
    )
    if options["time_limit"] is not None and args.strategy == "multiworker":
        raise ValueError("--time-limit cannot be used with --strategy multiworker.")
    training.split_cpu(getattr(args, "cpu_devices", 1))  # before TensorFlow starts working
    if args.strategy == "multiworker":
        task_info = training.check_tf_config(os.environ.get("TF_CONFIG"))["task"]
        # Creating the strategy waits until every worker of TF_CONFIG has started.
        print(f"Joining the cluster of TF_CONFIG as {task_info['type']} {task_info['index']}...",
              flush=True)
    # The strategy comes before any dataset: multi-worker collectives must be set up first.
    strategy = training.resolve_strategy(args.strategy)
    cli.reclaim_sigterm()  # (from a multi-worker runtime)
    print(training.describe_strategy(strategy), flush=True)
    runs.refuse_finished(args.out, "another --out")
    chief = training.is_chief(strategy)
    out = training.run_dir(args.out, strategy)
    with runs.locked(out):  # (before the data loads: a second training is refused at once)
        train_examples, val_examples = load_data(args)
        runs.clean_partials(out)  # what a killed run was writing
        state = training.run_state(out)
        record = {"data": data_options(args, resolved=True)}
        if state != "new":  # (before it says it resumes)
            training.check_started(out, training.started_record(
                {"model": args.model, "model_kwargs": kwargs, **options}, record))
        if state == "resume":
            print(f"Resuming the interrupted run in {args.out}", flush=True)
        elif state == "trained":
            print(f"Completing the run in {args.out}: its training had finished.", flush=True)
        started, cpu_started = time.time(), time.process_time()
        trained, history = training.train(
            args.model, train_examples, model_kwargs=kwargs, validation_data=val_examples,
            strategy=strategy, record=record, **options,
        )
        timing = {"wall_seconds": time.time() - started,
                  "cpu_seconds": time.process_time() - cpu_started}
        if not chief:
            return None
        examples = val_examples if val_examples is not None else train_examples
        x = first_examples(examples, 8)
        draw = samples or _reconstructions
        if options["init"] is not None:
            # The builder arguments are the initial model's, updated by those given.
            kwargs = {k: v for k, v in trained.get_config().items() if k != "model"}
        return runs.finish_run(
            out, history, task=task, model=args.model,
            options={"data": data_options(args), "model": kwargs,
                     "training": {k: v for k, v in options.items()
                                  if k not in ("out_dir", "verbose")}
                     # What "auto" meant on this machine.
                     | {"dtype_policy": training.resolve_mixed_precision(
                         options["mixed_precision"], strategy) or "float32"}},
            application=application(trained) if application is not None else None,
            title=f"{args.model} on {source(args)}",
            samples=lambda trained, path: draw(trained, x, path),
            timing=timing,
        )


def _reconstructions(model, x, path) -> None:
    from aezoo import plots

    plots.plot_reconstructions(model, x, path, title=model.name)


def load_data(args: argparse.Namespace):
    """(training examples, validation examples or None) for the data options."""
    from aezoo import data

    if args.dataset:
        train = data.from_tfds(args.dataset, args.split, data_dir=args.data_dir)
        val_split = args.val_split
        if val_split == "auto":
            val_split = "test" if args.split != "test" and data.has_split(
                args.dataset, "test", data_dir=args.data_dir) else "none"
        val = None if val_split == "none" else data.from_tfds(
            args.dataset, val_split, data_dir=args.data_dir)
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


def first_examples(examples, count: int):
    """Up to `count` examples, as an array, from a dataset of examples or an array."""
    import numpy as np

    if isinstance(examples, np.ndarray):
        return examples[:count]
    return np.stack([np.asarray(e) for e in examples.take(count)])


def data_options(args: argparse.Namespace, resolved: bool = False) -> dict[str, Any]:
    """The data options given; `resolved`: files as absolute paths (so a run resumed from
    another folder, or as "photos/" for "photos", is recognised as the same)."""
    names = ("dataset", "split", "val_split", "images", "arrays", "key", "channels", "patch",
             "patches_per_image", "augment", "image_size")
    options = {name: getattr(args, name, None) for name in names
               if getattr(args, name, None) not in (None, False)}
    if resolved:
        options.update({name: str(Path(options[name]).resolve())
                        for name in ("images", "arrays") if name in options})
    return options


def source(args: argparse.Namespace) -> str:
    return args.dataset or str(args.images or args.arrays)


def summary(run_path) -> str:
    """The last epoch's losses of a finished run, e.g. "loss 0.00612, val_loss 0.00598"."""
    history = json.loads((run_path / "history.json").read_text())
    return ", ".join(f"{k} {v[-1]:.5g}" for k, v in history.items() if k.endswith("loss"))


if __name__ == "__main__":
    sys.exit(main())
