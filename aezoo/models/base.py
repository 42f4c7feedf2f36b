"""The `Autoencoder` model class every builder returns, and argument checks they share.

An `Autoencoder` is a plain Keras functional model `x -> [corruption] -> encoder -> decoder`
whose encoder and decoder are themselves functional models, so they can be used, saved and
served alone while sharing their variables with the whole.  What it adds to `keras.Model`:

* `ae.encoder` / `ae.decoder` properties (the nested models named "encoder" and "decoder");
* `get_config()` is the builder's keyword arguments, and `from_config` calls the builder again,
  so a `.keras` file reloads with no `custom_objects` once `aezoo` is imported;
* `compile()` defaults to Adam and the mean squared reconstruction error.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

# The module, not its names: a program whose first import is `aezoo.noise` builds this
# module (aezoo's hook on TensorFlow's import) while aezoo.noise is still half imported.
from aezoo import noise as noise_lib
from aezoo._keras_fixes import Float32LossesMixin, MultiWorkerFitMixin
from aezoo._quiet import stderr_captured
from aezoo.models import MODELS
from aezoo.models.layers import Corruption

if keras.backend.backend() != "tensorflow":
    # tf.distribute, SavedModel export and tf.data pipelines are TensorFlow's.
    raise ImportError(
        "aezoo needs Keras's TensorFlow backend; this process runs Keras on "
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing keras."
    )

with stderr_captured():
    # TensorFlow looks for GPUs at its first operation, and on a machine without one its
    # C++ code prints a "failed call to cuInit" error line that nothing can act on.  Looking
    # now, with that line held back (and shown if the look fails), keeps it off the
    # terminal of every program that builds or loads aezoo models.
    tf.config.list_physical_devices()

class Endpoint(NamedTuple):
    """One serving signature of a SavedModel (see `aezoo.export`): named input specs, and
    `fn(dict of inputs) -> dict of outputs`, using TensorFlow ops only."""

    inputs: dict[str, tf.TensorSpec]
    fn: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]


# Short names accepted by `compile(loss=...)` and by the training command line.
LOSSES = {"mse": "mean_squared_error", "bce": "binary_crossentropy"}


@keras.saving.register_keras_serializable(package="aezoo")
class Autoencoder(MultiWorkerFitMixin, Float32LossesMixin, keras.Model):
    """Functional autoencoder that remembers the builder call that made it.

    Args:
        inputs: the model's input tensor (a `keras.Input`).
        outputs: the reconstruction tensor.
        config: the builder's keyword arguments, plus `"model"`, the builder's name in
            `aezoo.MODELS`. `get_config()` returns it and `from_config` rebuilds from it.
        name: model name.
    """

    def __init__(self, inputs, outputs, *, config: dict[str, Any], name: str | None = None):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self._builder_config = dict(config)

    @property
    def encoder(self) -> keras.Model:
        return self.get_layer("encoder")

    @property
    def decoder(self) -> keras.Model:
        return self.get_layer("decoder")

    @property
    def builder_name(self) -> str:
        """The key of this model's builder in `aezoo.MODELS`."""
        return self._builder_config["model"]

    def get_config(self) -> dict[str, Any]:
        return dict(self._builder_config)

    # For the families that train on a loss of their own (compression, VAE, VQ-VAE): their
    # `compute_loss` adds the layers' losses to a reconstruction term and logs each term.

    def added_losses(self) -> tf.Tensor:
        """The sum of the losses the layers added (a rate, a KL, a commitment), in float32."""
        return tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses])

    def replica_loss(self, total, y, *terms: tuple[keras.metrics.Metric, Any],
                     sample_weight=None) -> tf.Tensor:
        """`total`, a replica's loss on its batch `y`, as `compute_loss` returns it, after
        each `(tracker, value)` of `terms` is logged.  `sample_weight`: `compute_loss`'s,
        refused (`total` is a batch's mean: weights given to `fit` were silently ignored).

        The trackers are weighted by the batch size, as Keras's own loss tracker, so that
        the epoch means obey the loss's formula exactly (and a weight that depends on the
        data keeps a step that finds the dataset exhausted from counting).  Keras sums the
        replicas' gradients, so each replica's loss is divided by their number, as Keras
        does for compiled losses.
        """
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} takes no sample weights: its loss is the "
                             "mean over the batch of its own formula.")
        batch_size = tf.cast(tf.shape(y)[0], tf.float32)
        for tracker, value in terms:
            tracker.update_state(value, sample_weight=batch_size)
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> "Autoencoder":
        config = dict(config)
        builder = config.pop("model")
        if builder not in MODELS:
            raise ValueError(
                f"This file was saved by an aezoo model '{builder}' that this version of "
                f"aezoo does not have. Known models: {', '.join(MODELS)}."
            )
        return MODELS[builder](**config)

    def compile(self, optimizer="adam", loss="mse", **kwargs):
        """`keras.Model.compile` with Adam and the mean squared error as defaults.

        `loss` also takes "bce" (binary cross-entropy, for images in [0, 1]).
        """
        super().compile(optimizer=optimizer, loss=keras_loss(loss), **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        # Keras skips recompiling models whose compile() is overridden, since it cannot know
        # their signature; ours takes what keras.Model.compile takes, so do what Keras does.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)  # so its saved state can load

    def serving_endpoints(self, endpoints: dict[str, Any]) -> dict[str, Any]:
        """The SavedModel signatures `aezoo.export` writes for this model.

        `endpoints` are the ones every autoencoder gets (`serving_default`, `encode`, `decode`,
        `score`, and `reconstruct_image` for images), as `aezoo.export.Endpoint`s built from
        the encoder's and decoder's specs.  A model that serves differently (say, integer codes
        from a quantising encoder) overrides this to replace, add or drop some; see
        `aezoo.export`.  This default keeps them all.
        """
        return endpoints


def keras_loss(loss):
    """Keras's name for aezoo's short loss names ("mse", "bce"); other losses pass through."""
    return LOSSES.get(loss, loss) if isinstance(loss, str) else loss


def make_autoencoder(
    model: str,
    kwargs: dict[str, Any],
    encoder: keras.Model,
    decoder: keras.Model,
    corruption: keras.layers.Layer | None = None,
    cls: type[Autoencoder] = Autoencoder,
) -> Autoencoder:
    """Composes `x -> [corruption] -> encoder -> decoder` into an `Autoencoder`.

    `kwargs` is the builder's arguments as its caller gave them: `dict(locals())` taken as
    the builder's first statement, before any argument is checked or resolved ("auto"
    stays "auto"), so that the config rebuilds the same model in another version and
    `from_config` gets nothing but the builder's arguments.  The corruption layer (the
    shared `corruption_layer(corruption, corruption_level)`, for builders that take those
    arguments) sits in front of the encoder, not inside it, so that the encoder used alone
    (features, serving) always sees clean inputs.  `cls` is an `Autoencoder` subclass for
    families that train differently (compression: rate + distortion).

    Raises:
        TypeError: `kwargs` is not the builder's arguments (a builder's mistake), or a
            `corruption` was asked for and no corruption layer given.
    """
    if model in MODELS:
        arguments = list(inspect.signature(MODELS[model]).parameters)
        if list(kwargs) != arguments:
            raise TypeError(
                f"make_autoencoder({model!r}, kwargs, ...): kwargs must be the builder's "
                f"arguments {arguments}, got {list(kwargs)}: take kwargs = dict(locals()) as "
                "the builder's first statement.")
    if kwargs.get("corruption") is not None and corruption is None:
        raise TypeError(
            f"make_autoencoder({model!r}, ...) got corruption={kwargs['corruption']!r} but no "
            "corruption layer: pass corruption_layer(corruption, corruption_level) after "
            "the decoder.")
    x = keras.Input(encoder.input_shape[1:], name="x")
    h = corruption(x) if corruption is not None else x
    codes = encoder(h)
    if isinstance(codes, dict) and not isinstance(decoder.input, dict):
        # An encoder may return more than its decoder takes (a VAE's posterior mean and
        # variance, a VQ-VAE's indices): the decoder gets its inputs by name.  (Keras's
        # symbolic call would take the dict's values in key order instead.)
        codes = [codes[t.name] for t in keras.tree.flatten(decoder.input)]
    x_hat = decoder(codes)
    # Stored as it comes back from a .keras file's JSON (tuples as lists), so that
    # get_config() is the same before saving and after loading.
    config = json.loads(json.dumps({"model": model, **kwargs}, default=_plain))
    return cls(x, x_hat, config=config, name=kwargs["name"])


def _plain(value: Any) -> Any:
    """NumPy's numbers (a sweep's `np.arange`) as the Python numbers a config holds."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be stored in a model's config.")


# ---------------------------------------------------------------- widening (Net2Net)
# A model given wider layers starts as the same function (Chen et al., Net2Net, 2016): each
# new channel copies an old one, and the layer that reads them splits each old channel's
# weight among its copies (compression.widen, denoising.widen).


def arguments_but_widths(model: keras.Model, *others: str) -> dict[str, Any]:
    """A model's builder arguments without its widths (`filters`, `latent_dim`), its name
    and `others`: what must be equal for a model to be widened into another."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in model.get_config().items()
            if k not in ("filters", "latent_dim", "name", *others)}


