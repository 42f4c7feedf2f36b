"""Real processes for the distributed and command-line tests.

Imported by the tests, this module starts processes: `start_workers` runs a cluster of
workers on 127.0.0.1 (free ports, each with its own TF_CONFIG) and waits for them.  Run as
a script, it is what such a process does (the tests' modes):

    python tests/workers.py shards PREFIX -- TRAIN_ARGS ...
        A worker of a multi-worker job: records the batches it gets from
        `aezoo.data.pipeline` (2 epochs of `SHARD_EXAMPLES`, with noise), runs
        `aezoo train TRAIN_ARGS` in this process, trains a plain Keras model through
        `aezoo.training.train` and a VAE on its importance-weighted bound (its own train
        step), then fits a plain model as Keras users would, without aezoo's fix for
        keras-team/keras#20585; saves the batches, the weights and how that fit ended in
        PREFIX<task index>.npz, and exits with the command's status.
    python tests/workers.py mirrored OUTCOME_FILE -- TRAIN_ARGS ...
        runs `aezoo train TRAIN_ARGS` (with --cpu-devices), then fits a plain Keras
        model with XLA under MirroredStrategy on the split CPU (keras-team/keras#19005), and
        writes how that ended in OUTCOME_FILE.
    python tests/workers.py resume PREFIX -- EPOCHS [CRASH]
        A worker of `aezoo.training.train(..., out_dir="run")` that dies (as if killed) after
        epoch CRASH; saves the epochs it ran, its history and weights in PREFIX<index>.npz.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The examples whose distribution over workers `shards` records: each example's values are
# its index, so that batches show which examples they hold.
SHARD_EXAMPLES, SHARD_BATCH, SHARD_SEED, SHARD_NOISE = 21, 8, 5, ("gaussian", 0.1)


def shard_pipeline(num_replicas: int):
    """The pipeline `shards` distributes (the tests build it again in one process)."""
    import keras
    import numpy as np

    from aezoo import data

    keras.utils.set_random_seed(0)  # as training.train does: tf.data seeds depend on it
    x = np.repeat(np.arange(SHARD_EXAMPLES, dtype=np.float32)[:, None], 3, axis=1)
    return data.pipeline(
        data.from_arrays(x), SHARD_BATCH, noise=SHARD_NOISE, seed=SHARD_SEED,
        num_replicas=num_replicas,
    )


def plain_model(input_shape=(8, 8, 1)):
    import keras

    inputs = keras.Input(input_shape)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", name="out")(h))


def plain_data(n=48):
    import numpy as np

    return np.random.default_rng(7).random((n, 8, 8, 1), dtype=np.float32)


# -------------------------------------------------------------------- the launcher


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def environment(**extra: str) -> dict[str, str]:
    """This environment, with this checkout's aezoo first on the path."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_workers(args: list[str], workdir: Path, count: int = 2, timeout: float = 300):
    """Runs `count` workers of `python ARGS` with TF_CONFIG; returns (returncode, stdout,
    stderr) of each, worker 0 (the chief) first.  A worker still running at `timeout` (a
    hang waiting for a peer) is killed, with returncode None."""
    hosts = [f"127.0.0.1:{port}" for port in free_ports(count)]
    processes, logs = [], []
    for index in range(count):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
        out = open(workdir / f"worker_{index}.out", "w+")
        err = open(workdir / f"worker_{index}.err", "w+")
        logs.append((out, err))
        processes.append(
            subprocess.Popen(
                [sys.executable, *args], cwd=workdir, stdout=out, stderr=err,
                env=environment(TF_CONFIG=json.dumps(config)),
            )
        )
    results = []
    for process, (out, err) in zip(processes, logs):
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            code = None
        out.seek(0)
        err.seek(0)
        results.append((code, out.read(), err.read()))
        out.close()
        err.close()
    return results


# -------------------------------------------------------------------- the workers


