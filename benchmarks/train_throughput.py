"""Training throughput: aezoo against the same model written by hand in Keras and PyTorch.

    pip install -e ".[bench]"                              # PyTorch, for part "classic"
    python benchmarks/train_throughput.py                  # all parts, prints tables
    python benchmarks/train_throughput.py --part classic   # only the three-way comparison
    python benchmarks/train_throughput.py --json results/train_throughput.json
    python benchmarks/train_throughput.py --rounds 1 --steps 4 --warmup 2   # a smoke test

Every timed run is a process of its own: this script started again (`--child`) for one
contender and one round, which reports its images per second as JSON.  So the frameworks
never share a process (PyTorch 2.14 imports triton in `torch.optim.Adam`, which crashed
after TensorFlow had trained in the same process), the PyTorch runs never import
TensorFlow, and no run inherits another's threads, caches or compiled functions.  The
data is prepared once, by a process of its own too, into a temporary folder.

Part "classic": the classic Keras denoising autoencoder (Conv(32, 3x3) + MaxPool twice, two
stride-2 transposed convolutions of 32 and a sigmoid Conv(1)) on 28x28x1 images, global batch
128, built three ways: (1) aezoo's `conv` builder (downsample="pool", latent="spatial")
trained by `aezoo.training.train`, (2) written directly in Keras and fitted on arrays, (3)
written in PyTorch.  The three alternate within each round, so that the machine's state
affects all of them alike; each run times the steps after a warm-up, and the table gives
each one's median images per second and the ratios.  aezoo's version has one extra layer, the
1x1 `latent` convolution (1,056 parameters, 0.4% of the multiply-adds), which only counts
against it.

The same part reports the achieved floating-point rate of each: the FLOPs of one training step
(forward and backward, counted from the layer shapes) times the steps per second, against this
machine's measured peak (the best of several large float32 matmuls).

Part "overhead": the hand-written Keras model and aezoo's model, both fitted by plain Keras on
arrays, and aezoo's model through `aezoo.training.train`: whether a difference comes from the
model or from the training path.

Part "defaults": aezoo's default `conv` model at realistic sizes (Fashion-MNIST 28x28x1 and
128x128x3 patches), with XLA on and off, fed by aezoo's tf.data pipeline or by in-memory arrays;
aezoo's defaults (`resolve_jit_compile`, `train`'s input path) follow these measurements.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from offline import DATA, step_timer, use_offline_tfds

BATCH = 128
# The children's environment: quiet TensorFlow, the offline datasets.
ENV = dict(os.environ)
ENV.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
use_offline_tfds(ENV)


# ======================================================== in the child processes


def classic_keras_model():
    """The keras.io "Convolutional autoencoder for image denoising" model, as written there."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(inputs)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", padding="same")(x)
    x = keras.layers.MaxPooling2D(2, padding="same")(x)
    x = keras.layers.Conv2DTranspose(32, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Conv2DTranspose(32, 3, strides=2, activation="relu", padding="same")(x)
    outputs = keras.layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    return model


CLASSIC_AEZOO = dict(
    filters=(32, 32), latent="spatial", latent_dim=32, downsample="pool", activation="relu"
)


def run_aezoo(x: np.ndarray, steps: int, warmup: int, **options) -> float:
    from aezoo import training

    timer = step_timer(warmup)
    training.train(
        "conv", x, model_kwargs=options.pop("model_kwargs", CLASSIC_AEZOO), epochs=1,
        batch_size=BATCH, steps_per_epoch=steps, callbacks=[timer], verbose=0, **options,
    )
    return timer.steps_per_second * BATCH


def fit_arrays(model, x: np.ndarray, steps: int, warmup: int) -> float:
    """Images/s of plain Keras `fit` on `steps` batches of the array `x` (compiled model)."""
    timer = step_timer(warmup)
    n = steps * BATCH
    model.fit(x[:n], x[:n], batch_size=BATCH, epochs=1, callbacks=[timer], verbose=0)
    return timer.steps_per_second * BATCH


def run_keras(x: np.ndarray, steps: int, warmup: int) -> float:
    return fit_arrays(classic_keras_model(), x, steps, warmup)


def run_torch(x: np.ndarray, steps: int, warmup: int) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count() or 1)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.ConvTranspose2d(32, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.Conv2d(32, 1, 3, padding=1), nn.Sigmoid(),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    order = torch.randperm(len(data))
    start = None
    for step in range(steps):
        batch = data[order[step * BATCH:(step + 1) * BATCH]]
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(batch), batch)
        loss.backward()
        optimizer.step()
        if step + 1 == warmup:
            start = time.perf_counter()
    return (steps - warmup) * BATCH / (time.perf_counter() - start)


