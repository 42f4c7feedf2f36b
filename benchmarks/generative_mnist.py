"""A convolutional VAE on dynamically binarised MNIST: test NLL (IWAE bound) and the
Fréchet distance of its samples, in the features of a small LeNet this script trains.

    python benchmarks/generative_mnist.py --out ../runs/vae_mnist_elbo --epochs 60 --blocks 1 \\
        --mixed-precision mixed_bfloat16 --iwae-examples 500 --json results/generative_mnist.json

Trains `vae` (latent 32, Bernoulli likelihood, `binarize=True`: a fresh Bernoulli draw of
every training image at every step) with `aezoo.training.train` into OUT (run it again after
an interruption: it resumes; once OUT/model.keras is there it only measures), then prints
(measured in float32, whatever the training's precision):

* the IWAE bound with k importance samples (Burda et al. 2016) on the first
  `--iwae-examples` test images, each binarised once with a fixed seed: the "NLL" of the
  literature, in nats (k = 5000 there); and the ELBO (k = 1) on the whole test set;
* the Fréchet distance between `--samples` samples (the decoder's Bernoulli means at prior
  draws) and the 10,000 test images, in the 128-d penultimate features of a LeNet-like
  classifier trained here for 3 epochs, next to the floor: 10,000 training images against
  the test images.  (Like FID, but in an MNIST classifier's features, not Inception's, so
  the numbers compare only with this script's.)

OUT becomes a run folder as the training commands write it (run.json, samples.png, the
SavedModel; `aezoo generate --model OUT` shows it); with --json, the figures go there too.
Given a finished run folder, it only measures.

`--init RUN --importance-samples K` fine-tunes a trained VAE (a run folder or a preset, same
architecture) on the importance-weighted bound with K samples; the preset `vae_mnist` is the
first command's run (in ../runs/vae_mnist_elbo) fine-tuned so:

    python benchmarks/generative_mnist.py --out ../runs/vae_mnist --init ../runs/vae_mnist_elbo \\
        --importance-samples 5 --epochs 10 --learning-rate 3e-4 --blocks 1 \\
        --mixed-precision mixed_bfloat16 --iwae-examples 500
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from aezoo.apps import cli

if TYPE_CHECKING:
    import keras
# TensorFlow, Keras and aezoo's models are imported where they are used, once main has read
# the options: --help and a usage error answer at once.


def lenet(seed: int = 0) -> keras.Model:
    """A LeNet-like classifier of 28x28 digits whose `features` layer (128) is measured."""
    import keras

    keras.utils.set_random_seed(seed)
    x = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(32, 5, activation="relu", padding="same")(x)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(64, 5, activation="relu", padding="same")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(128, activation="relu", name="features")(h)
    return keras.Model(x, keras.layers.Dense(10, activation="softmax")(h))


def float32_copy(model: keras.Model) -> keras.Model:
    """The same model built in float32 (a mixed-precision model's layers keep their
    policy in their config), with its weights: likelihoods are measured in float32."""
    import keras

    from aezoo.models import MODELS

    config = {k: v for k, v in model.get_config().items() if k != "model"}
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = MODELS[model.get_config()["model"]](**config)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def finish(out: Path, model: str, options: dict, history: dict) -> None:
    """Completes the run folder OUT as the zoo's commands do (run.json, history, loss.png,
    samples.png, the SavedModel export/1), so that `aezoo generate --model OUT` opens it and
    `benchmarks/presets.py pack` packs it; `options` has the run's data, model and training
    options."""
    from aezoo import generative, runs

    if runs.is_finished(out):
        return

    def samples(trained, path):
        generative.sample_grid(trained, path, 64, seed=0)

    generates = model in ("vae", "vae_dense", "vq_vae")
    runs.finish_run(out, history, task="train", model=model, options=options,
                    title=f"{model} on {options['data']['dataset']}",
                    samples=samples if generates else None)


@cli.guarded("generative_mnist.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the VAE's run folder")
    parser.add_argument("--latent-dim", type=cli.positive_int, default=32)
    parser.add_argument("--filters", type=cli.positive_int, nargs="+", default=[32, 64])
    parser.add_argument("--blocks", type=cli.non_negative_int, default=0,
                        help="residual blocks per level (the vae builder's `blocks`)")
    parser.add_argument("--mixed-precision", choices=["mixed_bfloat16", "mixed_float16"],
                        help="train in this precision (measured in float32)")
    parser.add_argument("--epochs", type=cli.positive_int, default=40,
                        help="epochs (a cosine learning-rate schedule spans them)")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=1e-3)
    parser.add_argument("--importance-samples", type=cli.positive_int, default=1,
                        help="k of the training objective (the builder's `importance_samples`)")
    parser.add_argument("--init", metavar="RUN",
                        help="start from this run folder's or preset's weights")
    parser.add_argument("--time-limit", type=cli.positive_float, metavar="MINUTES",
                        help="stop training after the first epoch past this")
    parser.add_argument("--k", type=cli.positive_int, default=5000, help="IWAE importance samples")
    parser.add_argument("--iwae-examples", type=cli.positive_int, default=10000,
                        help="test images the IWAE bound is computed on (the first ones)")
    parser.add_argument("--samples", type=cli.positive_int, default=10000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cli.start_tensorflow()  # TensorFlow's start-up notices off the terminal
    import keras

    from aezoo import generative, latent, runs, training

    x_train, y_train = latent.load_split("mnist", "train", 60000)
    x_test, y_test = latent.load_split("mnist", "test", 10000)
    started = time.monotonic()
    model_kwargs = {"latent_dim": args.latent_dim, "filters": tuple(args.filters),
                    "blocks": args.blocks, "binarize": True,
                    "importance_samples": args.importance_samples}
    options = {"epochs": args.epochs, "batch_size": 128, "learning_rate": args.learning_rate,
               "lr_schedule": "cosine", "mixed_precision": args.mixed_precision,
               "time_limit": args.time_limit}
    if runs.is_finished(args.out):
        run = runs.load_run(args.out, task="train")
        model, history = run.model, json.loads((args.out / "history.json").read_text())
    else:
        model, history = training.train(
            "vae", x_train, init=args.init, model_kwargs=model_kwargs, validation_data=x_test,
            strategy="cpu", out_dir=args.out, verbose=2, **options,
        )
    epochs = len(history.get("loss", []))
    print(f"Trained {epochs} epochs ({(time.monotonic() - started) / 60:.1f} min here); "
          f"last training loss {history['loss'][-1]:.2f} nats (-ELBO, or the negative "
          f"IWAE bound with --importance-samples).", flush=True)
    finish(args.out, "vae", {"data": {"dataset": "mnist", "split": "train"},
                             "model": model_kwargs,
                             "training": {**options, "init": args.init}}, history)
    model = float32_copy(model)

    started = time.monotonic()
    elbo = generative.iwae_bound(model, x_test, k=1, batch_size=500, chunk=1, binarize=True)
    subset = x_test[: args.iwae_examples]
    bounds = generative.iwae_bound(model, subset, k=args.k, batch_size=1, chunk=min(args.k, 1000),
                                   binarize=True, verbose=True)
    same_elbo = elbo[: len(subset)].mean()
    iwae_minutes = (time.monotonic() - started) / 60

    started = time.monotonic()
    classifier = lenet()
    classifier.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    classifier.fit(x_train, y_train, epochs=3, batch_size=128, verbose=2)
    accuracy = classifier.evaluate(x_test, y_test, verbose=0)[1]
    features = keras.Model(classifier.input, classifier.get_layer("features").output)

    def embed(x):
        return features.predict(x, batch_size=500, verbose=0)

    samples = model.sample(args.samples, seed=1)
    test_features = embed(x_test)
    distance = generative.frechet_distance(embed(samples), test_features)
    floor = generative.frechet_distance(embed(x_train[:10000]), test_features)
    fid_minutes = (time.monotonic() - started) / 60

    n = len(subset)
    error = bounds.std(ddof=1) / math.sqrt(n)
    result = {
        "epochs": epochs, "latent_dim": args.latent_dim, "filters": args.filters,
        "blocks": args.blocks, "mixed_precision": args.mixed_precision, "k": args.k, "iwae_examples": n,
        "nll_iwae": float(-bounds.mean()), "nll_iwae_standard_error": float(error),
        "neg_elbo_same_examples": float(-same_elbo), "neg_elbo_test": float(-elbo.mean()),
        "frechet_samples_vs_test": distance, "frechet_train_vs_test": floor,
        "classifier_test_accuracy": float(accuracy), "samples": args.samples,
        "minutes": {"iwae": iwae_minutes, "frechet": fid_minutes},
    }
    print(f"\nMNIST, dynamically binarised; conv VAE, latent {args.latent_dim}, filters "
          f"{tuple(args.filters)}, blocks {args.blocks}, {epochs} epochs:")
    print("| measure | value |")
    print("|---|---|")
    print(f"| test NLL, IWAE k={args.k}, first {n} test images | {-bounds.mean():.2f} "
          f"± {error:.2f} nats |")
    print(f"| test -ELBO, same {n} images | {-same_elbo:.2f} nats |")
    print(f"| test -ELBO, all {len(x_test)} test images | {-elbo.mean():.2f} nats |")
    print(f"| Fréchet distance, {args.samples} samples vs test (LeNet features) | "
          f"{distance:.2f} |")
    print(f"| Fréchet distance floor, 10,000 training images vs test | {floor:.2f} |")
    print(f"| LeNet test accuracy (its features are measured) | {accuracy:.4f} |")
    print(f"(IWAE {iwae_minutes:.1f} min, Fréchet {fid_minutes:.1f} min)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
