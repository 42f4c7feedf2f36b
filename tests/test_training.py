"""aezoo.training on one device: strategies, options, bad input, resume, logs.

Training on several replicas and workers is in test_distributed.py (it needs processes whose
CPU is split before TensorFlow starts).
"""

import csv
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_distributed import KnownKerasBug
from test_models import EXAMPLE_SHAPES

import aezoo
from aezoo import data, runs, training

TINY = {"filters": (8, 16), "latent_dim": 8}


def images(n=64, seed=0, shape=(8, 8, 1)):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


# ----------------------------------------------------------------------- strategies


def test_auto_strategy_is_one_cpu_without_gpus():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    strategy = training.resolve_strategy("auto")
    # TensorFlow's default strategy: no multi-device iterator for one device.
    assert strategy is tf.distribute.get_strategy() and strategy.num_replicas_in_sync == 1
    assert training.worker_devices(strategy)[0].endswith("CPU:0")
    assert training.describe_strategy(strategy) == "One device: CPU:0"


@pytest.mark.parametrize("name,message", [
    ("gpu", "The strategy 'gpu' needs a GPU, and TensorFlow sees none"),
    ("tpu", "The strategy 'tpu' needs a TPU, and this machine is attached to none"),
    ("nccl", "`strategy` must be one of"),
])
def test_unavailable_or_unknown_strategies_are_value_errors(name, message):
    if name == "gpu" and tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    if name == "tpu" and (os.environ.get("TPU_NAME") or Path("/dev/accel0").exists()):
        pytest.skip("this machine may have a TPU")
    with pytest.raises(ValueError, match=message):
        training.resolve_strategy(name)


@pytest.mark.parametrize(
    "tf_config,message",
    [
        (None, "needs TF_CONFIG"),
        ("  ", "needs TF_CONFIG"),  # set but empty: as if unset (TensorFlow: "Expecting value")
        ("{not json", "must be JSON"),
        ('{"cluster": {"worker": ["a:1", "b:1"]}}', "must be JSON"),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
            r"names task worker:2, which is not in its cluster \(worker x2\)",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            "names task chief:0",
        ),
    ],
    ids=["missing", "empty", "not-json", "no-task", "index-out-of-range", "no-such-job"],
)
def test_a_tf_config_naming_no_such_task_is_a_value_error(monkeypatch, tf_config, message):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        training.resolve_strategy("multiworker")


def test_an_empty_tf_config_is_no_cluster_for_the_other_strategies(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "")
    assert training.resolve_strategy("cpu").num_replicas_in_sync == 1
    assert "TF_CONFIG" not in os.environ


