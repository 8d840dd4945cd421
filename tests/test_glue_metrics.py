"""GLUE metrics against independent computations."""

import itertools
import math

import numpy as np
import pytest

from keras_flop.glue import compute_metrics
from keras_flop.glue.metrics import average_ranks


def _counts(labels, predictions):
    pairs = list(zip(labels, predictions))
    return (pairs.count((1, 1)), pairs.count((0, 0)), pairs.count((0, 1)), pairs.count((1, 0)))


def _slow_pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def _slow_ranks(values):
    # rank = 1 + (number smaller) + (number equal - 1) / 2
    return [1 + sum(v < w for v in values) + (sum(v == w for v in values) - 1) / 2
            for w in values]


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_confusion_matrix_formulas(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200)
    logits = rng.normal(size=(200, 2)) + 0.8 * np.eye(2)[labels]
    predictions = logits.argmax(-1)
    tp, tn, fp, fn = _counts(labels.tolist(), predictions.tolist())
    mrpc = compute_metrics("mrpc", logits, labels)
    assert mrpc["eval_accuracy"] == pytest.approx((tp + tn) / 200)
    assert mrpc["eval_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert mrpc["eval_score"] == mrpc["eval_f1"]
    cola = compute_metrics("cola", logits, labels)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert cola["eval_mcc"] == pytest.approx(mcc)
    assert set(compute_metrics("mnli", rng.normal(size=(200, 3)), rng.integers(0, 3, 200))) \
        == {"eval_accuracy", "eval_score"}


def test_degenerate_cases():
    assert compute_metrics("cola", [[1, 0]] * 4, [0, 1, 0, 1])["eval_mcc"] == 0.0
    assert compute_metrics("qqp", [[1, 0]] * 4, [0, 1, 0, 1])["eval_f1"] == 0.0
    assert compute_metrics("sst2", [[0, 1]] * 4, [1, 1, 1, 1])["eval_accuracy"] == 1.0
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics("sst2", [[0, 1]] * 3, [1, 1])


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_over_the_whole_set(seed):
    rng = np.random.default_rng(seed)
    labels = np.round(rng.uniform(0, 5, 60) * 2) / 2  # many ties, as STS-B has
    scores = labels + rng.normal(0, 1.0, 60)
    scores[:10] = scores[0]  # ties in the predictions too
    results = compute_metrics("stsb", scores[:, None], labels)
    assert results["eval_pearson"] == pytest.approx(_slow_pearson(scores.tolist(),
                                                                  labels.tolist()))
    assert results["eval_spearman"] == pytest.approx(
        _slow_pearson(_slow_ranks(scores.tolist()), _slow_ranks(labels.tolist())))


def test_average_ranks_small_example():
    np.testing.assert_array_equal(average_ranks([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    for values in itertools.permutations([1, 2, 2, 5]):
        assert average_ranks(values).tolist() == _slow_ranks(list(values))
