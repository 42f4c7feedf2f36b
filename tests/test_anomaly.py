"""aezoo.anomaly.Detector: the scikit-learn-style API on arrays and DataFrames, no files."""

import json

import numpy as np
import pytest

from aezoo import anomaly


def sines(n, length=40, spikes=False, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    x = rng.uniform(0.5, 1, (n, 1)) * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 6.3, (n, 1)))
    if spikes:
        for row in x:
            row[rng.choice(length, 3, replace=False)] += 4.0
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    normal = sines(200)
    detector = anomaly.Detector(latent_dim=4, epochs=8, batch_size=32, seed=1)
    return detector.fit(normal), normal


def test_fit_picks_the_recipe_for_signals_and_the_threshold_of_its_rule(fitted):
    detector, normal = fitted
    assert detector.model_name_ == "sequence" and detector.scaling_["kind"] == "minmax"
    assert detector.scaling_["offset"] == pytest.approx(float(normal.min()))
    # The threshold is numpy's 95th percentile of the training scores, which are the scores
    # the detector gives the training rows.
    np.testing.assert_allclose(detector.train_scores_, detector.score(normal), rtol=1e-6)
    assert detector.threshold_ == pytest.approx(np.percentile(detector.train_scores_, 95))


def test_scores_are_each_examples_mean_squared_error_in_scaled_units(fitted):
    detector, _ = fitted
    x = np.concatenate([sines(20, seed=5), sines(20, spikes=True, seed=6)])
    low, span = detector.scaling_["offset"], detector.scaling_["scale"]
    scaled = ((x - low) / span)[..., None]
    by_hand = np.mean((detector.model_.predict(scaled, verbose=0) - scaled) ** 2, axis=(1, 2))
    np.testing.assert_allclose(detector.score(x), by_hand, rtol=1e-5)
    np.testing.assert_array_equal(detector.decision_function(x), detector.score(x))
    predicted = detector.predict(x)
    assert set(np.unique(predicted)) <= {0, 1}
    np.testing.assert_array_equal(predicted, detector.score(x) > detector.threshold_)
    # Spikes of height 4 on unit sines are found.
    assert predicted[20:].mean() == 1.0 and predicted[:20].mean() < 0.5


def test_a_dataframe_scores_as_its_values(fitted):
    pandas = pytest.importorskip("pandas")
    detector, _ = fitted
    x = sines(10, seed=9)
    frame = pandas.DataFrame(x, columns=[f"t{i}" for i in range(x.shape[1])])
    np.testing.assert_array_equal(detector.score(frame), detector.score(x))


def test_save_and_load_give_the_same_scores(fitted, tmp_path):
    detector, _ = fitted
    run = detector.save(tmp_path / "run")
    assert run.task == "anomaly" and (tmp_path / "run" / "export" / "1").is_dir()
    loaded = anomaly.Detector.load(tmp_path / "run")
    x = np.concatenate([sines(8, seed=3), sines(8, spikes=True, seed=4)])
    np.testing.assert_allclose(loaded.score(x), detector.score(x), rtol=1e-6)
    assert loaded.threshold_ == detector.threshold_
    np.testing.assert_array_equal(loaded.predict(x), detector.predict(x))
    with pytest.raises(FileExistsError):
        detector.save(tmp_path / "run")
    # Saved again, the loaded detector records the training scores as they were (before:
    # a summary of one score, their mean).
    loaded.save(tmp_path / "again")
    stored = json.loads((tmp_path / "again" / "run.json").read_text())["application"]
    scores = detector.train_scores_
    assert stored["train_examples"] == len(scores) == 200
    assert stored["train_scores"] == pytest.approx(
        {"mean": scores.mean(), "std": scores.std(), "min": scores.min(), "max": scores.max()})
    assert loaded.train_scores_ is None
    assert loaded.history_ == detector.history_ and len(loaded.history_["loss"]) == 8


