"""Training under a `tf.distribute` strategy: one CPU or GPU, all GPUs of a machine
(MirroredStrategy), or several machines (MultiWorkerMirroredStrategy, from `TF_CONFIG`).

`train(...)` is the one call: it resolves the strategy, builds and compiles the model inside the
strategy's scope, batches the data with the global batch size and fits, with checkpoints, crash
recovery (`BackupAndRestore`), NaN detection, a progress bar and optional TensorBoard logs.

Create the strategy first thing in a multi-worker program: TensorFlow requires collective ops
to be configured before any other op runs, so `resolve_strategy("multiworker")` must come
before datasets are built.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from aezoo import data as data_lib
from aezoo._keras_fixes import is_multi_worker
from aezoo.model import check_choice, keras_loss

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
MIXED_PRECISION = ("off", "auto", "mixed_float16", "mixed_bfloat16")


# ------------------------------------------------------------------- strategies


def resolve_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the strategy for a name in `STRATEGIES`.

    * auto: MirroredStrategy over all GPUs when there are several, the GPU when there is one,
      else the CPU.
    * cpu / gpu: one device.
    * mirrored: all GPUs of this machine; without GPUs, all logical CPU devices (so that it
      can be tested on a CPU split with `tf.config.set_logical_device_configuration`).
    * multiworker: MultiWorkerMirroredStrategy over the cluster described in `TF_CONFIG`.
    * tpu: TPUStrategy on the TPU this machine is attached to.

    Raises:
        ValueError: for an unknown name, `gpu` without a GPU, or a missing or wrong `TF_CONFIG`.
    """
    check_choice("strategy", name, STRATEGIES)
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "gpu" if gpus else "cpu"
    if name == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not gpus:
            raise ValueError("--strategy gpu: TensorFlow sees no GPU on this machine.")
        return tf.distribute.OneDeviceStrategy("/gpu:0")
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def check_tf_config(text: str | None) -> dict[str, Any]:
    """Parses and checks `TF_CONFIG` for a multi-worker job.

    Raises:
        ValueError: if it is missing, not JSON, or its task is not in its cluster.
    """
    if not text:
        raise ValueError(
            "--strategy multiworker needs TF_CONFIG, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            "TF_CONFIG must be JSON with a 'cluster' (job name -> list of host:port) and a "
            f"'task' ({{'type': ..., 'index': ...}}). Received: {text}"
        ) from None
    hosts = cluster.get(task_type) if isinstance(cluster, dict) else None
    if not isinstance(hosts, list) or not 0 <= index < len(hosts):
        jobs = ", ".join(f"{k} x{len(v)}" for k, v in cluster.items()) if isinstance(cluster, dict) else "none"
        raise ValueError(
            f"TF_CONFIG names task {task_type}:{index}, which is not in its cluster ({jobs})."
        )
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the worker that writes shared outputs (the only one outside multi-worker)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return not has_chief and resolver.task_type == "worker" and resolver.task_id == 0


def resolve_mixed_precision(value: str | bool | None, strategy: tf.distribute.Strategy) -> str | None:
    """The Keras dtype policy for `value`, or None for plain float32.

    "auto" (or True) picks mixed_float16 on GPUs (tensor cores) and mixed_bfloat16 on CPUs and
    TPUs, whose bfloat16 units do not need loss scaling.
    """
    if value in (None, False, "off"):
        return None
    value = "auto" if value is True else value
    check_choice("mixed_precision", value, MIXED_PRECISION)
    if value != "auto":
        return value
    on_gpu = any("GPU" in d.upper() for d in strategy.extended.worker_devices)
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def resolve_jit_compile(value: bool | str, strategy: tf.distribute.Strategy) -> bool:
    """Whether to compile the training step with XLA.

    Keras's own "auto" turns XLA off on CPU and under every tf.distribute strategy, so aezoo
    decides explicitly: on GPU and TPU XLA fuses the many small ops of a convolutional
    autoencoder and is on; on CPU it is off (see benchmarks/README.md for the measurements).
    """
    if isinstance(value, bool):
        return value
    check_choice("jit_compile", value, ("auto", True, False))
    devices = " ".join(strategy.extended.worker_devices).upper()
    return "GPU" in devices or "TPU" in devices


# --------------------------------------------------------------------- training


