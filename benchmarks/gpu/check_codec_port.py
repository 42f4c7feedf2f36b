"""Checks that `codec_jax.py` computes what aezoo's TensorFlow `compression_meanscale`
model computes, and that its weights go back into aezoo.

Run with aezoo's TensorFlow environment, on a dump that `codec_jax.py --dump` wrote (JAX,
float32) for the same weights:

    KERAS_BACKEND=jax python benchmarks/gpu/codec_jax.py --preset aezoo/presets/codec_0.01 \\
        --images ../shared/data/raw/cbsd432 --dump /tmp/port.npz
    python benchmarks/gpu/check_codec_port.py --run aezoo/presets/codec_0.01 --dump /tmp/port.npz

`--run` is a preset folder or the `--out` folder of a `codec_jax.py` training (its
weights.npz and run.json).  The model is loaded twice, by aezoo (`aezoo.runs.load_run`,
by variable path) and by layer name (`layer.set_weights`), and the two must hold the same
weights.  aezoo then computes, on the dump's image in float32: the inference outputs
(x_hat, y, z, y_hat, z_hat and the rate, bits per pixel, as the training loss estimates
it, rounding in place of noise), and the training loss and its gradient with the dump's
noise (passed in by standing in for `keras.random.uniform`).  Each must agree with the
dump to float32 tolerance; the script exits 1 if one does not.  With `--codec` it also
finalises the model and codes the image to an .aez file and back.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from aezoo import codec, runs
from aezoo.models import MODELS

# Largest difference allowed (None: shown, not checked), and how it is measured: "abs",
# absolute; "scaled", absolute over the array's largest magnitude (the latents reach +-20,
# through four float32 convolutions); "relative", elementwise relative (rates, losses,
# gradient norms).  The second column is for a bfloat16 dump, compared with aezoo under
# mixed_bfloat16: XLA's and oneDNN's bfloat16 convolutions round differently, so only the
# training-mode figures are checked, loosely (which layers compute in which dtype).  Not
# the gradients: in bfloat16 they differ from the float32 ones by up to 7 times in the
# biases of the synthesis, in TensorFlow's much more than in XLA's (TensorFlow's bias
# gradients seem to be summed in bfloat16), while the two agree on the rest.
TOLERANCES = {  # name: (kind, float32, bfloat16)
    "x_hat": ("abs", 1e-4, None), "x_hat_train": ("abs", 1e-4, 3e-2),
    "y": ("scaled", 1e-5, 1e-2), "z": ("scaled", 1e-5, 1e-2),
    "y_hat": ("scaled", 1e-5, None), "z_hat": ("scaled", 1e-5, None),
    "bpp": ("relative", 1e-4, None), "bpp_y": ("relative", 1e-4, None),
    "bpp_z": ("relative", 1e-4, None), "mse": ("relative", 1e-4, None),
    "loss": ("relative", 1e-4, None),
    "bpp_train": ("relative", 1e-4, 1e-2), "mse_train": ("relative", 1e-4, 1e-2),
    "loss_train": ("relative", 1e-4, 1e-2),
    "grad_norm": ("relative", 1e-4, None), "grad_norms": ("relative", 1e-3, None),
}


def load_by_layer_name(config: dict, path: Path) -> keras.Model:
    """The model of `config` with every layer's weights set from `path` by
    'layer/weight' name (all of the file's arrays used, every weight set)."""
    config = dict(config)
    model = MODELS[config.pop("model")](**config)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    used = set()
    for part in (model.encoder, model.decoder):
        for layer in part.layers:
            if not layer.weights:
                continue
            names = [f"{layer.name}/{w.name}" for w in layer.weights]
            missing = [n for n in names if n not in arrays]
            if missing:
                raise ValueError(f"{path} lacks {missing}.")
            layer.set_weights([arrays[n].astype(w.dtype) for n, w in zip(names, layer.weights)])
            used.update(names)
    if used != set(arrays):
        raise ValueError(f"{path} holds arrays of no layer: {sorted(set(arrays) - used)}.")
    return model


class FixedNoise:
    """Stands in for `keras.random.uniform` in aezoo's layers: returns the dump's noise of
    the shape asked for (z's and y's shapes differ)."""

    def __init__(self, *noises):
        self.noises = {tuple(n.shape): n for n in noises}
        self.original = keras.random.uniform

    def __call__(self, shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        assert (minval, maxval) == (-0.5, 0.5)
        return tf.constant(self.noises[tuple(int(s) for s in np.asarray(shape))])

    def __enter__(self):
        keras.random.uniform = self
        return self

    def __exit__(self, *exc):
        keras.random.uniform = self.original


def aezoo_figures(model, dump) -> dict[str, np.ndarray]:
    x = tf.constant(dump["x"])
    pixels = x.shape[1] * x.shape[2]
    figures = {}
    encoder = model.encoder
    parts = keras.Model(encoder.input, {
        "y": encoder.get_layer("latent_conv").output,
        "z": encoder.get_layer("hyper_latent_conv").output,
        "z_hat": encoder.get_layer("hyper_bottleneck").output,
        "y_hat": encoder.get_layer("gaussian_conditional").output,
    })(x, training=False)
    figures.update({k: v.numpy() for k, v in parts.items()})

    x_hat = model(x, training=False)
    # Each entropy model adds its rate (bits per pixel) to the model's losses.
    figures["bpp_z"] = float(tf.add_n(encoder.get_layer("hyper_bottleneck").losses))
    figures["bpp_y"] = float(tf.add_n(encoder.get_layer("gaussian_conditional").losses))
    rates = [float(loss) for loss in model.losses]
    mse = float(tf.reduce_mean(tf.square(x - x_hat)))
    figures.update(x_hat=x_hat.numpy(), bpp=sum(rates), mse=mse,
                   loss=sum(rates) + model.lmbda * 255.0**2 * mse)
    # aezoo's own estimate, by another path (estimate_bits), must agree with the loss's.
    estimate = model.estimate_bits(x) / pixels
    if abs(estimate - sum(rates)) > 1e-4 * sum(rates):
        raise AssertionError(f"estimate_bits {estimate} vs the loss's rate {sum(rates)}")

    with FixedNoise(dump["noise_z"], dump["noise_y"]), tf.GradientTape() as tape:
        x_hat = model(x, training=True)
        loss = model.compute_loss(x=x, y=x, y_pred=x_hat)  # aezoo's training loss
        rate = tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    by_name = {v.path: float(tf.norm(g)) for v, g in zip(model.trainable_variables, grads)}
    norms = np.array([by_name[str(n)] for n in dump["grad_names"]])
    figures.update(x_hat_train=x_hat.numpy(), loss_train=float(loss), bpp_train=float(rate),
                   mse_train=float(tf.reduce_mean(tf.square(x - x_hat))),
                   grad_norms=norms, grad_norm=float(np.sqrt(np.sum(norms**2))))
    return figures


def compare(figures, dump, bfloat16: bool = False) -> bool:
    ok = True
    for name, (kind, *tolerances) in TOLERANCES.items():
        tolerance = tolerances[bfloat16]
        ours, theirs = np.asarray(figures[name], np.float64), np.asarray(dump[name], np.float64)
        if ours.shape != theirs.shape:
            print(f"  {name}: shapes differ, {ours.shape} vs {theirs.shape}")
            ok = False
            continue
        difference = np.abs(ours - theirs)
        if kind == "relative":
            difference = difference / np.maximum(np.abs(ours), 1e-30)
        elif kind == "scaled":
            difference = difference / max(float(np.max(np.abs(ours))), 1e-30)
        worst = float(np.max(difference))
        good = tolerance is None or worst <= tolerance
        ok &= good
        shown = f"{float(ours):.6g}" if ours.size == 1 else f"{ours.shape}"
        verdict = "(not checked)" if tolerance is None else "ok" if good else \
            f"FAIL (> {tolerance:g})"
        print(f"  {name:12s} {shown:>22s}  max {kind} diff {worst:.2e}  {verdict}")
    for name in ("y_hat", "z_hat"):  # the rounding: the same integers (or a rare tie)
        flips = int(np.sum(np.abs(figures[name] - dump[name]) > 0.5))
        print(f"  {name:12s} elements rounded differently: {flips}"
              f"{'  (not checked)' if bfloat16 else ''}")
        ok &= bfloat16 or flips == 0
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True,
                        help="preset folder, or codec_jax.py's --out folder")
    parser.add_argument("--dump", type=Path, required=True, help="codec_jax.py --dump's file")
    parser.add_argument("--codec", action="store_true",
                        help="also finalise the model and code the image to .aez and back")
    args = parser.parse_args(argv)
    dump = dict(np.load(args.dump, allow_pickle=False))
    precision = str(dump.get("precision", "float32"))
    # A bfloat16 dump (codec_jax.py --dump --precision bfloat16): aezoo under
    # mixed_bfloat16 (see TOLERANCES).
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")

    run = runs.load_run(args.run, task="compress")
    model = run.model  # aezoo's loader (weights by variable path)
    # The training path the port took: the preset's straight_through unless
    # `codec_jax.py --straight-through` overrode it (dumps before the option: noise).
    straight_through = bool(dump.get("straight_through", False))
    config = {**run.info["config"], "straight_through": straight_through}
    by_layer = load_by_layer_name(config, args.run / runs.WEIGHTS_FILE)
    same = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), by_layer.get_weights()))
    print(f"{args.run}: weights by layer name {'equal' if same else 'DIFFER from'} aezoo's "
          f"load_run ({len(model.weights)} variables)")
    print(f"aezoo (TensorFlow {tf.__version__}) vs the JAX port on {dump['image']}, "
          f"{dump['x'].shape[1]}x{dump['x'].shape[2]}, {precision}; training on "
          f"{'rounded latents (straight-through)' if straight_through else 'noisy latents'}:")
    ok = compare(aezoo_figures(by_layer, dump), dump, precision == "bfloat16") and same

    if args.codec:
        if not by_layer.finalised:
            print("  (integer tables not finalised, as codec_jax.py writes them: finalising)")
        by_layer.finalise()
        image = np.round(dump["x"][0] * 255).astype(np.uint8)
        packer = codec.Codec(by_layer)
        blob = packer.compress(image)
        decoded = packer.decompress(blob)
        bpp = 8 * len(blob) / (image.shape[0] * image.shape[1])
        mse = np.mean((decoded.astype(np.float64) - image) ** 2)
        print(f"  .aez round trip: {bpp:.4f} bpp from the file (model's estimate "
              f"{float(dump['bpp']):.4f}), PSNR {10 * math.log10(255**2 / mse):.2f} dB")
    print("OK: the port agrees with aezoo" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
