"""Length-bucketed batches: every example once per epoch, bounded shapes, seeded and
resumable, and the same predictions and metrics as fixed padding."""

import numpy as np
import pytest
import tensorflow as tf

from keras_flop.training import evaluation
from keras_flop.training import data as training_data
from keras_flop import BertConfig, BertPreprocessor, build_bert_classifier, glue
from keras_flop.glue import batching
from keras_flop.glue.readers import Example
from conftest import WORDS

rng = np.random.default_rng(0)
# 203 sentences of 1 to 40 words: lengths spread over several buckets.
SENTENCES = [" ".join(rng.choice(WORDS[5:], size=int(n))) for n in rng.integers(1, 41, 203)]
EXAMPLES = [Example(str(i), text, None, str(i % 2)) for i, text in enumerate(SENTENCES)]


@pytest.fixture()
def tokenized(vocab_file):
    return glue.tokenize_examples(EXAMPLES, "sst2", BertPreprocessor(vocab_file, 48))


def _batches(dataset):
    """`(token rows without padding, labels, padded width)` of every batch."""
    out = []
    for features, labels in dataset:
        mask = features["padding_mask"].numpy()
        rows = [tuple(r[m]) for r, m in zip(features["token_ids"].numpy(), mask)]
        out.append((rows, labels.numpy().tolist(), mask.shape[1]))
    return out


def test_default_boundaries():
    assert batching.default_boundaries(128) == [8, 16, 24, 32, 48, 64, 96, 128]
    assert batching.default_boundaries(50) == [8, 16, 24, 32, 48, 50]
    assert batching.check_boundaries([32, 16], 40) == [16, 32, 40]
    with pytest.raises(ValueError, match="must not exceed max_seq_length"):
        batching.check_boundaries([64], 48)


def test_epochs_see_every_example_once_in_short_batches(tokenized):
    dataset = glue.make_dataset(tokenized, "sst2", None, batch_size=16, training=True, seed=3)
    assert int(dataset.cardinality()) == 13  # ceil(203 / 16): progress bars know it
    lengths = tokenized.lengths
    epochs = [_batches(dataset) for _ in range(2)]
    for epoch in epochs:
        rows = sorted(row for batch, _, _ in epoch for row in batch)
        assert len(epoch) == 13 and len(rows) == 203
        assert rows == sorted(tuple(r) for r in tokenized.token_ids.to_list())
        for batch, _, width in epoch:  # padded to the smallest boundary that fits
            longest = max(len(row) for row in batch)
            assert width == next(b for b in tokenized.boundaries if b >= longest)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    padded = sum(len(batch) * width for batch, _, width in epochs[0])
    # Nearly what each example alone padded to its own bucket would cost: batches are
    # homogeneous in length.
    alone = sum(next(b for b in tokenized.boundaries if b >= n) for n in lengths)
    assert padded <= 1.1 * alone < 0.8 * 203 * 48
    # Same seed, same batches; another seed, others.
    again = glue.make_dataset(tokenized, "sst2", None, batch_size=16, training=True, seed=3)
    assert _batches(again) == epochs[0]
    other = glue.make_dataset(tokenized, "sst2", None, batch_size=16, training=True, seed=4)
    assert _batches(other) != epochs[0]


def test_distinct_shapes_are_bounded(tokenized):
    shapes = set()
    for epoch in range(5):
        shapes |= set(tokenized.distinct_shapes(
            batching.epoch_plan(tokenized.lengths, 16, seed=0, epoch=epoch)))
    widths = {width for _, width in shapes}
    assert widths <= set(tokenized.boundaries)
    assert {size for size, _ in shapes} == {16, 203 % 16}
    assert len(shapes) <= 2 * len(tokenized.boundaries)


def test_stream_resumes_with_the_same_bucketed_batches(tokenized):
    full = _batches(glue.make_training_stream(tokenized, "sst2", None, 16, seed=1,
                                              total_steps=30))
    assert len(full) == 30 and full[:13] != full[13:26]
    for start in (1, 13, 14, 29):
        assert _batches(glue.make_training_stream(tokenized, "sst2", None, 16, seed=1,
                                                  total_steps=30, start_step=start)) == \
            full[start:]


def test_fixed_padding_restores_max_length_batches(vocab_file):
    fixed = glue.tokenize_examples(EXAMPLES, "sst2", BertPreprocessor(vocab_file, 48),
                                   pad_to_max_length=True)
    widths = {width for _, _, width in _batches(
        glue.make_dataset(fixed, "sst2", None, 16, training=True))}
    assert widths == {48}


def test_evaluation_and_prediction_match_fixed_padding(vocab_file):
    """Same examples, same predictions (to round-off) and metrics, bucketed or fixed; and
    prediction batches keep the examples' order."""
    preprocessor = BertPreprocessor(vocab_file, 48)
    model = build_bert_classifier(BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=48))
    results, predictions = {}, {}
    for padding in (False, True):
        data = training_data.TaskData(glue.get_task("sst2"), [], {"dev": EXAMPLES},
                                      {"test": EXAMPLES}, preprocessor, pad_to_max_length=padding)
        results[padding] = evaluation.evaluate(model, data, batch_size=16)["dev"]
        predictions[padding] = model.predict(data.test_dataset("test", 16), verbose=0)
    np.testing.assert_allclose(predictions[False], predictions[True], atol=1e-5)
    # Length-ordered prediction put back in the examples' order (teacher outputs use it).
    np.testing.assert_allclose(data.tokenized("dev").predict(model, 16), predictions[True],
                               atol=1e-5)
    for key in ("eval_accuracy", "eval_score", "eval_loss"):
        assert results[False][key] == pytest.approx(results[True][key], abs=1e-6), key
    one_by_one = np.concatenate([model.predict(
        BertPreprocessor(vocab_file, 48)(tf.constant([text])), verbose=0) for text in
        SENTENCES[:5]])
    np.testing.assert_allclose(predictions[False][:5], one_by_one, atol=1e-5)
