"""Training under each strategy as a user runs it: time per epoch and agreement of weights.

    python benchmarks/training_strategies.py                       # MNIST, 1 epoch, default conv
    python benchmarks/training_strategies.py --split "train[:6400]" --json results/strategies.json
    python benchmarks/training_strategies.py --split "train[:256]" --val-split "test[:128]" \
        --runs auto mirrored resume          # a smoke test: one training process at a time

Runs `aezoo train --model conv --dataset mnist --latent-dim 32` (as
`python -m aezoo train ...`, one process per run) three ways on this machine:
`--strategy auto` (one device here), `--strategy mirrored --cpu-devices 2` (two replicas on
a split CPU) and `--strategy multiworker` with two local worker processes; then a run
killed with SIGKILL after its first epoch's checkpoint and started again with the same
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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offline import use_offline_tfds, write_json

ROOT = Path(__file__).resolve().parents[1]
# This checkout's aezoo, and the offline datasets beside it unless TFDS_DATA_DIR says otherwise.
ENV = dict(os.environ)
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), ENV.get("PYTHONPATH")]))
use_offline_tfds(ENV)


RUNS = {"auto": "auto (1 device)", "mirrored": "mirrored, 2 CPU devices",
        "mw": "2 local workers", "resume": "kill and resume"}


def command(args, epochs: int, out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aezoo", "train", "--model", "conv", "--dataset", "mnist",
            "--split", args.split, "--val-split", args.val_split, "--latent-dim", "32",
            "--epochs", str(epochs), "--out", out, *extra]


def epoch_seconds(stdout: str) -> list[float]:
    """Keras's per-epoch times, from its lines "469/469 - 211s - 450ms/step - loss: ..."."""
    return [float(s) for s in re.findall(r"^\d+/\d+ - (\d+(?:\.\d+)?)s ", stdout, re.MULTILINE)]


def run(args: list[str], cwd: Path, tf_configs: list[str] | None = None) -> dict:
    """Runs one process, or one per TF_CONFIG at once; returns wall time and the first's
    output.  Outputs go to files, so that no worker blocks on a full pipe.  However it ends
    (a worker that fails, Ctrl-C), no process is left running: a failed worker's peer
    would wait for it for ever."""
    start = time.perf_counter()
    processes, files = [], []
    try:
        for i, config in enumerate(tf_configs or [None]):
            for suffix in "oe":
                files.append(open(cwd / f"{args[args.index('--out') + 1]}_{i}.{suffix}", "w+"))
            env = dict(ENV, **({"TF_CONFIG": config} if config else {}))
            processes.append(subprocess.Popen(args, cwd=cwd, env=env, stdout=files[-2],
                                              stderr=files[-1]))
        for i, process in enumerate(processes):
            if process.wait() != 0:
                err = files[2 * i + 1]
                err.seek(0)
                sys.exit(f"{' '.join(args)} failed:\n{err.read()[-3000:]}")
        files[0].seek(0)
        return {"wall_s": time.perf_counter() - start, "stdout": files[0].read()}
    finally:
        for process in processes:
            stop(process)
        for file in files:
            file.close()


def stop(process: subprocess.Popen) -> None:
    """Ends `process` if it still runs (SIGTERM, then SIGKILL after 10 s) and waits for it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def kill_and_resume(options, folder: Path) -> dict:
    """Kills a 2-epoch run after epoch 1's checkpoint, then runs the same command again."""
    args = command(options, 2, "resume")
    first = subprocess.Popen(args, cwd=folder, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        while not (folder / "resume/checkpoints/epoch_001.keras").exists():
            if first.poll() is not None:
                sys.exit("the run to kill ended first")
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        stop(first)  # (Ctrl-C while it trains)
    backup = json.loads((folder / "resume/backup/training_metadata.json").read_text())
    second = run(args, folder)
    history = json.loads((folder / "resume/history.json").read_text())
    return {
        "killed_after_epochs": backup["epoch"],
        "restart_ran": re.findall(r"^Epoch (\d+/\d+)", second["stdout"], re.MULTILINE),
        "history_epochs": len(history["loss"]),
        "restart_wall_s": second["wall_s"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="train")
    parser.add_argument("--val-split", default="auto", help="of `aezoo train` (auto: test)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS),
                        help="which runs (mw: two worker processes at once)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, help="keep the runs in this folder")
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="aezoo_strategies_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        measure(args, folder)
    finally:
        if args.keep is None:  # the runs are the user's only with --keep
            shutil.rmtree(folder, ignore_errors=True)
    if args.keep is not None:
        print(f"The runs are in {folder}")
    return 0


def measure(args: argparse.Namespace, folder: Path) -> None:
    """Every run of `args.runs` in `folder`, then the table (and --json)."""
    ways = {
        "auto": lambda: run(command(args, 1, "auto", "--strategy", "auto"), folder),
        "mirrored": lambda: run(command(args, 1, "mirrored", "--strategy", "mirrored",
                                        "--cpu-devices", "2"), folder),
        "mw": lambda: run(command(args, 1, "mw", "--strategy", "multiworker"), folder,
                          two_workers()),
    }
    outputs = {path: ways[path]() for path in ways if path in args.runs}
    results = {}
    if "resume" in args.runs:
        results["kill_and_resume"] = kill_and_resume(args, folder)
    # The weights are compared once every training process has ended (one TensorFlow
    # process at a time besides the workers).
    from aezoo.apps import cli

    cli.start_tensorflow()
    import numpy as np

    from aezoo import load_model, training

    weights = {path: load_model(folder / path / "model.keras").get_weights()
               for path in outputs}
    reference = weights.get("auto")
    header = f"{'strategy':26} {'wall s':>7} {'epoch s':>8} {'loss':>8} {'val_loss':>8}"
    print(f"{header} {'max |dw|':>9}")
    for path, output in outputs.items():
        history = json.loads((folder / path / "history.json").read_text())
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(weights[path], reference)) \
            if reference is not None else float("nan")
        seconds = epoch_seconds(output["stdout"])
        results[RUNS[path]] = {"wall_s": output["wall_s"], "epoch_s": seconds,
                               "history": history,
                               "max_weight_difference_from_one_device": diff}
        val_loss = history.get("val_loss", [float("nan")])[-1]
        print(f"{RUNS[path]:26} {output['wall_s']:7.0f} "
              f"{seconds[0] if seconds else float('nan'):8.0f} "
              f"{history['loss'][-1]:8.5f} {val_loss:8.5f} {diff:9.2g}")
    if "mw" in outputs:
        worker = load_model(folder / "mw/workers/worker_1/model.keras").get_weights()
        results["workers_identical"] = all(
            np.array_equal(a, b) for a, b in zip(weights["mw"], worker))
        print(f"worker 0 and worker 1 weights identical: {results['workers_identical']}")
    if "resume" in args.runs:
        # Compiled as saved, with its optimizer: its step count spans both processes.
        resumed = training.load_trained(folder / "resume/model.keras")
        results["kill_and_resume"]["optimizer_steps"] = int(resumed.optimizer.iterations)
        print("kill and resume:", results["kill_and_resume"])
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
