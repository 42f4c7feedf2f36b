"""Find the examples that do not fit: an autoencoder trained on normal examples only
reconstructs them well, so a large reconstruction error (per-example MSE) flags an anomaly.

ECG5000 heartbeats (CSV rows of 140 samples, no header, label in the last column, 1 =
normal), on the TensorFlow tutorial's split (scikit-learn's `train_test_split` with
test_size 0.2 and random_state 21 over the whole file):

    aezoo anomalies train --csv ../shared/data/raw/ecg5000/ecg.csv \\
        --label-column -1 --normal-label 1 --split train --test-size 0.2 --split-seed 21 \\
        --out runs/ecg
    aezoo anomalies score --model runs/ecg \\
        --csv ../shared/data/raw/ecg5000/ecg.csv --label-column -1 --split test \\
        --out runs/ecg/test

MNIST one-class: digit 3 is normal, every other digit an anomaly (`train` uses the train
split, `score` the test split):

    aezoo anomalies train --dataset mnist --normal-class 3 \\
        --epochs 5 --out runs/mnist3
    aezoo anomalies score --model runs/mnist3 --dataset mnist \\
        --out runs/mnist3/test

A folder of images: either normal images only, or one subfolder per label:

    aezoo anomalies train --images parts/ --normal-label good \\
        --image-size 64 64 --out runs/parts
    aezoo anomalies score --model runs/parts --images new_parts/ \\
        --out runs/parts/new

Several machines (training; the same command on each, with TF_CONFIG naming this task):

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \\
    aezoo anomalies train --dataset mnist --normal-class 3 \\
        --strategy multiworker --out runs/mnist3_mw

`train` fits the scaling and the model on the normal examples, scores them, and stores the
threshold with the model (an `aezoo.anomaly.Detector` saved as a run folder: model.keras,
run.json with the threshold and scaling, loss.png, samples.png, train_scores.png).  The
threshold is a percentile of the training scores (`--threshold percentile:95`, the
default), mean + k std (`mean_std:K`), or an expected contamination (`contamination:C`, the
(1 - C) quantile, 0 < C < 0.5).  The
SavedModel RUN_DIR/export/1 serves the detector: its `score` signature
(also `serving_default`) takes examples as they come, before scaling (`x`: CSV rows,
images), and returns their anomaly `score` and `anomaly` (0/1); `encode` returns codes.

    saved_model_cli show --dir runs/ecg/export/1 --tag_set serve --signature_def score
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
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from aezoo.apps import cli

PROG = "aezoo anomalies"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog=PROG, description="Anomaly detection by autoencoder reconstruction error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True)
    train = actions.add_parser("train", help="train on the normal examples")
    add_data_arguments(train)
    cli.add_model_arguments(train, default_model="auto", own_defaults={
        "latent_dim": "8 for rows of numbers, 32 for images: aezoo.anomaly.Detector's"})
    # The recipe measured best on ECG5000 (aezoo.anomaly.Detector's defaults).
    cli.add_training_arguments(train, epochs=30, batch_size=64, learning_rate=3e-3)
    group = train.add_argument_group("anomaly options")
    group.add_argument(
        "--threshold", default="percentile:95",
        help="percentile:P, mean_std:K or contamination:C of the training scores "
        "(default percentile:95)",
    )
    group.add_argument(
        "--scaling", default="auto", choices=SCALINGS,
        help="fitted on the normal training examples and stored: minmax and standard use one "
        "offset and scale for all values (as the TF ECG tutorial); auto: minmax for rows of "
        "32+ values, standard_per_feature for shorter rows, none for images",
    )
    score = actions.add_parser("score", help="score examples with a trained run")
    score.add_argument("--model", required=True, help="run folder of `train`, or a preset name")
    add_data_arguments(score)
    score.add_argument("--out", type=cli.folder, required=True, help="output folder")
    score.add_argument("--overwrite", action="store_true", help="replace earlier results")
    score.add_argument("--batch-size", type=cli.positive_int, default=256)
    cli.name_actions(actions)
    return parser


SCALINGS = ("auto", "minmax", "standard", "standard_per_feature", "none")  # aezoo.anomaly's


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="tensorflow-datasets name, e.g. mnist")
    source.add_argument("--csv", type=Path, help="CSV file, one example per row")
    source.add_argument(
        "--images", type=Path, help="folder of PNG/JPEG images, or of one subfolder per label"
    )
    group = parser.add_argument_group("data options")
    group.add_argument(
        "--label-column", help="CSV: 0-based index (-1: the last) or header name of the labels "
        "(score: the one trained with, for a file of one column more than the detector takes)"
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
        "--test-size", type=cli.positive_float,
        help="fraction (or count) held out (train: default 0.2; score: the one trained with)",
    )
    group.add_argument(
        "--split-seed", type=int,
        help="random_state of the split (train: default 0; score: the one trained with)",
    )
    group.add_argument("--data-dir", help="tfds data_dir (default: TFDS_DATA_DIR)")
    group.add_argument("--channels", type=int, choices=(1, 3), help="images: 1 gray, 3 RGB")
    group.add_argument("--image-size", type=cli.positive_int, nargs=2, metavar=("H", "W"),
                       help="resize")


# ------------------------------------------------------------------------- actions


def train(args: argparse.Namespace) -> int:
    from aezoo import anomaly, runs, training

    anomaly.parse_threshold(args.threshold)
    options = cli.training_options(args)
    runs.refuse_finished(args.out, "another --out")
    # The strategy comes before any dataset: multi-worker collectives must be set up first.
    strategy = training.resolve_strategy(args.strategy)
    cli.reclaim_sigterm()  # (from a multi-worker runtime)
    with runs.locked(training.run_dir(args.out, strategy)):  # (a second one: refused at once)
        return _train(args, options, strategy)


def _train(args: argparse.Namespace, options: dict, strategy) -> int:
    from aezoo import anomaly, runs, training

    examples = load_examples(args, default_split="train")
    normal = normal_mask(examples, args.normal_label)
    x = examples.x[normal]
    print(f"Training on {len(x)} normal examples of {len(examples.x)} ({describe(args)}).",
          flush=True)
    cli.resolve_model(args)  # with --init, the initial run's model
    model = args.model
    if model == "auto":  # the detector's choice (the options must fit it): as fit makes it
        model = runs.model_name(args.init) if args.init else anomaly.default_model(x)
    kwargs = cli.model_kwargs(argparse.Namespace(**{**vars(args), "model": model}))
    latent_dim = kwargs.pop("latent_dim", None)
    detector = anomaly.Detector(
        args.model, threshold=args.threshold, scaling=args.scaling, latent_dim=latent_dim,
        epochs=options.pop("epochs"), batch_size=options.pop("batch_size"),
        learning_rate=options.pop("learning_rate"), model_kwargs=kwargs,
        seed=options.pop("seed"), verbose=options.pop("verbose"),
        training_kwargs={k: v for k, v in options.items() if k != "out_dir"} | {
            "strategy": strategy,
            # Kept in started.json (a resume with other data or scaling is refused); not
            # --data-dir, which may differ on another machine.
            "record": {"data": {k: v for k, v in data_options(args).items()
                                if v is not None and k != "data_dir"},
                       "scaling": args.scaling}},
    )
    detector.fit(x, out_dir=args.out)
    if not training.is_chief(strategy):
        return 0
    _plot_train_scores(detector, args.out / "train_scores.png")  # before run.json, which
    _plot_samples(detector, x, args.out / "samples.png")  # save writes last
    detector.save(args.out, extra={"data": data_options(args), "training": {
        k: v for k, v in detector.training_kwargs.items() if k not in ("strategy", "record")}})
    print(f"Saved {args.out}: threshold {detector.threshold_:.6g} ({args.threshold} of "
          f"{len(x)} normal training scores, mean {detector.train_scores_.mean():.6g})")
    return 0


def _plot_train_scores(detector, path: Path) -> None:
    import numpy as np

    from aezoo import plots, runs

    scores = detector.train_scores_
    with runs.writing(path) as temporary:
        plots.plot_score_histogram(scores, np.zeros(len(scores), dtype=bool),
                                   detector.threshold_, temporary,
                                   title=f"training scores ({detector.threshold})")


def _plot_samples(detector, x, path: Path) -> None:
    from aezoo import plots, runs

    with runs.writing(path) as temporary:
        plots.plot_reconstructions(detector.model_, detector.model_input(x[:4]), temporary,
                                   title="normal training examples (scaled), reconstructed")


def score(args: argparse.Namespace) -> int:
    from aezoo import anomaly, data, plots, runs

    cli.check_outputs(args.out, ("scores.csv", "metrics.json", "histogram.png", "roc.png"),
                      args.overwrite)
    run = runs.load_run(args.model, task="anomaly")
    detector = anomaly.Detector.from_run(run)
    stored = run.info.get("options", {}).get("data", {})
    for name in ("test_size", "split_seed", "image_size"):  # the split trained on, by default
        if getattr(args, name) is None:
            setattr(args, name, stored.get(name))
    if args.images and args.channels is None:
        args.channels = detector.model_.input_shape[-1]
    normal_label = args.normal_label if args.normal_label is not None else \
        run.info.get("application", {}).get("normal_label", stored.get("normal_label"))
    takes = tuple(detector.example_shape_)
    # The label column the detector was trained with, for a CSV given none.
    trained = stored.get("label_column") if args.csv and args.label_column is None else None
    if trained is not None and len(takes) == 1 and data.csv_columns(args.csv) == takes[0] + 1:
        # One column more than the detector takes: the labels, where its training file had
        # them (ECG5000's ecg.csv, scored with the preset that was trained on it; labels
        # that are words would not even read as features).
        args.label_column, trained = trained, None
        print(f"Reading column {args.label_column} as the labels, as the detector was "
              f"trained (--label-column {args.label_column}).", flush=True)
    examples = load_examples(args, default_split="test")
    shape = tuple(examples.x.shape[1:])
    if shape != takes:
        hint = "" if trained is None else (f" It was trained with --label-column {trained}: "
                                           "give it here too if this file has labels.")
        raise ValueError(f"The examples have shape {shape}, but the detector takes "
                         f"{takes}.{hint}")
    is_anomaly = None
    if examples.labels is not None:
        is_anomaly = ~normal_mask(examples, normal_label, scoring=True)
    print(f"Scoring {len(examples.x)} examples ({describe(args)}).", flush=True)
    scores = detector.score(examples.x, batch_size=args.batch_size)
    threshold = detector.threshold_
    above = f"{int((scores > threshold).sum())} of {len(scores)} above the threshold " \
            f"{threshold:.6g}"
    results = None
    if is_anomaly is not None and is_anomaly.any() and not is_anomaly.all():
        results = {"examples": int(len(scores)), "anomalous": int(is_anomaly.sum()),
                   "normal_label": normal_label,
                   "autoencoder": anomaly.detection_metrics(is_anomaly, scores, threshold)}
        curves = {"autoencoder": anomaly.roc(is_anomaly, scores)}
        baseline = baseline_scores(run, detector, examples.x)
        if isinstance(baseline, str):
            results["isolation_forest_skipped"] = baseline
            print(f"IsolationForest baseline skipped: {baseline}")
        else:
            forest_train, forest = baseline
            forest_threshold = anomaly.threshold_from(forest_train, detector.threshold)
            results["isolation_forest"] = anomaly.detection_metrics(is_anomaly, forest,
                                                                     forest_threshold)
            curves["isolation_forest"] = anomaly.roc(is_anomaly, forest)
    args.out.mkdir(parents=True, exist_ok=True)
    with runs.together():  # (with --overwrite: never new scores beside old metrics)
        runs.write_text(args.out / "scores.csv", scores_csv(examples, scores, threshold))
        if results is not None:
            runs.write_text(args.out / "metrics.json", json.dumps(results, indent=2) + "\n")
            with runs.writing(args.out / "histogram.png") as temporary:
                plots.plot_score_histogram(scores, is_anomaly, threshold, temporary,
                                           title=f"reconstruction error, {describe(args)}")
            with runs.writing(args.out / "roc.png") as temporary:
                plots.plot_roc(curves, temporary, title=f"ROC, {describe(args)}")
    print(f"Wrote {args.out / 'scores.csv'}: {above}.")
    if results is not None:
        print_table(results)
    elif is_anomaly is not None:
        print("All examples have one label (all normal or all anomalous): no ROC-AUC to "
              "report.")
    return 0


# ------------------------------------------------------------------------- helpers


def load_examples(args: argparse.Namespace, default_split: str):
    """The examples the data options name, in input order."""
    import numpy as np

    from aezoo import anomaly, data

    if args.dataset:
        split = args.split if args.split not in (None, "all") else default_split
        x, labels = data.to_arrays(
            data.from_tfds(args.dataset, split, data_dir=args.data_dir, with_labels=True)
        )
        return anomaly.Examples(x, labels, np.arange(len(x)))
    if args.csv:
        x, labels = data.read_csv(args.csv, args.label_column)
        examples = anomaly.Examples(x, labels, np.arange(len(x)))
    else:
        if args.label_column is not None:
            raise ValueError("--label-column applies to --csv data; image labels are subfolders.")
        examples = anomaly.load_images(args.images, args.channels, args.image_size)
    return anomaly.select_split(
        examples, args.split or "all",
        test_size=args.test_size if args.test_size is not None else 0.2,
        seed=args.split_seed if args.split_seed is not None else 0,
    )


def normal_mask(examples, normal_label: str | None, scoring: bool = False):
    """The examples whose label is the normal label (all of them without labels).

    None of them normal: an error for training; for `scoring`, a file of anomalies only is
    scored, with a line that names the labels (a mistyped --normal-label shows there)."""
    import numpy as np

    from aezoo import anomaly

    if examples.labels is None:
        if normal_label is not None:
            raise ValueError(
                f"--normal-label {normal_label} needs labels: give --label-column for CSV "
                "data, or one subfolder per label for --images."
            )
        return np.ones(len(examples.x), dtype=bool)
    if normal_label is None:
        raise ValueError("The data has labels: give --normal-label (--normal-class) too.")
    mask = anomaly.is_normal(examples.labels, normal_label)
    if not mask.any():
        seen = ", ".join(map(str, np.unique(examples.labels)[:20]))
        message = f"No example has the normal label {normal_label!r}; the labels are: {seen}"
        if not scoring:
            raise ValueError(message + ".")
        print(f"{message}: all are scored as anomalies.", flush=True)
    return mask


def baseline_scores(run, detector, x):
    """IsolationForest (training scores, scores of x), or why it cannot be had."""
    from aezoo import anomaly

    stored = run.info.get("options", {}).get("data")
    if not stored:
        return "the run does not say what it was trained on"
    stored = argparse.Namespace(**{**dict.fromkeys(
        ("dataset", "csv", "images", "label_column", "normal_label", "split", "test_size",
         "split_seed", "data_dir", "channels", "image_size")), **stored})
    for name in ("csv", "images"):
        if getattr(stored, name):
            setattr(stored, name, Path(getattr(stored, name)))
            if not getattr(stored, name).exists():
                return f"the training data {getattr(stored, name)} is gone"
    train_examples = load_examples(stored, default_split="train")
    train_x = train_examples.x[normal_mask(train_examples, stored.normal_label)]
    scaled_train = anomaly.apply_scaling(detector.scaling_, train_x)
    scaled = anomaly.apply_scaling(detector.scaling_, x)
    return anomaly.isolation_forest_scores(scaled_train, scaled, run.info["options"]
                                           .get("detector", {}).get("seed", 0))


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


def scores_csv(examples, scores, threshold: float) -> str:
    """scores.csv: index, (file,) score, anomaly 0/1, (label,) one row per example."""
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["index"] + (["file"] if examples.files else []) + ["score", "anomaly"]
    columns += ["label"] if examples.labels is not None else []
    writer.writerow(columns)
    for i, value in enumerate(scores):
        row = [int(examples.index[i])] + ([examples.files[i]] if examples.files else [])
        row += [f"{value:.9g}", int(value > threshold)]
        row += [examples.labels[i]] if examples.labels is not None else []
        writer.writerow(row)
    return out.getvalue()


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


@cli.guarded(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cli.start_tensorflow()
    return train(args) if args.action == "train" else score(args)


if __name__ == "__main__":
    sys.exit(main())