def test_a_batch_that_the_replicas_cannot_share_equally_is_refused_before_a_run(
        monkeypatch, tmp_path):
    # 128 over 3 replicas failed inside the first step with a traceback, after the run
    # folder was made; the default strategy stands in for one of 3 replicas.
    strategy = tf.distribute.get_strategy()
    monkeypatch.setattr(type(strategy), "num_replicas_in_sync", property(lambda self: 3))
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(ValueError, match="not a multiple of the 3 replicas; give 126 or 129"):
        training.train("dense", x, model_kwargs={"input_shape": (4,)}, batch_size=128,
                       strategy=strategy, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_valid_tf_config_is_returned_parsed():
    text = (
        '{"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    assert training.check_tf_config(text)["task"] == {"type": "worker", "index": 0}


def test_the_one_process_of_a_single_device_job_is_the_chief():
    assert training.is_chief(training.resolve_strategy("cpu"))


def test_splitting_the_cpu_after_tensorflow_started_is_a_value_error():
    tf.constant(1.0) + 1  # TensorFlow has started in this process
    with pytest.raises(ValueError, match="TensorFlow has already started"):
        training.split_cpu(3)
    training.split_cpu(1)  # what the process has already: nothing to do


# ---------------------------------------------------------- mixed precision and XLA

# A strategy on a GPU this machine may lack: creating it touches no device, and it trains
# on one GPU as resolve_strategy's choice on a one-GPU machine does.
GPU = tf.distribute.OneDeviceStrategy("/gpu:0")


def test_auto_mixed_precision_is_float16_on_gpu_and_bfloat16_on_cpu():
    cpu = training.resolve_strategy("cpu")
    assert training.resolve_mixed_precision("auto", GPU) == "mixed_float16"
    assert training.resolve_mixed_precision("auto", cpu) == "mixed_bfloat16"
    assert training.resolve_mixed_precision(True, cpu) == "mixed_bfloat16"
    assert training.resolve_mixed_precision("mixed_float16", cpu) == "mixed_float16"
    assert training.resolve_mixed_precision("off", cpu) is None
    with pytest.raises(ValueError, match="`mixed_precision` must be one of"):
        training.resolve_mixed_precision("float8", cpu)


@pytest.mark.parametrize("name", list(EXAMPLE_SHAPES))
def test_every_model_keeps_a_float32_output_under_mixed_precision(name):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ae = aezoo.MODELS[name](input_shape=EXAMPLE_SHAPES[name][0], latent_dim=8)
    finally:
        keras.config.set_dtype_policy("float32")
    assert ae.output.dtype == "float32"
    assert ae.decoder.layers[-1].dtype_policy.compute_dtype == "float32"
    # The body computes in bfloat16: every layer with a kernel (the compression model's
    # entropy bottleneck, which ends its encoder, keeps its density in float32 on purpose).
    kernels = [layer for layer in ae.encoder.layers if getattr(layer, "kernel", None) is not None]
    assert kernels
    assert {layer.dtype_policy.compute_dtype for layer in kernels} == {"bfloat16"}
    # ...and trains so (a loss a layer adds in bfloat16 would fail here, as below).
    ae.compile(optimizer=keras.optimizers.SGD(1e-3))
    x = np.random.default_rng(0).random((4, *EXAMPLE_SHAPES[name][0]), dtype=np.float32)
    assert np.all(np.isfinite(ae.train_on_batch(x, x)))


def activity_penalised_model(base: type):
    """base(x -> Dense(4, L1 activity penalty) -> Dense(8, float32)), in mixed_bfloat16."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        x = keras.Input((8,))
        code = keras.layers.Dense(4, activity_regularizer="l1", name="code")(x)
        outputs = keras.layers.Dense(8, dtype="float32", name="out")(code)
    finally:
        keras.config.set_dtype_policy("float32")
    if base is keras.Model:
        return keras.Model(x, outputs)
    return base(x, outputs, config={"model": "dense"})


@pytest.mark.xfail(strict=True, raises=KnownKerasBug, reason="Keras sums 16-bit layer losses")
def test_keras_still_fails_to_train_an_activity_penalty_in_mixed_precision():
    # When this passes (XPASS, a failure under strict xfail), Keras has fixed it: delete
    # Float32LossesMixin from aezoo._keras_fixes and its use in aezoo.models.base.
    model = activity_penalised_model(keras.Model)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    try:
        model.train_on_batch(x, x)
    except TypeError as error:
        if "Cannot convert a list containing a tensor of dtype" in str(error):
            raise KnownKerasBug(str(error)[:80]) from None
        raise


def test_an_aezoo_model_with_an_activity_penalty_trains_in_mixed_precision():
    model = activity_penalised_model(aezoo.models.Autoencoder)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")  # the loss before a step
    x = np.random.default_rng(0).random((4, 8), dtype=np.float32)
    code = keras.ops.convert_to_numpy(keras.ops.cast(model.get_layer("code")(x), "float32"))
    mse = np.mean((keras.ops.convert_to_numpy(model(x)) - x) ** 2)
    # Keras's "l1" activity penalty: 0.01 * sum |code|, divided by the batch size.
    expected = mse + 0.01 * np.abs(code).sum() / len(x)
    # The step computes in bfloat16 too (8 bits of mantissa): within 1 %.
    assert model.train_on_batch(x, x) == pytest.approx(expected, rel=1e-2)


def test_bfloat16_training_on_cpu_computes_in_bfloat16_and_keeps_float32_weights():
    x = images()
    ae, history = training.train(
        "conv", x, model_kwargs=TINY, epochs=2, batch_size=16, strategy="cpu",
        mixed_precision="mixed_bfloat16", verbose=0,
    )
    assert ae.encoder.get_layer("down1_conv").compute_dtype == "bfloat16"
    assert all(w.dtype == np.float32 for w in ae.get_weights())
    assert ae.output.dtype == "float32" and ae.predict(x[:2], verbose=0).dtype == np.float32
    assert np.isfinite(history["loss"]).all() and history["loss"][1] < history["loss"][0]
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_float16_training_builds_and_runs_with_loss_scaling():
    # Written for GPUs; on CPU it runs (slowly), which is what can be tested here.
    ae, history = training.train(
        "conv", images(32), model_kwargs=TINY, epochs=1, batch_size=16, strategy="cpu",
        mixed_precision="mixed_float16", verbose=0,
    )
    assert isinstance(ae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert ae.encoder.get_layer("down1_conv").compute_dtype == "float16"
    assert ae.output.dtype == "float32" and np.isfinite(history["loss"]).all()


def test_a_model_with_a_low_precision_output_is_rejected_under_mixed_precision():
    def half_output(**_):
        inputs = keras.Input((8, 8, 1))
        return keras.Model(inputs, keras.layers.Dense(1)(inputs))

    with pytest.raises(ValueError, match="bfloat16 outputs under mixed_bfloat16"):
        training.train(half_output, images(16), epochs=1, strategy="cpu",
                       mixed_precision="mixed_bfloat16", verbose=0)


def test_xla_is_on_automatically_for_one_gpu_only():
    assert training.resolve_jit_compile("auto", GPU) is True
    assert training.resolve_jit_compile("auto", training.resolve_strategy("cpu")) is False
    assert training.resolve_jit_compile(False, GPU) is False


def test_xla_on_one_cpu_trains_to_the_same_weights_as_without():
    # A dense model: XLA compiles it in a second (a conv one takes 10-30 s on CPU).
    x = images(shape=(12,))
    results = [
        training.train("dense", x, model_kwargs={"units": (16,), "latent_dim": 4}, epochs=2,
                       batch_size=16, strategy="cpu", jit_compile=jit, verbose=0)
        for jit in (False, True)
    ]
    assert results[1][0].jit_compile is True
    # XLA fuses and reorders float32 arithmetic: measured 6e-8 to 3e-7 after 8 Adam steps,
    # which move the weights by about 8e-3.  1e-5 leaves room for round-off, not for a
    # different step.
    assert max_difference(results[0][0].get_weights(), results[1][0].get_weights()) < 1e-5
    np.testing.assert_allclose(results[0][1]["loss"], results[1][1]["loss"], rtol=1e-5)


# ------------------------------------------------------------------------ bad input


def test_empty_data_is_a_value_error():
    empty = tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="training data is empty"):
        training.train("conv", empty, model_kwargs=TINY, epochs=1, strategy="cpu", verbose=0)


def test_nan_in_array_data_is_a_value_error():
    x = images(16)
    x[3, 4, 4, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        training.train("conv", x, model_kwargs=TINY, epochs=1, strategy="cpu", verbose=0)


def test_nan_reaching_the_loss_stops_training_with_a_value_error(tmp_path):
    x = images(32)
    x[5, 0, 0, 0] = np.nan  # in a tf.data dataset, which is not scanned beforehand
    ds = tf.data.Dataset.from_tensor_slices(x)
    with pytest.raises(ValueError, match="loss became NaN"):
        training.train("conv", ds, model_kwargs=TINY, epochs=3, batch_size=16, strategy="cpu",
                       out_dir=tmp_path, verbose=0)
    assert not (tmp_path / "backup").exists()  # a new run starts afresh, not from NaN weights
    assert not (tmp_path / "model.keras").exists()


def test_a_dataset_of_integer_pixels_trains_as_its_pixels_scaled_to_one(tmp_path):
    """uint8 images (tfds's, mapped to their "image") and (height, width) ones: as arrays
    are, scaled by 255 and given a channel; before, the model trained on 0-255 values."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
    run = dict(model_kwargs=TINY, epochs=2, batch_size=16, strategy="cpu", verbose=0)
    _, scaled = training.train(
        "conv", tf.data.Dataset.from_tensor_slices(pixels[..., None] / np.float32(255)), **run)
    for given in (pixels[..., None], pixels):
        _, history = training.train("conv", tf.data.Dataset.from_tensor_slices(given), **run)
        assert history["loss"] == pytest.approx(scaled["loss"], rel=1e-6)
    with pytest.raises(ValueError, match="these are int64"):
        training.train("conv", tf.data.Dataset.from_tensor_slices(pixels.astype(np.int64)),
                       **run)


def test_pairs_given_as_keras_fit_takes_them_are_refused_in_words():
    x = images(16)
    with pytest.raises(ValueError, match=r"Give the examples alone \(x, not \(x, y\)\)"):
        training.train("conv", (x, x), model_kwargs=TINY, epochs=1, strategy="cpu", verbose=0)


def test_examples_that_do_not_fit_the_model_are_a_value_error():
    def fixed_size(**_):
        return aezoo.MODELS["conv"](input_shape=(28, 28, 1), **TINY)

    with pytest.raises(ValueError, match=r"shape \(8, 8, 1\), but model .* takes \(28, 28, 1\)"):
        training.train(fixed_size, images(16), epochs=1, strategy="cpu", verbose=0)


def test_examples_of_a_rank_the_builder_cannot_take_are_refused_as_the_datas():
    rows = np.random.default_rng(0).random((16, 40), dtype=np.float32)  # (N, timesteps)
    with pytest.raises(ValueError, match=r"Received: input_shape=\(40,\): the shape of the "
                                         r"data's examples, since no input_shape was "
                                         r"given; .*'sequence'.*\(N, timesteps, channels\)"):
        training.train("sequence", rows, epochs=1, strategy="cpu", verbose=0)
    # With a channel axis they train (and an input_shape given is named as it was).
    ae, _ = training.train("sequence", rows[..., None], model_kwargs={"latent_dim": 2},
                           epochs=1, batch_size=8, strategy="cpu", verbose=0)
    assert ae.input_shape == (None, 40, 1)
    with pytest.raises(ValueError, match=r"Received: input_shape=\(40,\)$"):
        training.train("sequence", rows, model_kwargs={"input_shape": (40,)}, epochs=1,
                       strategy="cpu", verbose=0)


def test_a_function_that_takes_input_shape_gets_the_datas_as_a_builder_does():
    shapes = []

    def mine(input_shape, latent_dim):
        shapes.append(input_shape)
        return aezoo.MODELS["dense"](input_shape=input_shape, latent_dim=latent_dim)

    ae, _ = training.train(mine, images(16, shape=(6, 5, 1)), model_kwargs={"latent_dim": 3},
                           epochs=1, batch_size=8, strategy="cpu", verbose=0)
    assert shapes == [(6, 5, 1)] and ae.input_shape == (None, 6, 5, 1)


def test_validation_examples_the_model_cannot_take_are_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"validation examples have shape \(9, 9, 1\), but "
                                         r"model .* takes \(8, 8, 1\)"):
        training.train("conv", images(16), validation_data=images(8, shape=(9, 9, 1)),
                       model_kwargs=TINY, epochs=1, strategy="cpu", verbose=0,
                       out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "history.csv").exists()  # refused before any epoch
    with pytest.raises(ValueError, match="The validation data is empty"):
        training.train("conv", images(16), validation_data=tf.data.Dataset.from_tensor_slices(
            images(8)).take(0), model_kwargs=TINY, epochs=1, strategy="cpu", verbose=0)
    # A fully convolutional model validates on other sizes than its training patches.
    ae, history = training.train("denoising", images(16), validation_data=images(4, shape=(
        12, 12, 1)), model_kwargs=TINY, epochs=1, batch_size=8, strategy="cpu", verbose=0)
    assert len(history["val_loss"]) == 1


def test_a_trained_run_is_returned_as_it_is_and_a_finished_one_never_overwritten(tmp_path):
    model, history = training.train("conv", images(16), model_kwargs=TINY, epochs=1,
                                    batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0)
    before = (tmp_path / "model.keras").read_bytes()
    # Trained (model.keras saved) but not finished (no run.json): train again gives the
    # trained model back (a command then completes the run) without training it (given the
    # values it was started with: see test_a_run_is_resumed_or_returned_only_with_...).
    again, history_again = training.train("conv", images(16, seed=1), model_kwargs=TINY,
                                          epochs=1, batch_size=16, strategy="cpu",
                                          out_dir=tmp_path, verbose=0)
    np.testing.assert_array_equal(again.get_weights()[0], model.get_weights()[0])
    assert history_again["loss"] == pytest.approx(history["loss"])
    assert (tmp_path / "model.keras").read_bytes() == before
    runs.write_run(tmp_path, task="train", model="conv", options={})  # finished
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        training.train("conv", images(16, seed=1), model_kwargs=TINY, epochs=2,
                       strategy="cpu", out_dir=tmp_path, verbose=0)
    assert (tmp_path / "model.keras").read_bytes() == before


# --------------------------------------------------------------------------- resume


class Crash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt  # as if the process were stopped here


class State(keras.callbacks.Callback):
    """Records the weights and optimizer variables fit() starts from (after the restore)."""

    def on_train_begin(self, logs=None):
        self.weights = [v.numpy().copy() for v in self.model.weights]
        self.optimizer = [v.numpy().copy() for v in self.model.optimizer.variables]
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_resumed_training_restores_weights_optimizer_and_epoch(tmp_path):
    x = images(48)
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, epochs=4, callbacks=[Crash(2)], **run)
    assert (tmp_path / "backup").is_dir() and not (tmp_path / "model.keras").exists()
    # As if the crash had come after epoch 3's history row but before its backup: the row
    # is written again by the redone epoch, and the first one must not count.
    with open(tmp_path / "history.csv", "a") as f:
        f.write("2,123.0\n")

    state = State()
    ae, history = training.train("conv", x, epochs=4, callbacks=[state], **run)
    # Independent: epoch 2's checkpoint, a full .keras file with its optimizer state.
    checkpoint = keras.models.load_model(tmp_path / "checkpoints" / "epoch_002.keras")
    assert state.epochs == [2, 3]
    assert max_difference(state.weights, [v.numpy() for v in checkpoint.weights]) == 0
    assert len(state.optimizer) == len(checkpoint.optimizer.variables) > 2  # Adam's moments
    assert max_difference(state.optimizer, [v.numpy() for v in checkpoint.optimizer.variables]) == 0
    assert int(ae.optimizer.iterations) == 4 * 3  # 4 epochs of 3 steps: none lost or redone
    assert len(history["loss"]) == 4 and 123.0 not in history["loss"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        f"epoch_00{i}.keras" for i in range(1, 5)
    ]
    assert (tmp_path / "model.keras").is_file() and not (tmp_path / "backup").exists()


def test_keep_checkpoints_bounds_the_disk_a_long_run_takes_and_may_change_on_resume(
    tmp_path,
):
    x = images(32)
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, epochs=6, callbacks=[Crash(3)], keep_checkpoints=2, **run)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_002.keras", "epoch_003.keras"]
    # Not a value that defines the run: resumed with another, the newest 1 is kept.
    training.train("conv", x, epochs=6, keep_checkpoints=1, **run)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch_006.keras"]
    with pytest.raises(ValueError, match="keep_checkpoints"):
        training.train("conv", x, epochs=1, keep_checkpoints=0, **{**run,
                       "out_dir": tmp_path / "other"})


