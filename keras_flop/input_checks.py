"""Checks of training and evaluation data at the door: one-line errors naming the argument,
instead of an empty history, an error from inside the graph (a label past the softmax) or an
`IndexError` (an unbatched example).

Nothing here runs through the data, and nothing draws a batch the training would not draw
itself: a pipeline may hand out another order each time it is iterated (a reshuffling
`shuffle`, `keras_flop.glue.make_dataset(training=True)`, which moves on an epoch per
iteration), so an extra look at its first batch would change the run. Instead:
- a `tf.data.Dataset` is checked from its element spec (unbatched features, no labels) and its
  known cardinality (empty), and its labels as the training draws them: `checked_dataset`
  adds a check of each batch's class ids to the pipeline (a comparison per batch), whose
  failure `call_with_checks` turns into a one-line `ValueError` at the first batch that
  has one; a dataset of unknown size that turns out empty is reported once `fit` or
  `evaluate` has found it so;
- arrays and a `keras.utils.PyDataset` (read by index, no state) are checked directly;
- code that iterates a dataset itself checks each batch it draws with `check_batch`.

`CheckedData` gives a model's `fit` and `evaluate` these checks (`BertClassifier`,
`PruningModel` and `Distiller` have it): `call_with_checks(super().fit, keras.Model.fit,
model_num_labels(self), *args, **kwargs)`.

Example:
>>> import numpy as np
>>> check_arrays({"token_ids": np.ones((2, 4), "int32")}, np.array([2, 5]), num_labels=2)
Traceback (most recent call last):
...
ValueError: `y`: labels must be class ids in [0, 2) for a 2-label model; its labels include 2, 5.
"""

import inspect
import re

import keras
import numpy as np

# How many offending label values an error lists.
_SHOWN = 5
# Names the assertion `checked_dataset` adds, so that `call_with_checks` knows its failure.
_MARKER = "keras_flop label check"
_FAILED = re.compile(re.escape(_MARKER) + r"\|([^|\]]*)\|(\d+)\] \[([^\]]*)\]")


def model_num_labels(model):
    """Number of outputs of `model`: a `BertClassifier`'s `num_labels`, or that of the
    network of a pruning model or the student of a `Distiller`; else the last dimension of the
    model's single output, or None when it has no such output."""
    for attribute in ("network", "student"):
        inner = getattr(model, attribute, None)
        if inner is not None and inner is not model:
            return model_num_labels(inner)
    num_labels = getattr(model, "num_labels", None)
    if isinstance(num_labels, int):
        return num_labels
    outputs = getattr(model, "outputs", None)
    try:
        if outputs and len(outputs) == 1 and outputs[0].shape[-1] is not None:
            return int(outputs[0].shape[-1])
    except (AttributeError, TypeError, ValueError, IndexError):
        pass
    return None


def _label_part(labels):
    """The class ids among a batch's targets: the targets, their `"labels"`, or the one value
    of a one-key dict; None when there is no telling."""
    if isinstance(labels, dict):
        if "labels" in labels:
            return labels["labels"]
        return next(iter(labels.values())) if len(labels) == 1 else None
    return labels


def _are_class_ids(shape, num_labels):
    """Whether targets of this shape are class ids to check against `num_labels`: not for a
    regressor (`num_labels` 1) nor one-hot targets (`[..., num_labels]`)."""
    if num_labels is None or num_labels < 2:
        return False
    shape = list(shape) if shape is not None else None
    return not (shape and len(shape) >= 2 and shape[-1] == num_labels)


def _range_message(argument, num_labels, where, values):
    return (f"`{argument}`: labels must be class ids in [0, {num_labels}) for a "
            f"{num_labels}-label model; {where} {values}.")


def check_labels(labels, num_labels, argument="y", where="the first batch has"):
    """Raises a `ValueError` unless `labels` (an array) are class ids in `[0, num_labels)`.

    Only class ids are checked: a regression model (`num_labels=1`) and one-hot labels
    (`[..., num_labels]`, for a categorical loss) are left alone.
    """
    labels = _label_part(labels)
    if labels is None:
        return
    values = np.asarray(labels)
    if not _are_class_ids(values.shape, num_labels):
        return
    if values.dtype == object or values.dtype.kind not in "biuf":
        raise ValueError(f"`{argument}`: labels must be class ids in [0, {num_labels}); "
                         f"{where} {values.dtype} labels.")
    values = values.reshape(-1)
    bad = (values < 0) | (values >= num_labels)
    if values.dtype.kind == "f":
        bad |= ~np.isfinite(values) | (np.floor(values) != values)
    if bad.any():
        shown = list(dict.fromkeys(_plain(v) for v in values[bad]))
        listed = ", ".join(shown[:_SHOWN]) + (", ..." if len(shown) > _SHOWN else "")
        raise ValueError(_range_message(argument, num_labels, where, listed))


