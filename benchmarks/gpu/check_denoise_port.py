"""Checks that `denoise_jax.py` computes what aezoo's own denoiser computes: the same
weights give the same output (float32, up to rounding) in aezoo's TensorFlow model.

    KERAS_BACKEND=jax python benchmarks/gpu/denoise_jax.py --config RUN.json --weights W.npz --check out.npz
    python benchmarks/gpu/check_denoise_port.py --config RUN.json --weights W.npz out.npz
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from aezoo.runs import model_from_weights


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("dump", help="the .npz that denoise_jax.py --check wrote")
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())["config"]
    model = model_from_weights(config, Path(args.weights))
    with np.load(args.dump) as dump:
        x, jax_out = dump["x"], dump["x_hat"]
    ours = np.asarray(model(x))
    diff = float(np.max(np.abs(ours - jax_out)))
    print(f"max |aezoo - jax| = {diff:.2e} over {ours.size} values "
          f"(output range {ours.min():.3f}..{ours.max():.3f})")
    sys.exit(0 if diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
