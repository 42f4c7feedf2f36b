"""ECG5000 anomaly detection: aezoo's `Detector` against IsolationForest and PCA.

The TensorFlow tutorial's setting: ecg.csv (4998 heartbeats of 140 samples, label 1 =
normal), split with scikit-learn's train_test_split(test_size=0.2, random_state=21) over
the whole file (`--split-seed` picks another random 80/20 split), trained on the normal
rows of the training part, scored on the test part (1000 rows; 440 abnormal on the
tutorial's split).  For each model and seed it fits `aezoo.anomaly.Detector` with its
defaults (the recipe measured best: `sequence` for these rows, latent 8, 30 epochs of Adam
at 3e-3 in batches of 64, min-max scaling, threshold percentile:95 of the training scores),
as the command does:

    aezoo anomalies train --csv ECG --label-column -1 --normal-label 1 --split train \\
        --test-size 0.2 --split-seed 21 --seed S --out RUN
    aezoo anomalies score --model RUN --csv ECG --label-column -1 --split test \\
        --out RUN/test

and compares it, on the same split, with an IsolationForest and a PCA reconstruction-error
detector (8 components), both fitted on the same scaled normal training rows and
thresholded by the same rule.  Finished runs (RUNS/split<SPLIT_SEED>/<model>_seed<S>) are
reused.

    python benchmarks/anomaly_ecg5000.py                      # 3 seeds of Detector()
    python benchmarks/anomaly_ecg5000.py --split-seed 7 --seeds 0
    python benchmarks/anomaly_ecg5000.py --models sequence sequence_lstm --seeds 0
    python benchmarks/anomaly_ecg5000.py --latent-dim 16 --epochs 10 --learning-rate 1e-3 \\
        --batch-size 128 --runs ../runs/ecg_old_defaults   # aezoo 0.1 command defaults
    python benchmarks/anomaly_ecg5000.py --epochs 1 --seeds 0 --runs /tmp/ecg   # a smoke test

Prints a table and writes RUNS/split<SPLIT_SEED>/results.json (RUNS: ../runs/anomaly_ecg5000).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from offline import DATA, write_json

from aezoo.apps import cli

ROOT = Path(__file__).resolve().parents[1]
ECG = DATA / "raw" / "ecg5000" / "ecg.csv"
TUTORIAL_SPLIT_SEED = 21
TUTORIAL_ACCURACY = 0.944  # the TF tutorial's dense autoencoder at mean + std, its split
NORMAL = "1"


def fraction(text: str) -> float:
    """--test-size: a share of the rows, never a count (`train_test_split` reads 2 as two
    rows, where 2 would rather be a mistyped 0.2 or 2 %)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:  # (NaN too)
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text!r}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", type=Path, default=ECG)
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "anomaly_ecg5000")
    parser.add_argument("--split-seed", type=int, default=TUTORIAL_SPLIT_SEED,
                        help="random_state of the split (default 21, the tutorial's)")
    parser.add_argument("--test-size", type=fraction, default=0.2,
                        help="the fraction of the rows held out for testing, in (0, 1) "
                        "(default 0.2, the tutorial's 80/20 split)")
    parser.add_argument("--models", nargs="+", default=["auto"],
                        help="Detector models (default auto: sequence for these rows)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    # None: the Detector's default (the recipe this benchmark measured best).
    parser.add_argument("--latent-dim", type=cli.positive_int)
    parser.add_argument("--epochs", type=cli.positive_int)
    parser.add_argument("--learning-rate", type=cli.positive_float)
    parser.add_argument("--batch-size", type=cli.positive_int)
    parser.add_argument("--threshold", default="percentile:95")
    parser.add_argument("--components", type=cli.positive_int, default=8, help="of the PCA detector")
    parser.add_argument("--json", type=Path, help="default: RUNS/split<SPLIT_SEED>/results.json")
    return parser.parse_args(argv)


def load_split(args):
    """(normal training rows, test rows, test anomaly mask) of the split."""
    from aezoo import anomaly, data

    x, labels = data.read_csv(args.csv, label_column=-1)
    examples = anomaly.Examples(x, labels, np.arange(len(x)))
    train, test = (anomaly.select_split(examples, side, args.test_size, args.split_seed)
                   for side in ("train", "test"))
    return (train.x[anomaly.is_normal(train.labels, NORMAL)], test.x,
            ~anomaly.is_normal(test.labels, NORMAL), len(train.x))


def detector_options(args, seed: int) -> dict:
    chosen = {"latent_dim": args.latent_dim, "epochs": args.epochs,
              "learning_rate": args.learning_rate, "batch_size": args.batch_size}
    return {"threshold": args.threshold, "seed": seed,
            **{k: v for k, v in chosen.items() if v is not None}}


def fitted_detector(args, model: str, seed: int, x_normal):
    """The run's detector: loaded when finished (with the same settings), else fitted and
    saved (an interrupted fit resumes from its checkpoints)."""
    from aezoo import anomaly, runs

    name = anomaly.default_model(x_normal) if model == "auto" else model
    run = args.runs / f"split{args.split_seed}" / f"{name}_seed{seed}"
    wanted = anomaly.Detector(model, **detector_options(args, seed))
    trained_on = {"csv": str(args.csv.resolve()), "label_column": -1, "normal_label": NORMAL,
                  "split": "train", "test_size": args.test_size, "split_seed": args.split_seed}
    if runs.is_finished(run):
        opened = runs.load_run(run, task="anomaly")
        detector = anomaly.Detector.from_run(opened)
        stored, asked = detector.get_params(), wanted.get_params()
        if opened.info["options"].get("data") != trained_on or any(
                stored[k] != asked[k] for k in asked if k != "model"):
            raise ValueError(f"{run} holds a detector trained with other settings or data "
                             f"({stored}); choose another --runs.")
        print(f"Reusing {run}", flush=True)
        return detector
    print(f"Fitting {run} on {len(x_normal)} normal rows ...", flush=True)
    started = time.perf_counter()
    with runs.locked(run):
        wanted.fit(x_normal, out_dir=run)
        wanted.save(run, extra={"data": trained_on})
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return wanted


def pca_scores(train, x, components: int):
    """PCA reconstruction error (per-row MSE): (training scores, scores of x)."""
    from sklearn.decomposition import PCA

    pca = PCA(components, svd_solver="full").fit(train)

    def errors(rows):
        return np.mean((pca.inverse_transform(pca.transform(rows)) - rows) ** 2, axis=1)

    return errors(train), errors(x)


@cli.guarded("anomaly_ecg5000.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    args = parse_args(argv)
    cli.start_tensorflow()
    from aezoo import anomaly

    x_normal, x_test, is_anomaly, train_rows = load_split(args)
    rows, settings = {}, {}
    for model in args.models:
        for seed in args.seeds:
            detector = fitted_detector(args, model, seed, x_normal)
            name = detector.model_name_ if model == "auto" else model
            settings[name] = {k: v for k, v in detector.get_params().items() if k != "seed"}
            rows[f"{name} seed {seed}"] = anomaly.detection_metrics(
                is_anomaly, detector.score(x_test), detector.threshold_)
        mine = [rows[f"{name} seed {s}"] for s in args.seeds]
        if len(mine) > 1:
            rows[f"{name} mean"] = {k: float(np.mean([m[k] for m in mine])) for k in mine[0]}
    # The baselines on the rows as the (last) detector scaled them: the same for every
    # detector with the default scaling, which is fitted on the same normal rows.
    scaled_normal = anomaly.apply_scaling(detector.scaling_, x_normal)
    scaled_test = anomaly.apply_scaling(detector.scaling_, x_test)
    for seed in args.seeds:
        forest_train, forest = anomaly.isolation_forest_scores(scaled_normal, scaled_test, seed)
        rows[f"IsolationForest seed {seed}"] = anomaly.detection_metrics(
            is_anomaly, forest, anomaly.threshold_from(forest_train, args.threshold))
    pca_train, pca = pca_scores(scaled_normal, scaled_test, args.components)
    rows[f"PCA-{args.components} recon. error"] = anomaly.detection_metrics(
        is_anomaly, pca, anomaly.threshold_from(pca_train, args.threshold))

    keys = ("roc_auc", "average_precision", "accuracy", "precision", "recall",
            "normal_positive_precision", "normal_positive_recall")
    heads = ("ROC-AUC", "AP", "accuracy", "prec", "recall", "prec(n+)", "recall(n+)")
    which = "the TF tutorial's" if args.split_seed == TUTORIAL_SPLIT_SEED else "a random 80/20"
    print(f"\nECG5000, {which} split (train_test_split random_state {args.split_seed}): "
          f"{train_rows} training rows, {len(x_normal)} normal; {len(x_test)} test rows, "
          f"{int(is_anomaly.sum())} abnormal; thresholds: {args.threshold} of each "
          "detector's training scores")
    for name, params in settings.items():
        print(f"{name}: latent {params['latent_dim'] or 8}, {params['epochs']} epochs, Adam "
              f"{params['learning_rate']:g}, batch {params['batch_size']}")
    print(f"{'detector':<26}" + "".join(f"{h:>11}" for h in heads))
    for name, m in rows.items():
        print(f"{name:<26}" + "".join(f"{m[k]:>11.4f}" for k in keys))
    if args.split_seed == TUTORIAL_SPLIT_SEED:
        print(f"{'TF tutorial dense AE':<26}{'':>11}{'':>11}{TUTORIAL_ACCURACY:>11.4f}"
              "   (its precision and recall take the normal class as positive)")
    out = args.json or args.runs / f"split{args.split_seed}" / "results.json"
    write_json(out, {"setting": {"csv": str(args.csv), "test_size": args.test_size,
                                 "split_seed": args.split_seed, "seeds": args.seeds,
                                 "models": args.models, "detectors": settings,
                                 "threshold": args.threshold,
                                 "pca_components": args.components},
                     "tutorial_accuracy": TUTORIAL_ACCURACY, "results": rows})
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
