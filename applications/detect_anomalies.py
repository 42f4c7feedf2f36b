"""Find the examples that do not fit: an autoencoder trained on normal examples only
reconstructs them well, so a large reconstruction error (per-example MSE) flags an anomaly.

ECG5000 heartbeats (CSV rows of 140 samples, no header, label in the last column, 1 =
normal), on the TensorFlow tutorial's split (scikit-learn's `train_test_split` with
test_size 0.2 and random_state 21 over the whole file):

    python applications/detect_anomalies.py train --csv ../shared/data/raw/ecg5000/ecg.csv \\
        --label-column -1 --normal-label 1 --split train --test-size 0.2 --split-seed 21 \\
        --latent-dim 8 --epochs 30 --batch-size 64 --out runs/ecg
    python applications/detect_anomalies.py score --model runs/ecg \\
        --csv ../shared/data/raw/ecg5000/ecg.csv --label-column -1 --split test \\
        --out runs/ecg/test

MNIST one-class: digit 3 is normal, every other digit an anomaly (`train` uses the train
split, `score` the test split):

    python applications/detect_anomalies.py train --dataset mnist --normal-class 3 \\
        --epochs 5 --out runs/mnist3
    python applications/detect_anomalies.py score --model runs/mnist3 --dataset mnist \\
        --out runs/mnist3/test

A folder of images: either normal images only, or one subfolder per label:

    python applications/detect_anomalies.py train --images parts/ --normal-label good \\
        --image-size 64 64 --out runs/parts
    python applications/detect_anomalies.py score --model runs/parts --images new_parts/ \\
        --out runs/parts/new

Several machines (training; the same command on each, with TF_CONFIG naming this task):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    python applications/detect_anomalies.py train --dataset mnist --normal-class 3 \\
        --strategy multiworker --out runs/mnist3_mw

`train` fits the scaling and the model on the normal examples, scores them, and stores the
threshold with the model: RUN_DIR/model.keras, RUN_DIR/anomaly.json (threshold, scaling,
training data), loss.png, train_scores.png.  The threshold is a percentile of the training
scores (`--threshold percentile:95`, the default), mean + k std (`mean_std:K`), or an
expected contamination (`contamination:C`, the (1 - C) quantile).  It also exports the
detector for TF Serving as RUN_DIR/export/1 (`--no-export`: not): its `score` signature
(also `serving_default`) takes examples as they come, before scaling (`x`: CSV rows,
images), and returns their anomaly `score` and `anomaly` (0/1); `encode` returns codes.

    saved_model_cli show --dir runs/ecg/export/1 --signature_def score
    docker run -p 8501:8501 -v "$PWD/runs/ecg/export:/models/ecg" -e MODEL_NAME=ecg \\
        tensorflow/serving

`score` writes OUT/scores.csv (index, score, anomaly 0/1, and label when labels are given;
file for images), one row per example in input order.  With labels it also writes
metrics.json (ROC-AUC, average precision, precision/recall/F1 with the anomaly as the
positive class, and with the normal class as positive), histogram.png and roc.png, for the
autoencoder and for an IsolationForest fitted on the same normal training examples.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aezoo import cli  # first: imports TensorFlow quietly

import numpy as np  # noqa: E402

import aezoo  # noqa: E402
from aezoo import data, plots, training  # noqa: E402
from aezoo.train import add_training_arguments, training_options  # noqa: E402

RUN_FILE = "anomaly.json"
SCALINGS = ("auto", "minmax", "standard", "standard_per_feature", "none")
# Rows at least this long are signals (a 1-D convolutional model, one scale for all
# values); shorter rows are records whose columns have their own units.
SIGNAL_LENGTH = 32


@dataclass
class Examples:
    """Examples as arrays: x (N, ...), labels (N,) or None, and where each came from."""

    x: np.ndarray
    labels: np.ndarray | None
    index: np.ndarray  # position in the input (row of the CSV, example of the split, file)
    files: list[str] | None = None


# ----------------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="detect_anomalies.py",
        description="Anomaly detection by autoencoder reconstruction error.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    train_parser = actions.add_parser("train", help="train on the normal examples")
    add_data_arguments(train_parser)
    cli.add_model_arguments(train_parser, default_model="auto")
    add_training_arguments(train_parser)
    group = train_parser.add_argument_group("anomaly options")
    group.add_argument(
        "--threshold", default="percentile:95",
        help="percentile:P, mean_std:K or contamination:C of the training scores "
        "(default percentile:95)",
    )
    group.add_argument(
        "--export", action=argparse.BooleanOptionalAction, default=True,
        help="write the SavedModel RUN_DIR/export/1 for TF Serving (default: yes)",
    )
    group.add_argument(
        "--scaling", default="auto", choices=SCALINGS,
        help="fitted on the normal training examples and stored: minmax and standard use one "
        "offset and scale for all values (as the TF ECG tutorial); auto: minmax for rows of "
        f"{SIGNAL_LENGTH}+ values, standard_per_feature for shorter rows, none for images",
    )
    score_parser = actions.add_parser("score", help="score examples with a trained run")
    score_parser.add_argument("--model", type=Path, required=True, help="RUN_DIR of `train`")
    add_data_arguments(score_parser)
    score_parser.add_argument("--out", type=Path, required=True, help="output folder")
    score_parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1.")
    return args


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    source.add_argument("--csv", type=Path, help="CSV file, one example per row")
    source.add_argument(
        "--images", type=Path, help="folder of PNG/JPEG images, or of one subfolder per label"
    )
    group = parser.add_argument_group("data options")
    group.add_argument(
        "--label-column", help="CSV: 0-based index (-1: the last) or header name of the labels"
    )
    group.add_argument(
        "--normal-label", "--normal-class", dest="normal_label",
        help="the label of normal examples (score: default, the one trained with)",
    )
    group.add_argument(
        "--split",
        help="--dataset: a tfds split (default: train for train, test for score); --csv and "
        "--images: all (default), or train or test of train_test_split(--test-size, "
        "--split-seed)",
    )
    group.add_argument(
        "--test-size", type=float,
        help="fraction (or count) held out (train: default 0.2; score: the one trained with)",
    )
    group.add_argument(
        "--split-seed", type=int,
        help="random_state of the split (train: default 0; score: the one trained with)",
    )
    group.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    group.add_argument("--channels", type=int, choices=(1, 3), help="images: 1 gray, 3 RGB")
    group.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize")


# ---------------------------------------------------------------------------- data


def load_examples(args: argparse.Namespace, default_split: str) -> Examples:
    """The examples the data options name, in input order."""
    if args.dataset:
        split = args.split or default_split
        x, labels = data.to_arrays(
            data.from_tfds(args.dataset, split, data_dir=args.data_dir, with_labels=True)
        )
        return Examples(x, labels, np.arange(len(x)))
    if args.csv:
        x, labels = data.read_csv(args.csv, args.label_column)
        return select_split(Examples(x, labels, np.arange(len(x))), args)
    if args.label_column is not None:
        raise ValueError("--label-column applies to --csv data; image labels are subfolders.")
    return select_split(load_images(args.images, args.channels, args.image_size), args)


def load_images(directory: Path, channels: int | None, image_size) -> Examples:
    """The images of a folder, or of its subfolders with the subfolder names as labels."""
    if not directory.is_dir():
        raise FileNotFoundError(f"No such folder: {directory}")
    folders = sorted(p for p in directory.iterdir() if p.is_dir())
    groups = [(p, data.list_images(p)) for p in folders or [directory]]
    files = [f for _, group in groups for f in group]
    sizes = [data.probe_image(f) for f in files]
    channels = channels or sizes[0][2]
    if image_size is None and len({size[:2] for size in sizes}) > 1:
        raise ValueError(
            f"The images in {directory} differ in size; give --image-size H W to resize them."
        )
    x = np.concatenate([
        data.to_arrays(data.from_directory(
            folder, channels=channels, image_size=tuple(image_size) if image_size else None
        ))
        for folder, _ in groups
    ])
    labels = np.array([p.name for p, group in groups for _ in group]) if folders else None
    return Examples(x, labels, np.arange(len(x)), [str(f) for f in files])


def select_split(examples: Examples, args: argparse.Namespace) -> Examples:
    """All examples, or one side of sklearn's train_test_split, kept in input order."""
    from sklearn.model_selection import train_test_split

    split = args.split or "all"
    if split == "all":
        return examples
    if split not in ("train", "test"):
        raise ValueError(
            f"--split must be all, train or test for --csv and --images data. Received: {split}"
        )
    size = args.test_size if args.test_size is not None else 0.2
    train, test = train_test_split(
        np.arange(len(examples.x)),
        test_size=int(size) if size >= 1 else size,
        random_state=args.split_seed if args.split_seed is not None else 0,
    )
    keep = np.sort(train if split == "train" else test)
    files = [examples.files[i] for i in keep] if examples.files else None
    labels = None if examples.labels is None else examples.labels[keep]
    return Examples(examples.x[keep], labels, examples.index[keep], files)


