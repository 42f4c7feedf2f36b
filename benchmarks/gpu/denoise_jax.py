"""Trains an aezoo denoising U-Net (a `denoise_*` preset) on a GPU, with Keras 3 on JAX.

    KERAS_BACKEND=jax python benchmarks/gpu/denoise_jax.py --config aezoo/presets/denoise_gray/run.json \
        --weights aezoo/presets/denoise_gray/weights.npz --images train400 --minutes 8 --out gray

The recipe is `aezoo denoise train`'s (random square patches of every image, each turned by
one of the 8 rotations and mirrorings, Gaussian noise of a sigma drawn uniformly per patch
in [0, --sigma-max] on the 0-255 scale, not clipped; mean squared error; Adam; bfloat16
compute with float32 weights), with the patches cut, turned and noised on the GPU inside
the jitted step, so that the CPU never holds the step back.  `common.py` says why this is
not aezoo's own trainer.

`--check FILE.npz` instead writes the model's output for one fixed noisy patch (float32),
for `check_denoise_port.py` to compare with aezoo's own model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import Budget, load_images, log_line, save_weights  # noqa: E402


def unet(config: dict) -> keras.Model:
    """The graph of `aezoo.models.denoising.denoising(**config)` (`blocks=0`) on images whose
    sides are multiples of 2**len(filters): there the builder's pad and crop layers are the
    identity, and the rest is these layers under the same names (so the same weights)."""
    if config.get("blocks", 0) or not config.get("residual", True):
        raise SystemExit("error: only the plain residual U-Net (blocks=0) is rebuilt here")
    filters, act = config["filters"], config["activation"]

    def conv(n, name, activation=act):
        return keras.layers.Conv2D(n, config["kernel_size"], padding="same",
                                   activation=activation, name=name)

    channels = config["input_shape"][-1]
    x = keras.Input((None, None, channels), name="x")
    h, skips = x, {}
    for i, n in enumerate(filters, start=1):
        h = conv(n, f"down{i}_conv2")(conv(n, f"down{i}_conv1")(h))
        skips[i] = h
        h = keras.layers.MaxPooling2D(2, name=f"down{i}_pool")(h)
    h = conv(config["latent_dim"], "latent")(conv(config["latent_dim"], "latent_conv")(h))
    for i, n in reversed(list(enumerate(filters, start=1))):
        h = keras.layers.Conv2DTranspose(n, 2, strides=2, activation=act,
                                         name=f"up{i}_deconv")(h)
        h = keras.layers.Concatenate(name=f"up{i}_concat")([h, skips[i]])
        h = conv(n, f"up{i}_conv2")(conv(n, f"up{i}_conv1")(h))
    h = conv(channels, "output_conv", activation=None)(h)
    h = keras.layers.Subtract(dtype="float32", name="residual")([x, h])
    x_hat = keras.layers.Activation(config["output_activation"], dtype="float32",
                                    name="reconstruction")(h)
    return keras.Model(x, x_hat)


def load(model: keras.Model, path: str) -> None:
    with np.load(path) as stored:
        names = sorted(v.path for v in model.weights)
        if names != sorted(stored.files):
            raise SystemExit(f"error: {path} holds other weights than the model")
        for variable in model.weights:
            variable.assign(stored[variable.path].astype(variable.dtype))


def weights_of(model: keras.Model, values=None) -> dict[str, np.ndarray]:
    values = values if values is not None else [v.value for v in model.trainable_variables]
    return {v.path: np.asarray(value) for v, value in zip(model.trainable_variables, values)}


def views(patch):
    """The 8 rotations and mirrorings of one (height, width, channels) patch."""
    turns = [jnp.rot90(patch, k, axes=(0, 1)) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


def batch(images, key, size: int, patch: int, sigma_max: float):
    """`size` clean patches of `images` (uint8, on the device) and their noisy versions."""
    k_image, k_y, k_x, k_view, k_sigma, k_noise = jax.random.split(key, 6)
    count, height, width, channels = images.shape
    index = jax.random.randint(k_image, (size,), 0, count)
    top = jax.random.randint(k_y, (size,), 0, height - patch + 1)
    left = jax.random.randint(k_x, (size,), 0, width - patch + 1)
    view = jax.random.randint(k_view, (size,), 0, 8)

    def one(i, y, x, v):
        cut = jax.lax.dynamic_slice(images[i], (y, x, 0), (patch, patch, channels))
        return jax.lax.switch(v, [lambda p, k=k: views(p)[k] for k in range(8)], cut)

    clean = jax.vmap(one)(index, top, left, view).astype(jnp.float32) / 255.0
    sigma = jax.random.uniform(k_sigma, (size, 1, 1, 1), maxval=sigma_max / 255.0)
    return clean + sigma * jax.random.normal(k_noise, clean.shape), clean


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a run.json (its 'config')")
    parser.add_argument("--weights", required=True, help="initial weights (.npz)")
    parser.add_argument("--images", help="training images (a folder)")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--sigma-max", type=float, default=55.0)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--precision", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--out", help="folder for weights.npz and log.csv")
    parser.add_argument("--check", help="write the output for a fixed patch to this .npz")
    args = parser.parse_args(argv)

    config = json.loads(Path(args.config).read_text())["config"]
    if args.precision == "bfloat16" and not args.check:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = unet(config)
    load(model, args.weights)

    if args.check:
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (2, 64, 64, config["input_shape"][-1])).astype(np.float32)
        np.savez(args.check, x=x, x_hat=np.asarray(model(x)))
        return

    # Portrait images stay turned: their patches are one of the 8 views the step draws anyway.
    images = jax.device_put(load_images(args.images, config["input_shape"][-1])[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=args.learning_rate)
    trainable = [v.value for v in model.trainable_variables]
    fixed = [v.value for v in model.non_trainable_variables]
    state = optimizer.init(trainable)

    def loss_fn(trainable, noisy, clean):
        x_hat, _ = model.stateless_call(trainable, fixed, noisy, training=True)
        return jnp.mean(jnp.square(x_hat.astype(jnp.float32) - clean))

    @jax.jit
    def step(trainable, state, key, rate):
        noisy, clean = batch(images, key, args.batch, args.patch, args.sigma_max)
        loss, grads = jax.value_and_grad(loss_fn)(trainable, noisy, clean)
        state.hyperparams["learning_rate"] = rate
        updates, state = optimizer.update(grads, state, trainable)
        return optax.apply_updates(trainable, updates), state, loss

    budget = Budget(args.minutes, args.learning_rate, args.warmup)
    key = jax.random.key(args.seed)
    steps, losses, saved, logged = 0, [], time.monotonic(), (0, time.monotonic())
    print(f"{out.name}: {model.count_params()} parameters, {len(images)} images, "
          f"batch {args.batch} of {args.patch}x{args.patch}", flush=True)
    while not budget.over:
        key, sub = jax.random.split(key)
        trainable, state, loss = step(trainable, state, sub, budget.rate(steps))
        steps += 1
        losses.append(loss)
        if steps == 1:  # compiled now: the cosine starts here
            jax.block_until_ready(loss)
            budget.begin()
        if steps % 50 == 0:
            mean = float(jnp.mean(jnp.stack(losses)))  # waits for the device
            losses = []
            now = time.monotonic()
            row = {"step": steps, "seconds": round(budget.elapsed, 1), "loss": mean,
                   "psnr": float(-10 * np.log10(mean)), "learning_rate": budget.rate(steps),
                   "steps_per_second": (steps - logged[0]) / (now - logged[1])}
            logged = (steps, now)
            log_line(out / "log.csv", row)
            if now - saved > args.save_every:
                save_weights(out / "weights.npz", weights_of(model, trainable))
                saved = now
                print(f"{out.name}: {row}", flush=True)
    save_weights(out / "weights.npz", weights_of(model, trainable))
    print(f"{out.name}: done, {steps} steps in {budget.elapsed:.0f} s", flush=True)


if __name__ == "__main__":
    main()