def test_get_params_gives_every_argument_of_the_constructor():
    """scikit-learn's convention, which `sklearn.base.clone` relies on (training_kwargs and
    verbose were left out)."""
    import inspect

    kwargs = {"model": "dense", "threshold": "mean_std:3", "scaling": "standard",
              "latent_dim": 3, "epochs": 2, "batch_size": 8, "learning_rate": 0.01,
              "model_kwargs": {"units": (16,)}, "training_kwargs": {"lr_schedule": "cosine"},
              "seed": 4, "verbose": 1}
    assert set(kwargs) == set(inspect.signature(anomaly.Detector).parameters)
    assert anomaly.Detector(**kwargs).get_params() == kwargs


def test_export_serves_the_scores_and_flags_of_raw_examples(fitted, tmp_path):
    import tensorflow as tf

    detector, _ = fitted
    target = detector.export(tmp_path / "exports")
    assert target == tmp_path / "exports" / "1"
    served = tf.saved_model.load(str(target)).signatures["serving_default"]
    x = np.concatenate([sines(8, seed=3), sines(8, spikes=True, seed=4)])
    out = served(x=tf.constant(x))
    # The examples as they come: the SavedModel scales them and applies the threshold.
    np.testing.assert_allclose(out["score"].numpy(), detector.score(x), rtol=1e-5)
    np.testing.assert_array_equal(out["anomaly"].numpy(), detector.predict(x))
    assert detector.export(tmp_path / "exports") == tmp_path / "exports" / "2"
    with pytest.raises(ValueError, match="not fitted yet"):
        anomaly.Detector().export(tmp_path / "unfitted")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"threshold": "contamination:0"}, "threshold must be"),
        ({"threshold": "contamination:0.5"}, "threshold must be"),
        ({"threshold": "median:3"}, "threshold must be"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": 10**400}, "`learning_rate` must be a positive, finite number"),
        ({"model": "nope"}, "`model` must be"),
        ({"scaling": "log"}, "`scaling` must be"),
        ({"latent_dim": 0}, "`latent_dim` must be a positive integer"),
        ({"latent_dim": 2.5}, "`latent_dim` must be a positive integer"),
        ({"batch_size": -1}, "`batch_size` must be a positive integer"),
        ({"seed": "a"}, "`seed` must be an integer >= 0"),
    ],
)
def test_bad_arguments_are_refused_with_what_was_received(kwargs, message):
    with pytest.raises(ValueError, match=message):
        anomaly.Detector(**kwargs)


def test_bad_examples_are_refused_before_training():
    detector = anomaly.Detector(epochs=1)
    for bad, message in (
        (np.zeros((1, 40), np.float32), "at least 2"),
        (np.full((4, 40), np.nan), "NaN"),
        (np.ones((4, 40), np.complex64), "real numbers"),
        (np.ones(40), "Expected examples"),
    ):
        with pytest.raises(ValueError, match=message):
            detector.fit(bad)
    with pytest.raises(ValueError, match="not fitted"):
        detector.score(np.zeros((2, 40)))


def test_examples_of_another_shape_are_refused_by_name(fitted, tmp_path):
    detector, normal = fitted
    # (5, 1) rows would broadcast against the 40 fitted offsets of the scaling.
    for bad in (normal[:5, :1], normal[:5, :39]):
        with pytest.raises(ValueError, match=r"fitted on examples of shape \(40,\)"):
            detector.score(bad)
    # A run of aezoo 0.1 records no shape: Detector.from_run takes the model's, (40, 1),
    # less the channel axis the rows come without.
    assert detector.model_.input_shape[1:] == (40, 1)
    detector.save(tmp_path / "run")
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    del info["application"]["example_shape"]
    (tmp_path / "run" / "run.json").write_text(json.dumps(info))
    legacy = anomaly.Detector.load(tmp_path / "run")
    assert legacy.example_shape_ == (40,)
    np.testing.assert_array_equal(legacy.score(normal[:5]), detector.score(normal[:5]))
