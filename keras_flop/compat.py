"""Every use of a private API of TensorFlow, Keras, keras-hub or tf2onnx, in one place, each
with why.

The library keeps to public APIs except where the frameworks offer none for what it needs.
Those uses live here, and `pyproject.toml` bounds the four packages to the minor versions
they were tested with (`TESTED`). `missing_hooks()` lists, by name, each hook the installed
versions lack; the test suite fails on any, and `check_hooks()` raises at the point of use.

- Keras' TensorFlow trainer: `DistributedBuildMixin` overrides `_make_function`,
  `_maybe_symbolic_build` and calls `_symbolic_build` (tf.distribute support Keras lacks, see
  the class), and reads `_distribute_strategy` (set only when the model was created under a
  strategy's scope, unlike the public `distribute_strategy`); `update_loss_metric` updates
  `_loss_tracker`, the metric behind the `loss` of Keras' logs, from a custom `train_step`.
  Keras' epoch iterator's `data_adapter.get_tf_dataset()` gives the `tf.data` pipeline.
- Keras optimizers: `learning_rate_of` reads `_learning_rate`, the schedule or value the
  optimizer was built with (the public `learning_rate` is the schedule's value at the current
  step, which cannot tell a warmup's 0 from a frozen model's).
- keras-hub's `TransformerEncoder` has no public accessors for its sublayers
  (`encoder_sublayers`), and its BERT's tanh GELU has no public name
  (`keras_hub_gelu_approximate`).
- TensorFlow has `tf.config.experimental.enable_op_determinism` but no public reader of it:
  `op_determinism_enabled` asks `tensorflow.python.framework.config`, so that a benchmark
  prints the setting its figures were measured under.
- tf2onnx's optimizer registry `tf2onnx.optimizer._optimizers` is the only way to turn one
  pass off (`tf2onnx_without_pass`).
"""

import contextlib

# The versions these hooks were tested with, as in pyproject.toml's bounds.
TESTED = {"tensorflow": "2.20 to 2.21", "keras": "3.10 to 3.15", "keras-hub": "0.22 to 0.32",
          "tf2onnx": "1.16 to 1.17"}

# keras.src.backend.tensorflow.trainer.TensorFlowTrainer's methods that the mixin overrides
# or calls.
KERAS_TRAINER_METHODS = ("_make_function", "_maybe_symbolic_build", "_symbolic_build")
# keras_hub.layers.TransformerEncoder's sublayers, as our names for them.
ENCODER_SUBLAYERS = {
    "attention": "_self_attention_layer", "attention_layer_norm": "_self_attention_layer_norm",
    "intermediate": "_feedforward_intermediate_dense",
    "output": "_feedforward_output_dense", "output_layer_norm": "_feedforward_layer_norm"}
# keras_hub.layers.CachedMultiHeadAttention's (keras.layers.MultiHeadAttention's) dense layers.
ATTENTION_SUBLAYERS = {"query": "_query_dense", "key": "_key_dense", "value": "_value_dense",
                       "output": "_output_dense"}


class DistributedBuildMixin:
    """For `keras.Model` subclasses: under a `tf.distribute` strategy, builds the model, its
    loss and metrics from the dataset's element spec (no batch drawn, no collective); under a
    multi-worker strategy, returns step logs in the shape Keras' cross-worker mean takes.

    Why (Keras 3.15's TensorFlow trainer): before `fit`, `evaluate` or `predict` under a
    strategy, Keras builds the model from a first batch averaged across replicas with
    `strategy.reduce("MEAN")`. Under `MultiWorkerMirroredStrategy` that reduce is a collective
    that fails on a dict of inputs (keras-team/keras#20329) and on the uneven halves of an
    epoch's last batch, and it pulls a batch from a fresh iterator. Only shapes and dtypes are
    needed: the dataset's element spec has them. Keras then averages each step's logs with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars
    (tensorflow/tensorflow#72388): the mixin hands Keras each scalar as a one-element vector.
    """

    def _make_function(self, step_function):
        import tensorflow as tf

        from keras_flop.distribute import is_multi_worker

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
        spec = element_spec(iterator)
        if spec is None:  # not a tf.data pipeline: Keras' own way
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=spec)


def element_spec(epoch_iterator):
    """The `tf.TensorSpec` structure of one batch of a Keras epoch iterator, or None (its
    `data_adapter` is Keras-internal)."""
    import tensorflow as tf

    adapter = getattr(epoch_iterator, "data_adapter", None)
    try:
        dataset = adapter.get_tf_dataset()
    except (AttributeError, NotImplementedError):
        return None
    spec = getattr(dataset, "element_spec", None)
    if spec is None or not all(isinstance(s, tf.TensorSpec) for s in tf.nest.flatten(spec)):
        return None
    return spec


def update_loss_metric(model, loss, batch_size):
    """Adds a custom `train_step`'s loss to the metric behind `loss` in Keras' logs (Keras
    updates it only in its own `compute_loss`, which such a step does not call)."""
    model._loss_tracker.update_state(loss, sample_weight=batch_size)


def learning_rate_of(optimizer):
    """What `optimizer` was built with as its learning rate: a `LearningRateSchedule` (or
    another callable), or a variable holding a constant.

    Example:
    >>> import keras
    >>> from keras_flop.compat import learning_rate_of
    >>> schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, decay_steps=10)
    >>> learning_rate_of(keras.optimizers.Adam(schedule)) is schedule
    True
    """
    return optimizer._learning_rate


def op_determinism_enabled():
    """Whether `tf.config.experimental.enable_op_determinism()` is in force in this process.

    Example:
    >>> from keras_flop.compat import op_determinism_enabled
    >>> op_determinism_enabled()  # off unless a program turned it on
    False
    """
    from tensorflow.python.framework import config

    return bool(config.is_op_determinism_enabled())


