"""Training and evaluation data checked at the door: one-line errors naming the argument."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop.input_checks import check_arrays, checked_dataset, model_num_labels

TINY = dict(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16)


def _features(n=4, seq=6):
    return {"token_ids": np.ones((n, seq), "int32"), "segment_ids": np.zeros((n, seq), "int32"),
            "padding_mask": np.ones((n, seq), bool)}


def _dataset(labels, batch=2):
    return tf.data.Dataset.from_tensor_slices((_features(len(labels)), np.array(labels)))\
        .batch(batch)


@pytest.fixture(scope="module")
def model():
    model = keras_flop.build_bert_classifier(keras_flop.BertConfig(**TINY))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _one_line(error, *words):
    text = str(error.value)
    assert "\n" not in text and all(w in text for w in words), text


@pytest.mark.parametrize("call", ["fit", "evaluate"])
def test_labels_out_of_range_are_named(model, call):
    with pytest.raises(ValueError) as error:
        getattr(model, call)(_dataset([2, 5, 7, 0]), verbose=0)
    _one_line(error, "`x`", "class ids in [0, 2)", "a batch has 2, 5")
    with pytest.raises(ValueError) as error:
        getattr(model, call)(_features(), np.array([0, 1, 7, 1]), verbose=0)
    _one_line(error, "`y`", "its labels include 7")


def test_validation_data_labels_are_checked(model):
    with pytest.raises(ValueError) as error:
        model.fit(_dataset([0, 1, 0, 1]), validation_data=_dataset([0, 3]), verbose=0)
    _one_line(error, "`validation_data`", "has 3")


def test_empty_and_unbatched_datasets(model):
    with pytest.raises(ValueError) as error:
        model.fit(_dataset([0, 1]).take(0), verbose=0)
    _one_line(error, "`x` yielded no batches")
    with pytest.raises(ValueError) as error:  # a filter: the size is unknown until read
        model.fit(_dataset([0, 1]).filter(lambda x, y: False), verbose=0)
    _one_line(error, "`x` yielded no batches")
    with pytest.raises(ValueError) as error:
        model.fit(_dataset([0, 1]).unbatch(), verbose=0)
    _one_line(error, "unbatched examples", "(6,)", "dataset.batch(32)")
    with pytest.raises(ValueError) as error:
        model.fit({k: v[:0] for k, v in _features().items()}, np.zeros(0, "int32"), verbose=0)
    _one_line(error, "`x` holds no examples")
    # Good data goes through: class ids, one-hot labels (a categorical loss), a regressor's
    # targets.
    assert np.isfinite(model.evaluate(_dataset([0, 1, 1, 0]), verbose=0))
    check_arrays(_features(), np.eye(2)[[0, 1, 1, 0]], num_labels=2)
    assert len(list(checked_dataset(_dataset([0.5, 2.5]), num_labels=1))) == 1


def test_fine_tune_checks_the_task_against_the_model(model):
    from keras_flop import glue
    from keras_flop.training.data import TaskData
    from keras_flop.training.fine_tuning import fine_tune

    data = TaskData(glue.get_task("mnli"), train=["an example"], evals={}, tests={},
                    preprocessor=None)
    with pytest.raises(ValueError) as error:
        fine_tune(model, data, 1e-4, 1, 2, 0)
    _one_line(error, "has 2 outputs, but task mnli has 3 labels", "num_labels=3")
    data = TaskData(glue.get_task("sst2"), train=[], evals={}, tests={}, preprocessor=None)
    with pytest.raises(ValueError) as error:
        fine_tune(model, data, 1e-4, 1, 2, 0)
    _one_line(error, "no training examples")


def test_the_checks_for_pruning_models_and_distillers(model):
    pruning_model = keras_flop.factorize(model, structure="heads+ffn", pruning_steps=2)
    pruning_model.compile(optimizer=None)
    distiller = keras_flop.Distiller(keras_flop.build_bert_classifier(
        keras_flop.BertConfig(**TINY), num_labels=3), distillation_weight=0.0)
    distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model_num_labels(pruning_model) == 2 and model_num_labels(distiller) == 3
    for trained, labels, bad in ((pruning_model, [0, 1, 0, 2], "2"),
                                 (distiller, [0, 1, 2, 7, 9, 0], "7")):
        num_labels = model_num_labels(trained)
        for call in (trained.fit, trained.evaluate):
            with pytest.raises(ValueError) as error:
                call(_dataset(labels), verbose=0)
            _one_line(error, f"`x`: labels must be class ids in [0, {num_labels}) for a "
                             f"{num_labels}-label model; a batch has {bad}")
            with pytest.raises(ValueError) as error:
                call(_dataset(labels).take(0), verbose=0)
            _one_line(error, "`x` yielded no batches")
            with pytest.raises(ValueError) as error:
                call(_dataset(labels).unbatch(), verbose=0)
            _one_line(error, "`x` yields unbatched examples")
    # Good data still trains: the checks are at the door only.
    step = int(pruning_model.pruning_step)
    history = pruning_model.fit(_dataset([0, 1, 1, 0]), verbose=0)
    assert int(pruning_model.pruning_step) == step + 2 and "constraint_gap" in history.history


@pytest.mark.parametrize("arguments, message", [
    (dict(pruning_steps=2.7), "PruningModel: `pruning_steps` must be an integer"),
    (dict(target_sparsity="0.5"), "PruningModel: `target_sparsity` must be a number"),
    (dict(hold_steps=1.5, targets=(0.2, 0.4)), "PruningModel: `hold_steps` must be an integer"),
], ids=["float steps", "str target", "float hold"])
def test_pruning_model_names_an_argument_of_the_wrong_kind(model, arguments, message):
    network = keras_flop.factorize_model(model, structure="heads+ffn")
    with pytest.raises(TypeError) as error:
        keras_flop.PruningModel(network, **arguments)
    _one_line(error, message)


@pytest.mark.parametrize("arguments, message", [
    (dict(target_sparsity="0.5"), "`target_sparsity` must be a number; got '0.5' (str)"),
    (dict(pruning_steps=2.7), "`pruning_steps` must be an integer (a number of steps); got 2.7"),
    (dict(pruning_steps=True), "`pruning_steps` must be an integer"),
    (dict(target_sparsity_warmup="10"), "`target_sparsity_warmup` must be an integer"),
    (dict(distillation_weight=[1.0]), "`distillation_weight` must be a number"),
    (dict(targets="0.3,0.5"), "`targets` must be a list of numbers"),
    (dict(teacher="dense.keras"), "`teacher` must be a Keras model"),
    (dict(target_sparsty=0.5), "unexpected keyword argument(s) ['target_sparsty']"),
], ids=["str", "float steps", "bool steps", "str warmup", "list weight", "str targets",
        "path teacher", "misspelt"])
def test_factorize_names_a_pruning_argument_of_the_wrong_kind(model, arguments, message):
    with pytest.raises(TypeError) as error:
        keras_flop.factorize(model, **arguments)
    _one_line(error, message)


def test_factorize_refuses_a_pruning_model(model):
    pruning_model = keras_flop.factorize(model, structure="heads+ffn", pruning_steps=np.int64(3))
    assert pruning_model.pruning_steps == 3
    for given in (pruning_model, pruning_model.network):
        for factorize in (keras_flop.factorize, keras_flop.factorize_model):
            with pytest.raises(ValueError) as error:
                factorize(given)
            _one_line(error, "takes the dense BertClassifier",
                      "the pruning model" if given is pruning_model else "already factorized")
    with pytest.raises(TypeError) as error:
        keras_flop.factorize_model(model, energy="0.9")
    _one_line(error, "`energy` must be a number")


def test_compact_refuses_a_model_without_gates(model):
    with pytest.raises(ValueError) as error:
        keras_flop.compact(model)
    _one_line(error, "has no gates", "keras_flop.factorize", "prune_post_training")
    with pytest.raises(ValueError) as error:
        keras_flop.compact(keras_flop.factorize(model), threshold="0.5")
    _one_line(error, "`threshold` must be a number in [0, 1)", "'0.5'")


def test_a_truncated_or_corrupt_keras_file_is_named(model, tmp_path):
    from keras_flop.checkpoints.keras_file import load_keras_file

    path = tmp_path / "model.keras"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError) as error:
        keras_flop.from_keras_hub(tmp_path / "cut.keras")
    _one_line(error, f"keras-hub model file {tmp_path / 'cut.keras'} is not a valid .keras "
              "file (truncated or corrupt: not a zip archive")
    # Damaged bytes inside the weights: the archive opens, its CRC check names the member.
    middle = data.index(b"model.weights.h5") + 4096
    flipped = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    (tmp_path / "bad.keras").write_bytes(data[:middle] + flipped + data[middle + 64:])
    with pytest.raises(ValueError) as error:
        load_keras_file(tmp_path / "bad.keras", "--dense_model")
    _one_line(error, "--dense_model", "is not a valid .keras file (truncated or corrupt",
              "model.weights.h5")
    with pytest.raises(ValueError) as error:
        load_keras_file(tmp_path / "none.keras")
    _one_line(error, "none.keras does not exist")
    assert load_keras_file(path).num_labels == 2


def test_the_checks_for_post_training_pruning_datasets(model):
    for dataset, words in ((_dataset([0, 1]).unbatch(), ("`dataset` yields unbatched",)),
                           (_dataset([0, 1]).take(0), ("`dataset` yielded no batches",)),
                           (_dataset([0, 1]).map(lambda x, y: x),
                            ("`dataset` must yield `(features, labels)` batches",)),
                           (_dataset([0, 1, 2, 5, 7, 0]),
                            ("`dataset`: labels must be class ids in [0, 2) for a 2-label "
                             "model; the first batch has 2, 5",)),
                           ([(_features(2), np.array([0, 1])), (_features(2), np.array([1, 9]))],
                            ("`dataset`: labels must be class ids in [0, 2)", "has 9"))):
        with pytest.raises(ValueError) as error:
            keras_flop.prune_post_training(model, dataset, target_sparsity=0.5, num_samples=8)
        _one_line(error, *words)