def test_checkpoints_are_ordered_by_epoch_number_past_999(tmp_path):
    for epoch in (998, 999, 1000, 1001):
        (tmp_path / f"epoch_{epoch:03d}.keras").touch()
    assert [p.name for p in training.epoch_checkpoints(tmp_path)][-2:] == [
        "epoch_1000.keras", "epoch_1001.keras"]


def test_a_full_disk_while_the_backup_is_written_is_one_line_and_leaves_no_torn_backup(
    tmp_path,
):
    # h5py writing the backup in place crashed the process (exit status 139, after dozens
    # of tracebacks) and left a truncated latest.weights.h5.  A file size limit stands in
    # for the full disk: the backup, 100+ KB, is the first file over it.
    import resource
    import signal
    import subprocess
    import sys

    np.save(tmp_path / "x.npy", images(32))

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (EFBIG instead of a kill)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    done = subprocess.run(
        [sys.executable, "-m", "aezoo", "train", "--arrays", str(tmp_path / "x.npy"),
         "--model", "conv", "--filters", "8", "16", "--latent-dim", "8", "--epochs", "2",
         "--batch-size", "16", "--strategy", "cpu", "--out", str(tmp_path / "run")],
        preexec_fn=limit, capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    errors = [line for line in done.stderr.splitlines() if "aezoo" in line or "Error" in line]
    assert done.returncode == 2, done.stderr[-2000:]
    assert errors == [f"aezoo train: error: File too large "
                      f"({tmp_path / 'run' / 'backup' / 'latest.weights.h5'})"]
    assert not list((tmp_path / "run").rglob("*.h5")) and not list(
        (tmp_path / "run").rglob("*partial*"))


def test_a_backup_that_could_not_be_written_resumes_from_the_one_before(tmp_path,
                                                                        monkeypatch):
    import errno

    x = images(32)
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0)
    real, calls = training._weights_h5, []

    def disk_full_the_second_time(model):
        calls.append(model)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model)

    monkeypatch.setattr(training, "_weights_h5", disk_full_the_second_time)
    with pytest.raises(OSError, match="No space"):
        training.train("conv", x, epochs=3, **run)
    assert not (tmp_path / "backup" / "latest.weights.h5").exists()  # (moved aside)
    monkeypatch.setattr(training, "_weights_h5", real)
    state = State()
    training.train("conv", x, epochs=3, callbacks=[state], **run)
    checkpoint = keras.models.load_model(tmp_path / "checkpoints" / "epoch_001.keras")
    assert state.epochs == [1, 2]  # epoch 2 (index 1) again, from epoch 1's weights
    assert max_difference(state.weights, [v.numpy() for v in checkpoint.weights]) == 0
    assert max_difference(state.optimizer, [v.numpy() for v in checkpoint.optimizer.variables]) == 0


