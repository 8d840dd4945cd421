"""GLUE examples as `tf.data` pipelines: `keras_flop.BertPreprocessor` mapped over them."""

import os

import numpy as np
import tensorflow as tf

from keras_flop.glue import batching
from keras_flop.glue.tasks import get_task


def label_ids(task, examples):
    """Class ids (int32) or scores (float32) of labeled examples.

    Example:
    >>> from keras_flop.glue import Example
    >>> from keras_flop.glue.preprocessing import label_ids
    >>> label_ids("rte", [Example("0", "a", "b", "not_entailment"),
    ...                   Example("1", "c", "d", "entailment")])  # the task's label order
    array([1, 0], dtype=int32)
    >>> label_ids("stsb", [Example("0", "a", "b", 3.5)])
    array([3.5], dtype=float32)
    """
    task = get_task(task)
    if task.is_regression:
        return np.array([example.label for example in examples], np.float32)
    index = {name: i for i, name in enumerate(task.labels)}
    return np.array([index[example.label] for example in examples], np.int32)


def tokenize_examples(examples, task, preprocessor, labeled=True, pad_to_max_length=False,
                      boundaries=None, extra_targets=None):
    """Examples tokenized and packed once (parallel `map`s over chunks of 1,024), held as a
    `keras_flop.glue.batching.TokenizedExamples` to batch from.

    Args:
        pad_to_max_length: pad every batch to `preprocessor.max_seq_length` (fixed shapes).
        boundaries: bucket boundaries; default `batching.default_boundaries`.
        extra_targets: dict of arrays `[n, ...]` travelling with the labels (then the second
            element of each batch is `{"labels": ..., **extra_targets}`).
    """
    if not examples:
        raise ValueError("No examples to make a dataset from.")
    columns = {"text_a": [e.text_a for e in examples]}
    if examples[0].text_b is not None:
        columns["text_b"] = [e.text_b for e in examples]
    pack = preprocessor.traced_pack(pairs="text_b" in columns)
    chunks = tf.data.Dataset.from_tensor_slices(columns).batch(1024).map(
        lambda batch: pack(*(batch[name] for name in ("text_a", "text_b") if name in batch)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    token_ids, segment_ids = zip(*chunks)
    targets = label_ids(task, examples) if labeled else None
    if extra_targets:
        targets = {"labels": targets, **extra_targets}
    boundaries = batching.check_boundaries(
        boundaries or batching.default_boundaries(preprocessor.max_seq_length),
        preprocessor.max_seq_length)
    return batching.TokenizedExamples(
        tf.concat(token_ids, axis=0), tf.concat(segment_ids, axis=0), targets, boundaries,
        pad_to_max_length=pad_to_max_length, pad_id=preprocessor.tokenizer.pad_id)


def make_dataset(examples, task, preprocessor, batch_size, training=False, seed=0,
                 labeled=True, pad_to_max_length=False, boundaries=None):
    """A `tf.data.Dataset` of `(features, labels)` batches (features only if not `labeled`).

    Batches are length-bucketed (`keras_flop.glue.batching`): training batches group examples of
    similar length and are reshuffled each epoch from `seed`; labeled evaluation batches come
    in length order with their labels; unlabeled (prediction) batches keep the examples'
    order, so `model.predict` answers line up with `examples`. Each batch is padded to the
    smallest bucket boundary that fits it, or to `max_seq_length` with `pad_to_max_length`.
    `examples` may also be a `TokenizedExamples` from `tokenize_examples`.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_flop.glue.batching import TokenizedExamples
    >>> token_ids = tf.ragged.constant([[2, 5, 6, 7, 8, 9, 10, 11, 12, 3], [2, 5, 3],
    ...                                 [2, 6, 3]], tf.int32)  # as tokenize_examples packs them
    >>> tokenized = TokenizedExamples(token_ids, tf.zeros_like(token_ids),
    ...                               targets=np.array([1, 0, 0]), boundaries=[8, 16])
    >>> from keras_flop.glue import make_dataset
    >>> for features, labels in make_dataset(tokenized, "sst2", None, batch_size=2):
    ...     print(tuple(features["token_ids"].shape), labels.numpy())  # in length order
    (2, 8) [0 0]
    (1, 16) [1]
    >>> test = TokenizedExamples(token_ids, tf.zeros_like(token_ids), boundaries=[8, 16])
    >>> for features in make_dataset(test, "sst2", None, batch_size=2, labeled=False):
    ...     print(features["padding_mask"].numpy().sum(axis=1))  # in the examples' order
    [10  3]
    [3]
    """
    if not isinstance(examples, batching.TokenizedExamples):
        examples = tokenize_examples(examples, task, preprocessor, labeled, pad_to_max_length,
                                     boundaries)
    if training:
        return examples.shuffled_epochs(batch_size, seed)
    return examples.dataset(batching.ordered_plan(examples.lengths, batch_size,
                                                  by_length=labeled))


def make_training_stream(examples, task, preprocessor, batch_size, seed, total_steps,
                         start_step=0, pad_to_max_length=False, boundaries=None):
    """The batches of steps `start_step .. total_steps - 1` of a training run.

    Epoch `e`'s batches depend on `(seed, e)` and the lengths alone
    (`keras_flop.glue.batching.epoch_plan`), so a run resumed at any step sees exactly the batches
    an uninterrupted run would have seen. `examples` may be a `TokenizedExamples`.

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from keras_flop.glue.batching import TokenizedExamples
    >>> token_ids = tf.ragged.constant([[2, 5, 6, 7, 8, 9, 10, 11, 12, 3], [2, 5, 3],
    ...                                 [2, 6, 3]], tf.int32)  # as tokenize_examples packs them
    >>> tokenized = TokenizedExamples(token_ids, tf.zeros_like(token_ids),
    ...                               targets=np.array([1, 0, 0]), boundaries=[8, 16])
    >>> from keras_flop.glue import make_training_stream
    >>> def lengths(start_step):  # steps start_step..4 of a run of 5, one example a step
    ...     stream = make_training_stream(tokenized, "sst2", None, batch_size=1, seed=0,
    ...                                   total_steps=5, start_step=start_step)
    ...     return [int(features["padding_mask"].numpy().sum()) for features, _ in stream]
    >>> whole = lengths(0)
    >>> sorted(whole[:3]), len(whole)  # an epoch sees every example once
    ([3, 3, 10], 5)
    >>> lengths(3) == whole[3:]  # a resumed run sees the batches it would have seen
    True
    """
    if not 0 <= start_step < total_steps:
        raise ValueError(f"Need 0 <= start_step < total_steps; got start_step={start_step}, "
                         f"total_steps={total_steps}.")
    if not isinstance(examples, batching.TokenizedExamples):
        examples = tokenize_examples(examples, task, preprocessor, True, pad_to_max_length,
                                     boundaries)
    per_epoch = -(-len(examples) // batch_size)
    plan = []
    for epoch in range(start_step // per_epoch, -(-total_steps // per_epoch)):
        first = epoch * per_epoch
        batches = batching.epoch_plan(examples.lengths, batch_size, seed, epoch,
                                      by_length=not examples.pad_to_max_length)
        plan += batches[max(0, start_step - first):total_steps - first]
    return examples.dataset(plan)


def write_test_predictions(path, task, examples, outputs):
    """GLUE submission file: `index\\tprediction`, class names, or STS-B scores in [0, 5].

    Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from keras_flop.glue import Example, write_test_predictions
    >>> examples = [Example("0", "a", "b"), Example("1", "c", "d")]
    >>> path = os.path.join(tempfile.mkdtemp(), "RTE.tsv")
    >>> path = write_test_predictions(path, "rte", examples, np.array([[0.1, 0.9], [2.0, -1.0]]))
    >>> print(open(path).read().replace("\\t", " "))
    index prediction
    0 not_entailment
    1 entailment
    <BLANKLINE>
    """
    task = get_task(task)
    outputs = np.asarray(outputs)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        if task.is_regression:
            for example, score in zip(examples, np.clip(outputs.reshape(-1), 0.0, 5.0)):
                f.write(f"{example.guid}\t{score:.3f}\n")
        else:
            for example, label in zip(examples, outputs.argmax(-1)):
                f.write(f"{example.guid}\t{task.labels[label]}\n")
    os.replace(path + ".tmp", path)
    return path