def is_normal(labels: np.ndarray, normal_label: str) -> np.ndarray:
    """Which labels equal the normal label: as numbers when both are (1 == 1.0), else as text."""
    try:
        return labels.astype(np.float64) == float(normal_label)
    except ValueError:
        return labels.astype(str) == str(normal_label)


def normal_mask(examples: Examples, normal_label: str | None) -> np.ndarray:
    """The examples whose label is the normal label (all of them without labels)."""
    if examples.labels is None:
        if normal_label is not None:
            raise ValueError(
                f"--normal-label {normal_label} needs labels: give --label-column for CSV "
                "data, or one subfolder per label for --images."
            )
        return np.ones(len(examples.x), dtype=bool)
    if normal_label is None:
        raise ValueError("The data has labels: give --normal-label (--normal-class) too.")
    mask = is_normal(examples.labels, normal_label)
    if not mask.any():
        seen = ", ".join(map(str, np.unique(examples.labels)[:20]))
        raise ValueError(
            f"No example has the normal label {normal_label!r}; the labels are: {seen}."
        )
    return mask


def fit_scaling(kind: str, x: np.ndarray) -> dict:
    """Offset and scale, fitted on the normal training examples; `apply_scaling` applies them."""
    if kind == "auto" and x.ndim > 2:
        kind = "none"  # images, already in [0, 1]
    elif kind == "auto":
        kind = "minmax" if x.shape[1] >= SIGNAL_LENGTH else "standard_per_feature"
    if kind == "minmax":
        offset, scale = float(x.min()), float(x.max() - x.min())
    elif kind == "standard":
        offset, scale = float(x.mean()), float(x.std())
    elif kind == "standard_per_feature":
        offset, scale = x.mean(axis=0).tolist(), x.std(axis=0).tolist()
    else:
        offset, scale = 0.0, 1.0
    scale = np.where(np.asarray(scale) > 0, scale, 1.0).tolist()  # constant data: no scaling
    return {"kind": kind, "offset": offset, "scale": scale}


