"""`aezoo train`: its outputs, its one-line errors, and resuming after SIGKILL."""

import json
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image
from workers import environment

from aezoo import data, runs
from aezoo.apps import train

TINY = ["--filters", "8", "16", "--latent-dim", "8", "--batch-size", "16"]


def check_png(path, min_size=(300, 200)):
    """A readable PNG of at least `min_size` pixels that is not one flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.std() > 5


def test_training_on_mnist_writes_model_history_and_plots(tfds_dir, tmp_path, capsys):
    out = tmp_path / "run"
    status = train.main(["--dataset", "mnist", "--split", "train[:96]", "--val-split",
                         "test[:32]", *TINY, "--epochs", "2", "--out", str(out)])
    assert status == 0
    stdout = capsys.readouterr().out
    assert "One device: CPU:0" in stdout
    assert "Epoch 1/2" in stdout and "Epoch 2/2" in stdout and "val_loss" in stdout  # progress
    model = keras.models.load_model(out / "model.keras")
    run = runs.load_run(out, task="train")
    assert run.info["model"] == "conv" and run.info["options"]["training"]["epochs"] == 2
    assert run.info["options"]["training"]["dtype_policy"] == "float32"  # (--mixed-precision off)
    assert model.input_shape == (None, 28, 28, 1)
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"loss", "val_loss", "learning_rate", "minutes"}
    assert all(len(v) == 2 for v in history.values())
    # The history is the model's own: its last validation loss is that of the saved model.
    x = np.stack([e for e in data.from_tfds("mnist", "test[:32]").as_numpy_iterator()])
    assert model.evaluate(x, x, verbose=0) == pytest.approx(history["val_loss"][-1], rel=1e-4)
    check_png(out / "loss.png")
    check_png(out / "samples.png")
    assert (out / "export" / "1" / "saved_model.pb").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch_001.keras", "epoch_002.keras"
    ]
    assert not (out / ".lock").exists()  # held while it trained; finished, it needs none


@pytest.mark.usefixtures("no_export")
def test_a_denoiser_trains_on_random_patches_of_an_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(3):
        pixels = rng.integers(0, 256, (40 + 5 * i, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "photos" / f"{i}.jpg")
    status = train.main(["--model", "denoising", "--images", str(tmp_path / "photos"),
                         "--patch", "16", "--patches-per-image", "4", "--noise", "gaussian:25",
                         "--latent-dim", "8", "--batch-size", "4", "--epochs", "1",
                         "--out", str(tmp_path / "run")])
    assert status == 0
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.get_config()["model"] == "denoising" and model.input_shape[-1] == 3
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())["loss"]) == 1
    check_png(tmp_path / "run" / "samples.png")


# ------------------------------------------------------------------------ bad input


# name -> (arguments, part of the one-line message); make_bad_inputs writes their files.
BAD_INPUTS = {
    "empty-array": (["--arrays", "empty.npy"], "N > 0"),
    "not-an-array": (["--arrays", "text.npy"], "is not a .npy or .npz array file"),
    "two-arrays-no-key": (["--arrays", "two.npz"], "holds 2 arrays (a, b); choose one with --key"),
    "complex": (["--arrays", "complex.npy"], "complex"),
    "nan": (["--arrays", "nan.npy"], "1 NaN or infinite values"),
    "shape-not-fitting": (["--arrays", "vectors.npy"], "`input_shape` must have 3 axes"),
    "images-of-two-sizes": (["--images", "sizes"], "have no fixed shape ((None, None, 1))"),
    "missing-folder": (["--images", "missing"], "No such folder: missing"),
    "empty-folder": (["--images", "none"], "holds no PNG or JPEG"),
    "unknown-dataset": (["--dataset", "no_such_set"], "Cannot load tensorflow-datasets"),
    "no-epochs": (["--arrays", "nan.npy", "--epochs", "0"], "expected a positive integer, got '0'"),
    "zero-rate": (["--arrays", "nan.npy", "--learning-rate", "0"], "positive, finite number"),
    "nan-rate": (["--arrays", "nan.npy", "--learning-rate", "nan"], "positive, finite number"),
    "zero-patch": (["--images", "sizes", "--patch", "0"], "expected a positive integer"),
    "zero-steps": (["--arrays", "nan.npy", "--steps-per-epoch", "0"], "positive integer"),
    "log-dir-is-a-file": (["--arrays", "nan.npy", "--log-dir", "text.npy"],
                          "is a file, not a folder"),
    "usage": (["--arrays"], "expected one argument"),
    "augment-arrays": (["--arrays", "nan.npy", "--augment"], "it needs --images and --patch"),
    "augment-whole-images": (["--images", "sizes", "--augment"], "it needs --images and --patch"),
}


def make_bad_inputs(folder):
    rng = np.random.default_rng(0)
    np.save(folder / "empty.npy", np.zeros((0, 8, 8, 1), np.float32))
    nan = rng.random((16, 8, 8, 1), dtype=np.float32)
    nan[2, 3, 3, 0] = np.nan
    np.save(folder / "nan.npy", nan)
    np.save(folder / "vectors.npy", rng.random((16, 5), dtype=np.float32))
    (folder / "sizes").mkdir()
    for i, size in enumerate([(12, 20), (14, 20)]):
        pixels = rng.integers(0, 256, size, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "sizes" / f"{i}.png")
    (folder / "none").mkdir()
    (folder / "text.npy").write_text("not an array")
    np.savez(folder / "two.npz", a=np.zeros((4, 3)), b=np.ones((4, 3)))
    np.save(folder / "complex.npy", np.ones((8, 4), np.complex64))


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_on_stderr_and_status_2(case, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    make_bad_inputs(tmp_path)
    args, message = BAD_INPUTS[case]
    status = train.main([*args, *TINY, "--out", "run"])
    stderr = capfd.readouterr().err
    assert status == 2
    assert stderr.count("\n") == 1 and message in stderr, stderr
    assert not (tmp_path / "run").exists()  # a refusal leaves no folder behind


def test_a_tf_config_naming_no_such_task_is_one_line(tmp_path, monkeypatch, capfd):
    np.save(tmp_path / "x.npy", np.zeros((8, 4), np.float32))
    monkeypatch.setenv(
        "TF_CONFIG",
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
    )
    status = train.main(["--arrays", str(tmp_path / "x.npy"), "--model", "dense",
                         "--strategy", "multiworker", "--out", str(tmp_path / "run")])
    stderr = capfd.readouterr().err
    assert status == 2 and stderr.count("\n") == 1
    assert "TF_CONFIG names task worker:1, which is not in its cluster (worker x1)" in stderr


# --------------------------------------------------------------------------- resume


def stopped_after_its_first_epoch(tmp_path, signum):
    """`aezoo train` of 3 epochs sent `signum` once epoch 1's checkpoint is written: the
    command, the run folder, the stopped process and its stderr.  1024 examples in 64
    steps of 16 per epoch: long enough to stop it within epoch 2 (the tests find out where
    it stopped anyway)."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((1024, 8, 8, 1), np.float32))
    command = [sys.executable, "-m", "aezoo", "train", "--arrays", "x.npy", *TINY,
               "--epochs", "3", "--out", "run"]
    run = tmp_path / "run"
    first = subprocess.Popen(command, cwd=tmp_path, env=environment(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (run / "checkpoints" / "epoch_001.keras").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    first.send_signal(signum)
    _, err = first.communicate(timeout=120)
    return command, run, first, err


def test_a_killed_run_started_again_goes_on_after_its_last_checkpoint(tmp_path):
    command, run, first, _ = stopped_after_its_first_epoch(tmp_path, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL
    backup = json.loads((run / "backup" / "training_metadata.json").read_text())
    done_epochs = backup["epoch"]
    assert 1 <= done_epochs < 3, "the run was not killed within its last epochs"
    assert not (run / "model.keras").exists()

    # Other options would resume it into a model that neither set describes: refused, in
    # the options' words, before anything is touched ("./x.npy" is the file it trained on).
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    other = [*command[3:], "--latent-dim", "4", "--epochs", "4"]
    other[other.index("x.npy")] = "./x.npy"
    refused = subprocess.run([*command[:3], *other], cwd=tmp_path, env=environment(),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "aezoo train: error: run holds a run started with --latent-dim 8 --epochs 3, not "
        "--latent-dim 4 --epochs 4: give the options it was started with to resume it, or "
        "another --out.")
    assert "Resuming" not in refused.stdout
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files

    second = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "Resuming the interrupted run" in second.stdout
    lines = second.stdout.splitlines()
    epochs_run = [line.split()[1] for line in lines if line.startswith("Epoch ")]
    assert epochs_run == [f"{e}/3" for e in range(done_epochs + 1, 4)]
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 3 and np.isfinite(history["loss"]).all()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_001.keras", "epoch_002.keras", "epoch_003.keras"
    ]
    # The optimizer state came back too: its step count spans both runs.
    assert int(keras.models.load_model(run / "model.keras").optimizer.iterations) == 3 * 64
    assert not (run / "backup").exists()


def test_a_run_stopped_with_sigterm_says_so_and_resumes(tmp_path):
    """SIGTERM (`kill`, `timeout`, a scheduler's pre-emption) stops a training as Ctrl-C
    does: one line, status 143, its backup kept and no temporary file; started again, it
    resumes."""
    command, run, first, err = stopped_after_its_first_epoch(tmp_path, signal.SIGTERM)
    if first.returncode == 0:
        pytest.skip("the run finished before SIGTERM reached it")
    assert first.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] == "aezoo train: interrupted" and "Traceback" not in err, err
    assert (run / "backup").is_dir() and not (run / "model.keras").exists()
    assert not list(run.rglob("*.partial*"))

    second = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "Resuming the interrupted run" in second.stdout
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3

    # Done: the same command again must not overwrite the finished run.
    before = (run / "model.keras").read_bytes()
    third = subprocess.run(command, cwd=tmp_path, env=environment(), capture_output=True,
                           text=True, timeout=300)
    # A fresh process prints the one line and nothing else: no TensorFlow start-up logs.
    assert third.returncode == 2
    assert third.stderr == (
        "aezoo train: error: run already holds a finished run; choose another --out.\n"
    )
    assert (run / "model.keras").read_bytes() == before


def test_a_resume_refused_names_the_options_as_they_are_typed():
    """Each side of a difference as the option that gives it: a builder's "none", "true" and
    "false", a data flag there or not, no option at all, --clipnorm 0 (not "no --clipnorm":
    compress train's default is 1), noise levels to their last digit."""
    from pathlib import Path

    from aezoo import training
    from aezoo.apps import cli

    missing = training.MISSING
    error = training.RunMismatch(Path("run"), [
        ("model_kwargs.output_activation", None, missing),
        ("model_kwargs.binarize", True, False),
        ("data.augment", True, missing),
        ("clipnorm", None, 1.0),
        ("noise", ["gaussian", 25.5 / 255], ["gaussian", 25.50001 / 255]),
        ("data.images", "/photos", "/other"),
        ("model_kwargs.filters", [32, 64], [16, 32]),
    ])
    assert cli.mismatch_message(error) == (
        "run holds a run started with --output-activation none --binarize true --augment "
        "--clipnorm 0 --noise gaussian:25.5 --images /photos --filters 32 64, not "
        "(no --output-activation) --binarize false (no --augment) --clipnorm 1.0 --noise "
        "gaussian:25.50001 --images /other --filters 16 32: give the options it was started "
        "with to resume it, or another --out.")


@pytest.mark.parametrize("command", ["train", "anomalies"])
def test_a_folder_another_training_holds_is_refused_before_the_data_loads(
        command, tmp_path, monkeypatch, capsys):
    """At once, not after loading a dataset that may take minutes."""
    import fcntl

    from aezoo.apps import anomalies

    def loading(*_, **__):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(train, "load_data", loading)
    monkeypatch.setattr(anomalies, "load_examples", loading)
    (tmp_path / "run").mkdir()
    argv = {"train": lambda: train.main(["--dataset", "mnist", "--out", str(tmp_path / "run")]),
            "anomalies": lambda: anomalies.main(["train", "--dataset", "mnist", "--out",
                                                 str(tmp_path / "run")])}
    with open(tmp_path / "run" / ".lock", "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert argv[command]() == 2
    assert "run is in use by another aezoo process" in capsys.readouterr().err


@pytest.mark.usefixtures("no_export")
def test_run_json_says_what_mixed_precision_auto_chose(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((16, 8, 8, 1), np.float32))
    assert train.main(["--arrays", str(tmp_path / "x.npy"), *TINY, "--epochs", "1",
                       "--mixed-precision", "auto", "--out", str(tmp_path / "run")]) == 0
    options = runs.load_run(tmp_path / "run").info["options"]["training"]
    # On a CPU, bfloat16 (its AVX512-BF16 units need no loss scaling); float16 on a GPU.
    assert options["mixed_precision"] == "auto" and options["dtype_policy"] == "mixed_bfloat16"


@pytest.mark.usefixtures("no_export")
def test_init_continues_a_run_with_its_builder_arguments(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((32, 8, 8, 1), np.float32))
    arrays = ["--arrays", str(tmp_path / "x.npy"), "--epochs", "1", "--batch-size", "16"]
    assert train.main([*arrays, "--model", "dense", "--units", "16", "--latent-dim", "4",
                       "--out", str(tmp_path / "first")]) == 0
    # No model options, not even --model (the command's default is conv): they are the first
    # run's (the builder's default latent_dim is 32).
    assert train.main([*arrays, "--learning-rate", "1e-7", "--init", str(tmp_path / "first"),
                       "--out", str(tmp_path / "tuned")]) == 0
    first, tuned = (runs.load_run(tmp_path / name, task="train") for name in ("first", "tuned"))
    assert tuned.model.get_config() == first.model.get_config()
    assert tuned.info["model"] == "dense" and tuned.info["options"]["model"]["latent_dim"] == 4
    assert tuned.info["options"]["training"]["init"] == str(tmp_path / "first")
    moved = [np.max(np.abs(a - b))
             for a, b in zip(tuned.model.get_weights(), first.model.get_weights())]
    assert 0 < max(moved) < 1e-5
