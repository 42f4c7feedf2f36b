"""One set of training options: every training command takes them, and each takes effect."""

import json
import math
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

import aezoo

from aezoo.apps import anomalies, compress, denoise, train

# What these tests check ends before the run's SavedModel export (test_export.py's).
pytestmark = pytest.mark.usefixtures("no_export")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    (folder / "images").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(
            folder / "images" / f"{i}.png")
    np.save(folder / "x.npy", rng.random((64, 8, 8, 1), dtype=np.float32))
    t = np.arange(40) / 40
    rows = np.sin(2 * np.pi * (t + rng.random((64, 1))))
    np.savetxt(folder / "rows.csv", rows, delimiter=",", fmt="%.6f")
    return folder


TINY_IMAGES = ["--filters", "4", "8", "--latent-dim", "4", "--batch-size", "8"]


def commands(folder, out):
    """Each training command on tiny data, as (main, argv without the shared options)."""
    return {
        "train": (train.main, ["--arrays", folder / "x.npy", *TINY_IMAGES]),
        "denoise": (denoise.main, ["train", "--images", folder / "images", "--patch", "16",
                                   "--noise", "gaussian:0-50", *TINY_IMAGES]),
        # (the factorized prior: the options are the same, its tables take less time)
        "compress": (compress.main, ["train", "--model", "compression", "--images",
                                     folder / "images", "--patch", "16", "--filters", "4", "4",
                                     "--latent-dim", "4"]),
        "anomalies": (anomalies.main, ["train", "--csv", folder / "rows.csv",
                                       "--latent-dim", "2", "--batch-size", "16"]),
    }


def history(out):
    return json.loads((out / "history.json").read_text())


@pytest.mark.parametrize("command", ["train", "denoise", "compress", "anomalies"])
def test_schedule_steps_and_clipping_take_effect(command, inputs, tmp_path):
    main, argv = commands(inputs, tmp_path)[command]
    out = tmp_path / "cosine"
    assert main([*map(str, argv), "--epochs", "2", "--learning-rate", "0.01",
                 "--lr-schedule", "cosine", "--steps-per-epoch", "2", "--clipnorm", "0.5",
                 "--out", str(out)]) == 0
    # Cosine: epoch 2 of 2 starts half way, at 1% + 99% of half the rate.
    assert history(out)["learning_rate"] == pytest.approx(
        [0.01, 0.01 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 2)))], rel=1e-6)
    model = keras.models.load_model(out / "model.keras")
    assert int(model.optimizer.iterations) == 2 * 2  # --steps-per-epoch
    assert model.optimizer.global_clipnorm == pytest.approx(0.5)


def test_a_time_limit_stops_after_the_first_epoch_past_it(inputs, tmp_path):
    # One command is enough: all pass the training options on in one dict
    # (`cli.training_options`), whose other entries the test above follows for each.
    main, argv = commands(inputs, tmp_path)["train"]
    out = tmp_path / "limited"
    assert main([*map(str, argv), "--epochs", "3", "--time-limit", "0.00001",
                 "--out", str(out)]) == 0
    assert len(history(out)["loss"]) == 1  # stopped after the first epoch