def apply_scaling(scaling: dict, x):
    """(x - offset) / scale in float32, for NumPy arrays and TensorFlow tensors alike."""
    offset = np.asarray(scaling["offset"], dtype=np.float32)
    scale = np.asarray(scaling["scale"], dtype=np.float32)
    return (x - offset) / scale


def as_model_input(x, rank: int):
    """Rows of numbers become one-channel signals for models that take (timesteps, channels)
    (NumPy arrays and TensorFlow tensors alike)."""
    return x[..., None] if x.ndim == 2 and rank == 2 else x


def default_model(x: np.ndarray) -> str:
    """conv for images, sequence for signals, dense for short rows (records)."""
    if x.ndim > 2:
        return "conv"
    return "sequence" if x.shape[1] >= SIGNAL_LENGTH else "dense"


# ----------------------------------------------------------------- scores and metrics


def reconstruction_errors(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The anomaly score: each example's mean squared reconstruction error."""
    verbose = 1 if sys.stdout.isatty() else 0  # a progress bar for people, none in logs
    x_hat = np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose))
    return np.mean(np.square(x_hat - x).reshape(len(x), -1), axis=1, dtype=np.float64)


def parse_threshold(rule: str) -> tuple[str, float]:
    kind, _, text = str(rule).partition(":")
    ranges = {"percentile": (0, 100), "mean_std": (-math.inf, math.inf), "contamination": (0, 1)}
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low, high = ranges.get(kind, (math.nan, math.nan))
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(
            "--threshold must be percentile:P (0-100), mean_std:K or contamination:C (0-1). "
            f"Received: {rule}"
        )
    return kind, value