def train(
    model: str | Callable[..., keras.Model],
    data: tf.data.Dataset | np.ndarray,
    *,
    model_kwargs: dict[str, Any] | None = None,
    validation_data: tf.data.Dataset | np.ndarray | None = None,
    epochs: int = 10,
    batch_size: int = 128,
    strategy: str | tf.distribute.Strategy = "auto",
    out_dir: str | os.PathLike | None = None,
    loss: str = "mse",
    learning_rate: float = 1e-3,
    noise: tuple[str, float] | None = None,
    mixed_precision: str | bool | None = None,
    jit_compile: bool | str = "auto",
    seed: int = 0,
    log_dir: str | os.PathLike | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_epoch: int | None = None,
    verbose: int | str = "auto",
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Builds, compiles and fits a model under a tf.distribute strategy.

    Args:
        model: a name in `aezoo.MODELS`, or a function returning a compiled-or-not Keras model
            (it is called inside the strategy's scope).
        data: training examples: a dataset of single examples (an `aezoo.data` source) or an
            array (N, ...).  Batched here into `(x, x)` or `(noisy x, x)` pairs.
        model_kwargs: builder arguments.  `input_shape` defaults to the data's example shape.
        validation_data: examples to evaluate on after each epoch (noise, if any, is drawn
            once with a fixed seed, so the figures are comparable across epochs).
        epochs: total number of epochs, counting those done before a resume.
        batch_size: global batch size, split across all replicas.
        strategy: a name in `STRATEGIES` or a strategy object.
        out_dir: where checkpoints (`checkpoints/epoch_NNN.keras`), the crash-recovery backup
            (`backup/`), `history.csv` and the final `model.keras` go.  Running again with
            the same `out_dir` after a crash continues from the last finished epoch.
        loss: "mse", "bce" or any Keras loss.
        learning_rate: Adam's learning rate.
        noise: `(kind, level)` to train a denoiser on `(noisy x, x)` pairs.
        mixed_precision: None/"off", "auto", "mixed_float16" or "mixed_bfloat16".
        jit_compile: True, False or "auto" (see `resolve_jit_compile`).
        seed: seed of weight initialisation, shuffling and noise.
        log_dir: TensorBoard log folder.
        callbacks: more Keras callbacks.
        steps_per_epoch: limit each epoch to this many batches.
        verbose: Keras's verbosity ("auto": a progress bar).

    Returns:
        The trained model and its history (metric name -> one value per epoch, all epochs,
        those before a resume included when `out_dir` is given).

    Raises:
        ValueError: for empty data, data whose examples do not fit the model, NaN in the
            data or in the loss, or bad arguments.
    """
    if not isinstance(strategy, tf.distribute.Strategy):
        strategy = resolve_strategy(strategy)
    keras.utils.set_random_seed(seed)
    if out_dir is not None:
        _check_out_dir(Path(out_dir))
    data = _as_dataset(data)
    example_spec = _example_spec(data)
    train_ds = data_lib.pipeline(data, batch_size, noise=noise, seed=seed)
    val_ds = None
    if validation_data is not None:
        val_ds = data_lib.pipeline(
            _as_dataset(validation_data), batch_size, noise=noise, shuffle=False, seed=seed + 1
        )

    policy = resolve_mixed_precision(mixed_precision, strategy)
    previous_policy = keras.config.dtype_policy()
    try:
        if policy:
            keras.config.set_dtype_policy(policy)
        with strategy.scope():
            ae = _build(model, model_kwargs or {}, example_spec, noise)
            ae.compile(
                optimizer=keras.optimizers.Adam(learning_rate),
                loss=keras_loss(loss),
                jit_compile=resolve_jit_compile(jit_compile, strategy),
            )
    finally:
        keras.config.set_dtype_policy(previous_policy)

    all_callbacks = default_callbacks(out_dir, strategy, log_dir) + list(callbacks)
    ae.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles; Keras would warn about a Dataset otherwise
    )
    history = _history(ae, out_dir)
    if any(not math.isfinite(v) for v in history.get("loss", [])):
        raise ValueError(
            "Training stopped because the loss became NaN or infinite; lower the learning "
            "rate, or check the data."
        )
    if out_dir is not None and is_chief(strategy):
        ae.save(Path(out_dir) / "model.keras")
    return ae, history


def _check_out_dir(out: Path) -> None:
    """A finished run is never overwritten; a crashed one (backup present) is resumed."""
    if (out / "model.keras").exists() and not (out / "backup").exists():
        raise FileExistsError(
            f"{out} already holds a finished run (model.keras); choose another output folder."
        )
    if not (out / "backup").exists() and (out / "history.csv").exists():
        (out / "history.csv").unlink()  # from a run that crashed before its first epoch ended


def default_callbacks(
    out_dir: str | os.PathLike | None, strategy: tf.distribute.Strategy, log_dir=None
) -> list[keras.callbacks.Callback]:
    """NaN stop always; checkpoints, backup and history with `out_dir`; TensorBoard with
    `log_dir`.  In a multi-worker job only the chief writes to `out_dir`; the other workers
    keep their (identical) checkpoints in `out_dir/workers/<task>`."""
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if out_dir is not None:
        out = Path(out_dir)
        if not is_chief(strategy):
            resolver = strategy.cluster_resolver
            out = out / "workers" / f"{resolver.task_type}_{resolver.task_id}"
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        callbacks += [
            # A crash between two saves leaves the previous backup intact (double_checkpoint).
            keras.callbacks.BackupAndRestore(out / "backup", double_checkpoint=True),
            keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "epoch_{epoch:03d}.keras")),
            keras.callbacks.CSVLogger(str(out / "history.csv"), append=True),
        ]
    if log_dir is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(log_dir)))
    return callbacks


def _build(model, kwargs: dict[str, Any], example_spec: tf.TensorSpec, noise) -> keras.Model:
    if isinstance(model, str):
        import aezoo

        check_choice("model", model, list(aezoo.MODELS))
        builder = aezoo.MODELS[model]
        kwargs = dict(kwargs)
        kwargs.setdefault("input_shape", _default_input_shape(builder, example_spec))
        if noise is not None and "corruption" in inspect.signature(builder).parameters:
            kwargs.setdefault("corruption", None)  # the pipeline adds the noise already
        ae = builder(**kwargs)
    else:
        ae = model(**kwargs)
    check_fits(ae, example_spec.shape)
    return ae


def _default_input_shape(builder, spec: tf.TensorSpec) -> tuple[int | None, ...]:
    default = inspect.signature(builder).parameters["input_shape"].default
    shape = tuple(spec.shape)
    if len(default) == len(shape) and default[:-1] == (None,) * (len(default) - 1):
        # A fully convolutional model: keep any height and width, take the channels.
        return default[:-1] + shape[-1:]
    return shape


def check_fits(model: keras.Model, example_shape: Sequence[int | None]) -> None:
    """Raises ValueError unless examples of `example_shape` fit the model's input."""
    expected = tuple(model.input_shape[1:])
    given = tuple(example_shape)
    fits = len(expected) == len(given) and all(
        e is None or g is None or e == g for e, g in zip(expected, given)
    )
    if not fits:
        raise ValueError(
            f"The data's examples have shape {given}, but model '{model.name}' takes "
            f"{expected} (None: any size)."
        )


def _as_dataset(data) -> tf.data.Dataset:
    if isinstance(data, tf.data.Dataset):
        return data
    return data_lib.from_arrays(data)  # checks emptiness and NaN


def _example_spec(data: tf.data.Dataset) -> tf.TensorSpec:
    """The spec of one example, after checking that there is at least one."""
    spec = data.element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    size = int(data.cardinality())
    if size == 0 or (size < 0 and not any(True for _ in data.take(1))):
        raise ValueError("The training data is empty.")
    return spec


def _history(model: keras.Model, out_dir) -> dict[str, list[float]]:
    """The whole history: from history.csv when there is one (it spans resumed runs)."""
    path = Path(out_dir) / "history.csv" if out_dir is not None else None
    if path is not None and path.is_file():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        # CSVLogger writes "NA" for the val_ columns it adds when there is no validation.
        history = {
            key: [float(r[key]) for r in rows if r.get(key) not in (None, "", "NA")]
            for key in (rows[0] if rows else {})
            if key != "epoch"
        }
        return {key: values for key, values in history.items() if values}
    return {k: [float(v) for v in values] for k, values in model.history.history.items()}
