"""What `tf.distribute` needs from the models beyond Keras under `MultiWorkerMirroredStrategy`:
building from the dataset's element spec, and step results Keras can average across workers.

Under a strategy, Keras' TensorFlow trainer builds the model before `fit`, `evaluate` or
`predict` from a first batch that it averages across replicas with `strategy.reduce("MEAN")`.
Under `MultiWorkerMirroredStrategy` that reduce is a collective that fails on a dict of inputs
(keras-team/keras#20329: "Attempt to convert a value ({'token_ids': PerReplica...})") and
would fail on the uneven halves of an epoch's last batch; it also pulls a batch from a fresh
iterator, advancing a generator's epoch count. Only the batch's shapes and dtypes are needed,
and the dataset's element spec has them: `DistributedBuildMixin` builds from it.

Keras then averages each training and evaluation step's logs across workers with
`strategy.reduce("MEAN", value, axis=0)`, which fails on the scalars the logs are ("Invalid
reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388). Under a
multi-worker strategy the mixin hands Keras each scalar as a one-element vector: the mean over
axis 0 and all replicas is then the mean over replicas, what Keras meant.
"""

import tensorflow as tf


class DistributedBuildMixin:
    """For `keras.Model` subclasses: under a `tf.distribute` strategy, builds the model, its
    loss and metrics from the dataset's element spec (no batch drawn, no collective); under a
    multi-worker strategy, returns step logs in the shape Keras' cross-worker mean takes."""

    def _make_function(self, step_function):
        if not is_multi_worker(self.distribute_strategy):
            return super()._make_function(step_function)

        def step(data):
            logs = step_function(data)
            return tf.nest.map_structure(
                lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v,
                logs)

        return super()._make_function(step)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or getattr(self, "_distribute_strategy", None) is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        spec = _element_spec(iterator)
        if spec is None:  # not a tf.data pipeline: Keras' own way
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=spec)


def is_multi_worker(strategy):
    """Whether `strategy` spans several workers (Keras reduces its values with collectives)."""
    extended = getattr(strategy, "extended", None)
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        getattr(extended, "_in_multi_worker_mode", lambda: False)()


def _element_spec(epoch_iterator):
    """The `tf.TensorSpec` structure of one batch of a Keras epoch iterator, or None."""
    adapter = getattr(epoch_iterator, "data_adapter", None)
    try:
        dataset = adapter.get_tf_dataset()
    except (AttributeError, NotImplementedError):
        return None
    spec = getattr(dataset, "element_spec", None)
    if spec is None or not all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(spec)):
        return None
    return spec


__all__ = ["DistributedBuildMixin", "is_multi_worker"]
