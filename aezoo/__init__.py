"""aezoo: a Keras 3 model zoo of autoencoders.

Every model is built by a function in `MODELS`, the one table of the zoo: the training
command, the applications, the docs and the tests all take their list of models from it.

>>> import aezoo
>>> ae = aezoo.MODELS["conv"](input_shape=(28, 28, 1), latent_dim=32)
>>> ae.encoder, ae.decoder  # separate keras.Models sharing weights with `ae`

The builders also live in their family's module (`aezoo.conv.conv`, `aezoo.dense.dense`, ...).
"""

import os

# aezoo trains under tf.distribute, so it needs Keras's TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
__all__ = ["MODELS", "Autoencoder", "__version__"]


def __getattr__(name: str):
    # Keras and TensorFlow load on first use of the zoo rather than on `import aezoo`, so a
    # command can check its arguments and quiet TensorFlow's start-up logs first (aezoo.cli).
    if name not in __all__:
        raise AttributeError(f"module 'aezoo' has no attribute '{name}'")
    _load_zoo()
    return globals()[name]


def _load_zoo() -> None:
    global MODELS, Autoencoder
    from aezoo.compression import compression
    from aezoo.conv import conv
    from aezoo.dense import dense
    from aezoo.denoising import denoising
    from aezoo.model import Autoencoder

    # The table: name -> builder.  Builders share one vocabulary of keyword arguments
    # (input_shape, latent_dim, units | filters, activation, output_activation,
    # corruption, corruption_level, name).
    MODELS = {
        "dense": dense,
        "conv": conv,
        "denoising": denoising,
        "compression": compression,
    }