def _shards(prefix: str, train_args: list[str]) -> int:
    from aezoo.apps import cli

    cli.start_tensorflow()  # quiet, as the command
    import numpy as np

    from aezoo import training
    from aezoo.apps import train

    strategy = training.resolve_strategy("multiworker")
    arrays = {}
    ds = strategy.experimental_distribute_dataset(shard_pipeline(strategy.num_replicas_in_sync))
    for epoch in range(2):
        for step, (x, y) in enumerate(ds):
            arrays[f"x_{epoch}_{step}"] = strategy.experimental_local_results(x)[0].numpy()
            arrays[f"y_{epoch}_{step}"] = strategy.experimental_local_results(y)[0].numpy()

    # One program, one MultiWorkerMirroredStrategy: a second one in the same process reuses
    # collective keys of the first.  So the command gets this one instead of making its own.
    training.resolve_strategy = lambda name: strategy
    status = train.main(train_args)

    model, _ = training.train(plain_model, plain_data(), epochs=2, batch_size=16,
                              strategy=strategy, verbose=0)
    for i, weight in enumerate(model.get_weights()):
        arrays[f"plain_{i}"] = weight
    # The VAE's importance-weighted objective has a train step of its own (one encoder
    # pass, k decoder passes), which returns its logs through _keras_fixes.fix_logs too.
    iwae, history = training.train(
        "vae", plain_data(), model_kwargs={"latent_dim": 2, "filters": (4, 8),
                                           "binarize": True, "importance_samples": 3},
        epochs=2, batch_size=16, strategy=strategy, verbose=0)
    for i, weight in enumerate(iwae.get_weights()):
        arrays[f"iwae_{i}"] = weight
    for key in ("loss", "reconstruction", "kl"):
        arrays[f"iwae_history_{key}"] = np.array(history[key])
    # Last, as it fails (before any collective op, so that no worker waits for another).
    arrays["plain_keras_fit"] = _outcome(_plain_keras_fit, strategy)
    np.savez(f"{prefix}{strategy.cluster_resolver.task_id}.npz", **arrays)
    return status


def _plain_keras_fit(strategy, jit_compile=False) -> None:
    """What a Keras user does: fit a plain keras.Model under the strategy."""
    from aezoo import data

    ds = data.pipeline(data.from_arrays(plain_data()), 16)
    with strategy.scope():
        model = plain_model()
        model.compile(optimizer="sgd", loss="mse", jit_compile=jit_compile)
    model.fit(ds, epochs=1, verbose=0, shuffle=False)


def _outcome(function, *args, **kwargs) -> str:
    try:
        function(*args, **kwargs)
    except Exception as error:  # recorded for the test to judge
        return f"{type(error).__name__}: {error}"
    return "trained"


def _mirrored(outcome_file: str, train_args: list[str]) -> int:
    from aezoo import training
    from aezoo.apps import train

    status = train.main(train_args)  # splits the CPU (--cpu-devices) before TensorFlow starts
    strategy = training.resolve_strategy("mirrored")
    Path(outcome_file).write_text(_outcome(_plain_keras_fit, strategy, jit_compile=True))
    return status


def _resume(prefix: str, args: list[str]) -> int:
    """A worker of `training.train(..., out_dir="run")` for `epochs` epochs that dies at
    once (as if killed) after epoch `crash`'s end, if given."""
    from aezoo.apps import cli

    cli.start_tensorflow()
    import keras
    import numpy as np

    from aezoo import training

    epochs, crash = int(args[0]), int(args[1]) if len(args) > 1 else None
    strategy = training.resolve_strategy("multiworker")
    started = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            started.append(epoch)

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == crash:
                os._exit(9)

    model, history = training.train(
        "conv", plain_data(), model_kwargs={"filters": (8, 16), "latent_dim": 8},
        epochs=epochs, batch_size=16, strategy=strategy, out_dir="run",
        callbacks=[Record()], verbose=0,
    )
    np.savez(f"{prefix}{strategy.cluster_resolver.task_id}.npz", started=started,
             loss=history["loss"], **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    return 0


if __name__ == "__main__":
    mode, output = sys.argv[1:3]
    rest = sys.argv[sys.argv.index("--") + 1:]
    sys.exit({"shards": _shards, "mirrored": _mirrored, "resume": _resume}[mode](output, rest))
