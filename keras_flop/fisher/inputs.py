"""What retraining-free pruning takes: the fine-tuned dense model, and a sample of the task.

`dense_network` checks the model (every step of the method reads the dense encoder's own
layers); `sample_batches` takes the first examples of the training data, the sample on which
the Fisher scores are estimated and the masks tuned.
"""

from keras import ops

from keras_flop.models.bert import bert_network


def dense_network(model):
    """The dense `BertClassifier` of `model`; an error saying what to pass for any other."""
    network = bert_network(model)
    if not network.is_dense():
        raise ValueError(
            f"Model {network.name!r} has gates or factorized layers: post-training pruning "
            "takes the fine-tuned dense BertClassifier (the model before keras_flop.factorize).")
    return network


def sample_batches(dataset, num_samples):
    """`(features, labels)` batches from `dataset` holding `num_samples` examples in all.

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
    """
    batches, count = [], 0
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("`dataset` must yield `(features, labels)` batches (labels are "
                             "needed for the Fisher information), e.g. "
                             "keras_flop.glue.make_dataset(...).")
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
        raise ValueError("`dataset` yielded no batches.")
    return batches