def _plain(value):
    value = value.item()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _token_ids(features):
    return features.get("token_ids") if isinstance(features, dict) else None


def _check_batched(shape, argument):
    if shape is not None and len(shape) < 2:
        raise ValueError(f"`{argument}` yields unbatched examples (token_ids of shape "
                         f"{tuple(shape)}, expected [batch, seq]): batch it, e.g. "
                         "dataset.batch(32).")


def _split_element(element):
    """`(features, labels)` of one dataset element; labels None when it has none."""
    if isinstance(element, (tuple, list)):
        features = element[0] if element else None
        labels = element[1] if len(element) > 1 else None
        return features, labels
    return element, None


def _empty(argument):
    return ValueError(f"`{argument}` yielded no batches (an empty dataset): nothing to "
                      "train or evaluate on.")


def check_batch(batch, num_labels=None, argument="x", labels_needed=False):
    """Checks one batch drawn from a dataset, for code that iterates it itself: `(features,
    labels)`, the features batched, the labels class ids in `[0, num_labels)`."""
    import tensorflow as tf

    features, labels = _split_element(batch)
    if labels_needed and labels is None:
        raise ValueError(f"`{argument}` must yield `(features, labels)` batches; it yields "
                         f"{type(batch).__name__}.")
    ids = _token_ids(features)
    if ids is not None:
        _check_batched(np.shape(ids), argument)
    if labels is not None:
        check_labels(tf.nest.map_structure(np.asarray, labels), num_labels, argument=argument)


def check_spec(dataset, num_labels=None, argument="x", labels_needed=False):
    """What can be told of a `tf.data.Dataset` without iterating it: features batched (its
    element spec), labels present when `labels_needed`, not known to be empty."""
    features, labels = _split_element(dataset.element_spec)
    ids = _token_ids(features)
    if ids is not None and ids.shape.rank is not None:
        _check_batched(ids.shape.as_list(), argument)
    if labels_needed and labels is None:
        raise ValueError(f"`{argument}` must yield `(features, labels)` batches; its elements "
                         f"are {type(dataset.element_spec).__name__}.")
    if int(dataset.cardinality()) == 0:
        raise _empty(argument)


def checked_dataset(dataset, num_labels=None, argument="x", labels_needed=False):
    """`dataset` after `check_spec`, with a check of each batch's class ids added to the
    pipeline (labels outside `[0, num_labels)` fail the batch; `call_with_checks` reports
    it in one line). Anything but a `tf.data.Dataset` is returned as it is."""
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        return dataset
    check_spec(dataset, num_labels, argument, labels_needed)
    _, labels = _split_element(dataset.element_spec)
    spec = _label_part(labels)
    if not isinstance(spec, tf.TensorSpec) or not _are_class_ids(spec.shape, num_labels) or \
            not (spec.dtype.is_integer or spec.dtype.is_floating):
        return dataset
    tag = f"{_MARKER}|{argument}|{num_labels}"

    @tf.autograph.experimental.do_not_convert
    def check(*element):
        ids = _label_part(element[1])
        bad = (ids < 0) | (ids >= num_labels)
        if ids.dtype.is_floating:
            bad = bad | tf.not_equal(ids, tf.floor(ids))
        assertion = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)),
                                        [tag, tf.boolean_mask(ids, bad)], summarize=_SHOWN)
        with tf.control_dependencies([assertion]):
            return tf.nest.map_structure(tf.identity, element)

    return dataset.map(check)


def label_error(error):
    """The one-line `ValueError` of a failed `checked_dataset` check in `error` (a
    `tf.errors.InvalidArgumentError`), or None for any other error."""
    found = _FAILED.search(str(error))
    if found is None:
        return None
    argument, num_labels, values = found.groups()
    values = ", ".join(dict.fromkeys(values.replace("...", "").split())) or "?"
    return ValueError(_range_message(argument, int(num_labels), "a batch has", values))


