"""The selection split: training examples held out for choices, so that dev is not chosen on."""

import numpy as np
import pytest

from apps import toy_task
from keras_flop.training import data as training_data

CONFIG = dict(vocab_size=len(toy_task.vocabulary()), hidden_size=16, num_hidden_layers=1,
              num_attention_heads=2, intermediate_size=32, hidden_act="gelu",
              hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
              max_position_embeddings=16, type_vocab_size=2, initializer_range=0.02)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    data_dir, vocab = toy_task.write_toy_glue(str(root / "glue"), train=60, dev=12, test=4)
    return data_dir, vocab


def _load(toy, **kwargs):
    data_dir, vocab = toy
    return training_data.load_task_data(data_dir, "sst2", vocab, 16, **kwargs)


def _ids(examples):
    return [example.guid for example in examples]  # a training example's line in train.tsv


def test_the_selection_split_is_held_out_and_shared_by_training_seeds(toy):
    runs = [_load(toy, max_train_examples=30, seed=seed, selection_examples=10)
            for seed in (0, 1)]
    selections = [_ids(run.evals["selection"]) for run in runs]
    assert len(selections[0]) == 10 and selections[0] == selections[1]
    assert _ids(runs[0].train) != _ids(runs[1].train)  # the training seed drew its subset
    for run in runs:
        assert len(run.train) == 30 and not set(_ids(run.train)) & set(selections[0])
        assert list(run.evals) == ["dev", "selection"]
    everything = _load(toy, selection_examples=10)
    assert sorted(_ids(everything.train) + _ids(everything.evals["selection"]), key=int) == \
        [str(i) for i in range(60)]
    # Its own seed draws another split.
    assert _ids(_load(toy, selection_examples=10, selection_seed=1).evals["selection"]) != \
        selections[0]


@pytest.mark.parametrize("limits", [{}, {"max_train_examples": 30, "max_eval_examples": 5}])
def test_no_selection_split_draws_the_subsets_it_always_drew(toy, limits):
    """At 0 the training and dev examples are those the documented draw gives: one generator
    of `seed`, the training subset first, then dev's."""
    data_dir, _ = toy
    from keras_flop import glue

    data = _load(toy, seed=3, selection_examples=0, **limits)
    train, dev = (glue.read_split(data_dir, "sst2", split) for split in ("train", "dev"))
    rng = np.random.default_rng(3)
    for examples, limit in ((train, limits.get("max_train_examples")),
                            (dev, limits.get("max_eval_examples"))):
        if limit:
            examples[:] = [examples[i] for i in np.sort(rng.choice(len(examples), limit,
                                                                   replace=False))]
    assert _ids(data.train) == _ids(train) and list(data.evals) == ["dev"]
    assert _ids(data.evals["dev"]) == _ids(dev)


def test_the_selection_split_is_evaluated_beside_dev(toy, tmp_path):
    import keras

    import keras_flop
    from apps import results
    from keras_flop.training.evaluation import evaluate

    data = _load(toy, selection_examples=8)
    labels = np.concatenate([np.asarray(y) for _, y in data.eval_dataset("selection", 4)])
    assert sorted(labels.tolist()) == sorted(int(e.label) for e in data.evals["selection"])
    keras.utils.set_random_seed(0)
    model = keras_flop.build_bert_classifier(keras_flop.BertConfig(**CONFIG), num_labels=2)
    scores = evaluate(model, data, 4)
    assert list(scores) == ["dev", "selection"]
    assert scores["selection"]["eval_examples"] == 8 and scores["dev"]["eval_examples"] == 12
    flat = results.write_eval_results(str(tmp_path), scores, {})
    assert flat["selection_eval_score"] == scores["selection"]["eval_score"]
    assert flat["eval_score"] == scores["dev"]["eval_score"]


@pytest.mark.parametrize("kwargs, error, words", [
    ({"selection_examples": -1}, ValueError, "`selection_examples` must be >= 0"),
    ({"selection_examples": 60}, ValueError, "smaller than the 60 training examples of sst2: "
                                             "60 would leave none to train on"),
    ({"selection_examples": 61}, ValueError, "61 would exceed them; pass fewer"),
    ({"selection_examples": 2.5}, TypeError, "`selection_examples` must be an integer"),
    ({"selection_examples": 5, "selection_seed": -2}, ValueError,
     "`selection_seed` must be >= 0"),
])
def test_bad_selection_sizes_are_one_line_errors(toy, kwargs, error, words):
    with pytest.raises(error) as info:
        _load(toy, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)
