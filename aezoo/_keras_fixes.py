"""The one place where aezoo works around Keras (and TensorFlow) bugs.

keras-team/keras#20585 (open for Keras 3.15): `model.fit` under
`tf.distribute.MultiWorkerMirroredStrategy` fails in two places of the TensorFlow trainer:

1. `_maybe_symbolic_build` reduces the first *distributed* batch with
   `strategy.reduce("MEAN", batch, axis=None)` just to learn its shapes; across workers that is
   a collective over the raw data, which breaks.  Any one local replica's batch has the right
   shapes, so we build from the first local replica's batch instead.
2. `reduce_per_replica` reduces the step's logs with `strategy.reduce("MEAN", v, axis=0)`, which
   fails for the scalar metrics `train_step`/`test_step` return.  Returning them with shape [1]
   makes that reduction a plain mean over replicas, which is what Keras means to compute.

Both changes apply only under multi-worker collective strategies, so single-device and
MirroredStrategy training run the unmodified Keras code.  `aezoo.training.train` gives the fix
to other models too (`fix_multi_worker_fit`).  `tests/test_distributed.py` has a
strict-xfail test that trains a plain `keras.Model` on two workers: when Keras fixes the bug,
that test starts to pass, fails as XPASS, and tells us to delete this module.

A second bug, seen with Keras 3.15 and no upstream issue found: under a mixed precision
policy, `Model.compute_loss` sums the compiled loss (float32) with the layers' own losses
as the layers made them, and an activity regularizer's loss is in the 16-bit compute dtype,
so even a plain `Dense(activity_regularizer="l1")` fails to train ("Cannot convert a list
containing a tensor of dtype bfloat16 to float32").  `Float32LossesMixin` gives Keras its
layers' losses in float32; `tests/test_training.py` has its strict xfail.

A false warning of TensorFlow: it counts a `tf.function`'s traces by its Python function's
code object, so the graphs that aezoo makes for each model it loads (a codec's analysis, a
denoiser's pass), each a new `tf.function` of the same lambda traced once, look like one
function retraced: from the fifth model on (`aezoo compress evaluate` measures 7 codec
presets) it printed "5 out of the last 5 calls to <function ...> triggered tf.function
retracing" on stderr.  `graph` gives each its own count (the graphs are the same), and
`tests/test_codec.py` checks that 7 codecs say nothing.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf
from keras.src import tree  # the structure utilities Keras's own trainer uses


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True under MultiWorkerMirroredStrategy with more than one worker."""
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and strategy.extended._in_multi_worker_mode()


def fix_logs(logs, strategy: tf.distribute.Strategy):
    """A step's logs as Keras can reduce them under `strategy` (part 2 above); for models'
    own train steps that do not call Keras's."""
    if not is_multi_worker(strategy):
        return logs
    return tree.map_structure(lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs)


class MultiWorkerFitMixin:
    """Mixed into `aezoo.Autoencoder` (before `keras.Model`) to fix #20585."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not is_multi_worker(strategy):
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, distributed_iterator in iterator:
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v,
                next(distributed_iterator),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def train_step(self, data):
        return fix_logs(super().train_step(data), self.distribute_strategy)

    def test_step(self, data):
        return fix_logs(super().test_step(data), self.distribute_strategy)


class Float32LossesMixin:
    """Mixed into `aezoo.Autoencoder`: the layers' losses in float32 (the second bug above),
    so that a model with an activity penalty trains in mixed precision."""

    @property
    def losses(self):
        return [keras.ops.cast(loss, "float32") for loss in super().losses]


def fix_multi_worker_fit(model, strategy: tf.distribute.Strategy) -> None:
    """Gives a model that lacks `MultiWorkerFitMixin` the fix when `strategy` needs it (for
    models that are not aezoo Autoencoders, e.g. from a user's model function).

    The model's class becomes a subclass that mixes the fix in, under the same name and
    module, so that it still saves and loads as its own class.
    """
    cls = type(model)
    if is_multi_worker(strategy) and not issubclass(cls, MultiWorkerFitMixin):
        model.__class__ = type(
            cls.__name__, (MultiWorkerFitMixin, cls), {"__module__": cls.__module__}
        )


def graph(function, **kwargs) -> tf.types.experimental.PolymorphicFunction:
    """`tf.function(function, **kwargs)` that counts its traces on its own (see above): a
    `functools.partial` has no code object, so TensorFlow keys the count by the object."""
    return tf.function(functools.partial(function), **kwargs)