def widened_channels(rng: np.random.Generator, n: int, wide: int):
    """`copies`: the old channel that each of `wide` new channels copies (the n old ones,
    then random repeats); `shares`: how many copies each new channel's old one has."""
    copies = np.concatenate([np.arange(n), rng.integers(0, n, wide - n)])
    return copies, np.bincount(copies, minlength=n)[copies]


def split_among_copies(rng: np.random.Generator, copies: np.ndarray, shares: np.ndarray,
                       n: int) -> np.ndarray:
    """The share of its old channel's weight that a reader gives each copy: about
    1/shares, drawn at random so that the copies can grow apart in training, and summing to
    one within each channel's copies (the reader's sum is unchanged)."""
    split = 1.0 / shares + rng.uniform(-0.2, 0.2, copies.shape) / shares
    return split - (np.bincount(copies, split, n) - 1.0)[copies] / shares


# ---------------------------------------------------------------- argument checks
# Builders check every argument before building anything, and say which argument was
# wrong and what they received, in the keras.applications manner.


def is_float_dtype(dtype) -> bool:
    """NumPy's float types, and ml_dtypes' (bfloat16: what a mixed-precision model gives)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or (dtype.kind == "V" and "float" in dtype.name)


def is_number(value: Any) -> bool:
    """A real number, NumPy's included, and not a bool (True is 1 to Python, not to users)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return int(value)


