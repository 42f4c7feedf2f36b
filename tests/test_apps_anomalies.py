"""`aezoo anomalies`, checked against independent computations."""

import csv
import json

import keras
import numpy as np
import pytest
from PIL import Image
from scipy.stats import rankdata
from sklearn.ensemble import IsolationForest
from sklearn.model_selection import train_test_split

from aezoo import anomaly, runs
from aezoo.apps import anomalies as app

LENGTH = 40
TEST_SIZE, SPLIT_SEED = 0.25, 3


def signals(n_normal=240, n_spiky=40, seed=0):
    """Sine waves (label 1) and sine waves with three tall spikes (label 0), shuffled."""
    rng = np.random.default_rng(seed)
    t = np.arange(LENGTH) / LENGTH
    n = n_normal + n_spiky
    x = rng.uniform(0.5, 1, (n, 1)) * np.sin(2 * np.pi * 2 * t + rng.uniform(0, 6.3, (n, 1)))
    labels = np.r_[np.ones(n_normal), np.zeros(n_spiky)]
    for row in x[n_normal:]:
        row[rng.choice(LENGTH, 3, replace=False)] += 4.0
    order = rng.permutation(n)
    return x[order], labels[order]


def write_csv(path, x, labels, header=None):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(header)
        for row, label in zip(x, labels):
            writer.writerow([f"{v:.6f}" for v in row] + [label])
    return path


def read_scores(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run(argv):
    return app.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def ecg_like(tmp_path_factory):
    """A CSV of signals, a run trained on its normal training rows, its test split scored."""
    tmp = tmp_path_factory.mktemp("ecg_like")
    x, labels = signals()
    data = write_csv(tmp / "signals.csv", x, labels.astype(int))
    x = np.loadtxt(data, delimiter=",", dtype=np.float32)[:, :-1]  # the values as written
    split = ["--split-seed", SPLIT_SEED, "--test-size", TEST_SIZE]
    assert run(["train", "--csv", data, "--label-column", -1, "--normal-label", 1,
                "--split", "train", *split, "--latent-dim", 4, "--epochs", 10,
                "--batch-size", 32, "--seed", 1, "--out", tmp / "run"]) == 0
    assert run(["score", "--model", tmp / "run", "--csv", data, "--label-column", -1,
                "--split", "test", "--out", tmp / "scored"]) == 0
    train_rows, test_rows = train_test_split(
        np.arange(len(x)), test_size=TEST_SIZE, random_state=SPLIT_SEED
    )
    return {"csv": data, "run": tmp / "run", "scored": tmp / "scored", "x": x,
            "labels": labels, "train_rows": np.sort(train_rows), "test_rows": np.sort(test_rows)}


def normal_training_rows(case):
    return case["x"][case["train_rows"]][case["labels"][case["train_rows"]] == 1]


def scaled(case, rows):
    """The rows min-max scaled as the run should: by the normal training rows' min and max,
    in float32 as the application computes it."""
    normal = normal_training_rows(case)
    low, span = normal.min(), normal.max() - normal.min()
    return (rows - low) / span


def mse_by_hand(model, rows):
    x_hat = model.predict(rows[..., None], verbose=0)[..., 0]
    return np.mean((x_hat.astype(np.float64) - rows) ** 2, axis=1)


def auc_by_rank_sum(is_anomaly, scores):
    """Mann-Whitney: P(score of an anomaly > score of a normal example), from ranks (ties
    count a half, through their average rank)."""
    ranks = rankdata(scores)
    positives = is_anomaly.sum()
    negatives = len(scores) - positives
    return (ranks[is_anomaly].sum() - positives * (positives + 1) / 2) / (positives * negatives)


# --------------------------------------------------------------------- detection


def test_obvious_anomalies_are_found_with_roc_auc_near_one(ecg_like):
    metrics = json.loads((ecg_like["scored"] / "metrics.json").read_text())
    # Spikes of height 4 on unit sines cost ~1.2 in MSE; a sine the model knows costs less
    # than a tenth of that, so the two score populations do not overlap.
    assert metrics["autoencoder"]["roc_auc"] > 0.98
    assert metrics["autoencoder"]["recall"] > 0.9
    assert "isolation_forest" in metrics


def test_scores_are_the_per_example_mse_of_the_model(ecg_like):
    model = keras.models.load_model(ecg_like["run"] / "model.keras")
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    expected = mse_by_hand(model, scaled(ecg_like, ecg_like["x"][ecg_like["test_rows"]]))
    # scores.csv holds 9 significant digits and the application squares in float32 (and
    # predicts in batches of another size): float32 round-off, ~1e-7 relative, stays far
    # below 1e-5.
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-5)