def threshold_from(scores: np.ndarray, rule: str) -> float:
    """The threshold a rule picks from training scores; scores above it are anomalies."""
    kind, value = parse_threshold(rule)
    if kind == "mean_std":
        return float(np.mean(scores) + value * np.std(scores))
    percentile = value if kind == "percentile" else 100 * (1 - value)
    return float(np.percentile(scores, percentile))


def detection_metrics(is_anomaly: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """ROC-AUC, average precision, and precision/recall/F1/accuracy at the threshold, with the
    anomaly as the positive class (and, under "normal_positive", with the normal class)."""
    from sklearn import metrics

    predicted = scores > threshold
    result = {
        "roc_auc": metrics.roc_auc_score(is_anomaly, scores),
        "average_precision": metrics.average_precision_score(is_anomaly, scores),
        "threshold": threshold,
        "flagged": int(predicted.sum()),
        "accuracy": metrics.accuracy_score(is_anomaly, predicted),
    }
    for positive, prefix in ((1, ""), (0, "normal_positive_")):
        p, r, f, _ = metrics.precision_recall_fscore_support(
            is_anomaly, predicted, average="binary", pos_label=positive, zero_division=0
        )
        result.update({f"{prefix}precision": p, f"{prefix}recall": r, f"{prefix}f1": f})
    return {k: float(v) if not isinstance(v, int) else v for k, v in result.items()}


def isolation_forest_scores(train_x: np.ndarray, x: np.ndarray, seed: int):
    """IsolationForest fitted on the normal training examples: (training scores, scores),
    higher = more anomalous (the negated `score_samples`)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(random_state=seed).fit(train_x.reshape(len(train_x), -1))
    return -forest.score_samples(train_x.reshape(len(train_x), -1)), -forest.score_samples(
        x.reshape(len(x), -1)
    )


# ------------------------------------------------------------------------- actions


def train(args: argparse.Namespace) -> int:
    rule = args.threshold
    parse_threshold(rule)
    options = training_options(args)
    # The strategy comes before any dataset: multi-worker collectives must be set up first.
    strategy = training.resolve_strategy(args.strategy)
    examples = load_examples(args, default_split="train")
    normal = normal_mask(examples, args.normal_label)
    x = examples.x[normal]
    print(f"Training on {len(x)} normal examples of {len(examples.x)} ({describe(args)}).")
    if args.model == "auto":
        args.model = default_model(x)
    model_kwargs = cli.model_kwargs(args)
    scaling = fit_scaling(args.scaling, x)
    builder = aezoo.MODELS[args.model]
    rank = len(inspect.signature(builder).parameters["input_shape"].default)
    x = as_model_input(apply_scaling(scaling, x), rank)

    model, history = training.train(
        args.model, x, model_kwargs=model_kwargs, strategy=strategy, **options
    )
    if not training.is_chief(strategy):
        return 0
    scores = reconstruction_errors(model, x, args.batch_size)
    threshold = threshold_from(scores, rule)
    run = {
        "model": "model.keras",
        "architecture": args.model,
        "threshold": threshold,
        "threshold_rule": rule,
        "scaling": scaling,
        "normal_label": args.normal_label,
        "seed": args.seed,
        "train_data": data_options(args),
        "train_examples": int(len(x)),
        "train_scores": {
            "mean": float(scores.mean()), "std": float(scores.std()),
            "min": float(scores.min()), "max": float(scores.max()),
        },
    }
    (args.out / RUN_FILE).write_text(json.dumps(run, indent=2))
    if args.export:
        path = export_detector(model, run, examples.x.shape[1:], args.out / "export")
        print(f"Exported the detector as the SavedModel {path}")
    plots.plot_history(history, args.out / "loss.png", title=f"{args.model} on {describe(args)}")
    plots.plot_score_histogram(
        scores, np.zeros(len(scores), dtype=bool), threshold, args.out / "train_scores.png",
        title=f"training scores ({rule})",
    )
    print(
        f"Saved {args.out / RUN_FILE}: threshold {threshold:.6g} ({rule} of {len(x)} "
        f"normal training scores, mean {scores.mean():.6g})"
    )
    return 0


def score(args: argparse.Namespace) -> int:
    run = read_run(args.model)
    import keras

    model = keras.models.load_model(args.model / run["model"])
    stored = run["train_data"]
    for name in ("test_size", "split_seed", "image_size"):  # the split trained on, by default
        if getattr(args, name) is None:
            setattr(args, name, stored.get(name))
    if args.images and args.channels is None:
        args.channels = model.input_shape[-1]
    normal_label = args.normal_label if args.normal_label is not None else run["normal_label"]
    examples = load_examples(args, default_split="test")
    rank = len(model.input_shape) - 1
    try:
        training.check_fits(model, as_model_input(examples.x[:1], rank).shape[1:])
    except ValueError as error:
        if args.csv and args.label_column is None and stored["label_column"] is not None:
            raise ValueError(
                f"{error} It was trained with --label-column {stored['label_column']}: give "
                "it here too if this file has labels."
            ) from None
        raise
    x = as_model_input(apply_scaling(run["scaling"], examples.x), rank)
    if (args.out / "scores.csv").exists():
        raise FileExistsError(f"{args.out} already holds scores.csv; choose another folder.")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Scoring {len(x)} examples ({describe(args)}).", flush=True)
    scores = reconstruction_errors(model, x, args.batch_size)
    threshold = run["threshold"]
    write_scores(args.out / "scores.csv", examples, scores, threshold)
    print(f"Wrote {args.out / 'scores.csv'}: {int((scores > threshold).sum())} of {len(x)} "
          f"above the threshold {threshold:.6g}.")
    if examples.labels is None:
        return 0

    is_anomaly = ~normal_mask(examples, normal_label)
    if is_anomaly.all():
        print("All examples are anomalous by their labels: no ROC-AUC to report.")
        return 0
    results = {"examples": int(len(x)), "anomalous": int(is_anomaly.sum()),
               "normal_label": normal_label,
               "autoencoder": detection_metrics(is_anomaly, scores, threshold)}
    curves = {"autoencoder": roc(is_anomaly, scores)}
    baseline = baseline_scores(run, x)
    if isinstance(baseline, str):
        results["isolation_forest_skipped"] = baseline
        print(f"IsolationForest baseline skipped: {baseline}")
    else:
        forest_train, forest = baseline
        forest_threshold = threshold_from(forest_train, run["threshold_rule"])
        results["isolation_forest"] = detection_metrics(is_anomaly, forest, forest_threshold)
        curves["isolation_forest"] = roc(is_anomaly, forest)
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2))
    plots.plot_score_histogram(
        scores, is_anomaly, threshold, args.out / "histogram.png",
        title=f"reconstruction error, {describe(args)}",
    )
    plots.plot_roc(curves, args.out / "roc.png", title=f"ROC, {describe(args)}")
    print_table(results)
    return 0


# ------------------------------------------------------------------------- helpers


def export_detector(model, run: dict, example_shape, base_dir: Path) -> Path:
    """The SavedModel of the detector, whose signatures take examples as `score` reads them
    (before scaling): `score` and `serving_default` return each example's anomaly `score`
    and `anomaly` (1 above the threshold), `encode` its latent code."""
    import tensorflow as tf

    from aezoo import export

    raw = {"x": tf.TensorSpec((None, *example_shape), tf.float32, name="x")}
    rank = len(model.input_shape) - 1

    def from_raw(endpoint):
        def fn(inputs):
            x = as_model_input(apply_scaling(run["scaling"], inputs["x"]), rank)
            return endpoint.fn({"x": x})

        return export.Endpoint(raw, fn)

    def edit(endpoints):
        score = from_raw(endpoints["score"])

        def detect(inputs):
            value = score.fn(inputs)["score"]
            return {"score": value, "anomaly": tf.cast(value > run["threshold"], tf.int32)}

        detector = export.Endpoint(raw, detect)
        # decode and reconstruct_image would work in the scaled units: left to model.keras.
        return {"serving_default": detector, "score": detector,
                "encode": from_raw(endpoints["encode"])}

    return export.export_saved_model(model, base_dir, edit_endpoints=edit)


def describe(args: argparse.Namespace) -> str:
    source = args.dataset or (args.csv.name if args.csv else str(args.images))
    return f"{source} {args.split}" if args.split else source


def data_options(args: argparse.Namespace) -> dict:
    """The data options, as stored in the run, so `score` can load the training examples."""
    names = ("dataset", "csv", "images", "label_column", "normal_label", "split", "test_size",
             "split_seed", "data_dir", "channels", "image_size")
    options = {name: getattr(args, name) for name in names}
    for name in ("csv", "images"):
        if options[name] is not None:
            options[name] = str(Path(options[name]).resolve())
    if args.dataset and not args.split:
        options["split"] = "train"
    return options


def read_run(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a finished run of `detect_anomalies.py train` (no {RUN_FILE})."
        )
    return json.loads(path.read_text())


def baseline_scores(run: dict, x: np.ndarray):
    """IsolationForest (training scores, scores of x), or why it cannot be had."""
    stored = argparse.Namespace(**run["train_data"])
    for name in ("csv", "images"):
        if getattr(stored, name):
            setattr(stored, name, Path(getattr(stored, name)))
            if not getattr(stored, name).exists():
                return f"the training data {getattr(stored, name)} is gone"
    train_examples = load_examples(stored, default_split="train")
    train_x = train_examples.x[normal_mask(train_examples, stored.normal_label)]
    train_x = apply_scaling(run["scaling"], train_x)
    return isolation_forest_scores(train_x, x, run["seed"])


def roc(is_anomaly: np.ndarray, scores: np.ndarray):
    from sklearn import metrics

    fpr, tpr, _ = metrics.roc_curve(is_anomaly, scores)
    return fpr, tpr, metrics.roc_auc_score(is_anomaly, scores)


def write_scores(path: Path, examples: Examples, scores: np.ndarray, threshold: float) -> None:
    columns = ["index"] + (["file"] if examples.files else []) + ["score", "anomaly"]
    columns += ["label"] if examples.labels is not None else []
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, value in enumerate(scores):
            row = [int(examples.index[i])] + ([examples.files[i]] if examples.files else [])
            row += [f"{value:.9g}", int(value > threshold)]
            row += [examples.labels[i]] if examples.labels is not None else []
            writer.writerow(row)


def print_table(results: dict) -> None:
    print(f"{results['examples']} examples, {results['anomalous']} anomalous "
          f"(anomaly = positive class; normal-positive figures as in the TF ECG tutorial):")
    keys = ("roc_auc", "average_precision", "precision", "recall", "f1", "accuracy",
            "normal_positive_precision", "normal_positive_recall")
    heads = ("ROC-AUC", "AP", "prec", "recall", "F1", "acc", "prec(n)", "recall(n)")
    print(f"{'detector':<18}" + "".join(f"{h:>10}" for h in heads))
    for name in ("autoencoder", "isolation_forest"):
        if name in results:
            print(f"{name:<18}" + "".join(f"{results[name][k]:>10.4f}" for k in keys))


@cli.guarded
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return train(args) if args.action == "train" else score(args)


if __name__ == "__main__":
    sys.exit(main())