def test_a_run_is_resumed_or_returned_only_with_the_values_it_was_started_with(tmp_path):
    x = images(48)
    run = dict(batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, model_kwargs=TINY, epochs=3, callbacks=[Crash(1)], **run)
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    wider = {**TINY, "latent_dim": TINY["latent_dim"] * 2}
    with pytest.raises(training.RunMismatch) as caught:
        training.train("conv", x, model_kwargs=wider, epochs=3, noise=("gaussian", 0.1), **run)
    assert caught.value.differences == [
        ("model_kwargs.latent_dim", TINY["latent_dim"], wider["latent_dim"]),
        ("noise", None, ["gaussian", 0.1]),
    ]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
    state = State()
    ae, _ = training.train("conv", x, model_kwargs=TINY, epochs=3, callbacks=[state], **run)
    assert state.epochs == [1, 2]  # resumed with the values it was started with
    # Finished, without run.json (train() writes none): returned again as it is, for those
    # values only; before started.json, other epochs returned it without a word.
    again, _ = training.train("conv", x, model_kwargs=TINY, epochs=3, **run)
    assert max_difference([v.numpy() for v in again.weights], [v.numpy() for v in ae.weights]) == 0
    with pytest.raises(training.RunMismatch, match=r"started with epochs=3, not epochs=5"):
        training.train("conv", x, model_kwargs=TINY, epochs=5, **run)