def test_a_warm_up_scales_the_first_steps_rate(inputs, tmp_path):
    main, argv = commands(inputs, tmp_path)["train"]
    argv = [*map(str, argv), "--epochs", "1", "--steps-per-epoch", "1", "--learning-rate", "0.01"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    assert main([*argv, "--warmup", "9", "--init", str(tmp_path / "first"),
                 "--out", str(tmp_path / "tuned")]) == 0
    first, tuned = (keras.models.load_model(tmp_path / name / "model.keras")
                    for name in ("first", "tuned"))
    # A fresh Adam's first step moves each weight by its rate (|m / sqrt(v)| = 1, less a
    # hair for epsilon): here the first of 10 steps of the ramp, 0.01 / 10.
    moved = max(np.max(np.abs(a.numpy() - b.numpy()))
                for a, b in zip(tuned.trainable_weights, first.trainable_weights))
    assert 0.001 * 0.99 < moved <= 0.001 * 1.001
    info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert info["options"]["training"]["warmup"] == 9


@pytest.mark.parametrize("command", ["train", "denoise", "compress", "anomalies"])
def test_init_starts_from_the_weights_of_the_given_run(command, inputs, tmp_path):
    main, argv = commands(inputs, tmp_path)[command]
    argv = [*map(str, argv), "--epochs", "1", "--steps-per-epoch", "1"]
    assert main([*argv, "--out", str(tmp_path / "first")]) == 0
    # One Adam step moves each trainable weight by about the learning rate at most (plus a
    # float32 rounding); a fresh model's weights are 0.01-1 away from the first run's.
    # (A codec's integer tables are computed from the trained weights afterwards.)
    assert main([*argv, "--learning-rate", "1e-7", "--init", str(tmp_path / "first"),
                 "--out", str(tmp_path / "tuned")]) == 0
    first, tuned = (keras.models.load_model(tmp_path / name / "model.keras")
                    for name in ("first", "tuned"))
    moved = [np.max(np.abs(a.numpy() - b.numpy()))
             for a, b in zip(tuned.trainable_weights, first.trainable_weights)]
    assert 0 < max(moved) < 1e-6
    info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert info["options"]["training"]["init"] == str(tmp_path / "first")



def test_codec_training_defaults_to_the_presets_mean_scale_hyperprior(inputs, tmp_path):
    assert compress.main([
        "train", "--images", str(inputs / "images"), "--patch", "16", "--filters", "4", "4",
        "--hyper-filters", "4", "4", "4", "--latent-dim", "4", "--epochs", "1",
        "--steps-per-epoch", "1", "--out", str(tmp_path / "run")]) == 0
    preset = Path(aezoo.__file__).parent / "presets" / "codec_0.01" / "run.json"
    assert (json.loads((tmp_path / "run" / "run.json").read_text())["model"]
            == json.loads(preset.read_text())["model"] == "compression_meanscale")


def _said_defaults(help_text: str, option: str) -> dict[str, str]:
    """{model: default} from an option's help: "(m1, m2; default D)" or
    "(defaults: m1, m2: D1; m3: D2)"."""
    text = " ".join(help_text.split()).split("model options:", 1)[1]  # not the usage line
    said = text.split(f"{option} ", 1)[1].split(" --", 1)[0]
    said = said[said.index("(defaults: ") + 1 if "(defaults: " in said
                else said.rindex("(", 0, said.index("; default ")) + 1:-1]
    if said.startswith("defaults: "):
        pairs = [part.split(": ", 1) for part in said[len("defaults: "):].split("; ")]
    else:
        models, default = said.split("; default ")
        pairs = [(models, default)]
    return {model: default for models, default in pairs for model in models.split(", ")}


@pytest.mark.parametrize("main, actions", [
    (denoise.main, "{train,denoise,evaluate}"),
    (compress.main, "{train,compress,decompress,evaluate}"),
    (anomalies.main, "{train,score}")])
def test_a_command_without_its_action_names_the_actions(main, actions, capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.endswith(f"error: the following arguments are required: "
                                            f"{actions}\n")


@pytest.mark.parametrize("command", ["train", "denoise", "compress", "anomalies"])
def test_help_gives_each_models_own_builder_defaults(command, capsys):
    """Builders disagree (a codec's latent_dim is 192, a conv's 32): --help says each one's."""
    from aezoo.models import MODELS

    main = {"train": train.main, "denoise": denoise.main, "compress": compress.main,
            "anomalies": anomalies.main}[command]
    assert main(["--help"] if command == "train" else ["train", "--help"]) == 0
    help_text = capsys.readouterr().out
    for name in ("latent_dim", "filters", "activation", "kernel_size"):
        if command == "anomalies":  # the ECG recipe's training defaults, said
            assert "--epochs EPOCHS default 30 --batch-size BATCH_SIZE global batch size " \
                "(default 64)" in " ".join(help_text.split())
        if command == "anomalies" and name == "latent_dim":  # the detector sets its own
            assert "--latent-dim N size of the code: units of a vector, or channels of a map " \
                "(default 8 for rows of numbers, 32 for images" in \
                " ".join(help_text.split())
            continue
        expected = {model: repr(MODELS.signature(model).parameters[name].default)
                    for model in MODELS if name in MODELS.signature(model).parameters}
        assert _said_defaults(help_text, "--" + name.replace("_", "-")) == expected


def test_help_says_what_each_model_option_means(capsys):
    """Each builder argument's option begins with its meaning from aezoo.models.ARGUMENTS
    (before, only "(models; default)": nothing said what --beta or --lmbda does)."""
    from aezoo.models import ARGUMENTS, MODELS

    assert train.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split()).split("model options:", 1)[1]
    text = re.sub(r"(\w)- (\w)", r"\1-\2", text)  # (argparse wraps lines after hyphens)
    for name in {a for m in MODELS for a in MODELS.signature(m).parameters} - {
            "input_shape", "name"}:
        option = "--" + name.replace("_", "-")
        said = re.escape(option) + r" \S+( \[\S+ \.\.\.\])? " + re.escape(ARGUMENTS[name]) + r" \("
        assert re.search(said, text), name


def test_an_options_type_follows_its_annotation():
    """`sparsity: float = 0` takes 0.01 (the default's type, int, refused it); a number
    that may be None takes "none"."""
    import argparse
    import inspect

    from aezoo.apps.cli import _option_type

    def parsed(annotation, default, text):
        parser = argparse.ArgumentParser()
        parameter = inspect.Parameter("x", inspect.Parameter.KEYWORD_ONLY, default=default,
                                      annotation=annotation)
        parser.add_argument("--x", **_option_type(parameter))
        return parser.parse_args(["--x", *text.split()]).x

    assert parsed("float", 0, "0.01") == 0.01
    assert parsed("int | None", None, "none") is None and parsed("int | None", None, "3") == 3
    assert parsed("float | None", None, "2.5") == 2.5
    assert parsed("bool", False, "true") is True
    assert parsed("tuple[int, ...]", (1, 2), "4 8") == [4, 8]
    assert parsed("str | None", None, "none") is None and parsed("str", "a", "b") == "b"
    assert parsed(inspect.Parameter.empty, 0.5, "1") == 1.0  # (no annotation: the default)
    assert parsed("tuple[float, ...]", (0.5, 1.0), "0.25 1") == [0.25, 1.0]
    assert parsed("SupportsInt", 32, "16") == 16  # (an annotation it does not know: the default)


@pytest.mark.parametrize("command, said, patch, per_image", [
    ("compress", "128", 128, 4),
    ("denoise", "64 for --images without --image-size", 64, 1)])
def test_help_gives_the_patch_each_training_command_takes(
        command, said, patch, per_image, monkeypatch, capsys):
    """Images are cut into patches by default, the side each command's own (before, its
    --help said nothing of a default)."""
    app = {"compress": compress, "denoise": denoise}[command]
    assert app.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"--patch PATCH images: random square patches of this side (default: {said})" in text
    assert ("--patches-per-image N images with --patch: patches of each image an epoch "
            f"(default: {per_image})") in text
    taken = []
    monkeypatch.setattr(app, "train_run", lambda args, **_: taken.append(
        (args.patch, args.patches_per_image)))
    noise = ["--noise", "gaussian:25"] if command == "denoise" else []
    assert app.main(["train", "--images", "photos", *noise, "--out", "run"]) == 0
    assert taken == [(patch, per_image)]