def test_threshold_is_the_percentile_of_training_scores_by_hand(ecg_like):
    model = keras.models.load_model(ecg_like["run"] / "model.keras")
    stored = runs.load_run(ecg_like["run"], task="anomaly").application
    assert stored["threshold_rule"] == "percentile:95"
    scores = np.sort(mse_by_hand(model, scaled(ecg_like, normal_training_rows(ecg_like))))
    rank = 0.95 * (len(scores) - 1)  # linear interpolation between closest ranks
    low = int(np.floor(rank))
    by_hand = scores[low] + (rank - low) * (scores[low + 1] - scores[low])
    # The same scores up to float32 round-off (see the test above).
    assert stored["threshold"] == pytest.approx(by_hand, rel=1e-5)
    assert stored["train_examples"] == len(scores)
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    for row in rows:
        assert int(row["anomaly"]) == int(float(row["score"]) > stored["threshold"])


def test_metrics_agree_with_an_independent_computation(ecg_like):
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    metrics = json.loads((ecg_like["scored"] / "metrics.json").read_text())
    scores = np.array([float(r["score"]) for r in rows])
    is_anomaly = np.array([float(r["label"]) != 1 for r in rows])
    flagged = np.array([r["anomaly"] == "1" for r in rows])
    tp = np.sum(flagged & is_anomaly)
    ae = metrics["autoencoder"]
    # Rank-sum AUC on the 9-digit scores of the CSV, whose order is that of the full floats.
    assert ae["roc_auc"] == pytest.approx(auc_by_rank_sum(is_anomaly, scores), abs=1e-12)
    assert ae["precision"] == pytest.approx(tp / flagged.sum())
    assert ae["recall"] == pytest.approx(tp / is_anomaly.sum())
    assert ae["f1"] == pytest.approx(2 * tp / (flagged.sum() + is_anomaly.sum()))
    assert ae["accuracy"] == pytest.approx(np.mean(flagged == is_anomaly))
    tn = np.sum(~flagged & ~is_anomaly)  # the TF tutorial's convention: normal is positive
    assert ae["normal_positive_precision"] == pytest.approx(tn / (~flagged).sum())
    assert ae["normal_positive_recall"] == pytest.approx(tn / (~is_anomaly).sum())
    assert metrics["examples"] == len(rows) and metrics["anomalous"] == is_anomaly.sum()


def test_isolation_forest_baseline_is_fitted_on_the_normal_training_rows(ecg_like):
    train_x = scaled(ecg_like, normal_training_rows(ecg_like))
    test_x = scaled(ecg_like, ecg_like["x"][ecg_like["test_rows"]])
    forest = IsolationForest(random_state=1).fit(train_x)  # the run's --seed
    is_anomaly = ecg_like["labels"][ecg_like["test_rows"]] != 1
    expected = auc_by_rank_sum(is_anomaly, -forest.score_samples(test_x))
    metrics = json.loads((ecg_like["scored"] / "metrics.json").read_text())
    # The same forest on the same float32 rows gives the same scores: equal up to the
    # summation order of the two AUC formulas.
    assert metrics["isolation_forest"]["roc_auc"] == pytest.approx(expected, abs=1e-12)


def test_the_exported_score_signature_is_the_anomaly_score(ecg_like):
    import tensorflow as tf

    score = tf.saved_model.load(str(ecg_like["run"] / "export" / "1")).signatures["score"]
    result = score(x=tf.constant(ecg_like["x"][ecg_like["test_rows"]]))  # before scaling
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    # float32 means in the SavedModel against float64 ones in scores.csv: ~1e-7 relative.
    np.testing.assert_allclose(result["score"], [float(r["score"]) for r in rows], rtol=1e-5)
    assert result["anomaly"].numpy().tolist() == [int(r["anomaly"]) for r in rows]


