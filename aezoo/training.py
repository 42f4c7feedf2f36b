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

import contextlib
import csv
import functools
import inspect
import io
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from aezoo import data as data_lib
from aezoo import runs
from aezoo._keras_fixes import fix_multi_worker_fit, is_multi_worker
from aezoo.models import MODELS, denoising
from aezoo.models.base import Autoencoder, check_choice, check_int, is_number, keras_loss
from aezoo.models.compression import CompressionAutoencoder, widen
from aezoo.runs import RUN_FILE

STRATEGIES = ("auto", "cpu", "gpu", "mirrored", "multiworker", "tpu")
MIXED_PRECISION = ("off", "auto", "mixed_float16", "mixed_bfloat16")
LR_SCHEDULES = ("constant", "cosine", "step")


# ------------------------------------------------------------------- strategies


def resolve_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """Returns the strategy for a name in `STRATEGIES`.

    * auto: MirroredStrategy over all GPUs when there are several, else the one device
      (the GPU when there is one, else the CPU).
    * cpu / gpu: one device.
    * mirrored: all GPUs of this machine; without GPUs, all logical CPU devices (so that it
      can be tested on a CPU split with `tf.config.set_logical_device_configuration`).
    * multiworker: MultiWorkerMirroredStrategy over the cluster described in `TF_CONFIG`.
    * tpu: TPUStrategy on the TPU this machine is attached to.

    Where one device is TensorFlow's own choice (the GPU, or the CPU of a machine without
    one), this is TensorFlow's default strategy: Keras then feeds the data without
    `OneDeviceStrategy`'s multi-device iterator, which is as fast here
    (`benchmarks/train_throughput.py`, overhead part) but logs "Local rendezvous is
    aborting" and "will not be optimized" warnings that read like faults.

    Raises:
        ValueError: for an unknown name, `gpu` without a GPU, `tpu` without a TPU, or a
            missing or wrong `TF_CONFIG`.
    """
    check_choice("strategy", name, STRATEGIES)
    if not os.environ.get("TF_CONFIG", "x").strip():
        # Set but empty (`TF_CONFIG= aezoo train ...`, a script's unset variable): as if
        # unset; TensorFlow's strategies parse it as JSON ("Expecting value: line 1 ...").
        del os.environ["TF_CONFIG"]
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "gpu" if gpus else "cpu"
    if name == "cpu":
        if not gpus:
            return tf.distribute.get_strategy()
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    if name == "gpu":
        if not gpus:
            raise ValueError("The strategy 'gpu' needs a GPU, and TensorFlow sees none on this "
                             "machine.")
        return tf.distribute.get_strategy()  # TensorFlow places everything on GPU:0
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    except ValueError:  # ("Please provide a TPU Name to connect to.")
        raise ValueError("The strategy 'tpu' needs a TPU, and this machine is attached to "
                         "none.") from None
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def worker_devices(strategy: tf.distribute.Strategy) -> tuple[str, ...]:
    """The devices of this machine the strategy trains on (TensorFlow's own choice for its
    default strategy: the first GPU, else the CPU)."""
    if type(strategy).__name__ == "_DefaultDistributionStrategy":
        gpus = tf.config.list_logical_devices("GPU")
        return ((gpus or tf.config.list_logical_devices("CPU"))[0].name,)
    return tuple(strategy.extended.worker_devices)


def describe_strategy(strategy: tf.distribute.Strategy) -> str:
    """One line for logs, e.g.
    "MirroredStrategy: 2 replica(s) in sync; on this machine: CPU:0, CPU:1"."""
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # not its implementation's class name
    here = ", ".join(d.rsplit("device:", 1)[-1] for d in worker_devices(strategy))
    if name == "_DefaultDistributionStrategy":
        return f"One device: {here}"
    return f"{name}: {strategy.num_replicas_in_sync} replica(s) in sync; on this machine: {here}"


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
    on_gpu = any("GPU" in d.upper() for d in worker_devices(strategy))
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def resolve_jit_compile(value: bool | str, strategy: tf.distribute.Strategy) -> bool:
    """Whether to compile the training step with XLA.

    Keras 3 compiles its whole distributed step, `strategy.run` over every local replica,
    as one XLA cluster.  That works for one replica but not for several: XLA then reads
    the other replicas' variables from the first device and fails ("Trying to access
    resource ... located in device CPU:1 from device CPU:0", keras-team/keras#19005;
    checked here under MirroredStrategy over 2 logical CPUs), and on CPU XLA has no
    collective ops, which MultiWorkerMirroredStrategy needs ("Collectives are not yet
    implemented for CPU devices when compiling with XLA", checked with 2 workers).
    Keras's own "auto" therefore turns XLA off under every strategy and on CPU.

    * "auto": on for a single GPU, where XLA fuses the many small ops of an autoencoder;
      off on CPU, under several replicas or workers, and on TPUs (TPUStrategy compiles
      every step with XLA by itself).
    * True: XLA, where it can work: one local replica; across workers only on GPUs
      (XLA's GPU collectives; not tested here, as this project's test machines have no GPU).
    * False: no XLA.

    Raises:
        ValueError: for True where XLA cannot work, as above.
    """
    check_choice("jit_compile", value, ("auto", True, False))
    devices = worker_devices(strategy)
    on_gpu = all("GPU" in d.upper() for d in devices)
    if value == "auto":
        return on_gpu and len(devices) == 1 and not is_multi_worker(strategy)
    if value and isinstance(strategy, tf.distribute.TPUStrategy):
        raise ValueError("TPUStrategy compiles with XLA by itself; leave jit_compile on 'auto'.")
    if value and len(devices) > 1:
        raise ValueError(
            f"XLA (jit_compile) does not work with {len(devices)} replicas on one machine "
            "in Keras 3 (keras-team/keras#19005); turn it off."
        )
    if value and is_multi_worker(strategy) and not on_gpu:
        raise ValueError(
            "XLA (jit_compile) has no collective ops on CPU, which multi-worker training "
            "needs; turn it off."
        )
    return bool(value)


