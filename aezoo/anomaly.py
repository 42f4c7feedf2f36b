"""Anomaly detection by autoencoder reconstruction error, as a library.

An autoencoder trained on normal examples only reconstructs them well, so a large
reconstruction error (each example's mean squared error) flags an anomaly.  `Detector`
follows scikit-learn and PyOD: fit on normal examples, then score, predict and save:

>>> from aezoo.anomaly import Detector
>>> detector = Detector().fit(x_normal)            # NumPy array or pandas DataFrame
>>> detector.score(x)                              # anomaly scores (also decision_function)
>>> detector.predict(x)                            # 1 = anomaly, 0 = normal
>>> detector.threshold_
>>> detector.save("runs/ecg"); Detector.load("runs/ecg")
>>> detector.export("exports/ecg")                 # a SavedModel for TF Serving

Its defaults are the recipe measured best on ECG5000 (`benchmarks/anomaly_ecg5000.py`):
a 1-D convolutional `sequence` model for rows of 32 or more values (signals), `dense` for
shorter rows (records) and `conv` for images; a latent of 8 numbers (32 for images, as
measured on MNIST), 30 epochs of Adam at 3e-3 in batches of 64; min-max scaling for signals
(one offset and scale for all values, as the TensorFlow ECG tutorial), per-feature
standardisation for records; and the threshold at the 95th percentile of the training
scores.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aezoo import data, export, runs, training
from aezoo.models import MODELS
from aezoo.models.base import check_int

SCALINGS = ("auto", "minmax", "standard", "standard_per_feature", "none")
# Rows at least this long are signals (a 1-D convolutional model, one scale for all
# values); shorter rows are records whose columns have their own units.
SIGNAL_LENGTH = 32


class Detector:
    """Finds the examples that do not fit: scores are reconstruction errors.

    Args:
        model: a name in `aezoo.MODELS`, or "auto": the initial model's with an `init` in
            `training_kwargs`, else chosen by the data (see `default_model`).
        threshold: "percentile:P" (0-100), "mean_std:K" or "contamination:C" (0-0.5) of
            the training scores; scores above it are anomalies.
        scaling: one of `SCALINGS`, fitted on the training examples.
        latent_dim: size of the model's code; None: 8 for rows (signals and records), 32
            for images, the sizes measured on ECG5000 and MNIST (with an `init` in
            `training_kwargs`: the initial model's).
        epochs, batch_size, learning_rate: the training (Adam).
        model_kwargs: more builder arguments.
        training_kwargs: more arguments of `aezoo.training.train` (strategy,
            mixed_precision, lr_schedule, init, ...).
        seed: seed of the training.
        verbose: Keras's verbosity while training and scoring.

    Attributes (after `fit`): `model_`, `model_name_`, `example_shape_`, `scaling_`,
    `threshold_`, `train_scores_`, `history_`.  After `load`, `train_scores_` is None:
    a run keeps the scores' count, mean, std, min and max, not the scores.
    """

    def __init__(
        self,
        model: str = "auto",
        *,
        threshold: str = "percentile:95",
        scaling: str = "auto",
        latent_dim: int | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        learning_rate: float = 3e-3,
        model_kwargs: dict[str, Any] | None = None,
        training_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
        verbose: int | str = 0,
    ):
        if model != "auto" and model not in MODELS:
            raise ValueError(f"`model` must be 'auto' or one of {', '.join(MODELS)}. "
                             f"Received: model={model!r}")
        parse_threshold(threshold)
        if scaling not in SCALINGS:
            raise ValueError(f"`scaling` must be one of {', '.join(SCALINGS)}. "
                             f"Received: scaling={scaling!r}")
        if latent_dim is not None:
            check_int("latent_dim", latent_dim)
        check_int("batch_size", batch_size)
        check_int("seed", seed, minimum=0)
        training.check_training_options(epochs=epochs, learning_rate=learning_rate)
        self.model, self.threshold, self.scaling = model, threshold, scaling
        self.latent_dim, self.epochs, self.batch_size = latent_dim, epochs, batch_size
        self.learning_rate, self.seed, self.verbose = learning_rate, seed, verbose
        self.model_kwargs = dict(model_kwargs or {})
        self.training_kwargs = dict(training_kwargs or {})

    # ------------------------------------------------------------------ fitting

    def fit(self, x, out_dir: str | os.PathLike | None = None) -> "Detector":
        """Fits the scaling, the model and the threshold on normal examples `x`.

        Args:
            x: normal examples, (N, features) rows or (N, height, width, channels) images.
            out_dir: optional folder for checkpoints, so an interrupted fit resumes (see
                `aezoo.training.train`); `save` may write the run there afterwards.
        """
        x = as_array(x)
        if len(x) < 2:
            raise ValueError(f"Fit needs at least 2 normal examples; got {len(x)}.")
        training_kwargs = dict(self.training_kwargs)  # `save` records the caller's, not these
        if self.model != "auto":
            self.model_name_ = self.model
        elif training_kwargs.get("init") is not None:  # fine-tuning: the initial model
            # Opened once here: its name chooses the builder and train takes its weights.
            training_kwargs["init"] = training.open_initial(training_kwargs["init"])
            self.model_name_ = training.initial_model_name(training_kwargs["init"])
        else:
            self.model_name_ = default_model(x)
        self.example_shape_ = tuple(int(n) for n in x.shape[1:])
        self.scaling_ = fit_scaling(self.scaling, x)
        inputs = self.model_input(x)
        kwargs = dict(self.model_kwargs)
        if self.latent_dim is not None:
            kwargs["latent_dim"] = self.latent_dim
        elif self.training_kwargs.get("init") is None:  # else the initial model's
            kwargs["latent_dim"] = 8 if x.ndim == 2 else 32
        started, cpu_started = time.time(), time.process_time()
        self.model_, self.history_ = training.train(
            self.model_name_, inputs, model_kwargs=kwargs, epochs=self.epochs,
            batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
            out_dir=out_dir, verbose=self.verbose, **training_kwargs,
        )
        self.timing_ = {"wall_seconds": time.time() - started,
                        "cpu_seconds": time.process_time() - cpu_started}
        self.train_scores_ = reconstruction_errors(self.model_, inputs, verbose=self.verbose)
        self.threshold_ = threshold_from(self.train_scores_, self.threshold)
        return self

    def model_input(self, x: np.ndarray) -> np.ndarray:
        """Examples as the model takes them: scaled, with a channel axis for signals."""
        rank = len(MODELS.signature(self.model_name_).parameters["input_shape"].default)
        return as_model_input(apply_scaling(self.scaling_, x), rank)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ValueError("This Detector is not fitted yet: call fit(x) or Detector.load().")

    # ------------------------------------------------------------------ scoring

    def score(self, x, batch_size: int = 256) -> np.ndarray:
        """Each example's anomaly score (float64): higher is more anomalous; the model
        reconstructs `batch_size` examples at a time."""
        self._check_fitted()
        x = as_array(x)
        # Before the scaling, whose per-feature offsets would broadcast (N, 1) rows to the
        # fitted width and score them without a word.
        fitted = tuple(self.example_shape_)
        if x.ndim < 2 or tuple(x.shape[1:]) != fitted:
            raise ValueError(f"The detector was fitted on examples of shape "
                             f"{fitted}; these are {tuple(x.shape[1:])} "
                             f"(an array of {x.shape}).")
        inputs = self.model_input(x)
        training.check_fits(self.model_, inputs.shape[1:])
        return reconstruction_errors(self.model_, inputs, check_int("batch_size", batch_size),
                                     verbose=self.verbose)

    decision_function = score  # scikit-learn's and PyOD's name

    def predict(self, x) -> np.ndarray:
        """1 for the examples scored above `threshold_` (anomalies), 0 for the others."""
        return (self.score(x) > self.threshold_).astype(np.int64)

    # ------------------------------------------------------------------ saving

    def application(self) -> dict[str, Any]:
        """What a run stores beside the model (`run.json`'s `application`)."""
        self._check_fitted()
        scores = self.train_scores_
        if scores is None:  # loaded: the summary its run recorded
            count, summary = self._train_summary
        else:
            count, summary = int(len(scores)), {
                "mean": float(scores.mean()), "std": float(scores.std()),
                "min": float(scores.min()), "max": float(scores.max())}
        return {
            "threshold": float(self.threshold_),
            "threshold_rule": self.threshold,
            "scaling": self.scaling_,
            "train_examples": count,
            "train_scores": summary,
            "example_shape": list(self.example_shape_),
        }

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> runs.Run:
        """Writes the detector as a run folder (model, run.json, export/1, plots).

        `path` may be the `out_dir` given to `fit` (which holds the model already), or a
        new folder.
        """
        self._check_fitted()
        path = Path(path)
        runs.refuse_finished(path)
        path.mkdir(parents=True, exist_ok=True)
        runs.clean_partials(path)
        if not (path / runs.MODEL_FILE).is_file():
            training.save_model(self.model_, path / runs.MODEL_FILE)
        return runs.finish_run(
            path, self.history_, task="anomaly", model=self.model_name_,
            # (what this process trained with, a strategy say, is not the detector's)
            options={"detector": {k: v for k, v in self.get_params().items()
                                  if k not in ("training_kwargs", "verbose")},
                     **(extra or {})},
            application=self.application(), title=f"{self.model_name_} anomaly detector",
            edit_endpoints=self.serving_endpoints, timing=getattr(self, "timing_", None),
        )

    def export(self, base_dir: str | os.PathLike, version: int | None = None) -> Path:
        """Writes the detector as a SavedModel version `base_dir/<version>/` for TF Serving,
        as `aezoo export` does for a detector's run: its signatures take examples as they
        come and return their `score` and `anomaly` (see `serving_endpoints`).  Exporting
        `model_` alone with `aezoo.export.export_saved_model` would serve scores of
        examples scaled first by the caller, with no threshold.

        Returns:
            The new version's folder (see `aezoo.export.export_saved_model`, which raises
            as it does).
        """
        self._check_fitted()
        return export.export_saved_model(self.model_, base_dir, version=version,
                                         edit_endpoints=self.serving_endpoints)

    @classmethod
    def load(cls, source: str | os.PathLike) -> "Detector":
        """A fitted detector from a run folder of `save` (or `aezoo anomalies train`) or a
        preset name."""
        run = runs.load_run(source, task="anomaly")
        return cls.from_run(run)

    @classmethod
    def from_run(cls, run: runs.Run) -> "Detector":
        """The detector a loaded run folder (or preset) holds: its model, threshold and
        scaling, as `save` wrote them."""
        app = run.application
        params = run.info.get("options", {}).get("detector", {})
        detector = cls(**{k: v for k, v in params.items() if k != "model"},
                       model=run.info["model"] or "auto")
        detector.model_name_ = run.info["model"]
        detector.model_ = run.model
        # Runs of aezoo 0.1 did not record the shape: the model's, less the channel axis
        # that `as_model_input` gives rows of a one-channel signal.
        shape = tuple(run.model.input_shape[1:])
        legacy = shape[:-1] if len(shape) == 2 and shape[-1] == 1 else shape
        detector.example_shape_ = tuple(app.get("example_shape", legacy))
        detector.scaling_ = app["scaling"]
        detector.threshold_ = float(app["threshold"])
        detector.threshold = app.get("threshold_rule", detector.threshold)
        # (saved again, the detector records them as they were, not a summary of one)
        detector.train_scores_ = None
        detector._train_summary = (app.get("train_examples"), app.get("train_scores", {}))
        history = run.path / "history.json"  # (a preset has none)
        detector.history_ = json.loads(history.read_text()) if history.is_file() else {}
        return detector

    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's convention)."""
        return {"model": self.model, "threshold": self.threshold, "scaling": self.scaling,
                "latent_dim": self.latent_dim, "epochs": self.epochs,
                "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                "model_kwargs": self.model_kwargs,
                "training_kwargs": self.training_kwargs, "seed": self.seed,
                "verbose": self.verbose}

    def serving_endpoints(self, endpoints: dict) -> dict:
        """The SavedModel of the detector takes examples as `score` does (before scaling):
        `score` and `serving_default` return each example's anomaly `score` and `anomaly`
        (1 above the threshold), `encode` its latent code."""
        import tensorflow as tf

        raw = {"x": tf.TensorSpec((None, *self.example_shape_), tf.float32, name="x")}
        rank = len(self.model_.input_shape) - 1

        def from_raw(endpoint):
            def fn(inputs):
                x = as_model_input(apply_scaling(self.scaling_, inputs["x"]), rank)
                return endpoint.fn({"x": x})

            return export.Endpoint(raw, fn)

        score = from_raw(endpoints["score"])
        threshold = self.threshold_

        def detect(inputs):
            value = score.fn(inputs)["score"]
            return {"score": value, "anomaly": tf.cast(value > threshold, tf.int32)}

        detector = export.Endpoint(raw, detect)
        # decode and reconstruct_image work in the scaled units: left to model.keras.
        return {"serving_default": detector, "score": detector,
                "encode": from_raw(endpoints["encode"])}


def as_array(x) -> np.ndarray:
    """Examples as a float32 NumPy array: arrays as they are, pandas DataFrames by their
    values; NaN, infinities and non-numbers are refused."""
    values = x.to_numpy() if hasattr(x, "to_numpy") else x
    try:
        array = np.asarray(values, dtype=np.float32) if not np.iscomplexobj(values) else None
    except (TypeError, ValueError):
        array = None
    if array is None:
        raise ValueError("The examples must be real numbers (a float array or DataFrame).")
    if array.ndim < 2 or len(array) == 0:
        raise ValueError(f"Expected examples (N, features) or (N, height, width, channels); "
                         f"got an array of shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError("The examples hold NaN or infinite values; clean them first.")
    return array


@dataclass
class Examples:
    """Examples as arrays: x (N, ...), labels (N,) or None, and where each came from."""

    x: np.ndarray
    labels: np.ndarray | None
    index: np.ndarray  # position in the input (row of the CSV, example of the split, file)
    files: list[str] | None = None


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


def select_split(
    examples: Examples, split: str = "all", test_size: float = 0.2, seed: int = 0
) -> Examples:
    """All examples, or one side ("train", "test") of scikit-learn's `train_test_split`
    (`test_size`: a fraction in (0, 1) or a count; `seed`: its `random_state`), kept in
    input order."""
    from sklearn.model_selection import train_test_split

    if split == "all":
        return examples
    if split not in ("train", "test"):
        raise ValueError(f"The split must be all, train or test. Received: {split!r}")
    n = len(examples.x)
    count = test_size if test_size >= 1 else test_size * n
    if not (0 < test_size < 1 or float(test_size).is_integer()) or not 1 <= count <= n - 1:
        raise ValueError(f"The test size must be a fraction in (0, 1) or a count that leaves "
                         f"examples on both sides of {n}. Received: {test_size!r}")
    train, test = train_test_split(
        np.arange(n), test_size=int(test_size) if test_size >= 1 else test_size,
        random_state=seed,
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


def reconstruction_errors(model, x: np.ndarray, batch_size: int = 256, verbose=0) -> np.ndarray:
    """The anomaly score: each example's mean squared reconstruction error."""
    x_hat = np.asarray(model.predict(x, batch_size=batch_size, verbose=verbose))
    return np.mean(np.square(x_hat - x).reshape(len(x), -1), axis=1, dtype=np.float64)


def parse_threshold(rule: str) -> tuple[str, float]:
    """A threshold rule ("percentile:95", "mean_std:3", "contamination:0.05") as (kind,
    value), checked: ValueError naming the rule otherwise."""
    kind, _, text = str(rule).partition(":")
    ranges = {"percentile": (0, 100), "mean_std": (-math.inf, math.inf),
              "contamination": (0, 0.5)}
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    low, high = ranges.get(kind, (math.nan, math.nan))
    inside = low < value < high if kind == "contamination" else low <= value <= high
    if not (math.isfinite(value) and inside):
        raise ValueError(
            "The threshold must be percentile:P (0-100), mean_std:K or contamination:C "
            "(0-0.5). "
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


def roc(is_anomaly: np.ndarray, scores: np.ndarray):
    """The ROC curve of `scores` against the true labels: (false positive rates, true
    positive rates, ROC-AUC), by scikit-learn."""
    from sklearn import metrics

    fpr, tpr, _ = metrics.roc_curve(is_anomaly, scores)
    return fpr, tpr, metrics.roc_auc_score(is_anomaly, scores)
