"""aezoo: a Keras 3 model zoo of autoencoders.

Every model is built by a function in `MODELS`, the one table of the zoo: the training
command, the applications, the docs and the tests all take their list of models from it.

>>> import aezoo
>>> ae = aezoo.MODELS["conv"](input_shape=(28, 28, 1), latent_dim=32)
>>> ae.encoder, ae.decoder  # separate keras.Models sharing weights with `ae`

The builders also live in their family's module (`aezoo.conv.conv`, `aezoo.dense.dense`, ...).
Importing aezoo registers its model class and layers with Keras, so `keras.models.load_model`
reads aezoo's `.keras` files with no `custom_objects`.
"""

import os

# aezoo trains under tf.distribute, so it needs Keras's TensorFlow backend.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ info logs

from aezoo._quiet import stderr_captured  # noqa: E402

with stderr_captured():
    import keras  # noqa: F401  (loads TensorFlow)

from aezoo.compression import compression  # noqa: E402
from aezoo.conv import conv  # noqa: E402
from aezoo.dense import dense  # noqa: E402
from aezoo.denoising import denoising  # noqa: E402
from aezoo.model import Autoencoder  # noqa: E402
from aezoo.sequence import sequence, sequence_lstm  # noqa: E402

__version__ = "0.1.0"

# The table: name -> builder.  Builders share one vocabulary of keyword arguments
# (input_shape, latent_dim, units | filters, activation, output_activation,
# corruption, corruption_level, name).
MODELS = {
    "dense": dense,
    "conv": conv,
    "denoising": denoising,
    "sequence": sequence,
    "sequence_lstm": sequence_lstm,
    "compression": compression,
}

__all__ = ["MODELS", "Autoencoder", "__version__"]