def run_aezoo_model_keras_fit(x: np.ndarray, steps: int, warmup: int) -> float:
    from aezoo import MODELS

    model = MODELS["conv"](input_shape=x.shape[1:], **CLASSIC_AEZOO)
    model.compile()
    return fit_arrays(model, x, steps, warmup)


def run_default_conv(x: np.ndarray, steps: int, warmup: int, jit: bool, feed: str) -> float:
    if feed == "tf.data":
        return run_aezoo(x, steps, warmup, model_kwargs={}, jit_compile=jit, strategy="auto")
    from aezoo import MODELS

    model = MODELS["conv"](input_shape=x.shape[1:])
    model.compile(jit_compile=jit)
    return fit_arrays(model, x, steps, warmup)


def training_step_flops(model) -> int:
    """Floating-point operations of one training step of BATCH examples, counted by hand.

    Each convolution, transposed convolution and dense layer costs 2 * multiply-adds forward,
    and as much again for each of its two gradients (input and weights), the input gradient of
    the first layer excepted: 3x forward in all.  Pooling, activations and the optimizer are
    left out (they are memory-bound and small).  For the classic model this gives 3.41 GFLOP
    per step of 128; TensorFlow's profiler on the traced gradient graph counts 3.49.
    """
    import keras

    flops = 0
    first = True
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            inp = layer.input.shape
            macs = np.prod(inp[1:]) * np.prod(layer.kernel_size) * layer.filters
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            macs = np.prod(out[1:]) * np.prod(layer.kernel_size) * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            macs = layer.input.shape[-1] * layer.units
        else:
            continue
        flops += 2 * int(macs) * (2 if first else 3)
        first = False
    return flops * BATCH


