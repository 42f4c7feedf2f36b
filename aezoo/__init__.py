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

`import aezoo` is instant: TensorFlow loads with the first builder taken from `MODELS` (or
the first model loaded).  Its one side effect is a post-import hook on Keras, TensorFlow and
aezoo's model modules: once they are imported (before aezoo or after it, whichever comes
first), aezoo's Keras classes are registered, so that in a program that imports aezoo,
`keras.models.load_model(path)` reads aezoo's `.keras` files with no `custom_objects`
(`aezoo.load_model(path)` does it in one call).
"""

import importlib
import sys
import warnings

import wrapt

from aezoo._version import __version__
from aezoo.models import MODELS


def _register_with_keras(module) -> None:
    """Registers aezoo's Keras classes (`MODELS.load()`) once Keras, TensorFlow and every
    aezoo model module that has begun to import are whole.

    It runs after each of them finishes importing: Keras and TensorFlow import each other,
    and an aezoo model module may be what imported them (`from aezoo import codec` starts
    with `aezoo.models.compression`, whose `import keras` comes before its classes): the
    last of them to finish registers everything.  (The module whose hook runs is still
    marked as initialising, though whole.)
    """
    def importing(name):
        other = sys.modules.get(name)
        return other is None or getattr(getattr(other, "__spec__", None), "_initializing", False)

    if any(importing(name) for name in ("keras", "tensorflow") if name != module.__name__):
        return
    if any(importing(name) for name in list(sys.modules)
           if name.startswith("aezoo.models.") and name != module.__name__):
        return
    import keras

    if keras.config.backend() != "tensorflow":  # aezoo's models are TensorFlow's
        return
    try:
        MODELS.load()
    except Exception as error:  # never break the user's `import keras` because of aezoo
        warnings.warn(f"aezoo could not register its Keras classes ({error}); "
                      "load aezoo's .keras files with aezoo.load_model.")


for _name in ("keras", "tensorflow", "aezoo.models.base", "aezoo.models.layers",
              *(f"aezoo.models.{family}" for family in MODELS.modules())):
    wrapt.register_post_import_hook(_register_with_keras, _name)


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
