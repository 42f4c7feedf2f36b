"""`aezoo explore` on small MNIST subsets."""

import json

import keras
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import aezoo
from aezoo import data
from aezoo.apps import explore as app

SIZES = ["--examples", "200", "--probe-train", "300"]


def mnist(split, count):
    return data.to_arrays(data.from_tfds("mnist", split, with_labels=True).take(count))


def saved_model(path, name, **kwargs):
    """A model of the zoo fitted briefly on 300 MNIST digits, saved to `path`."""
    keras.utils.set_random_seed(0)
    ae = aezoo.MODELS[name](input_shape=(28, 28, 1), **kwargs)
    ae.compile()
    x, _ = mnist("train", 300)
    ae.fit(x, x, epochs=2, batch_size=32, verbose=0)
    ae.save(path)
    return path


@pytest.fixture(scope="module")
def explored_2d(tfds_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("latent2")
    model = saved_model(tmp / "dense2.keras", "dense", latent_dim=2)
    assert app.main(["--model", str(model), "--dataset", "mnist", "--out", str(tmp / "out"),
                     *SIZES]) == 0
    return model, tmp / "out"


def test_a_2d_latent_is_plotted_as_it_is_and_probed(explored_2d):
    _, out = explored_2d
    result = json.loads((out / "probe.json").read_text())
    assert result["scatter"] == "latent" and result["latent_size"] == 2
    assert result["probe_train_examples"] == 300 and result["probe_test_examples"] == 200
    # A logistic regression on 300 raw MNIST digits is right ~85% of the time on others
    # (10% is chance); 0.7 leaves room for the small sample.
    assert 0.7 < result["pixel_accuracy"] <= 1
    assert 0 < result["latent_accuracy"] <= 1


def test_the_latent_probe_is_a_logistic_regression_on_the_codes(explored_2d):
    model_path, out = explored_2d
    encoder = keras.models.load_model(model_path).encoder
    train_x, train_y = mnist("train", 300)
    test_x, test_y = mnist("test", 200)
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(encoder.predict(train_x, verbose=0), train_y)
    expected = classifier.score(encoder.predict(test_x, verbose=0), test_y)
    result = json.loads((out / "probe.json").read_text())
    # The same 200 test digits: accuracies are multiples of 1/200, and the same fit on the
    # same codes gives the same predictions.
    assert result["latent_accuracy"] == pytest.approx(expected, abs=1e-9)
    # The baseline beside it: the same probe on the raw pixels.
    classifier.fit(train_x.reshape(len(train_x), -1), train_y)
    pixels = classifier.score(test_x.reshape(len(test_x), -1), test_y)
    assert result["pixel_accuracy"] == pytest.approx(pixels, abs=1e-9)


@pytest.mark.parametrize("name", ["latent_scatter.png", "reconstructions.png", "latent_walk.png"])
def test_plots_are_valid_pngs_of_sensible_size(explored_2d, name):
    path = explored_2d[1] / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert 300 <= width <= 2500 and 200 <= height <= 2000


def test_a_larger_latent_is_shown_through_pca(tfds_dir, tmp_path):
    model = saved_model(tmp_path / "conv8.keras", "conv", latent_dim=8, filters=(8, 16))
    assert app.main(["--model", str(model), "--dataset", "mnist", "--out",
                     str(tmp_path / "out"), *SIZES]) == 0
    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert result["scatter"] == "pca" and result["latent_size"] == 8


def test_the_unet_latent_map_is_the_code_and_its_walk_decodes(tfds_dir, tmp_path):
    keras.utils.set_random_seed(0)
    ae = aezoo.MODELS["denoising"](input_shape=(None, None, 1), latent_dim=4, filters=(8, 16))
    ae.save(tmp_path / "unet.keras")
    assert app.main(["--model", str(tmp_path / "unet.keras"), "--dataset", "mnist",
                     "--out", str(tmp_path / "out"), "--walk", "3", "7", *SIZES]) == 0
    result = json.loads((tmp_path / "out" / "probe.json").read_text())
    # 28x28 halved twice: a 7x7 map of latent_dim=4 channels, flattened.
    assert result["latent_size"] == 7 * 7 * 4 and result["walk"] == [3, 7]
    assert (tmp_path / "out" / "latent_walk.png").stat().st_size > 1000


def test_bad_models_are_one_line_and_status_two(tfds_dir, tmp_path, capsys):
    def explore(model):
        return app.main(["--model", str(model), "--dataset", "mnist", "--out",
                         str(tmp_path / "out"), *SIZES])

    assert explore(tmp_path / "missing.keras") == 2
    assert "No such model file: " in capsys.readouterr().err
    assert explore(tmp_path / "missing") == 2
    assert "neither a run folder nor a preset" in capsys.readouterr().err

    aezoo.MODELS["sequence"](input_shape=(50, 1), latent_dim=4).save(tmp_path / "seq.keras")
    assert explore(tmp_path / "seq.keras") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "(28, 28, 1)" in error and "takes (50, 1)" in error

    x = keras.Input((28, 28, 1))
    keras.Model(x, keras.layers.Flatten()(x)).save(tmp_path / "plain.keras")
    assert explore(tmp_path / "plain.keras") == 2
    assert "not an aezoo autoencoder" in capsys.readouterr().err
    assert app.main(["--model", "conv_mnist", "--dataset", "mnist", "--split", "test[:1]",
                     "--out", str(tmp_path / "out"), *SIZES]) == 2
    assert "The split 'test[:1]' has 1 example; explore needs at least 2." in \
        capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_docstring_commands_name_real_options():
    from test_apps_anomalies import docstring_commands

    commands = docstring_commands(app, "aezoo explore")
    assert len(commands) == 2
    for argv in commands:
        assert app.build_parser().parse_args(argv).dataset in ("mnist", "fashion_mnist")