def _leaf_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def peak_flops(n: int = 4096, repeats: int = 10) -> float:
    """Best float32 FLOP/s of an n x n matmul on this machine."""
    import tensorflow as tf

    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    (a @ b).numpy()  # warm-up
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        (a @ b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def prepare(folder: Path, counts: dict[str, int]) -> dict:
    """Writes `folder/<name>.npy` (uint8, as the files hold them) for each data set named
    in `counts` with that many examples; returns the versions of this machine's stack."""
    import keras
    import tensorflow as tf

    from aezoo import data

    for name, count in counts.items():
        if name == "patches":  # random 128x128 crops of CBSD432
            examples = data.from_directory(DATA / "raw" / "cbsd432", patch_size=128, seed=0)
        else:
            examples = data.from_tfds(name, "train")
        images = np.stack([np.asarray(e) for e in examples.repeat().take(count)])
        np.save(folder / f"{name}.npy", np.round(images * 255).astype(np.uint8))
    return {"cpus": os.cpu_count(), "gpus": len(tf.config.list_physical_devices("GPU")),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": sys.version.split()[0]}


RUNNERS = {
    "aezoo": lambda x, s, w, o: run_aezoo(x, s, w, strategy="auto", jit_compile="auto"),
    "keras": lambda x, s, w, o: run_keras(x, s, w),
    "pytorch": lambda x, s, w, o: run_torch(x, s, w),
    "aezoo model, keras fit": lambda x, s, w, o: run_aezoo_model_keras_fit(x, s, w),
    "default conv": lambda x, s, w, o: run_default_conv(x, s, w, o["jit"], o["feed"]),
}


def child(spec: dict) -> dict:
    """What one child process does; its result is JSON."""
    if spec["task"] == "prepare":
        return prepare(Path(spec["folder"]), spec["counts"])
    if spec["task"] == "flops":
        return {"flops_per_step": training_step_flops(classic_keras_model()),
                "peak_flops": peak_flops()}
    x = np.load(spec["data"]).astype(np.float32) / 255
    value = RUNNERS[spec["runner"]](x, spec["steps"], spec["warmup"], spec)
    result = {"images_per_second": value}
    if spec["runner"] == "pytorch":
        import torch

        result["torch"] = torch.__version__
    return result


# ============================================================ in the main process


def run_child(spec: dict) -> dict:
    """Runs `child(spec)` in a new process of this script; its result."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--child", json.dumps(spec), "--result",
                   str(result)]
        done = subprocess.run(command, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0 or not result.is_file():
            sys.exit(f"train_throughput.py: the child process for {spec} failed "
                     f"(status {done.returncode}):\n{done.stdout[-3000:]}")
        return json.loads(result.read_text())


def rotating_rounds(runners: dict, rounds: int) -> dict[str, list[float]]:
    """Each runner's images/s, once a round.

    Round r runs the runners in the r-th rotation of their order, and after the first
    len(runners) rounds in rotations of the reversed order.  Rotations alone keep the cyclic
    order, so one runner would always follow another; over 2 x len(runners) rounds each
    runner runs right after each other one, and in each position, equally often."""
    runs: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    n = len(names)
    for r in range(rounds):
        order = names if (r // n) % 2 == 0 else names[::-1]
        shift = r % n
        for name in order[shift:] + order[:shift]:
            runs[name].append(runners[name]())
        print(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{name} {values[-1]:.0f}" for name, values in runs.items()), flush=True)
    return runs


VERSIONS: dict[str, str] = {}  # what the children report besides images/s (torch's version)


def timed(runner: str, data: Path, steps: int, warmup: int, **options):
    """A runner of `rotating_rounds`: one child process, its images/s."""
    spec = {"task": "run", "runner": runner, "data": str(data), "steps": steps,
            "warmup": warmup, **options}

    def run() -> float:
        result = run_child(spec)
        VERSIONS.update({k: v for k, v in result.items() if k != "images_per_second"})
        return result["images_per_second"]

    return run


def part_classic(data: Path, rounds: int, steps: int, warmup: int) -> dict:
    runners = {name: timed(name, data, steps, warmup) for name in ("aezoo", "keras", "pytorch")}
    runs = rotating_rounds(runners, rounds)
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "images_per_second": runs,
        "median": median,
        "aezoo/keras": median["aezoo"] / median["keras"],
        "aezoo/pytorch": median["aezoo"] / median["pytorch"],
        "keras/pytorch": median["keras"] / median["pytorch"],
    }


def part_overhead(data: Path, rounds: int, steps: int, warmup: int) -> dict:
    """Where aezoo's time goes against hand-written Keras: the same hand-written model and
    aezoo's model, both fitted by plain Keras on arrays, and aezoo's model through
    `aezoo.training.train` (its input pipeline, strategy and callbacks)."""
    runners = {
        "hand-written Keras model, Keras fit": timed("keras", data, steps, warmup),
        "aezoo model, Keras fit": timed("aezoo model, keras fit", data, steps, warmup),
        "aezoo model, aezoo.training.train": timed("aezoo", data, steps, warmup),
    }
    runs = rotating_rounds(runners, rounds)
    return {name: statistics.median(v) for name, v in runs.items()}


def part_defaults(inputs: dict[str, Path], rounds: int, steps: int, warmup: int) -> dict:
    """aezoo's default conv: XLA on/off x tf.data pipeline vs arrays, two input sizes."""
    results = {}
    for label, data in inputs.items():
        rows = {}
        for r in range(rounds):
            for jit in (False, True):
                for feed in ("tf.data", "arrays"):
                    key = f"xla {'on' if jit else 'off'}, {feed}"
                    rows.setdefault(key, []).append(
                        timed("default conv", data, steps, warmup, jit=jit, feed=feed)())
            print(f"  {label} round {r + 1}/{rounds}: " + ", ".join(
                f"{k} {v[-1]:.0f}" for k, v in rows.items()), flush=True)
        results[label] = {k: statistics.median(v) for k, v in rows.items()}
    return results


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "classic", "overhead", "defaults"), default="all")
    parser.add_argument(
        "--rounds", type=int, default=6,
        help="best a multiple of 6: every order of the three contenders once",
    )
    parser.add_argument("--steps", type=int, default=60,
                        help="steps per run (timed: steps - warmup)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON: what a child process does
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # where it writes it
    args = parser.parse_args(argv)
    if args.child is not None:
        args.result.write_text(json.dumps(child(json.loads(args.child))))
        return 0
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be at least 1 and less than --steps")
    parts = ("classic", "overhead", "defaults") if args.part == "all" else (args.part,)
    if "classic" in parts and importlib.util.find_spec("torch") is None:
        parser.error('part "classic" needs PyTorch: pip install -e ".[bench]" '
                     "(or --part overhead / defaults)")

    folder = Path(tempfile.mkdtemp(prefix="aezoo_throughput_"))
    try:
        return measure(args, parts, folder)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def measure(args, parts, folder: Path) -> int:
    defaults_steps = max(args.steps // 2, args.warmup + 5)
    counts = {}
    if {"classic", "overhead"} & set(parts):
        counts["mnist"] = args.steps * BATCH
    if "defaults" in parts:
        counts.update(fashion_mnist=defaults_steps * BATCH, patches=defaults_steps * BATCH)
    print(f"Preparing {', '.join(f'{n} {k}' for k, n in counts.items())} examples ...",
          flush=True)
    results = {"machine": run_child({"task": "prepare", "folder": str(folder),
                                     "counts": counts}),
               "batch": BATCH, "one_process_per_run": True}
    if "classic" in parts:
        print("classic denoising autoencoder, 28x28x1, batch 128 (images/s), one process a run:")
        c = part_classic(folder / "mnist.npy", args.rounds, args.steps, args.warmup)
        results["classic"] = c
        print_table(
            f"Training throughput, median of {args.rounds} alternating rounds",
            ["implementation", "images/s", "vs aezoo"],
            [[k, f"{v:.0f}", f"{c['median']['aezoo'] / v:.2f}x"] for k, v in c["median"].items()],
        )
        print(f"aezoo/keras = {c['aezoo/keras']:.3f}, aezoo/pytorch = {c['aezoo/pytorch']:.3f}, "
              f"keras/pytorch = {c['keras/pytorch']:.3f}")
        flops = run_child({"task": "flops"})
        step_flops, peak = flops["flops_per_step"], flops["peak_flops"]
        c["flops_per_step"], c["peak_flops"] = step_flops, peak
        print_table(
            f"Achieved rate: {step_flops / 1e9:.2f} GFLOP per training step of {BATCH}; "
            f"measured peak {peak / 1e9:.0f} GFLOP/s (float32 matmul 4096^3)",
            ["implementation", "GFLOP/s", "% of peak"],
            [[k, f"{v / BATCH * step_flops / 1e9:.1f}",
              f"{100 * v / BATCH * step_flops / peak:.1f}%"] for k, v in c["median"].items()],
        )
    if "overhead" in parts:
        print("where the time goes, 28x28x1, batch 128 (images/s), one process a run:")
        o = part_overhead(folder / "mnist.npy", args.rounds, args.steps, args.warmup)
        results["overhead"] = o
        print_table(
            f"aezoo against hand-written Keras, median of {args.rounds} rotating rounds",
            ["variant", "images/s"], [[k, f"{v:.0f}"] for k, v in o.items()],
        )
    if "defaults" in parts:
        inputs = {"fashion_mnist 28x28x1": folder / "fashion_mnist.npy",
                  "patches 128x128x3": folder / "patches.npy"}
        d = part_defaults(inputs, max(args.rounds // 2, 1), defaults_steps, args.warmup)
        results["defaults"] = d
        keys = list(next(iter(d.values())))
        print_table(
            "aezoo default conv, images/s (median)",
            ["input", *keys],
            [[label, *(f"{row[k]:.0f}" for k in keys)] for label, row in d.items()],
        )
    results["machine"].update(VERSIONS)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