def test_history_csv_has_the_columns_that_were_logged(tmp_path):
    run = dict(model_kwargs=TINY, epochs=2, batch_size=16, strategy="cpu", verbose=0)
    for folder, validation in (("plain", None), ("validated", images(16, seed=1))):
        _, history = training.train("conv", images(32), out_dir=tmp_path / folder,
                                    validation_data=validation, **run)
        with open(tmp_path / folder / "history.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["epoch", *sorted(history)]  # no val_ columns of "NA" without one
        assert "val_loss" in history if validation is not None else "val_loss" not in history
        assert all("NA" not in row for row in rows[1:])


def test_numpy_numbers_train_and_are_kept_as_the_numbers_they_are(tmp_path):
    run = dict(model_kwargs=TINY, batch_size=np.int64(16), strategy="cpu", out_dir=tmp_path,
               learning_rate=np.float32(1e-3), verbose=0)  # (Keras refused that rate)
    ae, _ = training.train("conv", images(32), epochs=np.int64(1), seed=np.int64(0), **run)
    started = json.loads((tmp_path / "started.json").read_text())
    assert started["epochs"] == 1 and started["learning_rate"] == pytest.approx(1e-3)
    again, _ = training.train("conv", images(32), epochs=1, **run)
    assert np.array_equal(again.get_weights()[0], ae.get_weights()[0])
    with pytest.raises(training.RunMismatch, match="epochs=1, not epochs=7"):
        training.train("conv", images(32), epochs=np.int64(7), **run)


def test_objects_are_recorded_alike_in_every_process_and_told_apart(tmp_path):
    """By class and config, function and arguments: their repr holds an address, which
    refused the same call in a new process."""
    import functools

    def record(loss, scale):
        return training.started_record({
            "loss": loss, "model": functools.partial(aezoo.MODELS["dense"], latent_dim=scale)})

    assert record(keras.losses.MeanSquaredError(), 2) == record(keras.losses.MeanSquaredError(), 2)
    assert "0x" not in json.dumps(record(keras.losses.MeanSquaredError(), 2))
    assert record(keras.losses.MeanSquaredError(), 2) != record(keras.losses.MeanAbsoluteError(), 2)
    assert record(keras.losses.MeanSquaredError(), 2) != record(keras.losses.MeanSquaredError(), 3)
    for damaged in ("[]", "null", '"model"', "3", "{not json"):
        (tmp_path / "started.json").write_text(damaged)
        with pytest.raises(ValueError, match="started.json is damaged; remove it"):
            training.check_started(tmp_path, {"epochs": 1})


def test_builder_arguments_json_cannot_hold_train_without_a_run_folder(tmp_path):
    def mine(input_shape, make_loss):  # (an argument of the function's own, not a builder's)
        return aezoo.MODELS["conv"](input_shape=input_shape, **TINY)

    kwargs = {"make_loss": keras.losses.mean_squared_error}  # (a function: no JSON)
    training.train(mine, images(16), model_kwargs=kwargs, epochs=1, batch_size=16,
                   strategy="cpu", verbose=0)
    training.train(mine, images(16), model_kwargs=kwargs, epochs=1, batch_size=16,
                   strategy="cpu", verbose=0, out_dir=tmp_path)
    started = json.loads((tmp_path / "started.json").read_text())
    assert started["model_kwargs"]["make_loss"].endswith(".mean_squared_error")


def test_a_folder_that_another_training_holds_is_refused_before_anything_is_written(tmp_path):
    """As the commands refuse it; before, train() went on, and another call resuming beside
    a live one took its backup for a damaged one and said to delete it."""
    import fcntl

    with open(tmp_path / ".lock", "a") as other:  # another process's hold, as runs.locked's
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="is in use by another aezoo process"):
            training.train("conv", images(32), model_kwargs=TINY, epochs=1, batch_size=16,
                           strategy="cpu", out_dir=tmp_path, verbose=0)
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotADirectoryError, match="file is a file; a run folder is needed"):
        training.train("conv", images(32), model_kwargs=TINY, epochs=1, batch_size=16,
                       strategy="cpu", out_dir=tmp_path / "file", verbose=0)
    assert (tmp_path / "file").read_text() == "mine"


