"""What retraining-free pruning takes: the fine-tuned dense model, and a sample of the task.

`dense_network` checks the model (every step of the method reads the dense encoder's own
layers); `sample_batches` takes the first examples of the training data, the sample on which
the Fisher scores are estimated and the masks tuned.
"""

from keras import ops

from keras_flop.models.bert import bert_network
from keras_flop.input_checks import check_batch, check_spec


def dense_network(model):
    """The dense `BertClassifier` of `model`; an error saying what to pass for any other."""
    network = bert_network(model)
    if not network.is_dense():
        raise ValueError(
            f"Model {network.name!r} has gates or factorized layers: post-training pruning "
            "takes the fine-tuned dense BertClassifier (the model before keras_flop.factorize).")
    return network


def sample_batches(dataset, num_samples, num_labels=None):
    """`(features, labels)` batches from `dataset` holding `num_samples` examples in all,
    each checked as it is drawn (`keras_flop.input_checks`): batched, with labels, class
    ids in `[0, num_labels)`; a `tf.data.Dataset` from its spec first (unbatched, empty).

    Example:
    >>> import numpy as np
    >>> x = {"token_ids": np.ones((4, 3), "int32"), "segment_ids": np.zeros((4, 3), "int32"),
    ...      "padding_mask": np.ones((4, 3), bool)}
    >>> batches = sample_batches([(x, np.arange(4))] * 3, num_samples=6)
    >>> [labels.tolist() for _, labels in batches]
    [[0, 1, 2, 3], [0, 1]]
    >>> sample_batches([x], num_samples=6)
    Traceback (most recent call last):
    ...
    ValueError: `dataset` must yield `(features, labels)` batches (labels are needed for the
    Fisher information), e.g. keras_flop.glue.make_dataset(...).
    >>> sample_batches([(x, np.arange(4))], num_samples=6, num_labels=2)
    Traceback (most recent call last):
    ...
    ValueError: `dataset`: labels must be class ids in [0, 2) for a 2-label model; the first
    batch has 2, 3.
    """
    import tensorflow as tf

    if isinstance(dataset, tf.data.Dataset):
        check_spec(dataset, num_labels, argument="dataset")
    batches, count = [], 0
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("`dataset` must yield `(features, labels)` batches (labels are "
                             "needed for the Fisher information), e.g. "
                             "keras_flop.glue.make_dataset(...).")
        check_batch(batch, num_labels, argument="dataset")
        features, labels = batch[0], batch[1]
        if isinstance(labels, dict):
            labels = labels["labels"]
        take = min(num_samples - count, int(ops.shape(labels)[0]))
        features = {name: features[name][:take] for name in
                    ("token_ids", "segment_ids", "padding_mask")}
        batches.append((features, labels[:take]))
        count += take
        if count >= num_samples:
            break
    if not batches:
        raise ValueError("`dataset` yielded no batches (an empty dataset): nothing to "
                         "estimate the Fisher information on.")
    return batches
