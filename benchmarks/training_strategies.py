"""Training under each strategy as a user runs it: time per epoch and agreement of weights.

    python benchmarks/training_strategies.py                       # MNIST, 1 epoch, default conv
    python benchmarks/training_strategies.py --split "train[:6400]" --json results/strategies.json

Runs `python -m aezoo.train --model conv --dataset mnist --latent-dim 32` three ways on this
machine: `--strategy auto` (one device here), `--strategy mirrored --cpu-devices 2` (two
replicas on a split CPU) and `--strategy multiworker` with two local worker processes; then
a run killed with SIGKILL after its first epoch's checkpoint and started again with the same
command.  The table gives each run's wall time, Keras's time for the epoch, its losses, and
the largest difference of its final weights from the one-device run's (same data, seed and
global batches, so they differ by float32 round-off only, which grows with the number of
steps).  The replicas share this machine's cores, so they are not expected to be faster.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offline import use_offline_tfds  # noqa: E402  (this folder's offline.py)

ROOT = Path(__file__).resolve().parents[1]
# This checkout's aezoo, and the offline datasets beside it unless TFDS_DATA_DIR says otherwise.
ENV = dict(os.environ)
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), ENV.get("PYTHONPATH")]))
use_offline_tfds(ENV)


def command(split: str, epochs: int, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aezoo.train", "--model", "conv", "--dataset", "mnist",
            "--split", split, "--latent-dim", "32", "--epochs", str(epochs), "--out", out,
            *extra]


def epoch_seconds(stdout: str) -> list[float]:
    """Keras's per-epoch times, from its lines "469/469 - 211s - 450ms/step - loss: ..."."""
    return [float(s) for s in re.findall(r"^\d+/\d+ - (\d+(?:\.\d+)?)s ", stdout, re.MULTILINE)]


def run(args: list[str], cwd: Path, tf_configs: list[str] | None = None) -> dict:
    """Runs one process, or one per TF_CONFIG at once; returns wall time and the first's
    output.  Outputs go to files, so that no worker blocks on a full pipe."""
    start = time.perf_counter()
    processes = []
    for i, config in enumerate(tf_configs or [None]):
        out, err = (open(cwd / f"{args[args.index('--out') + 1]}_{i}.{s}", "w+") for s in "oe")
        env = dict(ENV, **({"TF_CONFIG": config} if config else {}))
        processes.append((subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err),
                          out, err))
    for process, out, err in processes:
        process.wait()
        if process.returncode != 0:
            err.seek(0)
            sys.exit(f"{' '.join(args)} failed:\n{err.read()[-3000:]}")
    processes[0][1].seek(0)
    return {"wall_s": time.perf_counter() - start, "stdout": processes[0][1].read()}


def two_workers() -> list[str]:
    import socket

    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    hosts = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})
            for i in range(2)]


def kill_and_resume(split: str, folder: Path) -> dict:
    """Kills a 2-epoch run after epoch 1's checkpoint, then runs the same command again."""
    args = command(split, 2, "resume")
    first = subprocess.Popen(args, cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    while not (folder / "resume/checkpoints/epoch_001.keras").exists():
        if first.poll() is not None:
            sys.exit("the run to kill ended first")
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    backup = json.loads((folder / "resume/backup/training_metadata.json").read_text())
    second = run(args, folder)
    import aezoo  # noqa: F401  (registers aezoo's classes with Keras)
    import keras

    model = keras.models.load_model(folder / "resume/model.keras")
    history = json.loads((folder / "resume/history.json").read_text())
    return {
        "killed_after_epochs": backup["epoch"],
        "restart_ran": re.findall(r"^Epoch (\d+/\d+)", second["stdout"], re.MULTILINE),
        "history_epochs": len(history["loss"]),
        "optimizer_steps": int(model.optimizer.iterations),
        "restart_wall_s": second["wall_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="train")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="aezoo_strategies_"))
    folder.mkdir(parents=True, exist_ok=True)

    runs = {
        "auto (1 device)": run(command(args.split, 1, "auto", "--strategy", "auto"), folder),
        "mirrored, 2 CPU devices": run(
            command(args.split, 1, "mirrored", "--strategy", "mirrored", "--cpu-devices", "2"),
            folder),
        "2 local workers": run(command(args.split, 1, "mw", "--strategy", "multiworker"),
                               folder, two_workers()),
    }
    import aezoo  # noqa: F401  (registers aezoo's classes with Keras)
    import keras
    import numpy as np

    paths = dict(zip(runs, ["auto", "mirrored", "mw"]))
    weights = {k: keras.models.load_model(folder / p / "model.keras").get_weights()
               for k, p in paths.items()}
    worker = keras.models.load_model(folder / "mw/workers/worker_1/model.keras").get_weights()
    reference = weights["auto (1 device)"]
    results = {}
    header = f"{'strategy':26} {'wall s':>7} {'epoch s':>8} {'loss':>8} {'val_loss':>8}"
    print(f"{header} {'max |dw|':>9}")
    for name, result in runs.items():
        history = json.loads((folder / paths[name] / "history.json").read_text())
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights[name], reference))
        results[name] = {"wall_s": result["wall_s"], "epoch_s": epoch_seconds(result["stdout"]),
                         "history": history, "max_weight_difference_from_one_device": diff}
        print(f"{name:26} {result['wall_s']:7.0f} {epoch_seconds(result['stdout'])[0]:8.0f} "
              f"{history['loss'][-1]:8.5f} {history['val_loss'][-1]:8.5f} {diff:9.2g}")
    results["workers_identical"] = all(
        np.array_equal(a, b) for a, b in zip(weights["2 local workers"], worker))
    print(f"worker 0 and worker 1 weights identical: {results['workers_identical']}")

    results["kill_and_resume"] = kill_and_resume(args.split, folder)
    print("kill and resume:", results["kill_and_resume"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
