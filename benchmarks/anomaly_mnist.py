"""MNIST one-class anomaly detection: one digit normal, the nine others anomalous.

For each digit K it fits `aezoo.anomaly.Detector` (the default image model, `conv` with a
latent of 32) on the training images of K and scores the 10,000 test images (about 9,000
anomalous), next to an IsolationForest fitted on the same training images (raw pixels), as
the command does:

    aezoo anomalies train --dataset mnist --normal-class K --epochs 3 --batch-size 32 \\
        --seed 0 --out RUNS/digitK
    aezoo anomalies score --model RUNS/digitK --dataset mnist --out RUNS/digitK/test

Batches of 32 give the few epochs four times as many steps as batches of 128 (measured on
digit 3 with conv's earlier ReLU default: ROC-AUC 0.93 against 0.86 after 3 epochs; binary
cross-entropy as the loss: 0.92).  Finished runs are reused.

    python benchmarks/anomaly_mnist.py                    # all ten digits, 3 epochs each
    python benchmarks/anomaly_mnist.py --digits 3 5 --epochs 5
    python benchmarks/anomaly_mnist.py --digits 3 --epochs 1 --limit 2000   # a quick look

Prints a table and writes RUNS/results.json (RUNS: ../runs/anomaly_mnist).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from offline import use_offline_tfds, write_json

from aezoo.apps import cli

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "anomaly_mnist")
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)),
                        choices=range(10), metavar="DIGIT")
    parser.add_argument("--epochs", type=cli.positive_int, default=3)
    parser.add_argument("--batch-size", type=cli.positive_int, default=32)
    parser.add_argument("--loss", default="mse", choices=("mse", "bce"))
    parser.add_argument("--limit", type=cli.positive_int,
                        help="the first N images of each split only (default: all)")
    parser.add_argument("--json", type=Path, help="default: RUNS/results.json")
    return parser.parse_args(argv)


def load(split: str, limit: int | None):
    from aezoo import data

    examples = data.from_tfds("mnist", split, with_labels=True)
    return data.to_arrays(examples.take(limit) if limit else examples)


def fitted_detector(args, digit: int, x_normal):
    """The digit's detector: loaded when its run is finished, else fitted and saved."""
    from aezoo import anomaly, runs

    run = args.runs / f"digit{digit}"
    wanted = anomaly.Detector(epochs=args.epochs, batch_size=args.batch_size, seed=0,
                              training_kwargs={"loss": args.loss})
    trained_on = {"dataset": "mnist", "split": "train", "normal_label": str(digit),
                  "limit": args.limit, "loss": args.loss}
    if runs.is_finished(run):
        opened = runs.load_run(run, task="anomaly")
        detector = anomaly.Detector.from_run(opened)
        stored, asked = detector.get_params(), wanted.get_params()
        if opened.info["options"].get("data") != trained_on or any(
                stored[k] != asked[k] for k in asked if k != "model"):
            raise ValueError(f"{run} was trained with other settings; choose another --runs.")
        print(f"Reusing {run}", flush=True)
        return detector
    print(f"Fitting {run} on {len(x_normal)} images of digit {digit} ...", flush=True)
    with runs.locked(run):
        wanted.fit(x_normal, out_dir=run)
        wanted.save(run, extra={"data": trained_on})
    return wanted


@cli.guarded("anomaly_mnist.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    args = parse_args(argv)
    use_offline_tfds()
    cli.start_tensorflow()
    from aezoo import anomaly

    x_train, y_train = load("train", args.limit)
    x_test, y_test = load("test", args.limit)
    rows = {}
    for digit in args.digits:
        normal = anomaly.is_normal(y_train, str(digit))
        detector = fitted_detector(args, digit, x_train[normal])
        is_anomaly = ~anomaly.is_normal(y_test, str(digit))
        forest_train, forest = anomaly.isolation_forest_scores(x_train[normal], x_test, 0)
        rows[digit] = {
            "autoencoder": anomaly.detection_metrics(
                is_anomaly, detector.score(x_test), detector.threshold_)["roc_auc"],
            "isolation_forest": anomaly.detection_metrics(
                is_anomaly, forest, anomaly.threshold_from(forest_train, detector.threshold)
            )["roc_auc"],
        }

    detectors = ("autoencoder", "isolation_forest")
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in detectors}
    images = f"first {args.limit}" if args.limit else "all"
    print(f"\nMNIST one-class ROC-AUC ({images} test images; conv, {args.epochs} epochs, "
          f"batch {args.batch_size}, {args.loss} loss)")
    print(f"{'normal digit':<14}{'autoencoder':>13}{'IsolationForest':>17}")
    for digit, r in rows.items():
        print(f"{digit:<14}{r['autoencoder']:>13.4f}{r['isolation_forest']:>17.4f}")
    print(f"{'mean':<14}{mean['autoencoder']:>13.4f}{mean['isolation_forest']:>17.4f}")
    out = args.json or args.runs / "results.json"
    write_json(out, {"setting": vars(args) | {"runs": str(args.runs), "json": str(out)},
                     "roc_auc": {str(k): v for k, v in rows.items()}, "mean": mean})
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
