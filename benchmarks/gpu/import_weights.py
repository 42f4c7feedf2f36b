"""Turns the weights a GPU session brought back into an aezoo run folder here, which every
aezoo command opens (`--model FOLDER`) and `benchmarks/presets.py pack` takes.

    python benchmarks/gpu/import_weights.py JOB --preset denoise_gray \
        --config .gpu/init/denoise_gray_96-192-384/run.json --out /work/runs/gpu_gray

JOB is a job's folder from `run.sh` (its `weights.npz`, float16, keys `layer/weight`).  The
run's description (task, application: a denoiser's noise, a codec's lmbda) is the preset's
it started from; the model's config is `--config`'s where the GPU model was widened.  A
codec is finalised here: its integer tables are recomputed from the new weights, as
`aezoo compress train` does at the end of a run.
"""

import argparse
import json
from pathlib import Path

from aezoo import presets, runs
from aezoo.models.compression import CompressionAutoencoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--preset", required=True, help="the preset the job started from")
    parser.add_argument("--config", type=Path, help="a JSON file whose 'config' replaces "
                        "the preset's (a widened model)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    info = json.loads((presets.folder(args.preset) / runs.RUN_FILE).read_text())
    if args.config:
        info["config"] = json.loads(args.config.read_text())["config"]
        # The command-line options that built it, as a run trained here would record them.
        options = info["options"].get("model", {})
        options.update({k: v for k, v in info["config"].items() if k in options})
    model = runs.model_from_weights(info["config"], args.job / runs.WEIGHTS_FILE)
    if isinstance(model, CompressionAutoencoder):
        model.finalise()
    info["options"]["training"]["init"] = args.preset
    run = runs.Run(args.out, info, model)
    runs.pack(run, args.out, float16=False)
    print(f"{args.out}: {model.count_params()} parameters from {args.job}")


if __name__ == "__main__":
    main()