def encoder_sublayers(layer):
    """`{name: sublayer}` of a keras-hub `TransformerEncoder`: its attention's query, key,
    value and output dense layers (`attention_query`, ...), its two layer norms and its FFN
    dense layers, under the names of `ENCODER_SUBLAYERS` (keras-hub keeps them private).

    Example:
    >>> import keras_hub
    >>> from keras_flop.compat import encoder_sublayers
    >>> encoder = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    >>> encoder.build((1, 4, 6))
    >>> sublayers = encoder_sublayers(encoder)
    >>> sorted(sublayers)
    ['attention_key', 'attention_layer_norm', 'attention_output', 'attention_query',
     'attention_value', 'intermediate', 'output', 'output_layer_norm']
    >>> tuple(sublayers["intermediate"].kernel.shape)
    (6, 8)
    """
    found = {name: getattr(layer, attr) for name, attr in ENCODER_SUBLAYERS.items()}
    attention = found.pop("attention")
    found.update({f"attention_{name}": getattr(attention, attr)
                  for name, attr in ATTENTION_SUBLAYERS.items()})
    return found


def keras_hub_gelu_approximate():
    """The function keras-hub's BERT and ELECTRA encoders use as their tanh GELU: reading a
    backbone's activation needs it, and keras-hub exports it under no public name
    (`keras.activations.gelu` is a different function object)."""
    from keras_hub.src.utils.keras_utils import gelu_approximate

    return gelu_approximate


@contextlib.contextmanager
def tf2onnx_without_pass(name):
    """tf2onnx's conversion without its optimizer pass `name` (restored on exit)."""
    from tf2onnx import optimizer

    passes = dict(optimizer._optimizers)
    optimizer._optimizers.pop(name, None)
    try:
        yield
    finally:
        optimizer._optimizers.clear()
        optimizer._optimizers.update(passes)


def missing_hooks():
    """One line per private API this module uses that the installed versions lack (empty
    when all are there); packages that are not installed (the optional tf2onnx) are
    skipped.

    Example:
    >>> from keras_flop.compat import missing_hooks
    >>> missing_hooks()  # with the versions pyproject.toml allows
    []
    """
    import importlib.util

    import keras

    missing = []
    trainer = keras.Model
    for method in KERAS_TRAINER_METHODS:
        if not callable(getattr(trainer, method, None)):
            missing.append(f"keras.Model.{method} (DistributedBuildMixin; keras "
                           f"{keras.__version__}, tested {TESTED['keras']})")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    for attribute in ("_distribute_strategy", "_loss_tracker"):
        if not hasattr(model, attribute):
            missing.append(f"keras.Model.{attribute} (keras {keras.__version__}, tested "
                           f"{TESTED['keras']})")
    if not hasattr(keras.optimizers.Adam(), "_learning_rate"):
        missing.append(f"keras.optimizers.Optimizer._learning_rate (learning_rate_of; keras "
                       f"{keras.__version__}, tested {TESTED['keras']})")
    try:
        from tensorflow.python.framework import config as tf_config
    except ImportError:  # the module itself moved: the hook is missing, not the check
        tf_config = None
    if not callable(getattr(tf_config, "is_op_determinism_enabled", None)):
        import tensorflow as tf

        missing.append(f"tensorflow.python.framework.config.is_op_determinism_enabled "
                       f"(op_determinism_enabled; tensorflow {tf.__version__}, tested "
                       f"{TESTED['tensorflow']})")
    if importlib.util.find_spec("keras_hub"):
        missing += _missing_keras_hub_sublayers()
    if importlib.util.find_spec("tf2onnx"):
        from tf2onnx import optimizer

        if not isinstance(getattr(optimizer, "_optimizers", None), dict):
            import tf2onnx

            missing.append(f"tf2onnx.optimizer._optimizers (tf2onnx_without_pass; tf2onnx "
                           f"{tf2onnx.__version__}, tested {TESTED['tf2onnx']})")
    return missing


def _missing_keras_hub_sublayers():
    import keras_hub

    layer = keras_hub.layers.TransformerEncoder(intermediate_dim=4, num_heads=1)
    layer.build((1, 2, 2))
    names = [f"TransformerEncoder.{attr}" for attr in ENCODER_SUBLAYERS.values()
             if not hasattr(layer, attr)]
    attention = getattr(layer, ENCODER_SUBLAYERS["attention"], None)
    if attention is not None:
        names += [f"TransformerEncoder.{ENCODER_SUBLAYERS['attention']}.{attr}"
                  for attr in ATTENTION_SUBLAYERS.values() if not hasattr(attention, attr)]
    missing = [f"keras_hub {name} (encoder_sublayers; keras-hub {keras_hub.__version__}, "
               f"tested {TESTED['keras-hub']})" for name in names]
    try:
        keras_hub_gelu_approximate()
    except ImportError:
        missing.append(f"keras_hub.src.utils.keras_utils.gelu_approximate "
                       f"(keras_hub_gelu_approximate; keras-hub {keras_hub.__version__}, tested "
                       f"{TESTED['keras-hub']})")
    return missing


def check_hooks():
    """Raises a RuntimeError naming every missing hook (see `missing_hooks`).

    Example:
    >>> from keras_flop.compat import check_hooks
    >>> check_hooks()  # silent with the versions pyproject.toml allows
    """
    missing = missing_hooks()
    if missing:
        raise RuntimeError("The installed TensorFlow, Keras, keras-hub or tf2onnx lacks what "
                           "keras-flop needs: " + "; ".join(missing) + ". Install the "
                           "versions pyproject.toml allows.")
