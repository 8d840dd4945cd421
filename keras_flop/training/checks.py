"""Checks of training and evaluation data at the door: one-line errors naming the argument,
raised before Keras traces a step, instead of an empty history or an error from inside the
graph (a label past the softmax, an unbatched example).

`check_data(x, y, num_labels)` looks at what `fit` or `evaluate` would see first and nothing
more: a `tf.data.Dataset`'s element spec and its first batch (the pipeline is started once for
one batch, never run through), a `keras.utils.PyDataset`'s first batch, or in-memory arrays.
Python generators are not looked at (their first batch cannot be read without consuming it).

`model_num_labels(model)` gives the number of outputs of a `BertClassifier`, a pruning model,
a `Distiller` (its student) or any one-output Keras model, so that a trainer's `fit` calls
`check_data(x, y, model_num_labels(self), ...)` first.

Example:
>>> import numpy as np
>>> check_data({"token_ids": np.ones((2, 4), "int32")}, np.array([2, 5]), num_labels=2)
Traceback (most recent call last):
...
ValueError: `y`: labels must be class ids in [0, 2) for a 2-label model; its labels include 2, 5.
"""

import inspect

import numpy as np

# How many offending label values an error lists.
_SHOWN = 5


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


def check_labels(labels, num_labels, argument="y", where="the first batch has"):
    """Raises a `ValueError` unless `labels` are class ids in `[0, num_labels)`.

    Only class ids are checked: a regression model (`num_labels=1`) and one-hot labels
    (`[..., num_labels]`, for a categorical loss) are left alone.
    """
    if num_labels is None or num_labels < 2 or labels is None:
        return
    if isinstance(labels, dict):
        if len(labels) != 1:
            return
        labels = next(iter(labels.values()))
    values = np.asarray(labels)
    if values.ndim >= 2 and values.shape[-1] == num_labels:
        return  # one-hot or probabilities: a categorical loss
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
        raise ValueError(f"`{argument}`: labels must be class ids in [0, {num_labels}) for a "
                         f"{num_labels}-label model; {where} {listed}.")


def _plain(value):
    value = value.item()
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _token_ids(features):
    if isinstance(features, dict):
        return features.get("token_ids")
    return None


def _check_batched(token_ids_shape, argument, what):
    rank = len(token_ids_shape) if token_ids_shape is not None else None
    if rank is not None and rank < 2:
        raise ValueError(f"`{argument}` yields unbatched examples ({what} of shape "
                         f"{tuple(token_ids_shape)}, expected [batch, seq]): batch it, e.g. "
                         "dataset.batch(32).")


def _split_element(element):
    """`(features, labels)` of one dataset element; labels None when it has none."""
    if isinstance(element, (tuple, list)):
        features = element[0] if element else None
        labels = element[1] if len(element) > 1 else None
        return features, labels
    return element, None


def check_dataset(dataset, num_labels=None, argument="x", labels_needed=False):
    """Checks a `tf.data.Dataset` of `(features, labels)` batches: not unbatched (from its
    element spec), not empty and with class ids in range (from its first batch).

    Args:
        dataset: the dataset; anything else is left alone.
        num_labels: the model's number of outputs (labels are not checked when None or 1).
        argument: the argument's name in the messages.
        labels_needed: an element without labels is an error too.
    """
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        return
    features, labels = _split_element(dataset.element_spec)
    token_ids = _token_ids(features)
    if token_ids is not None and token_ids.shape.rank is not None:
        _check_batched(token_ids.shape.as_list(), argument, "token_ids")
    if labels_needed and labels is None:
        raise ValueError(f"`{argument}` must yield `(features, labels)` batches; its elements "
                         f"are {type(dataset.element_spec).__name__}.")
    if int(dataset.cardinality()) == 0:
        raise _empty(argument)
    first = None
    for first in dataset.take(1):
        pass
    if first is None:
        raise _empty(argument)
    _, first_labels = _split_element(first)
    if first_labels is not None:
        check_labels(tf.nest.map_structure(np.asarray, first_labels), num_labels,
                     argument=argument)


def _empty(argument):
    return ValueError(f"`{argument}` yielded no batches (an empty dataset): nothing to "
                      "train or evaluate on.")


def check_data(x, y=None, num_labels=None, argument="x", labels_argument="y"):
    """Checks what `fit` or `evaluate` is given, as far as it can be seen without running
    through it: a `tf.data.Dataset` (`check_dataset`), a `keras.utils.PyDataset` (its first
    batch), or arrays (`x` a dict of arrays or an array, `y` the labels: not empty, labels in
    range). Python generators and distributed datasets are left alone."""
    import keras
    import tensorflow as tf

    if isinstance(x, tf.data.Dataset):
        check_dataset(x, num_labels, argument)
        return
    if isinstance(x, keras.utils.PyDataset):
        try:
            count = x.num_batches
        except NotImplementedError:
            return
        if count == 0:
            raise _empty(argument)
        if count is not None:
            features, labels = _split_element(x[0])
            ids = _token_ids(features)
            if ids is not None:
                _check_batched(np.shape(ids), argument, "token_ids")
            check_labels(labels, num_labels, argument=argument)
        return
    arrays = list(x.values()) if isinstance(x, dict) else [x]
    if x is None or not all(hasattr(a, "shape") or isinstance(a, (list, tuple))
                            for a in arrays):
        return  # a generator, a distributed dataset, or something Keras itself refuses
    if any(len(a) == 0 for a in arrays):
        raise ValueError(f"`{argument}` holds no examples: nothing to train or evaluate on.")
    if y is not None:
        check_labels(y, num_labels, argument=labels_argument, where="its labels include")


def check_fit_arguments(num_labels, fit, *args, **kwargs):
    """`check_data` of the training data and of `validation_data` of a call
    `fit(*args, **kwargs)` (`keras.Model.fit` or `evaluate`, unbound: `self` not in `args`)."""
    try:
        bound = inspect.signature(fit).bind(None, *args, **kwargs).arguments
    except TypeError:
        return  # Keras reports a wrong call itself
    check_data(bound.get("x"), bound.get("y"), num_labels)
    validation = bound.get("validation_data")
    if validation is None:
        return
    if isinstance(validation, (tuple, list)):
        check_data(validation[0], validation[1] if len(validation) > 1 else None, num_labels,
                   argument="validation_data", labels_argument="validation_data")
    else:
        check_data(validation, None, num_labels, argument="validation_data")


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