@pytest.mark.parametrize("source", ["run", "model.keras"])
def test_aezoo_export_of_a_detector_serves_its_scores(ecg_like, tmp_path, source):
    """`aezoo export` of the run (or its model.keras) gives the detector's signatures, not
    the bare autoencoder's, whose score would be of unscaled rows."""
    import tensorflow as tf

    from aezoo.apps import export as export_command

    model = ecg_like["run"] if source == "run" else ecg_like["run"] / "model.keras"
    assert export_command.main([str(model), str(tmp_path / "served")]) == 0
    score = tf.saved_model.load(str(tmp_path / "served" / "1")).signatures["score"]
    result = score(x=tf.constant(ecg_like["x"][ecg_like["test_rows"]]))
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    np.testing.assert_allclose(result["score"], [float(r["score"]) for r in rows], rtol=1e-5)
    assert result["anomaly"].numpy().tolist() == [int(r["anomaly"]) for r in rows]


def test_scores_csv_has_one_row_per_example_in_input_order(ecg_like):
    rows = read_scores(ecg_like["scored"] / "scores.csv")
    assert list(rows[0]) == ["index", "score", "anomaly", "label"]
    assert [int(r["index"]) for r in rows] == ecg_like["test_rows"].tolist()
    labels = ecg_like["labels"][ecg_like["test_rows"]]
    assert [float(r["label"]) for r in rows] == labels.tolist()


@pytest.mark.parametrize(
    "folder,name", [("run", "loss.png"), ("run", "train_scores.png"), ("run", "samples.png"),
                    ("scored", "histogram.png"), ("scored", "roc.png")]
)
def test_plots_are_valid_pngs_of_sensible_size(ecg_like, folder, name):
    path = ecg_like[folder] / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 300 <= width <= 2000 and 300 <= height <= 2000


def test_threshold_rules_follow_their_definitions():
    scores = np.random.default_rng(0).exponential(size=1001)
    ordered = np.sort(scores)
    # With 1001 scores, the 90th percentile is exactly the 901st smallest (rank 900).
    assert anomaly.threshold_from(scores, "percentile:90") == ordered[900]
    assert anomaly.threshold_from(scores, "contamination:0.1") == pytest.approx(ordered[900])
    mean = scores.sum() / len(scores)
    std = np.sqrt(np.sum((scores - mean) ** 2) / len(scores))
    assert anomaly.threshold_from(scores, "mean_std:2") == pytest.approx(mean + 2 * std)


# ------------------------------------------------------------------ other data


@pytest.mark.usefixtures("no_export")
def test_a_run_is_completed_only_with_the_data_and_scaling_it_was_started_with(tmp_path,
                                                                             capsys):
    rng = np.random.default_rng(0)
    first = write_csv(tmp_path / "a.csv", rng.normal(size=(40, 5)), ["0"] * 40)
    other = write_csv(tmp_path / "b.csv", rng.normal(size=(40, 5)), ["0"] * 40)
    assert run(["train", "--csv", first, "--epochs", 1, "--out", tmp_path / "run"]) == 0
    (tmp_path / "run" / "run.json").unlink()  # as if killed once model.keras was saved
    capsys.readouterr()
    assert run(["train", "--csv", other, "--scaling", "none", "--epochs", 1, "--out",
                tmp_path / "run"]) == 2
    assert capsys.readouterr().err == (
        f"aezoo anomalies: error: {tmp_path / 'run'} holds a run started with --csv "
        f"{first.resolve()} --scaling auto, not --csv {other.resolve()} --scaling none: give "
        "the options it was started with to resume it, or another --out.\n")
    assert run(["train", "--csv", first, "--epochs", 1, "--out", tmp_path / "run"]) == 0
    assert runs.load_run(tmp_path / "run").info["options"]["data"]["csv"] == str(
        first.resolve())


@pytest.mark.usefixtures("no_export")
def test_header_names_text_labels_and_short_rows_train_a_dense_model(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) * [1, 10, 100, 1000, 1]
    labels = np.where(np.arange(60) % 4 == 0, "fraud", "ok")
    header = [f"f{i}" for i in range(5)] + ["kind"]
    data = write_csv(tmp_path / "records.csv", x, labels, header=header)
    assert run(["train", "--csv", data, "--label-column", "kind", "--normal-label", "ok",
                "--epochs", 1, "--out", tmp_path / "run"]) == 0
    run_ = runs.load_run(tmp_path / "run")
    stored = run_.application
    assert run_.info["model"] == "dense"
    assert stored["train_examples"] == 45
    normal = x[labels == "ok"].astype(np.float32)
    # Columns in different units are standardised one by one.
    assert stored["scaling"]["kind"] == "standard_per_feature"
    np.testing.assert_allclose(stored["scaling"]["offset"], normal.mean(axis=0), rtol=1e-5)
    assert run(["score", "--model", tmp_path / "run", "--csv", data, "--label-column", "kind",
                "--out", tmp_path / "scored"]) == 0
    rows = read_scores(tmp_path / "scored" / "scores.csv")
    assert [r["label"] for r in rows] == labels.tolist()
    assert [int(r["index"]) for r in rows] == list(range(60))
    # Without --label-column: the column of words it was trained with (they are no features).
    assert run(["score", "--model", tmp_path / "run", "--csv", data,
                "--out", tmp_path / "again"]) == 0
    assert (tmp_path / "again" / "scores.csv").read_text() == \
        (tmp_path / "scored" / "scores.csv").read_text()