def check_ints(name: str, value: Any, minimum: int = 1) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum
            for v in value
        )
    ):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of positive integers. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(v) for v in value)


def check_levels(filters: tuple[int, ...], height: int, width: int) -> None:
    """Refuses more downsampling levels (one per entry of `filters`, each halving the image)
    than a height x width input has: the model would pad it to 2**levels a side (40 levels
    failed inside a Pad op at the first call; 12 padded 28x28 up to 4096x4096)."""
    most = max(1, math.ceil(math.log2(max(height, width))))
    if len(filters) > most:
        raise ValueError(
            f"`filters` has {len(filters)} levels, each halving the image: a {height}x{width} "
            f"input has at most {most} (it would be padded to {2 ** len(filters)} a side). "
            f"Received: filters={filters!r}")


def check_bool(name: str, value: Any) -> bool:
    # Not check_choice(name, value, (True, False)): 0 and 1 compare equal to them.
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}. Received: {name}={value!r}")
    return value


def check_fraction(name: str, value: Any, upper: float = 1.0) -> float:
    if not is_number(value) or not 0 <= value <= upper:
        raise ValueError(
            f"`{name}` must be a number between 0 and {upper:g}. Received: {name}={value!r}"
        )
    return float(value)


def check_non_negative(name: str, value: Any) -> float:
    """A weight or a variance: a finite number >= 0."""
    if not is_number(value) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """A rate-distortion trade-off, a scale: a finite number > 0."""
    if not is_number(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a positive, finite number. Received: {name}={value!r}")
    return float(value)


def check_input_shape(
    value: Any, ranks: Sequence[int], dynamic: bool = False, channels: Sequence[int] = ()
) -> tuple[int | None, ...]:
    """Checks `input_shape` (no batch axis): its rank, positive sizes, channel count.

    With `dynamic=True`, spatial sizes may be None (any size at call time).
    """

    def bad(reason: str) -> ValueError:
        return ValueError(f"`input_shape` {reason}. Received: input_shape={value!r}")

    if not isinstance(value, Sequence) or isinstance(value, str):
        raise bad("must be a tuple of sizes without the batch axis, such as (28, 28, 1)")
    if len(value) not in ranks:
        raise bad(f"must have {' or '.join(map(str, ranks))} axes (no batch axis)")
    for i, size in enumerate(value):
        spatial = i < len(value) - 1
        if size is None and dynamic and spatial:
            continue
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise bad("must hold positive integers" + (" or None" if dynamic else ""))
    if channels and value[-1] not in channels:
        raise bad(f"must end in {' or '.join(map(str, channels))} channels")
    return tuple(None if s is None else int(s) for s in value)


def check_activation(name: str, value: Any) -> str | None:
    try:
        keras.activations.get(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"`{name}` must be the name of a Keras activation such as 'relu', 'sigmoid' "
            f"or 'linear'. Received: {name}={value!r}"
        ) from None
    return value


def corruption_layer(corruption: str | None, corruption_level: float):
    """Checks the shared `corruption`/`corruption_level` arguments; returns the layer or None."""
    if corruption is None:
        return None
    noise_lib.check_noise(corruption, corruption_level,
                          names=("corruption", "corruption_level"))
    return Corruption(corruption, corruption_level, name="corruption")
