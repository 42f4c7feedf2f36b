"""aezoo: a Keras 3 model zoo of autoencoders.

>>> import aezoo
>>> ae = aezoo.MODELS["conv"](input_shape=(28, 28, 1), latent_dim=32)
>>> ae.encoder, ae.decoder             # separate keras.Models sharing weights with `ae`
>>> model = aezoo.from_preset("conv_mnist")      # a trained model that ships with aezoo
>>> run = aezoo.load_run("runs/mnist_conv")      # any run folder (or preset): run.model, run.info

The package has three layers, and imports only go downwards:

* the zoo, `aezoo.models`: the `MODELS` table, the `Autoencoder` base, layers, one module
  per family;
* the services: `data`, `noise`, `training`, `export`, `codec`, `rate_distortion`,
  `metrics`, `plots`, `denoise`, `baselines`, `anomaly`, `latent`, `runs`, `presets`;
* the commands, `aezoo.apps`: the installed `aezoo` command and its subcommands.

`import aezoo` is instant and has no side effects: TensorFlow loads with the first builder
taken from `MODELS` (or the first model loaded), which also registers aezoo's Keras
classes, so that `keras.models.load_model` reads aezoo's `.keras` files with no
`custom_objects` (`aezoo.load_model(path)` does both in one call).
"""

import importlib

from aezoo._version import __version__
from aezoo.models import MODELS

# Public names that need TensorFlow, imported on first use (PEP 562).
_LAZY = {
    "Autoencoder": "aezoo.models.base",
    "load_model": "aezoo.runs",
    "load_run": "aezoo.runs",
    "from_preset": "aezoo.runs",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aezoo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["MODELS", "__version__", *_LAZY]