@pytest.mark.usefixtures("no_export")
def test_image_folders_with_one_subfolder_per_label(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 12)
    files = []
    for label, count in (("good", 12), ("bad", 4)):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(count):
            if label == "good":
                pixels = np.add.outer(ramp, ramp * rng.uniform(0.2, 0.5)) / 2
            else:
                pixels = rng.uniform(0, 255, (12, 12))
            path = tmp_path / "images" / label / f"{i:02d}.png"
            Image.fromarray(pixels.astype(np.uint8)).save(path)
            files.append(str(path))
    images = tmp_path / "images"
    assert run(["train", "--images", images, "--normal-label", "good", "--epochs", 2,
                "--filters", 8, 16, "--latent-dim", 4, "--out", tmp_path / "run"]) == 0
    config = runs.load_run(tmp_path / "run").model.get_config()  # the options were used
    assert (config["model"], list(config["filters"]), config["latent_dim"]) == ("conv", [8, 16], 4)
    assert run(["score", "--model", tmp_path / "run", "--images", images,
                "--out", tmp_path / "scored"]) == 0
    rows = read_scores(tmp_path / "scored" / "scores.csv")
    assert list(rows[0]) == ["index", "file", "score", "anomaly", "label"]
    # Input order: subfolders by name, then files by name.
    assert [r["file"] for r in rows] == sorted(files)
    assert [r["label"] for r in rows] == ["bad"] * 4 + ["good"] * 12


@pytest.mark.usefixtures("no_export")
def test_mnist_one_class_scores_the_test_split_by_digit(tfds_dir, tmp_path):
    assert run(["train", "--dataset", "mnist", "--split", "train[:600]", "--normal-class", 3,
                "--epochs", 1, "--filters", 8, 16, "--out", tmp_path / "run"]) == 0
    assert run(["score", "--model", tmp_path / "run", "--dataset", "mnist",
                "--split", "test[:200]", "--out", tmp_path / "scored"]) == 0
    stored = runs.load_run(tmp_path / "run").info
    assert stored["model"] == "conv" and stored["options"]["data"]["normal_label"] == "3"
    metrics = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    rows = read_scores(tmp_path / "scored" / "scores.csv")
    assert len(rows) == 200
    assert metrics["anomalous"] == sum(r["label"] != "3" for r in rows)


# -------------------------------------------------------------------- bad input


