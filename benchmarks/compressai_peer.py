"""aezoo's hyperprior codecs against the same models in CompressAI (issue 16): training
speed, codec speed and Kodak rate-distortion, measured in one run.

    # CompressAI in a venv of its own: it declares numpy<2, which breaks TensorFlow 2.21
    python3 -m venv ../peer && ../peer/bin/pip install compressai scikit-image
    python benchmarks/compressai_peer.py --torch-python ../peer/bin/python --steps 1000 \\
        --rounds 3 --images 6 --json results/compressai_peer.json
    python benchmarks/compressai_peer.py --torch-python ../peer/bin/python \\
        --models hyperprior --steps 10 --rounds 1 --images 1 --throughput-steps 4 \\
        --warmup 2 --sizes 64/96                                      # a smoke test

The models: aezoo's `compression_hyperprior` (Ballé et al. 2018, scale hyperprior) and
`compression_meanscale` (Minnen et al. 2018 without the context model), with `filters`
and `hyper_filters` (N, N, N) and `latent_dim` M, against CompressAI's `ScaleHyperprior`
(its zoo's bmshj2018-hyperprior) and `MeanScaleHyperprior` (mbt2018-mean) built with the
same N and M, from scratch.  Same analysis and synthesis transforms (5x5 stride-2
convolutions with GDN/IGDN) and hyper-analysis; the hyper-synthesis differs a little:
CompressAI's scale model ends in a ReLU, and its mean-scale one widens to M and 3M/2
channels with leaky ReLUs where aezoo keeps N (the parameter counts are printed).

Three parts, every one in child processes of its own (this script again, `--child`): one
process a training run or an evaluation, so that PyTorch never shares a process with
TensorFlow (see train_throughput.py) and no run inherits another's threads or caches.

1. Training steps/s: batches of 8 random 128x128 CBSD432 patches, Adam 1e-4, gradients
   clipped at global norm 1, loss bpp + lmbda * 255**2 * MSE; aezoo through
   `aezoo.training.train` in float32 and in bfloat16 mixed precision, CompressAI in float32
   (PyTorch's CPU default) with its training recipe (examples/train.py: a second Adam at
   1e-3 on the auxiliary loss of the entropy bottleneck's quantiles, each step).  The three
   alternate, in a rotated order each round, for each size of --sizes; each run times its
   steps after --warmup.
2. Kodak rate-distortion after --steps training steps of each model with the same data and
   recipe: the same --steps x 8 patches (each seen once, in each framework's own shuffled
   order), Adam 1e-4 then 1e-5 for the last fifth of the steps (aezoo's compression recipe,
   `--lr-schedule step`), clipnorm 1, lmbda --lmbda, both in --rd-precision.  bpp from the
   bytes each codec writes (aezoo: the whole .aez file, 42-byte header included;
   CompressAI: its y and z strings, without the image size it needs beside them), RGB PSNR
   by `aezoo.metrics.psnr`, means over the images.  One rate point each: no BD-rate.
3. Codec seconds per full-size Kodak image (768x512), median over the images after one
   untimed warm-up: aezoo's `Codec.compress` and `.decompress` (.aez bytes; integer
   hyper-synthesis, constriction's range coder) against CompressAI's `compress` and
   `decompress` after `update()` (float hyper-synthesis, its C++ rANS coder), each from a
   uint8 image to bytes and back, using the models of part 2.  Each round trip is checked
   against what the model decodes to without the entropy coder: for aezoo the codec's
   synthesis of the encoder's quantised latent, for CompressAI its forward pass in eval
   mode (rounding); the largest difference in grey levels is reported (0: bit-exact).

The PyTorch processes run with OMP_WAIT_POLICY=PASSIVE (unless --omp-default, or the
environment sets it): PyTorch's OpenMP threads spin while they wait, and on this shared
machine, whose 2 cores other jobs keep busy, a CompressAI training step then took 2.8-4.8 s
instead of 0.27-0.37 s.  TensorFlow's own thread pool does not spin like that.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from aezoo.apps import cli
from offline import DATA, step_timer, write_json

BATCH = 8
PATCH = 128
LEARNING_RATE = 1e-4
AUX_LEARNING_RATE = 1e-3  # CompressAI's examples/train.py
CLIPNORM = 1.0
# aezoo builder, CompressAI class (and its zoo name) of each model.
MODELS = {
    "hyperprior": ("compression_hyperprior", "ScaleHyperprior", "bmshj2018-hyperprior"),
    "meanscale": ("compression_meanscale", "MeanScaleHyperprior", "mbt2018-mean"),
}
CONTENDERS = {  # label -> (framework, precision)
    "aezoo bfloat16": ("aezoo", "mixed_bfloat16"),
    "aezoo float32": ("aezoo", "float32"),
    "CompressAI float32": ("compressai", "float32"),
}
ENV = dict(os.environ)
ENV.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TORCH_ENV = dict(ENV)  # the PyTorch processes' (main() sets OMP_WAIT_POLICY)
# The CompressAI children need aezoo's light modules only (aezoo.metrics): this checkout.
TORCH_ENV["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parents[1]), ENV.get("PYTHONPATH")]))
TORCH_PYTHON = [sys.executable]  # main() sets it from --torch-python


# ======================================================== in the child processes


def train_aezoo(spec: dict, patches: np.ndarray) -> dict:
    from aezoo import training

    n, m = spec["filters"], spec["latent_dim"]
    timer = step_timer(spec["warmup"])
    # The step schedule lowers the rate for the last of 5 epochs: the last fifth of the steps.
    epochs = 5 if spec["schedule"] == "step" else 1
    precision = spec["precision"]
    model, history = training.train(
        MODELS[spec["model"]][0], patches,
        model_kwargs=dict(filters=(n,) * 3, hyper_filters=(n,) * 3, latent_dim=m,
                          lmbda=spec["lmbda"]),
        epochs=epochs, steps_per_epoch=spec["steps"] // epochs, batch_size=BATCH,
        learning_rate=LEARNING_RATE, lr_schedule=spec["schedule"], clipnorm=CLIPNORM,
        mixed_precision=None if precision == "float32" else precision, callbacks=[timer],
        verbose=0,
    )
    if spec.get("save"):
        training.save_model(model, spec["save"])  # finalised: fit() made the tables
    return {"steps_per_second": timer.steps_per_second,
            "parameters": sum(int(np.prod(w.shape)) for w in model.trainable_weights),
            "last_epoch": {k: float(v[-1]) for k, v in history.items()}}


def compressai_model(name: str, n: int, m: int):
    import torch
    from compressai import models

    torch.set_num_threads(os.cpu_count() or 1)
    return getattr(models, MODELS[name][1])(n, m)


def train_compressai(spec: dict, patches: np.ndarray) -> dict:
    """CompressAI's examples/train.py step: the rate-distortion loss on the main
    parameters (clipped), then the auxiliary loss on the quantiles."""
    import torch
    from compressai.losses import RateDistortionLoss

    torch.manual_seed(0)
    net = compressai_model(spec["model"], spec["filters"], spec["latent_dim"]).train()
    named = dict(net.named_parameters())
    main = [p for k, p in named.items() if not k.endswith(".quantiles")]
    aux = [p for k, p in named.items() if k.endswith(".quantiles")]
    optimizer = torch.optim.Adam(main, lr=LEARNING_RATE)
    aux_optimizer = torch.optim.Adam(aux, lr=AUX_LEARNING_RATE)
    criterion = RateDistortionLoss(lmbda=spec["lmbda"])
    order = np.random.default_rng(0).permutation(len(patches))
    steps, warmup = spec["steps"], spec["warmup"]
    lower_at = steps - steps // 5 if spec["schedule"] == "step" else steps
    last = []
    start = None
    for step in range(steps):
        if step == lower_at:
            for group in optimizer.param_groups:
                group["lr"] = LEARNING_RATE / 10
        index = order[np.arange(step * BATCH, (step + 1) * BATCH) % len(order)]
        x = torch.from_numpy(patches[index]).permute(0, 3, 1, 2).float().div_(255)
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        losses = criterion(net(x), x)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(main, CLIPNORM)
        optimizer.step()
        aux_loss = net.aux_loss()
        aux_loss.backward()
        aux_optimizer.step()
        if step >= lower_at:
            last.append({"loss": losses["loss"].item(), "bpp": losses["bpp_loss"].item(),
                         "mse": losses["mse_loss"].item(), "aux_loss": aux_loss.item()})
        if step + 1 == warmup:
            start = time.perf_counter()
    seconds = time.perf_counter() - start
    if spec.get("save"):
        torch.save(net.state_dict(), spec["save"])  # update() comes at evaluation
    return {"steps_per_second": (steps - warmup) / seconds,
            "parameters": sum(p.numel() for p in main),
            "last_epoch": {k: statistics.fmean(r[k] for r in last) for k in last[0]}
            if last else {}}


def evaluate_aezoo(spec: dict, images: list[np.ndarray]) -> dict:
    import aezoo
    from aezoo import codec as codec_lib

    model = aezoo.load_model(spec["weights"])
    codec = codec_lib.Codec(model)

    def reference(image):
        latents = codec.encode_latents(image)
        _, means = codec.entropy_parameters(latents["z_hat"])
        y_hat = codec.dequantise(latents["symbols"], means)
        return codec.synthesise(y_hat, *image.shape[:2])

    return time_codec(codec.compress, codec.decompress, len, reference, images)


def evaluate_compressai(spec: dict, images: list[np.ndarray]) -> dict:
    import torch

    net = compressai_model(spec["model"], spec["filters"], spec["latent_dim"])
    net.load_state_dict(torch.load(spec["weights"]))
    net.eval().update(force=True)
    multiple = 64  # 2**(4 + 2): y is 16 and z 64 times smaller than the image

    def tensor(image):
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div_(255)
        height, width = image.shape[:2]
        pad = (0, -width % multiple, 0, -height % multiple)
        return torch.nn.functional.pad(x, pad, mode="replicate") if any(pad) else x

    def pixels(x_hat, height, width):
        x_hat = x_hat[0, :, :height, :width].clamp(0, 1).permute(1, 2, 0)
        return (x_hat * 255).round().to(torch.uint8).numpy()

    def compress(image):
        with torch.no_grad():
            out = net.compress(tensor(image))
        return out["strings"], out["shape"], image.shape[:2]

    def decompress(packed):
        strings, shape, (height, width) = packed
        with torch.no_grad():
            return pixels(net.decompress(strings, shape)["x_hat"], height, width)

    def size(packed):
        return sum(len(s) for strings in packed[0] for s in strings)

    def reference(image):
        with torch.no_grad():
            return pixels(net(tensor(image))["x_hat"], *image.shape[:2])

    return time_codec(compress, decompress, size, reference, images)


def time_codec(compress, decompress, size, reference, images) -> dict:
    """Per image: encode and decode seconds, bpp, PSNR, and the largest difference between
    the decoded image and `reference(image)`; after one untimed round trip."""
    from aezoo import metrics

    decompress(compress(images[0]))
    rows = []
    for image in images:
        started = time.perf_counter()
        packed = compress(image)
        encoded = time.perf_counter()
        decoded = decompress(packed)
        decoded_at = time.perf_counter()
        expected = reference(image)
        rows.append({
            "encode_s": encoded - started, "decode_s": decoded_at - encoded,
            "bpp": 8 * size(packed) / (image.shape[0] * image.shape[1]),
            "psnr": metrics.psnr(image, decoded),
            "round_trip_max_diff": int(np.max(np.abs(
                decoded.astype(np.int16) - expected.astype(np.int16)))),
        })
    return {"images": rows}


def prepare(folder: Path, patches: int, images: int | None) -> dict:
    """Writes `patches.npy` (uint8 128x128 CBSD432 patches, 4 per image per pass, fresh
    positions each pass) and `kodak.npz` (the first `images` Kodak images)."""
    import keras
    import tensorflow as tf

    from aezoo import data

    source = data.from_directory(DATA / "raw" / "cbsd432", patch_size=PATCH,
                                 patches_per_image=4, seed=0)
    stack = np.stack([np.asarray(p) for p in source.repeat().take(patches)])
    np.save(folder / "patches.npy", np.round(stack * 255).astype(np.uint8))
    files = data.list_images(DATA / "raw" / "kodak")[:images]
    np.savez(folder / "kodak.npz", **{p.stem: data.read_image(p, channels=3) for p in files})
    return {"cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": sys.version.split()[0]}


def child(spec: dict) -> dict:
    """What one child process does; its result is JSON."""
    folder = Path(spec["folder"])
    if spec["task"] == "prepare":
        return prepare(folder, spec["patches"], spec["images"])
    if spec["task"] == "train":
        patches = np.load(folder / "patches.npy", mmap_mode="r")[: spec["steps"] * BATCH]
        patches = np.ascontiguousarray(patches)
        run = train_aezoo if spec["framework"] == "aezoo" else train_compressai
        return run(spec, patches)
    with np.load(folder / "kodak.npz") as kodak:
        images = [kodak[name] for name in kodak.files]
    if spec["framework"] == "aezoo":
        return evaluate_aezoo(spec, images)
    result = evaluate_compressai(spec, images)
    import compressai
    import torch

    return {**result, "torch": torch.__version__, "compressai": compressai.__version__}


# ============================================================ in the main process


def run_child(spec: dict) -> dict:
    """Runs `child(spec)` in a new process of this script; its result."""
    result = Path(spec["folder"]) / "result.json"
    result.unlink(missing_ok=True)
    torch_child = spec.get("framework") == "compressai"
    python = TORCH_PYTHON[0] if torch_child else sys.executable
    command = [python, __file__, "--child", json.dumps(spec), "--result", str(result)]
    env = TORCH_ENV if torch_child else ENV
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    if done.returncode != 0 or not result.is_file():
        sys.exit(f"compressai_peer.py: the child process for {spec} failed "
                 f"(status {done.returncode}):\n{done.stdout[-3000:]}")
    return json.loads(result.read_text())


def rotations(names: list[str], rounds: int):
    """The order of each round: rotations of `names`, then of the reversed order, so that
    each one runs in each position and after each other one alike."""
    n = len(names)
    for r in range(rounds):
        order = names if (r // n) % 2 == 0 else names[::-1]
        yield order[r % n:] + order[: r % n]


def throughput(args, folder: Path, size: tuple[int, int]) -> dict:
    n, m = size
    runs: dict[str, dict[str, list[float]]] = {}
    for model in args.models:
        values = runs[model] = {label: [] for label in CONTENDERS}
        for r, order in enumerate(rotations(list(CONTENDERS), args.rounds)):
            for label in order:
                framework, precision = CONTENDERS[label]
                result = run_child({
                    "task": "train", "folder": str(folder), "framework": framework,
                    "model": model, "filters": n, "latent_dim": m, "precision": precision,
                    "lmbda": args.lmbda, "steps": args.throughput_steps,
                    "warmup": args.warmup, "schedule": "constant"})
                values[label].append(result["steps_per_second"])
                PARAMETERS[(framework, model, n, m)] = result["parameters"]
            print(f"  N={n} M={m} {model} round {r + 1}/{args.rounds}: " + ", ".join(
                f"{label} {v[-1]:.2f}" for label, v in values.items()) + " steps/s",
                flush=True)
    return runs


PARAMETERS: dict[tuple, int] = {}


def rate_distortion(args, folder: Path) -> dict:
    """Trains each model in each framework (alternating which goes first), then evaluates
    them on Kodak in the same alternation."""
    n, m = args.filters, args.latent_dim
    frameworks = ["aezoo", "compressai"]
    results: dict[str, dict] = {}
    jobs = [(model, framework) for i, model in enumerate(args.models)
            for framework in (frameworks if i % 2 == 0 else frameworks[::-1])]
    for model, framework in jobs:
        weights = folder / f"{framework}_{model}.{'keras' if framework == 'aezoo' else 'pt'}"
        print(f"  training {framework} {model} for {args.steps} steps ...", flush=True)
        trained = run_child({
            "task": "train", "folder": str(folder), "framework": framework, "model": model,
            "filters": n, "latent_dim": m, "lmbda": args.lmbda, "steps": args.steps,
            "warmup": min(10, args.steps - 1), "schedule": "step", "save": str(weights),
            "precision": "float32" if framework == "compressai" else args.rd_precision})
        PARAMETERS[(framework, model, n, m)] = trained["parameters"]
        results[f"{framework} {model}"] = {"training": trained, "weights": str(weights)}
    for model, framework in jobs:
        entry = results[f"{framework} {model}"]
        print(f"  evaluating {framework} {model} on Kodak ...", flush=True)
        evaluated = run_child({
            "task": "evaluate", "folder": str(folder), "framework": framework, "model": model,
            "filters": n, "latent_dim": m, "weights": entry.pop("weights")})
        VERSIONS.update({k: v for k, v in evaluated.items() if k != "images"})
        rows = evaluated["images"]
        entry.update(
            images=rows,
            bpp=statistics.fmean(r["bpp"] for r in rows),
            psnr=statistics.fmean(r["psnr"] for r in rows),
            encode_s=statistics.median(r["encode_s"] for r in rows),
            decode_s=statistics.median(r["decode_s"] for r in rows),
            round_trip_max_diff=max(r["round_trip_max_diff"] for r in rows),
        )
        print(f"    {entry['bpp']:.3f} bpp, {entry['psnr']:.2f} dB, encode "
              f"{entry['encode_s']:.3f} s, decode {entry['decode_s']:.3f} s, round trip "
              f"differs by up to {entry['round_trip_max_diff']} grey levels", flush=True)
    return results


VERSIONS: dict[str, str] = {}


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def report(args, speed: dict, rd: dict) -> None:
    n, m = args.filters, args.latent_dim
    rows = []
    for model in args.models:
        for label, (framework, precision) in CONTENDERS.items():
            steps = statistics.median(speed[(n, m)][model][label]) if (n, m) in speed else None
            measured = rd.get(f"{framework} {model}")
            coded = measured is not None and (
                framework == "compressai" or precision == args.rd_precision)
            name = MODELS[model][0 if framework == "aezoo" else 1]
            rows.append([
                label, name, f"{PARAMETERS.get((framework, model, n, m), 0):,}",
                "-" if steps is None else f"{steps:.2f}",
                *([f"{measured[k]:.3f}" for k in ("encode_s", "decode_s", "bpp")]
                  + [f"{measured['psnr']:.2f}", str(measured["round_trip_max_diff"])]
                  if coded else ["-"] * 5),
            ])
    print_table(
        f"N={n}, M={m}: training steps/s (batch {BATCH} of {PATCH}x{PATCH}, median of "
        f"{args.rounds} rounds); Kodak ({args.images or 24} images) encode/decode s (median) "
        f"and bpp/PSNR (mean) after {args.steps} steps at lmbda {args.lmbda}",
        ["framework", "model", "parameters", "steps/s", "encode s", "decode s", "bpp",
         f"PSNR after {args.steps} steps", "round trip max diff"],
        rows,
    )
    for size, runs in speed.items():
        if size == (n, m):
            continue
        print_table(
            f"N={size[0]}, M={size[1]}: training steps/s (median of {args.rounds} rounds)",
            ["framework", "model", "parameters", "steps/s"],
            [[label, model, f"{PARAMETERS.get((CONTENDERS[label][0], model, *size), 0):,}",
              f"{statistics.median(values):.2f}"]
             for model, row in runs.items() for label, values in row.items()],
        )


def size_pair(text: str) -> tuple[int, int]:
    try:
        n, m = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/M such as 64/96, got {text!r}") from None
    return n, m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--filters", type=int, default=64, help="N (default 64)")
    parser.add_argument("--latent-dim", type=int, default=96, help="M (default 96)")
    parser.add_argument("--sizes", nargs="*", type=size_pair, metavar="N/M",
                        help="sizes of the throughput part (default: N/M and 128/192)")
    parser.add_argument("--steps", type=int, default=1000,
                        help="training steps of each model for the rate-distortion part "
                             "(a multiple of 5; 0 skips it)")
    parser.add_argument("--rd-precision", choices=("float32", "mixed_bfloat16"),
                        default="float32", help="aezoo's precision in the rate-distortion "
                        "part (CompressAI trains in float32)")
    parser.add_argument("--lmbda", type=cli.positive_float, default=0.01)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the throughput part (0 skips it)")
    parser.add_argument("--throughput-steps", type=int, default=30,
                        help="steps per throughput run (timed: these less --warmup)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--images", type=int, help="the first N Kodak images only")
    parser.add_argument("--torch-python", default=sys.executable, metavar="PYTHON",
                        help="the Python of a venv with torch and compressai, for the "
                        "CompressAI children (default: this one); CompressAI's numpy<2 pin "
                        "cannot share a venv with TensorFlow 2.21")
    parser.add_argument("--omp-default", action="store_true",
                        help="leave OMP_WAIT_POLICY unset for PyTorch (default: PASSIVE)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # JSON: what a child process does
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)  # where it writes it
    args = parser.parse_args(argv)
    if args.child is not None:
        args.result.write_text(json.dumps(child(json.loads(args.child))))
        return 0
    if args.steps % 5 or args.steps < 0 or (0 < args.steps < 10):
        parser.error("--steps must be 0 or a multiple of 5 of at least 10")
    if not 0 < args.warmup < args.throughput_steps:
        parser.error("--warmup must be at least 1 and less than --throughput-steps")
    if args.images is not None and args.images < 1:
        parser.error("--images must be at least 1")
    probe = subprocess.run([args.torch_python, "-c", "import torch, compressai"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"compressai_peer.py: error: {args.torch_python} cannot import torch and "
              "compressai; make a venv for them (see the docstring) and pass --torch-python",
              file=sys.stderr)
        return 2
    TORCH_PYTHON[0] = args.torch_python
    sizes = args.sizes if args.sizes is not None else [(args.filters, args.latent_dim),
                                                        (128, 192)]
    sizes = list(dict.fromkeys(sizes))
    if not args.omp_default:
        TORCH_ENV.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load = [os.getloadavg()[0]]

    with tempfile.TemporaryDirectory(prefix="aezoo_compressai_") as folder:
        folder = Path(folder)
        count = max(args.steps, args.throughput_steps) * BATCH
        print(f"Preparing {count} patches and the Kodak images ...", flush=True)
        results = {"machine": run_child({"task": "prepare", "folder": str(folder),
                                         "patches": count, "images": args.images}),
                   "options": {k: v for k, v in vars(args).items()
                               if k not in ("child", "result", "json")}}
        rd = {}
        if args.steps:
            print(f"Rate-distortion: {args.steps} training steps of each model, then Kodak:")
            rd = rate_distortion(args, folder)
        speed = {}
        if args.rounds:
            print("Training throughput (steps/s), one process a run:")
            for size in sizes:
                speed[size] = throughput(args, folder, size)
    load.append(os.getloadavg()[0])
    results["machine"].update(VERSIONS, load_average_start_end=load,
                              torch_omp_wait_policy=TORCH_ENV.get("OMP_WAIT_POLICY"))
    results["rate_distortion"] = rd
    results["steps_per_second"] = {f"{n}/{m}": runs for (n, m), runs in speed.items()}
    results["parameters"] = {f"{f} {model} {n}/{m}": count
                             for (f, model, n, m), count in PARAMETERS.items()}
    report(args, speed, rd)
    print(f"\nmachine: {results['machine']}")
    if args.json:  # (this process's TensorFlow, after every child has ended)
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
