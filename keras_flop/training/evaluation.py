"""Dev metrics and loss of a model on a task's evaluation splits."""

import time

import numpy as np


def metrics_and_loss(task, outputs, labels):
    """The task's dev metrics (`eval_*`) and `eval_loss` of `outputs` against `labels`.

    `outputs` are the model's logits `[n, num_labels]` (`[n, 1]` scores for STS-B), `labels`
    the class ids or scores `[n]`.

    Example:
    >>> import numpy as np
    >>> from keras_flop.training.evaluation import metrics_and_loss
    >>> logits = np.array([[2.0, -1.0], [0.5, 1.5], [1.0, 0.0]])
    >>> metrics = metrics_and_loss("sst2", logits, np.array([0, 1, 1]))
    >>> {name: round(value, 3) for name, value in metrics.items()}
    {'eval_accuracy': 0.667, 'eval_score': 0.667, 'eval_loss': 0.558}
    >>> scores = np.array([[1.0], [2.5], [4.0]])
    >>> metrics = metrics_and_loss("stsb", scores, np.array([1.5, 2.0, 4.5]))
    >>> {name: round(value, 3) for name, value in metrics.items()}
    {'eval_pearson': 0.933, 'eval_spearman': 1.0, 'eval_score': 0.933, 'eval_loss': 0.25}
    """
    from keras_flop import glue

    import keras

    metrics = glue.compute_metrics(task, outputs, labels)
    # The per-example losses, averaged here: a Keras loss object divides its result by the
    # replica count under a tf.distribute strategy (for summing across replicas).
    if glue.get_task(task).is_regression:
        losses = keras.losses.mean_squared_error(labels.reshape(-1, 1), outputs)
    else:
        losses = keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)
    metrics["eval_loss"] = float(np.mean(np.asarray(losses)))
    return metrics


def evaluate(model, data, batch_size):
    """Dev metrics, loss and time of every eval split: `{split: {eval_*: ...}}`."""
    results = {}
    for split in data.evals:
        dataset = data.eval_dataset(split, batch_size)
        labels = np.concatenate([np.asarray(y) for _, y in dataset])
        start = time.perf_counter()
        outputs = model.predict(dataset.map(lambda x, y: x), verbose=0)
        seconds = time.perf_counter() - start
        metrics = metrics_and_loss(data.task, outputs, labels)
        metrics["eval_time"] = seconds
        metrics["eval_examples"] = len(labels)
        results[split] = metrics
    return results