def check_training_options(
    *,
    epochs: int = 1,
    learning_rate: float = 1e-3,
    clipnorm: float | None = None,
    steps_per_epoch: int | None = None,
    time_limit: float | None = None,
) -> None:
    """Checks the training options every command shares against their meaning.

    Raises:
        ValueError: naming the option and the value received.
    """
    check_int("epochs", epochs)
    if steps_per_epoch is not None:
        check_int("steps_per_epoch", steps_per_epoch)
    positive = {"learning_rate": learning_rate, "clipnorm": clipnorm, "time_limit": time_limit}
    for name, value in positive.items():
        if value is None and name != "learning_rate":
            continue
        try:
            fine = is_number(value) and math.isfinite(value) and value > 0
        except OverflowError:  # (an int beyond float's range: 10**400)
            fine = False
        if not fine:
            raise ValueError(
                f"`{name}` must be a positive, finite number. Received: {name}={value!r}"
            )


class Schedule(keras.callbacks.Callback):
    """The learning-rate schedule and the time limit of every aezoo training.

    Sets the learning rate before each epoch: "constant"; "cosine", from its start down to
    1% of it along half a cosine of the progress; "step", ten times lower for the last
    fifth of the epochs (the compression recipe).  The progress is the larger of the
    fraction of epochs done and the fraction of the time limit used, so a run cut short by
    its time limit still ends at a low rate.  With a time limit (minutes), training stops
    at the end of the first epoch that ends past it.  Each epoch logs `minutes`, the
    training time so far; a resumed run is given those of the epochs it keeps (`minutes`,
    epoch -> minutes, from history.csv) and goes on counting from where the interrupted one
    stopped, so its rate and its time limit continue rather than start again.

    With `warmup` steps, the rate of the first `warmup` optimizer steps rises linearly to
    the schedule's: a fresh Adam's first steps move every weight by about the learning rate
    (m / sqrt(v) is sign(g) at first), which throws a trained model (`init`) far up its
    loss.  The steps are the optimizer's, so a resumed run does not warm up again.
    """

    clock = staticmethod(time.monotonic)  # seconds; a test may replace it

    def __init__(self, learning_rate: float, schedule: str, epochs: int, minutes: float | None,
                 warmup: int = 0, done: dict[int, float] | None = None):
        super().__init__()
        check_choice("lr_schedule", schedule, LR_SCHEDULES)
        self.start, self.schedule, self.epochs = learning_rate, schedule, epochs
        self.seconds = None if minutes is None else 60.0 * minutes
        self.warmup = check_int("warmup", warmup, minimum=0)
        self.done = dict(done or {})

    def on_train_begin(self, logs=None):
        self.step = None
        self.before = None  # seconds trained before this process, known at the first epoch

    def _elapsed(self) -> float:
        return self.before + self.clock() - self.began

    def _time_used(self) -> float:
        return 0.0 if self.seconds is None else self._elapsed() / self.seconds

    def rate(self, epoch: int) -> float:
        """The learning rate of `epoch` (0-based), after the warm-up."""
        progress = min(1.0, max(epoch / self.epochs, self._time_used()))
        if self.schedule == "cosine":
            return self.start * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
        if self.schedule == "step":
            return self.start / 10 if progress >= 1 - 1 / 5 - 1e-9 else self.start
        return self.start

    def on_epoch_begin(self, epoch, logs=None):
        if self.before is None:
            # The first epoch of this process: a resumed run starts after epoch - 1.
            self.before = 60.0 * self.done.get(epoch - 1, 0.0)
            self.began = self.clock()
        if self.step is None:
            # Read here, not in on_train_begin: a resumed run's optimizer is restored by a
            # callback that comes after this one.
            self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.current = self.rate(epoch)
        self.model.optimizer.learning_rate.assign(self.current)

    def on_train_batch_begin(self, batch, logs=None):
        # Only the warm-up's steps pay for this callback's assignment.
        if self.warmup and self.step <= self.warmup:
            self.model.optimizer.learning_rate.assign(
                self.current * min(1.0, (self.step + 1) / (self.warmup + 1))
            )
            self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # The rate of the epoch's last step: the schedule's, or lower within a warm-up.
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["minutes"] = self._elapsed() / 60.0
        if self._time_used() >= 1.0:
            print(f"Stopping after epoch {epoch + 1}: the time limit is reached.", flush=True)
            self.model.stop_training = True