@pytest.fixture
def small_csv(tmp_path):
    x, labels = signals(20, 5)
    return write_csv(tmp_path / "small.csv", x, labels.astype(int))


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--label-column", "99", "--normal-label", "1"], "there is no label column 99"),
        (["--label-column", "kind", "--normal-label", "1"], "has no header row"),
        (["--label-column", "-1", "--normal-label", "7"], "No example has the normal label '7'"),
        (["--normal-label", "1"], "needs labels"),
        (["--label-column", "-1"], "give --normal-label"),
        (["--label-column", "-1", "--normal-label", "1", "--threshold", "median:3"],
         "The threshold must be"),
        (["--label-column", "-1", "--normal-label", "1", "--threshold", "contamination:0.5"],
         "The threshold must be"),
        (["--label-column", "-1", "--normal-label", "1", "--split", "train", "--test-size",
          "1.5"], "test size must be"),
        (["--label-column", "-1", "--normal-label", "1", "--model", "conv"], "`input_shape`"),
        (["--label-column", "-1", "--normal-label", "1", "--latent-dim", "0"],
         "`latent_dim` must be a positive integer"),
        (["--label-column", "-1", "--normal-label", "1", "--hyper-filters", "8"],
         "--hyper-filters does not apply to model 'sequence'"),  # the automatic choice
    ],
)
def test_bad_training_input_is_one_line_and_status_two(
    small_csv, tmp_path, capsys, extra, message
):
    out = tmp_path / "run"
    assert run(["train", "--csv", small_csv, *extra, "--epochs", 1, "--out", out]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
    assert not out.exists()


def test_a_cell_that_is_not_a_number_is_named(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3,1\n4,oops,6,1\n")
    assert run(["train", "--csv", path, "--out", tmp_path / "run"]) == 2
    assert "data row 1, feature 1 is not a number: 'oops'" in capsys.readouterr().err


def test_a_file_of_anomalies_only_is_scored_and_says_its_labels(ecg_like, tmp_path, capsys):
    # Training refuses data without a normal example; scoring a batch of known anomalies
    # is legitimate: scored, no ROC-AUC, and a line that would show a mistyped label.
    x, labels = signals(0, 12)
    spiky = write_csv(tmp_path / "spiky.csv", x, labels.astype(int))
    assert run(["score", "--model", ecg_like["run"], "--csv", spiky, "--label-column", -1,
                "--out", tmp_path / "scored"]) == 0
    out = capsys.readouterr().out
    assert "No example has the normal label '1'; the labels are: 0: all are scored" in out
    assert "no ROC-AUC" in out
    assert len(read_scores(tmp_path / "scored" / "scores.csv")) == 12


def test_score_reconstructs_in_batches_of_batch_size(ecg_like, tmp_path, monkeypatch):
    seen = []
    real = anomaly.reconstruction_errors

    def spy(model, x, batch_size=256, verbose=0):
        seen.append(batch_size)
        return real(model, x, batch_size, verbose)

    monkeypatch.setattr(anomaly, "reconstruction_errors", spy)
    assert run(["score", "--model", ecg_like["run"], "--csv", ecg_like["csv"], "--label-column",
                -1, "--split", "test", "--batch-size", 7, "--out", tmp_path / "scored"]) == 0
    assert seen == [7]  # (the option was accepted, and the scores made in batches of 256)
    scores = [float(row["score"]) for row in read_scores(tmp_path / "scored" / "scores.csv")]
    before = [float(row["score"]) for row in read_scores(ecg_like["scored"] / "scores.csv")]
    np.testing.assert_allclose(scores, before, rtol=1e-5)


@pytest.mark.parametrize("separator", ["\t", ";", " ", "   "])
def test_tabs_semicolons_and_spaces_separate_cells_as_commas_do(ecg_like, separator,
                                                                 tmp_path):
    # The same rows in another separator (spaces: the UCR archive's ECG5000_TEST.txt) give
    # the same scores; csv.Sniffer tells the separator from the first lines.
    rows = ecg_like["csv"].read_text().splitlines()
    other = tmp_path / "signals.txt"
    other.write_text("\n".join(separator.join(row.split(",")) for row in rows) + "\n")
    assert run(["score", "--model", ecg_like["run"], "--csv", other, "--split", "test",
                "--out", tmp_path / "scored"]) == 0
    for name in ("scores.csv", "metrics.json"):
        assert (tmp_path / "scored" / name).read_text() == \
            (ecg_like["scored"] / name).read_text()


@pytest.mark.parametrize("text, words", [
    ("1,2,3\n4,nan,6\n7,8,inf\n", "data row 1, feature 1 is nan (2 NaN or infinite values"),
    ("1,2,3\n4,5," + "9" * 30 + "x" * 30 + "\n", "feature 2 is not a number: '" + "9" * 30
     + "xxxxxxx...'."),
    (None, "is a folder, not a CSV file"),
])
def test_a_csv_that_does_not_read_names_its_row_and_column_in_one_short_line(
        text, words, tmp_path, capsys):
    path = tmp_path / "rows.csv"
    if text is None:
        path.mkdir()
    else:
        path.write_text(text)
    assert run(["train", "--csv", path, "--out", tmp_path / "run"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and words in error and len(error) < 200, error
    assert not (tmp_path / "run").exists()


def test_scoring_data_that_does_not_fit_the_model_is_refused(ecg_like, tmp_path, capsys):
    x, labels = signals(10, 2)
    short = write_csv(tmp_path / "short.csv", x[:, :30], labels.astype(int))
    assert run(["score", "--model", ecg_like["run"], "--csv", short, "--label-column", -1,
                "--out", tmp_path / "scored"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "(30,)" in error and "takes (40,)" in error
    assert not (tmp_path / "scored").exists()


def test_a_forgotten_label_column_is_the_one_the_detector_was_trained_with(ecg_like, tmp_path,
                                                                           capsys):
    """A file of one column more than the detector takes is scored as with the label column
    it was trained with, and says so; the scores are those of naming the column."""
    capsys.readouterr()
    assert run(["score", "--model", ecg_like["run"], "--csv", ecg_like["csv"], "--split", "test",
                "--out", tmp_path / "scored"]) == 0
    assert capsys.readouterr().out.startswith("Reading column -1 as the labels")
    for name in ("scores.csv", "metrics.json"):
        assert (tmp_path / "scored" / name).read_text() == \
            (ecg_like["scored"] / name).read_text()


def test_a_file_of_other_columns_is_refused_with_the_training_label_column(ecg_like,
                                                                           tmp_path, capsys):
    rows = np.loadtxt(ecg_like["csv"], delimiter=",", dtype=np.float32)
    wider = write_csv(tmp_path / "wider.csv", rows, rows[:, 0])  # one column more
    assert run(["score", "--model", ecg_like["run"], "--csv", wider,
                "--out", tmp_path / "scored"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "(42,)" in error and "trained with --label-column -1" in error
    assert not (tmp_path / "scored").exists()


def test_scoring_with_a_folder_that_is_not_a_run_is_refused(small_csv, tmp_path, capsys):
    assert run(["score", "--model", tmp_path, "--csv", small_csv, "--out", tmp_path / "s"]) == 2
    assert "not a finished run" in capsys.readouterr().err


def docstring_commands(module, script):
    """The commands of a script's docstring that run it, as argument lists."""
    import shlex

    text = module.__doc__.replace("\\\n", " ")
    return [shlex.split(line.split(script, 1)[1]) for line in text.splitlines() if script in line]


def test_the_docstring_commands_name_real_options():
    commands = docstring_commands(app, "aezoo anomalies")
    assert len(commands) == 7  # ECG, MNIST and images, train and score; a multi-worker run
    for argv in commands:
        args = app.build_parser().parse_args(argv)
        assert args.action in ("train", "score")
    assert app.build_parser().parse_args(commands[-1]).strategy == "multiworker"


@pytest.mark.usefixtures("no_export")
def test_init_fine_tunes_the_model_of_a_trained_detector(ecg_like, tmp_path):
    # --init used to be accepted and ignored by `anomalies train`. One epoch at a learning
    # rate of 1e-7 (a few Adam steps, each moving a weight by a few times the rate at most)
    # leaves the weights within 1e-5 of the initial run's; a fresh model's are 0.01-1 away.
    assert run(["train", "--csv", ecg_like["csv"], "--label-column", -1, "--normal-label", 1,
                "--split", "train", "--split-seed", SPLIT_SEED, "--test-size", TEST_SIZE,
                "--epochs", 1, "--batch-size", 32, "--learning-rate", 1e-7,
                "--init", ecg_like["run"], "--out", tmp_path / "tuned"]) == 0
    initial, tuned = (runs.load_run(path).model for path in (ecg_like["run"], tmp_path / "tuned"))
    assert tuned.get_config() == initial.get_config()  # latent_dim 4 is the initial run's
    moved = [np.max(np.abs(a - b)) for a, b in zip(tuned.get_weights(), initial.get_weights())]
    assert 0 < max(moved) < 1e-5
    info = runs.load_run(tmp_path / "tuned").info
    assert info["options"]["training"]["init"] == str(ecg_like["run"])


@pytest.mark.usefixtures("no_export")
def test_init_without_model_takes_the_initial_model(ecg_like, tmp_path, monkeypatch):
    # These rows are long enough for "auto" to choose 'sequence'; fine-tuning a 'dense' run
    # without --model used to stop with "is a 'dense' model, not 'sequence'".
    common = ["--csv", ecg_like["csv"], "--label-column", -1, "--normal-label", 1,
              "--split", "train", "--epochs", 1, "--batch-size", 64]
    assert run(["train", *common, "--model", "dense", "--latent-dim", 3,
                "--out", tmp_path / "dense"]) == 0
    opened = []  # the initial run is opened once: its name picks the model, its weights start it
    open_model = runs.open_model
    monkeypatch.setattr(runs, "open_model", lambda path: opened.append(path) or open_model(path))
    assert run(["train", *common, "--init", tmp_path / "dense", "--out", tmp_path / "tuned"]) == 0
    assert [str(path) for path in opened] == [str(tmp_path / "dense")]
    initial, tuned = (runs.load_run(tmp_path / name) for name in ("dense", "tuned"))
    assert tuned.info["model"] == "dense"
    assert tuned.model.get_config() == initial.model.get_config()  # latent_dim 3 kept
