"""GLUE metrics, as the benchmark defines them, over the whole evaluation set."""

import numpy as np

from keras_flop.glue.tasks import get_task


def accuracy(labels, predictions):
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def f1_positive(labels, predictions, positive=1):
    """F1 of the positive class (MRPC, QQP); 0 when nothing is predicted or labeled positive."""
    labels, predictions = np.asarray(labels) == positive, np.asarray(predictions) == positive
    true_positive = np.sum(labels & predictions)
    if true_positive == 0:
        return 0.0
    precision = true_positive / np.sum(predictions)
    recall = true_positive / np.sum(labels)
    return float(2 * precision * recall / (precision + recall))


def matthews_corrcoef(labels, predictions):
    """Matthews correlation of binary labels (CoLA); 0 when a marginal is constant."""
    labels, predictions = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
    tp = float(np.sum(labels & predictions))
    tn = float(np.sum(~labels & ~predictions))
    fp = float(np.sum(~labels & predictions))
    fn = float(np.sum(labels & ~predictions))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def average_ranks(values):
    """Ranks 1..n, ties sharing their average rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x, y):
    """Spearman correlation over the whole set (STS-B)."""
    return pearson(average_ranks(x), average_ranks(y))


def predicted_labels(task, outputs):
    """Class ids (argmax of logits) or scores (regression) from model outputs."""
    outputs = np.asarray(outputs)
    if get_task(task).is_regression:
        return outputs.reshape(-1)
    return outputs.argmax(-1)


def compute_metrics(task, outputs, labels):
    """`{"eval_accuracy": ..., "eval_f1": ..., "eval_mcc": ..., "eval_pearson": ...,
    "eval_spearman": ...}` as the task defines them, plus `eval_score` (its main metric).

    `outputs`: logits `[n, num_labels]` or scores `[n]`/`[n, 1]`; `labels`: class ids or scores.

    Example:
    >>> compute_metrics("mrpc", [[0.1, 0.9], [0.8, 0.2]], [1, 1])["eval_f1"]
    0.6666666666666666
    """
    task = get_task(task)
    predictions = predicted_labels(task, outputs)
    labels = np.asarray(labels).reshape(-1)
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels.")
    functions = {"accuracy": accuracy, "f1": f1_positive, "mcc": matthews_corrcoef,
                 "pearson": pearson, "spearman": spearman}
    results = {f"eval_{name}": functions[name](labels, predictions) for name in task.metrics}
    results["eval_score"] = results[f"eval_{task.main_metric}"]
    return results
