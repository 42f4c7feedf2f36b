"""ECG5000 anomaly detection: the sequence autoencoder against IsolationForest and PCA.

The TensorFlow tutorial's setting: ecg.csv (4998 heartbeats of 140 samples, label 1 =
normal), split with scikit-learn's train_test_split(test_size=0.2, random_state=21) over
the whole file, trained on the normal rows of the training part, scored on the test part
(1000 rows, 440 abnormal).  For each seed it runs

    python applications/detect_anomalies.py train --csv ECG --label-column -1 \\
        --normal-label 1 --split train --test-size 0.2 --split-seed 21 --model MODEL \\
        --latent-dim 8 --epochs 30 --batch-size 64 --learning-rate 0.003 --seed S --out RUN
    python applications/detect_anomalies.py score --model RUN --csv ECG --label-column -1 \\
        --split test --out RUN/test

and adds a PCA reconstruction-error detector (8 components, fitted on the same scaled normal
training rows, threshold by the same rule).  Finished runs are reused.

    python benchmarks/anomaly_ecg5000.py                      # 3 seeds of `sequence`
    python benchmarks/anomaly_ecg5000.py --models sequence sequence_lstm --seeds 0

Prints a table and writes RUNS/anomaly_ecg5000/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from offline import DATA  # noqa: E402  (this folder's offline.py)

ROOT = Path(__file__).resolve().parents[1]
ECG = DATA / "raw" / "ecg5000" / "ecg.csv"
TUTORIAL_ACCURACY = 0.944  # the TF tutorial's dense autoencoder at mean + std
SPLIT = ["--split-seed", "21", "--test-size", "0.2"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", type=Path, default=ECG)
    parser.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "anomaly_ecg5000")
    parser.add_argument("--models", nargs="+", default=["sequence"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--components", type=int, default=8, help="of the PCA detector")
    parser.add_argument("--json", type=Path, help="default: RUNS/results.json")
    return parser.parse_args(argv)


def run_detector(app, args, model: str, seed: int) -> Path:
    run = args.runs / f"{model}_seed{seed}"
    data = ["--csv", str(args.csv), "--label-column", "-1"]
    if not (run / "anomaly.json").exists():
        status = app.main([
            "train", *data, "--normal-label", "1", "--split", "train", *SPLIT,
            "--model", model, "--latent-dim", "8", "--epochs", str(args.epochs),
            "--batch-size", "64", "--learning-rate", "0.003", "--seed", str(seed),
            "--out", str(run),
        ])
        assert status == 0, f"training {run} failed"
    if not (run / "test" / "metrics.json").exists():
        assert app.main(["score", "--model", str(run), *data, "--split", "test",
                         "--out", str(run / "test")]) == 0, f"scoring {run} failed"
    return run


def pca_detector(app, args, run: Path) -> dict:
    """PCA reconstruction error on the run's scaled rows, thresholded by the run's rule."""
    from sklearn.decomposition import PCA

    stored = json.loads((run / "anomaly.json").read_text())
    options = argparse.Namespace(**stored["train_data"])
    options.csv = Path(options.csv)
    train = app.load_examples(options, default_split="train")
    options.split = "test"
    test = app.load_examples(options, default_split="test")
    normal = app.apply_scaling(stored["scaling"], train.x[app.normal_mask(train, "1")])
    x = app.apply_scaling(stored["scaling"], test.x)
    pca = PCA(args.components).fit(normal)

    def errors(rows):
        return np.mean((pca.inverse_transform(pca.transform(rows)) - rows) ** 2, axis=1)

    threshold = app.threshold_from(errors(normal), stored["threshold_rule"])
    return app.detection_metrics(~app.normal_mask(test, "1"), errors(x), threshold)


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT / "applications"))
    import detect_anomalies as app
    rows = {}
    for model in args.models:
        for seed in args.seeds:
            run = run_detector(app, args, model, seed)
            metrics = json.loads((run / "test" / "metrics.json").read_text())
            rows[f"{model} seed {seed}"] = metrics["autoencoder"]
            rows[f"IsolationForest seed {seed}"] = metrics["isolation_forest"]
    for model in args.models:
        mine = [rows[f"{model} seed {s}"] for s in args.seeds]
        rows[f"{model} mean"] = {k: float(np.mean([m[k] for m in mine])) for k in mine[0]}
    rows[f"PCA {args.components} components"] = pca_detector(app, args, run)

    keys = ("roc_auc", "average_precision", "accuracy", "precision", "recall",
            "normal_positive_precision", "normal_positive_recall")
    heads = ("ROC-AUC", "AP", "accuracy", "prec", "recall", "prec(n+)", "recall(n+)")
    print(f"ECG5000, the TF tutorial's split (1000 test rows); {args.epochs} epochs; "
          "thresholds: percentile:95 of each detector's training scores")
    print(f"{'detector':<26}" + "".join(f"{h:>11}" for h in heads))
    for name, m in rows.items():
        print(f"{name:<26}" + "".join(f"{m[k]:>11.4f}" for k in keys))
    print(f"{'TF tutorial dense AE':<26}{'':>11}{'':>11}{TUTORIAL_ACCURACY:>11.4f}"
          "   (its precision and recall take the normal class as positive)")
    out = args.json or args.runs / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {"setting": {"csv": str(args.csv), "test_size": 0.2, "random_state": 21,
                     "epochs": args.epochs, "seeds": args.seeds, "models": args.models},
         "tutorial_accuracy": TUTORIAL_ACCURACY, "results": rows}, indent=2))
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
