"""GLUE examples as `tf.data` pipelines: `keras_flop.BertPreprocessor` mapped over them."""

import os

import numpy as np
import tensorflow as tf

from keras_flop.glue.tasks import get_task


def label_ids(task, examples):
    """Class ids (int32) or scores (float32) of labeled examples."""
    task = get_task(task)
    if task.is_regression:
        return np.array([example.label for example in examples], np.float32)
    index = {name: i for i, name in enumerate(task.labels)}
    return np.array([index[example.label] for example in examples], np.int32)


def _encoded(examples, task, preprocessor, labeled):
    """Examples tokenized once (parallel `map` over batches of 256), unbatched and cached."""
    if not examples:
        raise ValueError("No examples to make a dataset from.")
    columns = {"text_a": [e.text_a for e in examples]}
    if examples[0].text_b is not None:
        columns["text_b"] = [e.text_b for e in examples]
    if labeled:
        columns["label"] = label_ids(task, examples)

    def encode(batch):
        features = preprocessor(batch["text_a"], batch.get("text_b"))
        return (features, batch["label"]) if labeled else features

    dataset = tf.data.Dataset.from_tensor_slices(columns).batch(256)
    dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE).unbatch().cache()
    # `unbatch` forgets the length; restated, `fit` knows each epoch's step count.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(examples)))


def make_dataset(examples, task, preprocessor, batch_size, training=False, seed=0,
                 labeled=True):
    """A `tf.data.Dataset` of `(features, labels)` batches (features only if not `labeled`).

    Tokenization runs once in parallel `map`s and is cached; training data is reshuffled each
    epoch with `seed`; batches are prefetched.
    """
    dataset = _encoded(examples, task, preprocessor, labeled)
    if training:
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_training_stream(examples, task, preprocessor, batch_size, seed, total_steps,
                         start_step=0):
    """The batches of steps `start_step .. total_steps - 1` of a training run.

    Epoch `e` is shuffled with a seed derived from `(seed, e)` alone, so a run resumed at any
    step sees exactly the batches an uninterrupted run would have seen.
    """
    if not 0 <= start_step < total_steps:
        raise ValueError(f"Need 0 <= start_step < total_steps; got start_step={start_step}, "
                         f"total_steps={total_steps}.")
    dataset = _encoded(examples, task, preprocessor, labeled=True)
    per_epoch = -(-len(examples) // batch_size)
    epochs = -(-total_steps // per_epoch)
    first = start_step // per_epoch  # earlier epochs are skipped whole
    stream = None
    for e in range(first, epochs):
        batches = dataset.shuffle(len(examples), seed=seed * 1_000_003 + e).batch(batch_size)
        stream = batches if stream is None else stream.concatenate(batches)
    start_step -= first * per_epoch
    total_steps -= first * per_epoch
    return stream.skip(start_step).take(total_steps - start_step).prefetch(tf.data.AUTOTUNE)


def write_test_predictions(path, task, examples, outputs):
    """GLUE submission file: `index\\tprediction`, class names, or STS-B scores in [0, 5]."""
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