def check_arrays(x, y=None, num_labels=None, argument="x", labels_argument="y"):
    """Checks in-memory data: `x` a dict of arrays or an array with labels `y` (not empty,
    labels in range, all of them), or a `keras.utils.PyDataset` (not empty; its first batch,
    read by index). Anything else (a dataset, a generator) is left alone."""
    if isinstance(x, keras.utils.PyDataset):
        try:
            count = x.num_batches
        except NotImplementedError:
            return
        if count == 0:
            raise _empty(argument)
        if count is not None:
            check_batch(x[0], num_labels, argument)
        return
    arrays = list(x.values()) if isinstance(x, dict) else [x]
    if x is None or not all(hasattr(a, "shape") or isinstance(a, (list, tuple))
                            for a in arrays):
        return
    if any(len(a) == 0 for a in arrays):
        raise ValueError(f"`{argument}` holds no examples: nothing to train or evaluate on.")
    if y is not None:
        check_labels(y, num_labels, argument=labels_argument, where="its labels include")


def _checked(value, label_values, num_labels, argument, labels_argument):
    check_arrays(value, label_values, num_labels, argument, labels_argument)
    return checked_dataset(value, num_labels, argument)


def call_with_checks(method, unbound, num_labels, *args, **kwargs):
    """`method(*args, **kwargs)` (a model's `fit` or `evaluate`, bound, e.g. `super().fit`;
    `unbound` is `keras.Model.fit` or `keras.Model.evaluate`, whose signature names the
    arguments) with its data checked: `checked_dataset` or `check_arrays` of `x` and of
    `validation_data`, a failed batch check as a one-line `ValueError`, and a dataset that
    yielded no batches as one too."""
    import tensorflow as tf

    try:
        bound = inspect.signature(unbound).bind(None, *args, **kwargs)
    except TypeError:
        return method(*args, **kwargs)  # Keras reports a wrong call itself
    arguments = bound.arguments
    arguments["x"] = _checked(arguments.get("x"), arguments.get("y"), num_labels, "x", "y")
    validation = arguments.get("validation_data")
    if isinstance(validation, (tuple, list)):
        arguments["validation_data"] = (
            _checked(validation[0], validation[1] if len(validation) > 1 else None,
                     num_labels, "validation_data", "validation_data"), *validation[1:])
    elif validation is not None:
        arguments["validation_data"] = _checked(validation, None, num_labels,
                                                "validation_data", "validation_data")
    try:
        result = method(*bound.args[1:], **bound.kwargs)
    except tf.errors.InvalidArgumentError as error:
        replacement = label_error(error)
        if replacement is None:
            raise
        raise replacement from None
    if _ran_nothing(unbound, arguments, result):
        raise _empty("x")
    return result


def _ran_nothing(unbound, arguments, result):
    """Whether `fit` or `evaluate` found its data empty: no logs, though there was work."""
    if getattr(unbound, "__name__", "") == "fit":
        epochs = arguments.get("epochs", 1)
        wanted = epochs > arguments.get("initial_epoch", 0)
        return wanted and not getattr(result, "history", True)
    return result is not None and len(result) == 0 if isinstance(result, (list, dict)) \
        else False


def check_task_data(model, data):
    """Raises a `ValueError` unless `model` can be trained on the `TaskData` `data`: some
    training examples, and as many outputs as the task has labels (1 for a regression)."""
    if not data.train:
        raise ValueError(f"`data` has no training examples for {data.task.name}: nothing to "
                         "train on.")
    num_labels = model_num_labels(model)
    if num_labels is not None and num_labels != data.task.num_labels:
        what = "a regression (1 output)" if data.task.is_regression else \
            f"{data.task.num_labels} labels"
        raise ValueError(f"`model` {getattr(model, 'name', '')!r} has {num_labels} outputs, "
                         f"but task {data.task.name} has {what}: build or load the model "
                         f"with num_labels={data.task.num_labels}.")


class CheckedData:
    """A mixin of a `keras.Model` whose `fit` and `evaluate` check their data at the door
    (`call_with_checks`, against `model_num_labels(self)`): an empty or unbatched dataset, or
    class ids outside `[0, num_labels)` (at the first batch that has one), is a one-line
    `ValueError` naming the argument."""

    def fit(self, *args, **kwargs):
        """`keras.Model.fit` with its data checked (see the class)."""
        return call_with_checks(super().fit, keras.Model.fit, model_num_labels(self), *args,
                                **kwargs)

    def evaluate(self, *args, **kwargs):
        """`keras.Model.evaluate` with its data checked as `fit`'s."""
        return call_with_checks(super().evaluate, keras.Model.evaluate,
                                model_num_labels(self), *args, **kwargs)