def split_cpu(devices: int) -> None:
    """Splits this machine's CPU into `devices` logical devices, so that the `mirrored`
    strategy has that many replicas without GPUs: a way to try or test data-parallel
    training on any machine (the replicas share the same cores, so it is not faster).

    Call it before TensorFlow runs anything (before `resolve_strategy`).

    Raises:
        ValueError: if `devices` is not a positive integer or TensorFlow has already started
            with another split.
    """
    check_int("devices", devices)
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) == devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
        )
    except RuntimeError:
        raise ValueError(
            f"Cannot split the CPU into {devices} devices: TensorFlow has already started; "
            "split it first thing in the program."
        ) from None


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
    lr_schedule: str = "constant",
    warmup: int = 0,
    time_limit: float | None = None,
    clipnorm: float | None = None,
    noise: tuple[str, float] | None = None,
    mixed_precision: str | bool | None = None,
    jit_compile: bool | str = "auto",
    seed: int = 0,
    log_dir: str | os.PathLike | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    steps_per_epoch: int | None = None,
    init: keras.Model | str | os.PathLike | None = None,
    verbose: int | str = "auto",
    record: Mapping[str, Any] | None = None,
    keep_checkpoints: int | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Builds, compiles and fits a model under a tf.distribute strategy.

    Args:
        model: a name in `aezoo.MODELS`, or a function returning a compiled-or-not Keras model
            (it is called inside the strategy's scope).
        data: training examples: a dataset of single examples (an `aezoo.data` source) or an
            array (N, ...); integer pixels of either are scaled to [0, 1] as
            `aezoo.data.from_arrays` says.  Batched here into `(x, x)` or `(noisy x, x)`
            pairs.
        model_kwargs: builder arguments.  `input_shape` defaults to the data's example shape
            (for a function too, where it takes `input_shape`).
        validation_data: examples to evaluate on after each epoch (noise, if any, is drawn
            once with a fixed seed, so the figures are comparable across epochs).
        epochs: total number of epochs, counting those done before a resume.
        batch_size: global batch size, split across all replicas (best a multiple of
            their number).  With several replicas each epoch leaves out the fewest
            examples that split the last batch evenly (see `aezoo.data.pipeline`).
        strategy: a name in `STRATEGIES` or a strategy object.
        out_dir: where checkpoints (`checkpoints/epoch_NNN.keras`), the crash-recovery backup
            (`backup/`), `history.csv` and the final `model.keras` go (on workers other than
            the chief, in `out_dir/workers/<task>`).  Running again with the same `out_dir`
            after a crash continues after the last finished epoch, with its weights and
            optimizer state; after a crash that came once `model.keras` was saved, it
            returns that model at once.  A finished run (`run.json`, which commands write
            last, see `aezoo.runs`) is never overwritten.
        loss: "mse", "bce" or any Keras loss.
        learning_rate: Adam's learning rate (positive, finite).
        lr_schedule: "constant", "cosine" or "step" (see `Schedule`).
        warmup: optimizer steps over which the learning rate rises linearly to the
            schedule's (see `Schedule`).
        time_limit: minutes; stop after the first epoch that ends past them (see
            `Schedule`).  Not with several workers, whose clocks would disagree.
        clipnorm: clip the gradient to this global norm (None: no clipping).
        noise: `(kind, level)` to train a denoiser on `(noisy x, x)` pairs.
        mixed_precision: None/"off", "auto", "mixed_float16" or "mixed_bfloat16".
        jit_compile: True, False or "auto" (see `resolve_jit_compile`).
        seed: seed of weight initialisation, shuffling and noise.
        log_dir: TensorBoard log folder.
        callbacks: more Keras callbacks.
        steps_per_epoch: limit each epoch to this many batches.
        init: start from a trained model's weights (fine-tuning, or a rate point started
            from its neighbour): an aezoo model, a run folder, preset name or `.keras`
            file, or the `InitialModel` that `open_initial` made of one.  It must be the
            model `model` names; its builder arguments are the defaults that
            `model_kwargs` update, and they must give the same weights.
        verbose: Keras's verbosity ("auto": a progress bar).
        record: more of what defines the run beside these arguments (a command's data
            options), kept with them in `out_dir/started.json` and compared alike.
        keep_checkpoints: keep only the newest N `checkpoints/epoch_NNN.keras` (each holds
            the model and Adam's moments: 22 MB an epoch for `denoise_gray`, so 9 GB over
            its recipe's 398 epochs); the older ones are deleted once a newer one is saved.
            None keeps them all.  It does not define the run: a resume may change it.

    With `out_dir`, the arguments that define the run (`RUN_DEFINING`, and `record`) are
    kept in `started.json` when it starts; resuming or completing it with other values
    raises `RunMismatch`, since the model would then be one that neither set of values
    describes.  The strategy, XLA, logs, callbacks and verbosity may change: a run resumed
    on another machine, or with other devices, is the same run.

    Returns:
        The trained model and its history (metric name -> one value per epoch, all epochs,
        those before a resume included when `out_dir` is given).

    Raises:
        ValueError: for empty data, examples without a fixed shape or that do not fit the
            model, NaN in the data or in the loss, or bad arguments.
        FileExistsError: if `out_dir` holds a finished run.
        RunMismatch: if `out_dir` holds a run started with other values of `RUN_DEFINING`
            or `record`.
    """
    arguments = dict(locals())  # (first: what the call was given)
    check_training_options(epochs=epochs, learning_rate=learning_rate, clipnorm=clipnorm,
                           steps_per_epoch=steps_per_epoch, time_limit=time_limit)
    # As Python numbers (a sweep's NumPy ones pass the checks; Keras's optimizer refuses them).
    epochs, learning_rate, batch_size = int(epochs), float(learning_rate), check_int(
        "batch_size", batch_size)
    clipnorm, time_limit = (None if v is None else float(v) for v in (clipnorm, time_limit))
    steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
    seed, warmup = check_int("seed", seed, minimum=0), check_int("warmup", warmup, minimum=0)
    if keep_checkpoints is not None:
        keep_checkpoints = check_int("keep_checkpoints", keep_checkpoints)
    check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
    if not isinstance(strategy, tf.distribute.Strategy):
        strategy = resolve_strategy(strategy)
    if time_limit is not None and is_multi_worker(strategy):
        # Each worker would read its own clock and stop after a different epoch.
        raise ValueError("A time limit cannot be used with several workers.")
    keras.utils.set_random_seed(seed)
    replicas = strategy.num_replicas_in_sync
    _check_batch_split(batch_size, replicas)
    run = run_dir(out_dir, strategy) if out_dir is not None else None
    # Held by this process for the whole call (a command holds it already): a second
    # training into the folder would mix two histories, and would take the live backup
    # for a damaged one.
    with runs.locked(run) if run is not None else contextlib.nullcontext():
        state = _prepare_run_dir(run) if run is not None else "new"
        started = started_record(arguments, record) if run is not None else None
        if state != "new":
            check_started(run, started)
        if state == "trained":
            # Killed after its model was saved: the training is done; the command completes it.
            return load_trained(run / "model.keras"), _history(None, run)
        (train_ds, example_spec), (val_ds, val_spec) = _datasets(
            data, validation_data, batch_size, noise, seed, replicas, steps_per_epoch)
        # Loaded here, outside the strategy's scope and the mixed-precision policy: only its
        # builder arguments and weights are used.
        initial = open_initial(init)
        policy = resolve_mixed_precision(mixed_precision, strategy)
        previous_policy = keras.config.dtype_policy()
        try:
            if policy:
                keras.config.set_dtype_policy(policy)
            with strategy.scope():
                ae = _build(model, model_kwargs or {}, example_spec, noise, initial)
                _check_built(ae, val_spec, policy)
                ae.compile(
                    optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=clipnorm),
                    loss=keras_loss(loss),
                    jit_compile=resolve_jit_compile(jit_compile, strategy),
                )
        finally:
            keras.config.set_dtype_policy(previous_policy)
        fix_multi_worker_fit(ae, strategy)

        # The schedule first: the history (and history.csv) then records each epoch's rate.
        schedule = Schedule(learning_rate, lr_schedule, epochs, time_limit, warmup,
                            done=_minutes_done(run))
        all_callbacks = [schedule,
                         *default_callbacks(out_dir, strategy, log_dir, val_ds is not None,
                                           keep_checkpoints),
                         *callbacks]
        if state == "new" and run is not None:
            # Last before the first epoch: a call refused before it leaves no record behind.
            runs.write_text(run / STARTED_FILE, json.dumps(started, indent=2) + "\n")
        with warnings.catch_warnings():
            if steps_per_epoch is None:
                # Keras 3.15 ends each epoch of a dataset of unknown length (distributed, or cut
                # into patches) with "Your input ran out of data; interrupting training", though
                # that is how it finds the end; keras-team/keras#23360 (merged after 3.15) warns
                # only when steps_per_epoch was given.
                warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
            ae.fit(
                train_ds,
                validation_data=val_ds,
                epochs=epochs,
                steps_per_epoch=steps_per_epoch,
                callbacks=all_callbacks,
                verbose=verbose,
                shuffle=False,  # the pipeline shuffles; Keras would warn about a Dataset otherwise
            )
        history = _history(ae, run)
        _check_finite(history, run)
        if run is not None:
            # The model first, then the backup goes: a crash in between resumes (and finishes
            # at once), and a run is finished exactly when model.keras is there without backup.
            save_model(ae, run / "model.keras")
            shutil.rmtree(run / "backup", ignore_errors=True)
        return ae, history


def _check_batch_split(batch_size: int, replicas: int) -> None:
    """The global batch splits evenly across the replicas: unequal shares fail inside the
    step (TensorFlow adds the replicas' gradients of different shapes: a traceback after the
    run folder was made)."""
    if batch_size < replicas:
        raise ValueError(f"`batch_size` {batch_size} is smaller than the {replicas} replicas.")
    if batch_size % replicas:
        lower, higher = batch_size // replicas * replicas, -(-batch_size // replicas) * replicas
        raise ValueError(f"The batch size {batch_size} is not a multiple of the {replicas} "
                         f"replicas; give {lower} or {higher}.")


def _datasets(data, validation_data, batch_size: int, noise, seed: int, replicas: int,
              steps_per_epoch: int | None):
    """`train`'s batched (x, x) or (noisy x, x) pipelines, each with the spec of one of its
    examples: ((training, spec), (validation or None, spec or None))."""
    data = _as_dataset(data)
    example_spec = _example_spec(data)
    train_ds = data_lib.pipeline(data, batch_size, noise=noise, seed=seed,
                                 num_replicas=replicas)
    if steps_per_epoch is not None:
        # An epoch is then exactly that many batches, the data going on where the last
        # epoch stopped (and round again), as Keras expects of a dataset with
        # steps_per_epoch.
        train_ds = train_ds.repeat()
    if validation_data is None:
        return (train_ds, example_spec), (None, None)
    validation_data = _as_dataset(validation_data)
    val_spec = _example_spec(validation_data, "validation")
    # Noise drawn with its own fixed seed: the same noisy examples at every epoch.
    val_ds = data_lib.pipeline(validation_data, batch_size, noise=noise, shuffle=False,
                               seed=seed + 1, num_replicas=replicas)
    return (train_ds, example_spec), (val_ds, val_spec)


def _check_built(ae: keras.Model, val_spec, policy) -> None:
    """What Keras would find out only after an epoch: validation examples that the model
    does not take, and 16-bit outputs under mixed precision (whose loss would be 16-bit)."""
    if val_spec is not None:
        check_fits(ae, val_spec.shape, "The validation examples")
    if policy and ae.output.dtype != "float32":
        raise ValueError(
            f"Model '{ae.name}' gives {ae.output.dtype} outputs under {policy}; its "
            "last layer needs dtype='float32' so that the loss is computed in float32."
        )


def _check_finite(history: dict[str, list[float]], run: Path | None) -> None:
    """A loss that became NaN or infinite (TerminateOnNaN stopped the fit) is an error,
    and the run keeps no backup of the epoch that failed: a new run must not resume it."""
    if all(math.isfinite(v) for v in history.get("loss", [])):
        return
    if run is not None:
        shutil.rmtree(run / "backup", ignore_errors=True)
    kept = epoch_checkpoints(run / "checkpoints") if run is not None else []
    where = f"; the last good epoch is kept in {kept[-1]}" if kept else ""
    raise ValueError("Training stopped because the loss became NaN or infinite; lower the "
                     f"learning rate, or check the data{where}.")


def run_dir(out_dir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """Where this worker writes: `out_dir` for the chief (and outside multi-worker jobs),
    `out_dir/workers/<task>` for the other workers, whose checkpoints are identical copies
    kept apart so that no two processes write one file, on a shared file system or not."""
    out = Path(out_dir)
    if is_chief(strategy):
        return out
    resolver = strategy.cluster_resolver
    return out / "workers" / f"{resolver.task_type}_{resolver.task_id}"


def run_state(run: Path) -> str:
    """"new", "resume" (a backup is there), "trained" (model.keras saved, the rest of the
    run not written yet: a command completes it) or "finished" (run.json is there)."""
    if (run / RUN_FILE).exists():
        return "finished"
    if (run / "backup").exists():
        return "resume"
    if (run / "model.keras").exists():
        return "trained"
    return "new"


def _prepare_run_dir(run: Path) -> str:
    """The state of `run` (see `run_state`), ready for `fit`: a finished run is never
    overwritten; an interrupted one (backup present) resumes; a new one starts with no
    history.csv."""
    state = run_state(run)
    if state == "finished":
        runs.refuse_finished(run)
    if state == "new":
        # A fresh start, or a crash before the first backup: no earlier epochs to keep.
        (run / "history.csv").unlink(missing_ok=True)
    return state


# --------------------------------------------------------- what a run was started with

# The arguments of `train` that define a run: resuming it with other values would give a
# model that neither describes (run.json would misstate it; other builder arguments would
# not even fit the backup).
RUN_DEFINING = ("model", "model_kwargs", "epochs", "batch_size", "loss", "learning_rate",
                "lr_schedule", "warmup", "time_limit", "clipnorm", "noise", "mixed_precision",
                "seed", "steps_per_epoch", "init")
STARTED_FILE = "started.json"


class _Missing:
    """Where a run was started without a value that is given now, or the other way round."""

    def __repr__(self) -> str:
        return "(not given)"


MISSING = _Missing()


class RunMismatch(ValueError):
    """A run resumed or completed with other values than it was started with.

    `differences` holds `(name, started, given)` triples: a name of `RUN_DEFINING`, or of
    `train`'s `record`; builder arguments and a record's mappings are compared key by key,
    as "model_kwargs.filters" or "data.patch"; `MISSING` stands for a key one side lacks.
    """

    def __init__(self, run: Path, differences: list[tuple[str, Any, Any]]):
        self.run, self.differences = run, differences
        started = ", ".join(f"{name}={was!r}" for name, was, _ in differences)
        given = ", ".join(f"{name}={now!r}" for name, _, now in differences)
        super().__init__(f"{run} holds a run started with {started}, not {given}: give the "
                         "values it was started with to resume it, or another out_dir.")


def started_record(arguments: Mapping[str, Any], record: Mapping[str, Any] | None = None
                   ) -> dict[str, Any]:
    """What `started.json` keeps of `train`'s arguments (and `record`), as JSON reads it back:
    NumPy numbers as Python's, functions, models and other objects by name."""
    kept = {name: _canonical(arguments.get(name), name) for name in RUN_DEFINING}
    kept.update(record or {})
    return json.loads(json.dumps(runs._jsonable(kept), default=_named))


def _canonical(value: Any, name: str) -> Any:
    """An argument as `started.json` keeps it, in one form for the values that mean the
    same: an initial model's file by its absolute path, no builder arguments as {}, no
    mixed precision as "off"."""
    if isinstance(value, InitialModel):
        value = value.label
    if name == "init" and isinstance(value, (str, os.PathLike)) and (
            os.path.exists(value) or os.sep in os.fspath(value)):  # (not a preset's name)
        return os.path.abspath(value)
    if name == "model_kwargs" and value is None:
        return {}
    if name == "mixed_precision" and value in (None, False, True):
        return {None: "off", False: "off", True: "auto"}[value]
    return value


def _named(value: Any) -> Any:
    """JSON's `default`: what it cannot write, the same in every process (never a repr with
    an address): a function by its name, a Keras object by its class and config, a partial
    by its function and arguments, anything else by its class."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, keras.Model):
        return f"'{value.name}'"
    if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value) \
            or isinstance(value, type):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    if isinstance(value, functools.partial):
        return {"partial": value.func, "args": value.args, "keywords": value.keywords}
    kind = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "get_config"):  # a Keras loss, initializer, layer ...
        try:
            return {"class": kind, "config": value.get_config()}
        except Exception:  # (a get_config that a subclass did not implement)
            pass
    return kind


def check_started(run: Path, started: dict[str, Any]) -> None:
    """Raises `RunMismatch` unless the run in `run` was started with `started` (runs started
    before aezoo kept `started.json` are taken as they are)."""
    try:
        was = json.loads((run / STARTED_FILE).read_text())
    except FileNotFoundError:
        return
    except ValueError:  # (a file cut short is impossible: it is written whole or not at all)
        was = None
    if not isinstance(was, dict):
        raise ValueError(f"{run / STARTED_FILE} is damaged; remove it to resume the run as "
                         "it is given now.")
    differences = []
    for name, value in started.items():
        if name not in was or was[name] == value:
            continue
        if isinstance(value, dict) and isinstance(was[name], dict):
            differences += [
                (f"{name}.{key}", was[name].get(key, MISSING), value.get(key, MISSING))
                for key in sorted({*was[name], *value})
                if was[name].get(key, MISSING) != value.get(key, MISSING)
            ]
        else:
            differences.append((name, was[name], value))
    if differences:
        raise RunMismatch(run, differences)


def load_trained(path: Path) -> keras.Model:
    """A trained model saved by `train`, compiled as it was (its optimizer state too)."""
    MODELS.load()  # aezoo's classes, registered with Keras
    return keras.models.load_model(path)


def save_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Saves a `.keras` file whole or not at all (written aside, then renamed), so that a
    crash while saving never leaves a truncated file behind."""
    with runs.writing(path) as partial:  # (a name that ends in .keras, as Keras asks)
        model.save(partial)


def default_callbacks(
    out_dir: str | os.PathLike | None, strategy: tf.distribute.Strategy, log_dir=None,
    validation: bool = True, keep_checkpoints: int | None = None,
) -> list[keras.callbacks.Callback]:
    """NaN stop always; history, backup and checkpoints with `out_dir`; TensorBoard with
    `log_dir`.  `validation`: whether fit has validation data (history.csv has `val_`
    columns only then).  In a multi-worker job each worker writes to its own `run_dir`, and only the
    chief writes TensorBoard logs."""
    callbacks: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if out_dir is not None:
        run = run_dir(out_dir, strategy)
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        # Order matters at the end of an epoch: the history row, then the backup, then the
        # checkpoint.  So a checkpoint file means its epoch is backed up (a restart goes on
        # after it), and a crash before the backup redoes the epoch, whose repeated history
        # row _history() drops.
        callbacks += [
            _HistoryCSV(run / "history.csv", validation),
            _SyncedBackupAndRestore(run / "backup", strategy),
            _EpochCheckpoint(run / "checkpoints", keep_checkpoints),
        ]
    if log_dir is not None and is_chief(strategy):
        callbacks.append(keras.callbacks.TensorBoard(str(log_dir)))
    return callbacks


class _SyncedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` (weights, optimizer state and epoch) whose workers agree.

    Each worker of a multi-worker job keeps its own backup, and a crash can fall between
    two workers' writes at the end of an epoch, leaving them one epoch apart; resumed as
    they are, they would train different epochs and wait for each other forever.  So on
    resuming, the workers compare epochs, and those ahead step back to their previous
    backup (`double_checkpoint` keeps it).  The backup is deleted by `train` once the
    final model is saved, not at the end of `fit`.
    """

    def __init__(self, backup_dir: Path, strategy: tf.distribute.Strategy):
        super().__init__(backup_dir, double_checkpoint=True, delete_checkpoint=False)
        self._strategy = strategy

    def on_train_begin(self, logs=None):
        if not os.path.exists(self._weights_path) and os.path.exists(self._prev_weights_path):
            # Stopped (a full disk) between moving the backup aside and writing the new one.
            os.replace(self._prev_weights_path, self._weights_path)
            if os.path.exists(self._prev_training_metadata_path):
                shutil.copy(self._prev_training_metadata_path, self._training_metadata_path)
        try:
            super().on_train_begin(logs)  # (Keras falls back on the previous backup itself)
        except (OSError, ValueError, KeyError) as error:
            backup = Path(self.backup_dir)
            checkpoints = epoch_checkpoints(backup.parent / "checkpoints")
            way_out = f"delete {backup} to start the run afresh"
            if checkpoints:
                way_out += (", or start afresh from its last good epoch with "
                            f"--init {checkpoints[-1]}")
            raise ValueError(f"The crash-recovery backup in {backup} is damaged "
                             f"({type(error).__name__}); {way_out}.") from None
        if not is_multi_worker(self._strategy):
            return
        epoch = self.model._initial_epoch or 0  # where Keras's fit() will start
        common = int(tf.reduce_min(self._strategy.gather(tf.constant([epoch]), axis=0)))
        if common == epoch:
            return
        previous = Path(self._prev_training_metadata_path)
        if not previous.is_file() or json.loads(previous.read_text())["epoch"] != common:
            raise ValueError(
                f"This worker's backup in {self.backup_dir} is at epoch {epoch}, another "
                f"worker's at {common}; delete the backups of all workers to start again."
            )
        # Step back on disk too (as BackupAndRestore does for a corrupt backup): Keras loads
        # only files named *.weights.h5.
        shutil.copy(self._prev_weights_path, self._weights_path)
        shutil.copy(previous, self._training_metadata_path)
        self.model.load_weights(self._weights_path)
        self.model._initial_epoch = common

    def _save_model(self):
        """Keras's backup, each file written whole or not at all.  Keras has h5py write
        `latest.weights.h5` in place, and h5py fails on a full disk in its own way: dozens
        of tracebacks, a truncated backup, then a segmentation fault (exit status 139)
        instead of one line and status 2.  So the weights are serialised in memory (as
        Keras does for a .keras file) and written as every other file is.  The previous
        backup is moved aside, not copied, so that the disk holds two backups at most, as
        with Keras; `on_train_begin` moves it back if the new one was never written."""
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._weights_path):
            if os.path.exists(self._training_metadata_path):
                runs.write_bytes(self._prev_training_metadata_path,
                                 Path(self._training_metadata_path).read_bytes())
            os.replace(self._weights_path, self._prev_weights_path)
        runs.write_bytes(self._weights_path, _weights_h5(self.model))
        runs.write_text(self._training_metadata_path, json.dumps(
            {"epoch": self._current_epoch, "batch": self._last_batch_seen}))


def _weights_h5(model: keras.Model) -> bytes:
    """What `model.save_weights(path.weights.h5)` writes (weights and optimizer state), as
    bytes: Keras's own writer, given a memory buffer instead of a path."""
    from keras.src.saving import saving_lib

    buffer = io.BytesIO()
    store = saving_lib.H5IOStore(buffer, mode="w")
    saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="",
                           visited_saveables=set())
    store.h5_file.close()  # (store.close() would close the buffer too)
    return buffer.getvalue()


class _HistoryCSV(keras.callbacks.CSVLogger):
    """`CSVLogger` appending to history.csv, whose rows keep the columns of the file's header.

    Keras names the columns after the first epoch's logs and, when it appends, writes no
    header: a run resumed by an aezoo that logs other metrics (`minutes` was added) would
    append rows whose columns do not match the header, and every value after the first new
    column would be read under the wrong name.  So a resumed run writes the header's columns,
    in its order ("NA" for those no longer logged, and drops those it did not log before).

    Without validation data, the columns are the logs': Keras adds a `val_` twin of every
    column when the first epoch logs none (for validation_freq > 1), which gave columns of
    "NA" named `val_learning_rate` and `val_minutes`.
    """

    def __init__(self, path: Path, validation: bool = True):
        super().__init__(str(path), append=True)
        self.validation = validation

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None and not self.validation:
            self.keys = sorted(logs or {})
        super().on_epoch_end(epoch, logs)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.append_header:  # the file has a header: resumed
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f), [])
            if header[:1] == ["epoch"]:
                self.keys = header[1:]


def epoch_checkpoints(directory: Path) -> list[Path]:
    """The `epoch_NNN.keras` files of a checkpoint folder, oldest first (by number: a name
    sort would put epoch_1000 before epoch_999)."""
    return sorted(Path(directory).glob("epoch_*.keras"), key=lambda p: (len(p.name), p.name))


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves `epoch_NNN.keras` (model and optimizer state) after each epoch, whole or not at
    all; on resuming, also the restored epoch's if a crash came before it was saved.  With
    `keep`, deletes all but the newest `keep` of them after each save."""

    def __init__(self, directory: Path, keep: int | None = None):
        super().__init__()
        self.directory, self.keep = directory, keep

    def on_train_begin(self, logs=None):
        epoch = self.model._initial_epoch or 0  # set by BackupAndRestore when resuming
        if epoch and not self._path(epoch - 1).exists():
            save_model(self.model, self._path(epoch - 1))
        self._prune()

    def on_epoch_end(self, epoch, logs=None):
        if not math.isfinite(float((logs or {}).get("loss", 0.0))):
            return  # a NaN epoch (TerminateOnNaN stops the fit): keep the last good one
        save_model(self.model, self._path(epoch))
        self._prune()

    def _prune(self) -> None:
        if self.keep is None:
            return
        for old in epoch_checkpoints(self.directory)[: -self.keep]:
            old.unlink(missing_ok=True)

    def _path(self, epoch: int) -> Path:
        return self.directory / f"epoch_{epoch + 1:03d}.keras"


def _build(model, kwargs: dict[str, Any], example_spec: tf.TensorSpec, noise,
           initial: InitialModel | None = None) -> keras.Model:
    """The model `train` fits: `model` (a name of `MODELS`, or a function returning a
    model) built with `kwargs` for the data's `example_spec`, starting from `initial`'s
    weights when given (its builder arguments are then the defaults)."""
    if initial is not None:
        kwargs = {**_initial_arguments(initial, model), **kwargs}
    if isinstance(model, str):
        check_choice("model", model, list(MODELS))
        builder = MODELS[model]
        kwargs = dict(kwargs)
        from_data = "input_shape" not in kwargs
        kwargs.setdefault("input_shape", _default_input_shape(builder, example_spec))
        if noise is not None and "corruption" in inspect.signature(builder).parameters:
            kwargs.setdefault("corruption", None)  # the pipeline adds the noise already
        try:
            ae = builder(**kwargs)
        except ValueError as error:
            if not (from_data and "`input_shape`" in str(error)):
                raise
            # The caller gave no input_shape: say whose it is (rows (N, 140) for a 1-D
            # convolutional model were refused as "input_shape=(140,)", an argument never
            # given).
            raise ValueError(f"{error}: the shape of the data's examples, since no "
                             f"input_shape was given; give examples that model '{model}' "
                             "takes (signals as (N, timesteps, channels), images as (N, "
                             "height, width, channels)).") from None
    else:
        try:
            takes_shape = "input_shape" in inspect.signature(model).parameters
        except (TypeError, ValueError):  # (a callable without a signature)
            takes_shape = False
        if takes_shape and "input_shape" not in kwargs:  # the data's, as for a builder
            kwargs = {**kwargs, "input_shape": tuple(example_spec.shape)}
        ae = model(**kwargs)
    if initial is not None:
        try:
            ae.set_weights(initial.model.get_weights())
        except ValueError:
            if not _widened(initial.model, ae):
                raise ValueError(
                    f"The initial model {initial.label} has other weights than the model these "
                    "arguments build: give the same model arguments (or none; a compression "
                    "model may be given wider filters, a hyperprior one more latent channels, "
                    "a denoising U-Net wider filters and latent_dim)."
                ) from None
    check_fits(ae, example_spec.shape)
    return ae


def _widened(initial: keras.Model, ae: keras.Model) -> bool:
    """Sets `ae`'s weights so that it computes what `initial` does, where `ae` is the same
    codec or denoiser with wider `filters` (or a larger `latent_dim`): Net2Net.  False if it
    is not."""
    widen_to = (widen if isinstance(ae, CompressionAutoencoder)
                else denoising.widen if ae.get_config().get("model") == "denoising" else None)
    if widen_to is None:
        return False
    try:
        widen_to(initial, ae)
    except ValueError:
        return False
    return True


def _initial_arguments(initial: InitialModel, model) -> dict[str, Any]:
    """The builder arguments of the initial model, checked to be one of `model`."""
    if not isinstance(model, str):
        raise ValueError("`init` needs `model` to be the name of the initial model's builder "
                         "in aezoo.MODELS, not a function.")
    config = _initial_config(initial)
    if config["model"] != model:
        raise ValueError(f"The initial model {initial.label} is a '{config['model']}' model, not "
                         f"'{model}'.")
    return {k: v for k, v in config.items() if k != "model"}


def _initial_config(initial: InitialModel) -> dict[str, Any]:
    """The initial model's config: its builder arguments and, under "model", its name in
    aezoo.MODELS (a ValueError for any other model)."""
    model = initial.model
    config = model.get_config() if isinstance(model, Autoencoder) else {}
    if "model" not in config:
        raise ValueError(f"The initial model {initial.label} is not a model of aezoo.MODELS.")
    return config


class InitialModel(NamedTuple):
    """`train`'s `init`, opened: the model, and how messages name it (the path given)."""

    model: keras.Model
    label: str


def open_initial(init) -> InitialModel | None:
    """`train`'s `init` (a model, run folder, preset name or .keras file) opened, or passed
    through if opened already: `train` and `initial_model_name` take what this returns, so a
    caller that needs both opens the file once."""
    if init is None or isinstance(init, InitialModel):
        return init
    if isinstance(init, keras.Model):
        return InitialModel(init, f"'{init.name}'")
    return InitialModel(runs.open_model(init), str(init))


def initial_model_name(init) -> str:
    """The `aezoo.MODELS` name of `train`'s `init` (anything `open_initial` takes), for
    callers that choose a model by the data unless fine-tuning."""
    return _initial_config(open_initial(init))["model"]


def _default_input_shape(builder, spec: tf.TensorSpec) -> tuple[int | None, ...]:
    default = inspect.signature(builder).parameters["input_shape"].default
    shape = tuple(spec.shape)
    if len(default) == len(shape) and default[:-1] == (None,) * (len(default) - 1):
        # A fully convolutional model: keep any height and width, take the channels.
        return default[:-1] + shape[-1:]
    return shape


def check_fits(model: keras.Model, example_shape: Sequence[int | None],
               what: str = "The data's examples") -> None:
    """Raises ValueError unless examples of `example_shape` fit the model's input."""
    expected = tuple(model.input_shape[1:])
    given = tuple(example_shape)
    fits = len(expected) == len(given) and all(
        e is None or g is None or e == g for e, g in zip(expected, given)
    )
    if not fits:
        raise ValueError(
            f"{what} have shape {given}, but model '{model.name}' takes "
            f"{expected} (None: any size)."
        )


def _as_dataset(data) -> tf.data.Dataset | np.ndarray:
    """A dataset of float examples (integer pixels scaled, as arrays'); an array as a
    checked float32 array (`pipeline` batches arrays faster than datasets)."""
    if isinstance(data, tf.data.Dataset):
        return data_lib.float_examples(data)
    if isinstance(data, tuple) and len(data) == 2 and all(
            isinstance(part, (np.ndarray, tf.Tensor)) and part.ndim >= 2 for part in data):
        # As Keras's fit(x, y) takes them; NumPy would stack them into one array of examples
        # of the wrong rank.  (A list of examples is stacked, as before.)
        raise ValueError("Give the examples alone (x, not (x, y)): train makes the (input, "
                         "target) pairs itself, (x, x), or (noisy x, x) with `noise`.")
    return data_lib.load_array(data)  # checks emptiness and NaN


def _example_spec(data: tf.data.Dataset, what: str = "training") -> tf.TensorSpec:
    """The spec of one example, after checking that there is at least one and that examples
    have one shape (batches need it); `what` data, in the errors."""
    if not isinstance(data, tf.data.Dataset):
        return tf.TensorSpec(data.shape[1:], tf.as_dtype(data.dtype))
    spec = data.element_spec
    spec = spec[0] if isinstance(spec, tuple) else spec
    if not spec.shape.is_fully_defined():
        raise ValueError(
            f"The {what} examples have no fixed shape ({tuple(spec.shape)}), so they cannot be "
            "batched: resize images of different sizes or cut patches (--image-size or "
            "--patch; image_size or patch_size of aezoo.data.from_directory)."
        )
    size = int(data.cardinality())
    if size == 0 or (size < 0 and not any(True for _ in data.take(1))):
        raise ValueError(f"The {what} data is empty.")
    return spec


def _history_rows(run: Path | None) -> dict[int, dict[str, str]] | None:
    """history.csv's rows by epoch (0-based; an epoch redone after a crash keeps its last
    row), or None when the run has no history.csv."""
    path = run / "history.csv" if run is not None else None
    if path is None or not path.is_file():
        return None
    with open(path, newline="") as f:
        return {int(row["epoch"]): row for row in csv.DictReader(f)}


def _logged(value: str | None) -> bool:
    # CSVLogger writes "NA" for the val_ columns it adds even without validation data.
    return value not in (None, "", "NA")


def _minutes_done(run: Path | None) -> dict[int, float]:
    """Epoch (0-based) -> training minutes at its end, from the history.csv of a run that
    resumes (empty for a new run, and for epochs logged before aezoo logged `minutes`)."""
    rows = _history_rows(run) or {}
    return {epoch: float(row["minutes"]) for epoch, row in rows.items()
            if _logged(row.get("minutes"))}


def _history(model: keras.Model, run: Path | None) -> dict[str, list[float]]:
    """The whole history: from history.csv when there is one (it spans resumed runs; an
    epoch redone after a crash keeps its last row)."""
    rows = _history_rows(run)
    if rows is None:
        if model is None:
            return {}
        return {k: [float(v) for v in values] for k, values in model.history.history.items()}
    rows = [rows[epoch] for epoch in sorted(rows)]
    history = {
        key: [float(row[key]) for row in rows if _logged(row.get(key))]
        for key in (rows[0] if rows else {})
        if key != "epoch"
    }
    return {key: values for key, values in history.items() if values}
