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
the first model loaded).  Its one side effect is a post-import hook on Keras and TensorFlow:
once both are imported (before aezoo or after it), aezoo's Keras classes are registered, so
that `import aezoo` then `keras.models.load_model(path)` reads aezoo's `.keras` files with no
`custom_objects`, in whichever order the two are imported (`aezoo.load_model(path)` does it
in one call).
"""

import importlib
import sys
import warnings

import wrapt

from aezoo._version import __version__
from aezoo.models import MODELS


def _register_with_keras(module) -> None:
    """Registers aezoo's Keras classes (`MODELS.load()`) once Keras and TensorFlow are both
    imported.

    Each imports the other, and aezoo's model modules use TensorFlow at import time, so the
    hook of the first to finish waits for the second (the hooked module itself is still
    marked as initialising while its hooks run).  It also stands aside while one of aezoo's
    model modules is half-imported (its `import keras` started it all): that import comes
    from `MODELS.load()`, which registers everything itself.
    """
    def importing(name):
        other = sys.modules.get(name)
        return other is None or getattr(getattr(other, "__spec__", None), "_initializing", False)

    if any(importing(name) for name in ("keras", "tensorflow") if name != module.__name__):
        return
    if any(importing(name) for name in list(sys.modules) if name.startswith("aezoo.models.")):
        return
    try:
        MODELS.load()
    except Exception as error:  # never break the user's `import keras` because of aezoo
        warnings.warn(f"aezoo could not register its Keras classes ({error}); "
                      "load aezoo's .keras files with aezoo.load_model.", stacklevel=2)


for _name in ("keras", "tensorflow"):
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
        MODELS.load()  # every family first: the hook stands aside while one is half-imported
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aezoo' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["MODELS", "__version__", *_LAZY]
