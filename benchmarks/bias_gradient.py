"""How TensorFlow computes a bias's gradient under mixed_bfloat16 on the CPU, and what
summing it right would change in training.

    python benchmarks/bias_gradient.py                  # the gradient, three ways
    python benchmarks/bias_gradient.py --train --seeds 1 2   # + a training A/B (about 10 min)

Keras's `ops.add` turns a layer's `outputs + bias` into `tf.nn.bias_add`, and on the CPU
that op's gradient (`BiasAddGrad`) sums a bfloat16 gradient in bfloat16: over the many
positions of a feature map the sum stalls (65,536 values drawn from [0, 1] sum to 512
instead of about 32,768).  `tf.add`'s gradient sums in float32.  So every Conv2D and Dense
bias of aezoo's CPU trainings (mixed_bfloat16) has learned from such a gradient.

`--train` trains the small denoising U-Net (`aezoo denoise train`, 8 epochs of 50 steps on
Train400, sigma 0-55) twice a seed, with Keras's add and with one whose gradient sums in
float32 (`adds`, below), and scores both on 20 BSD68 images at sigma 25.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
from pathlib import Path

from offline import DATA

# TensorFlow is imported once main has read the options: --help answers at once.


@functools.cache
def adds():
    """(Keras's own add, which takes the bias_add path; `add_summing_in_float32`): Keras's
    add, with the gradient of a half-precision sum taken in float32.  The first call reads
    Keras's add, before `child` replaces it."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import numpy as keras_tf_numpy

    keras_add = keras_tf_numpy.add

    @tf.custom_gradient
    def summing_in_float32(x1, x2):
        def gradient(dy):
            dy = tf.cast(dy, tf.float32)
            shape1, shape2 = tf.shape(x1), tf.shape(x2)
            axes1, axes2 = tf.raw_ops.BroadcastGradientArgs(s0=shape1, s1=shape2)
            return (tf.cast(tf.reshape(tf.reduce_sum(dy, axes1), shape1), x1.dtype),
                    tf.cast(tf.reshape(tf.reduce_sum(dy, axes2), shape2), x2.dtype))

        return keras_add(x1, x2), gradient

    def add_summing_in_float32(x1, x2):
        if all(tf.is_tensor(x) or hasattr(x, "dtype") for x in (x1, x2)):
            x1, x2 = tf.convert_to_tensor(x1), tf.convert_to_tensor(x2)
            if x1.dtype == x2.dtype and x1.dtype in (tf.bfloat16, tf.float16):
                return summing_in_float32(x1, x2)
        return keras_add(x1, x2)

    return keras_add, add_summing_in_float32


def gradients() -> None:
    import numpy as np
    import tensorflow as tf

    keras_add, add_summing_in_float32 = adds()
    dy = tf.random.stateless_uniform([16, 64, 64, 8], [1, 2])
    print("bias gradient of sum(dy * (0 + bias)) over 16x64x64 positions, first 3 channels:")
    print(f"  exact (float64 numpy)       {np.sum(dy.numpy().astype(np.float64), (0, 1, 2))[:3]}")
    for label, add, dtype in [("Keras, float32", keras_add, tf.float32),
                              ("Keras, bfloat16", keras_add, tf.bfloat16),
                              ("float32 sum, bfloat16", add_summing_in_float32, tf.bfloat16)]:
        bias = tf.Variable(tf.zeros([8]))
        with tf.GradientTape() as tape:
            y = add(tf.zeros([16, 64, 64, 8], dtype), tf.cast(bias, dtype))
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * dy)
        print(f"  {label:<27} {tape.gradient(loss, bias).numpy()[:3]}")


def child(arm: str, seed: int, out: str) -> int:
    """One training (run in a process of its own, so that the patch stays in it)."""
    if arm == "float32-sum":
        from keras.src.backend.tensorflow import numpy as keras_tf_numpy

        keras_tf_numpy.add = adds()[1]  # Keras's ops call this attribute
    from aezoo.apps import denoise

    return denoise.main(["train", "--images", str(DATA / "raw" / "train400"), "--patch", "64",
                         "--patches-per-image", "2", "--augment", "--noise", "gaussian:0-55",
                         "--epochs", "8", "--batch-size", "16", "--mixed-precision",
                         "mixed_bfloat16", "--seed", str(seed), "--out", out])


def train(seeds: list[int]) -> None:
    import json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for arm in ("keras", "float32-sum"):
                run = Path(tmp) / f"{arm}_{seed}"
                subprocess.run([sys.executable, __file__, "--child", arm, str(seed), str(run)],
                               check=True, capture_output=True)
                subprocess.run(["aezoo", "denoise", "evaluate", "--model", str(run), "--images",
                                str(DATA / "raw" / "bsd68"), "--limit", "20", "--noise",
                                "gaussian:25", "--methods", "aezoo", "--out",
                                str(run / "bsd68")], check=True, capture_output=True)
                result = json.loads((run / "bsd68" / "results.json").read_text())
                rows.append((seed, arm, result["methods"]["aezoo"]["psnr"]))
                print(f"seed {seed}, {arm}: BSD68 (20 images) sigma 25: {rows[-1][2]:.2f} dB",
                      flush=True)
    print("\n| seed | Keras's bias gradient | summed in float32 |\n|---|---|---|")
    for seed in seeds:
        psnr = {arm: p for s, arm, p in rows if s == seed}
        print(f"| {seed} | {psnr['keras']:.2f} | {psnr['float32-sum']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    from aezoo.apps import cli

    cli.start_tensorflow()  # its start-up notices off the terminal
    if args.child:
        sys.exit(child(args.child[0], int(args.child[1]), args.child[2]))
    gradients()
    if args.train:
        train(args.seeds)


if __name__ == "__main__":
    main()
