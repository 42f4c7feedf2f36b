"""Sample quality of every generative model of the zoo on MNIST and Fashion-MNIST, and the
VQ-VAE's reconstructions and codebook use next to a plain `conv` autoencoder.

    python benchmarks/generative_samples.py --out ../runs/generative --epochs 10 \\
        --json results/generative_samples.json

For each dataset, trains with `aezoo.training.train` (Adam 1e-3, cosine schedule, batch
128, bfloat16, one CPU device; each model in OUT/DATASET/MODEL, so a second run resumes
and, once a model is there, only measures):

* `vae_dense` (units 512-256, latent 32): the dense baseline;
* `vae` (convolutional, latent 32);
* `vq_vae` (EMA codebook of 128 codes of 16 numbers, a 7x7 index grid), then its PixelCNN
  prior (`fit_prior`, `--prior-epochs`);
* `conv` with `latent_dim=49`, one number per position of the VQ-VAE's 7x7 grid: the
  deterministic autoencoder of comparable code size (49 floats against 49 indices of
  7 bits).

VAEs use a Bernoulli likelihood: on MNIST with dynamic binarisation (their -ELBO is then a
likelihood bound, measured on the test set binarised once), on Fashion-MNIST on the grey
levels as probabilities.  Samples are the decoders' means.  Prints one table per dataset:

* the Fréchet distance between 10,000 samples and the 10,000 test images in the 128
  penultimate features of a LeNet-like classifier trained here (3 epochs; its test accuracy
  is printed), next to its floor, 10,000 training images against the test images;
* test mean squared error of reconstructions (pixels in [0, 1]; the VAEs decode the
  posterior mean);
* the VQ-VAE's codebook perplexity on the test set (exp of the entropy of the codes'
  frequencies) and its dead codes (used by no training image).

Each OUT/DATASET/MODEL becomes a run folder as the training commands write it (run.json,
samples.png with 64 samples, the SavedModel); with --json, the figures go there too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from generative_mnist import finish, float32_copy, lenet

from aezoo.apps import cli

# TensorFlow and aezoo's training are imported where they are used, once main has read the
# options: --help and a usage error answer at once.

DATASETS = ("mnist", "fashion_mnist")
MODELS = {
    "vae_dense": {"latent_dim": 32},
    "vae": {"latent_dim": 32},
    "vq_vae": {"latent_dim": 16, "codebook_size": 128, "ema": True},
    "conv": {"latent_dim": 49, "filters": (32, 64)},
}


def train(name, dataset, x_train, x_test, args):
    from aezoo import training

    kwargs = dict(MODELS[name])
    if name.startswith("vae") and dataset == "mnist":
        kwargs["binarize"] = True
    options = {"epochs": args.epochs, "batch_size": 128, "learning_rate": 1e-3,
               "lr_schedule": "cosine", "mixed_precision": "mixed_bfloat16"}
    model, history = training.train(
        name, x_train, model_kwargs=kwargs, validation_data=x_test, strategy="cpu",
        out_dir=args.out / dataset / name, verbose=2, **options,
    )
    run_options = {"data": {"dataset": dataset, "split": "train"}, "model": kwargs,
                   "training": options}
    return float32_copy(model), history, run_options


def measure(dataset, args) -> dict:
    from aezoo import generative, latent, training

    x_train, y_train = latent.load_split(dataset, "train", args.train_examples)
    x_test, y_test = latent.load_split(dataset, "test", 10000)

    started = time.monotonic()
    classifier = lenet()
    classifier.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    classifier.fit(x_train, y_train, epochs=3, batch_size=128, verbose=2)
    accuracy = float(classifier.evaluate(x_test, y_test, verbose=0)[1])
    features = keras_features(classifier)

    def embed(x):
        return features.predict(x, batch_size=500, verbose=0)

    test_features = embed(x_test)
    result = {
        "classifier_test_accuracy": accuracy,
        "frechet_floor": generative.frechet_distance(embed(x_train[:10000]), test_features),
        "frechet_floor_images": len(x_train[:10000]),
        "models": {},
    }
    print(f"{dataset}: LeNet {accuracy:.4f} ({(time.monotonic() - started) / 60:.1f} min)",
          flush=True)

    for name in MODELS:
        started = time.monotonic()
        model, history, options = train(name, dataset, x_train, x_test, args)
        row = {"epochs": len(history.get("loss", []))}
        reconstructions = model.predict(x_test, batch_size=500, verbose=0)
        row["test_mse"] = float(np.mean((reconstructions - x_test) ** 2))
        if name.startswith("vae") and dataset == "mnist":
            elbo = generative.iwae_bound(model, x_test, k=1, batch_size=500, chunk=1,
                                         binarize=True)
            row["test_neg_elbo"] = float(-elbo.mean())
        if name == "vq_vae":
            row.update(codebook_use(model, x_train, x_test))
            if not model.prior_trained:
                model.fit_prior(x_train, epochs=args.prior_epochs, verbose=2)
                training.save_model(model, args.out / dataset / name / "model.keras")
            row["prior_epochs"] = int(model.quantizer.prior_epochs.numpy())
            options["training"]["prior_epochs"] = row["prior_epochs"]
        finish(args.out / dataset / name, name, options, history)
        if name != "conv":
            samples = model.sample(10000, seed=1)
            row["frechet"] = generative.frechet_distance(embed(samples), test_features)
        row["minutes_here"] = (time.monotonic() - started) / 60
        result["models"][name] = row
        print(f"{dataset} {name}: {row}", flush=True)
    return result


def keras_features(classifier):
    import keras

    return keras.Model(classifier.input, classifier.get_layer("features").output)


def codebook_use(model, x_train, x_test) -> dict:
    size = model.quantizer.codebook_size

    def counts(x):
        indices = model.encoder.predict(x, batch_size=500, verbose=0)["indices"]
        return np.bincount(np.ravel(indices), minlength=size)

    test = counts(x_test)
    used = test[test > 0] / test.sum()
    return {
        "codebook_size": size,
        "test_perplexity": float(np.exp(-np.sum(used * np.log(used)))),
        "dead_codes": int(np.sum(counts(x_train) == 0)),
    }


def table(dataset, result) -> str:
    columns = {"frechet": ".2f", "test_mse": ".5f", "test_neg_elbo": ".2f",
               "test_perplexity": ".1f", "dead_codes": "d"}
    lines = [
        (f"{dataset}: Fréchet distance in LeNet features (test accuracy "
         f"{result['classifier_test_accuracy']:.4f}), floor "
         f"({result.get('frechet_floor_images', 10000):,} training images vs test) "
         f"{result['frechet_floor']:.2f}"),
        ("| model | epochs | Fréchet distance, 10,000 samples | test MSE | test -ELBO (nats) "
         "| codebook perplexity (test) | dead codes |"),
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        cells = [format(row[key], fmt) if key in row else "-" for key, fmt in columns.items()]
        lines.append(f"| {name} | {row['epochs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@cli.guarded("generative_samples.py")  # user errors: one line on stderr, status 2
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the models' runs")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--prior-epochs", type=cli.positive_int, default=10)
    parser.add_argument("--train-examples", type=cli.positive_int, default=60000,
                        help="train on the first ones only (a quick trial)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cli.start_tensorflow()  # TensorFlow's start-up notices off the terminal
    from aezoo import runs

    results = {}
    for dataset in args.datasets:
        results[dataset] = measure(dataset, args)
        print("\n" + table(dataset, results[dataset]) + "\n", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        runs.write_text(args.json, json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
