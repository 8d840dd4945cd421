"""One worker of `test_multi_worker.py`'s sharding test: which example ids this worker trains
and predicts on, through the apps' own pipelines, under MultiWorkerMirroredStrategy.

    TF_CONFIG=... python tests/multi_worker_ids.py OUTPUT.json

Every example carries its id as a feature; the model records, through `tf.py_function`, the
ids of every batch it is called on in this worker, and predicts the id itself, so that the
gathered predictions show the order and coverage of the whole dev set.
"""

import json
import sys

import numpy as np
import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other TensorFlow op

import keras  # noqa: E402

from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from keras_flop import glue
from keras_flop.glue import batching  # noqa: E402
from keras_flop.compat import DistributedBuildMixin  # noqa: E402

TRAIN, DEV, BATCH, EPOCHS = 96, 37, 16, 2  # an odd dev set: its last batch splits unevenly
seen = {"train": [], "predict": []}


class IdModel(DistributedBuildMixin, keras.Model):
    """Logits that are the example id (class 0) and 0; records the ids it is called on."""

    def __init__(self):
        super().__init__()
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, inputs, training=False):
        ids = inputs["example_id"]
        phase = "train" if training else "predict"
        record = tf.py_function(lambda i: seen[phase].extend(i.numpy().tolist()) or 0, [ids],
                                tf.int32)
        with tf.control_dependencies([record]):
            value = tf.cast(ids, tf.float32)[:, None] * self.scale
        return tf.concat([value, tf.zeros_like(value)], axis=1)


def examples(count, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 30, count)
    token_ids = tf.ragged.constant([[2] + [5] * (n - 2) + [3] for n in lengths], tf.int32)
    labels = np.zeros(count, np.int32)
    return batching.TokenizedExamples(token_ids, tf.zeros_like(token_ids), labels,
                                      batching.default_boundaries(32),
                                      extra_features={"example_id": np.arange(count)})


def main(output):
    train, dev = examples(TRAIN, 0), examples(DEV, 1)
    with strategy.scope():
        model = IdModel()
        model.compile(optimizer=keras.optimizers.SGD(0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    per_epoch = -(-TRAIN // BATCH)
    # The pruning step's stream (steps_per_epoch), then the fine-tuning steps' epochs.
    stream = training_data.for_strategy(glue.make_training_stream(
        train, "sst2", None, BATCH, 0, per_epoch * EPOCHS))
    model.fit(stream, epochs=EPOCHS, steps_per_epoch=per_epoch, verbose=0, shuffle=False)
    stream_ids, seen["train"] = seen["train"], []
    model.fit(training_data.for_strategy(train.shuffled_epochs(BATCH, 0)), epochs=EPOCHS,
              verbose=0, shuffle=False)
    epoch_ids, seen["train"] = seen["train"], []
    dataset = training_data.for_strategy(glue.make_dataset(dev, "sst2", None, 8))
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    outputs = model.predict(dataset.map(lambda x, y: x), verbose=0)
    order = np.concatenate(batching.ordered_plan(dev.lengths, 8))
    metrics = evaluation.metrics_and_loss("sst2", outputs, labels)
    with open(output, "w", encoding="utf-8") as f:
        json.dump({"stream": stream_ids, "fine_tuning": epoch_ids, "predicted_on": seen["predict"],
                   "predictions": np.asarray(outputs)[:, 0].round().astype(int).tolist(),
                   "dev_order": order.tolist(), "eval_examples": len(labels),
                   "eval_loss": metrics["eval_loss"], "per_epoch": per_epoch,
                   "train": TRAIN, "dev": DEV, "epochs": EPOCHS}, f)


if __name__ == "__main__":
    main(sys.argv[1])
