"""`tf.distribute` helpers. The Keras trainer hooks that models need under
`MultiWorkerMirroredStrategy` are `keras_flop.compat.DistributedBuildMixin` (they override
private Keras methods, so they live with the library's other private-API uses)."""

import tensorflow as tf


def is_multi_worker(strategy):
    """Whether `strategy` spans several workers (Keras reduces its values with collectives):
    more replicas in sync than this worker's devices (public API only).

    Example:
    >>> import tensorflow as tf
    >>> from keras_flop.distribute import is_multi_worker
    >>> is_multi_worker(tf.distribute.get_strategy())  # the default strategy: one process
    False
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)


__all__ = ["is_multi_worker"]