class Logs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_a_run_resumed_by_an_aezoo_that_logs_other_columns_keeps_the_files_columns(tmp_path):
    x = images(48)
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0,
               epochs=4, validation_data=images(16, seed=1))
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, callbacks=[Crash(2)], **run)
    # As an aezoo without the `minutes` column would have written the first two epochs:
    path = tmp_path / "history.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if "minutes" not in c]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    logs = Logs()
    _, history = training.train("conv", x, callbacks=[logs], **run)
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert {len(row) for row in table} == {len(columns)}
    assert history["val_loss"][2:] == pytest.approx([entry["val_loss"] for entry in logs.logs])
    assert history["loss"][2:] == pytest.approx([entry["loss"] for entry in logs.logs])


class Rates(keras.callbacks.Callback):
    """Records the learning rate of every step (the schedule sets it before this runs)."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_the_warm_up_ramps_the_first_steps_of_the_schedule_and_not_those_of_a_resume(tmp_path):
    x, rate, warmup = images(48), 1e-3, 4  # 3 steps an epoch
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0,
               epochs=4, learning_rate=rate, lr_schedule="cosine", warmup=warmup)
    first, resumed = Rates(), Rates()
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, callbacks=[first, Crash(2)], **run)
    _, history = training.train("conv", x, callbacks=[resumed], **run)
    cosine = [rate * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * e / 4))) for e in range(4)]
    ramp = [min(1.0, (step + 1) / (warmup + 1)) for step in range(6)]
    assert first.rates == pytest.approx([cosine[s // 3] * ramp[s] for s in range(6)], rel=1e-6)
    # The resumed run's optimizer has taken 6 steps: no second warm-up.
    assert resumed.rates == pytest.approx([cosine[2]] * 3 + [cosine[3]] * 3, rel=1e-6)
    # Each epoch logs the rate of its last step (epoch 1's is still within the warm-up).
    assert history["learning_rate"] == pytest.approx(
        [first.rates[2], first.rates[5], resumed.rates[2], resumed.rates[5]], rel=1e-6)
    assert history["learning_rate"][0] < cosine[0]


class Clock(keras.callbacks.Callback):
    """A stand-in for the schedule's clock: each epoch takes one minute (the test moves it
    on by the downtime between a crash and the restart, which must not count)."""

    def __init__(self, now=0.0):
        super().__init__()
        self.now = now

    def __call__(self):
        return self.now

    def on_epoch_begin(self, epoch, logs=None):
        self.now += 60.0  # runs after the schedule read the epoch's start


def test_a_resumed_run_goes_on_with_the_time_and_rate_of_the_interrupted_one(tmp_path, monkeypatch):
    x, rate = images(48), 1e-3
    run = dict(model_kwargs=TINY, batch_size=16, strategy="cpu", out_dir=tmp_path, verbose=0,
               epochs=100, learning_rate=rate, lr_schedule="cosine", time_limit=4)
    clock = Clock()
    monkeypatch.setattr(training.Schedule, "clock", clock)
    with pytest.raises(KeyboardInterrupt):
        training.train("conv", x, callbacks=[clock, Crash(2)], **run)
    clock.now += 3600.0  # the machine was down for an hour
    _, history = training.train("conv", x, callbacks=[clock], **run)
    # Two minutes before the crash, two after: the 4-minute limit ends the 4th epoch (a
    # restarted count would run to the 6th), and the cosine follows the minutes used.
    assert history["minutes"] == pytest.approx([1, 2, 3, 4])
    assert history["learning_rate"] == pytest.approx(
        [rate * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * used / 4))) for used in range(4)],
        rel=1e-6)


# -------------------------------------------------------------------- logs and models


def test_tensorboard_logs_hold_the_loss_of_every_epoch(tmp_path):
    _, history = training.train("conv", images(32), model_kwargs=TINY, epochs=2, batch_size=16,
                                strategy="cpu", log_dir=tmp_path / "tb", verbose=0)
    logged = {}
    for path in (tmp_path / "tb" / "train").glob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "epoch_loss":
                    logged[event.step] = float(tf.make_ndarray(value.tensor))
    assert [logged[e] for e in sorted(logged)] == pytest.approx(history["loss"], rel=1e-6)


def test_any_model_function_can_be_trained():
    def plain(input_shape=(8, 8, 1)):
        inputs = keras.Input(input_shape)
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
        return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same")(h))

    ae, history = training.train(plain, images(32), epochs=2, batch_size=16, strategy="cpu",
                                 verbose=0)
    assert ae.output_shape == (None, 8, 8, 1) and history["loss"][1] < history["loss"][0]


def test_history_is_json_serialisable_with_one_value_per_epoch(tmp_path):
    _, history = training.train(
        "dense", data.from_arrays(images(32, shape=(6,))), model_kwargs={"latent_dim": 2},
        validation_data=images(8, seed=1, shape=(6,)), epochs=3, batch_size=16,
        strategy="cpu", out_dir=tmp_path, verbose=0,
    )
    assert json.loads(json.dumps(history)) == history
    assert set(history) == {"loss", "val_loss", "learning_rate", "minutes"}
    assert all(len(v) == 3 for v in history.values())


# ------------------------------------------------------------------------------ init


@pytest.fixture(scope="module")
def first_model(tmp_path_factory):
    """A trained 'conv' model with a latent_dim other than the builder's default, and its
    .keras file."""
    model, _ = training.train("conv", images(32), model_kwargs={**TINY, "latent_dim": 4},
                              epochs=1, batch_size=16, strategy="cpu", verbose=0)
    path = tmp_path_factory.mktemp("init") / "first.keras"
    training.save_model(model, path)
    return model, path


@pytest.mark.parametrize("given", ["model", "file"])
def test_init_starts_from_the_initial_models_weights_and_builder_arguments(first_model, given):
    first, path = first_model
    x = images(32)
    # One step on the whole set: the epoch's loss is that of the initial weights, and Adam's
    # first step moves each weight by at most the learning rate (m / sqrt(v) = sign(g)).
    expected = float(np.mean((keras.ops.convert_to_numpy(first(x)) - x) ** 2))
    rate = 1e-4
    ae, history = training.train("conv", x, init=first if given == "model" else path,
                                 model_kwargs={"name": "tuned"}, epochs=1, batch_size=32,
                                 steps_per_epoch=1, learning_rate=rate, strategy="cpu",
                                 verbose=0)
    assert ae.name == "tuned"
    config = ae.get_config()
    assert config["latent_dim"] == 4 and tuple(config["filters"]) == (8, 16)
    assert history["loss"][0] == pytest.approx(expected, rel=1e-5)
    moved = [np.max(np.abs(a.numpy() - b.numpy()))
             for a, b in zip(ae.trainable_weights, first.trainable_weights)]
    assert 0 < max(moved) <= rate * 1.001


@pytest.mark.parametrize(
    "model,kwargs,message",
    [("dense", {}, "is a 'conv' model, not 'dense'"),
     ("conv", {"latent_dim": 5}, "has other weights than the model these arguments build"),
     (lambda **kwargs: None, {}, "needs `model` to be the name")],
    ids=["other-model", "other-weights", "function"],
)
def test_an_init_that_the_model_cannot_start_from_is_a_value_error(first_model, model, kwargs,
                                                                   message):
    with pytest.raises(ValueError, match=message):
        training.train(model, images(32), init=first_model[1], model_kwargs=kwargs, epochs=1,
                       batch_size=16, strategy="cpu", verbose=0)
