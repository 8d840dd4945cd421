"""The model carries its family: RoBERTa and DistilBERT configs through the builder, the
forward view, factorize, Lagrangian pruning, the Fisher method, compaction and `.keras`."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.gates.structure import all_gates
from conftest import random_inputs

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=20)
ROBERTA = dict(TINY, type_vocab_size=0, layer_norm_epsilon=1e-5, position_offset=2,
               classifier_head="roberta", hidden_act="gelu_exact")
DISTILBERT = dict(TINY, type_vocab_size=0, classifier_head="distilbert",
                  hidden_act="gelu_exact")


def _data(n=16, seq=8, seed=1):
    x = random_inputs(n, seq, seed)
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def test_old_configs_are_bert_and_new_fields_round_trip():
    old = {k: v for k, v in BertConfig(**TINY).to_dict().items()
           if k not in ("layer_norm_epsilon", "position_offset", "classifier_head")}
    config = BertConfig.from_dict(old)
    assert (config.layer_norm_epsilon, config.position_offset, config.classifier_head,
            config.type_vocab_size) == (1e-12, 0, "bert", 2)
    roberta = BertConfig(**ROBERTA)
    assert BertConfig.from_dict(roberta.to_dict()) == roberta


@pytest.mark.parametrize("change, message", [
    ({"classifier_head": "albert"}, "BertConfig.classifier_head must be one of"),
    ({"layer_norm_epsilon": 0}, "BertConfig.layer_norm_epsilon must be a positive number"),
    ({"position_offset": -1}, "BertConfig.position_offset must be a non-negative integer"),
    ({"position_offset": 20}, "must be below max_position_embeddings (20)"),
    ({"type_vocab_size": -1}, "BertConfig.type_vocab_size must be a non-negative integer"),
])
def test_family_fields_are_checked(change, message):
    with pytest.raises(ValueError) as error:
        BertConfig(**{**TINY, **change})
    assert message in str(error.value)


@pytest.mark.parametrize("family", [ROBERTA, DISTILBERT])
def test_family_model_reads_its_config(family):
    keras.utils.set_random_seed(0)
    model = build_bert_classifier(BertConfig(**family), num_labels=3)
    names = {layer.name for layer in model.layers}
    assert "token_type_embeddings" not in names
    assert ("pooler_dropout" in names) == (family["classifier_head"] == "roberta")
    assert model.get_layer("pooler").activation is keras.activations.get(
        "relu" if family["classifier_head"] == "distilbert" else "tanh")
    assert all(model.get_layer(f"layer_{i}_{norm}").epsilon == family.get(
        "layer_norm_epsilon", 1e-12) for i in range(2)
        for norm in ("attention_layer_norm", "output_layer_norm"))
    x, _ = _data()
    logits = np.asarray(model(x))
    # No token types: segment ids do not change the logits.
    other = dict(x, segment_ids=np.ones_like(x["segment_ids"]))
    np.testing.assert_array_equal(np.asarray(model(other)), logits)
    np.testing.assert_allclose(np.asarray(model.forward_view()(x)), logits, atol=1e-6)


def test_position_offset_shifts_the_position_ids():
    keras.utils.set_random_seed(0)
    shifted = build_bert_classifier(BertConfig(**ROBERTA))
    plain = build_bert_classifier(BertConfig(**dict(ROBERTA, position_offset=0)))
    plain.set_weights(shifted.get_weights())
    table = np.asarray(shifted.get_layer("position_embeddings").position_embeddings)
    # The offset-0 model with the table moved up by 2 rows is the offset-2 model.
    plain.get_layer("position_embeddings").position_embeddings.assign(
        np.concatenate([table[2:], table[:2]]))
    x, _ = _data()
    np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(shifted(x)), atol=1e-6)


@pytest.mark.filterwarnings("ignore:The run ended at step")  # two steps, far from the target
def test_roberta_family_factorizes_prunes_compacts_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**ROBERTA))
    pruning_model = keras_flop.factorize(dense, target_sparsity=0.5)
    x, y = _data()
    np.testing.assert_allclose(np.asarray(pruning_model.predict(x, verbose=0)),
                               np.asarray(dense.predict(x, verbose=0)), atol=1e-4)
    pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 4))
    history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    for i, gate in enumerate(all_gates(pruning_model.network)):  # some units pruned
        values = np.asarray(gate.log_alpha)
        values[::2 + i % 3] = -10.0
        gate.log_alpha.assign(values)
    compact_model = keras_flop.compact(pruning_model)
    assert compact_model.bert_config == BertConfig(**ROBERTA)
    assert compact_model.count_params() < dense.count_params()
    np.testing.assert_allclose(np.asarray(compact_model(x)),
                               np.asarray(pruning_model.predict(x, verbose=0)), atol=1e-4)
    path = tmp_path / "roberta.keras"
    compact_model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.bert_config == compact_model.bert_config
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(compact_model(x)), atol=1e-6)


def test_fisher_method_prunes_a_distilbert_family_model():
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**DISTILBERT))
    x, y = _data()
    batches = [({k: v[i:i + 8] for k, v in x.items()}, y[i:i + 8]) for i in (0, 8)]
    compact_model = keras_flop.prune_post_training(dense, batches, target_sparsity=0.4,
                                                   num_samples=16)
    assert compact_model.bert_config.classifier_head == "distilbert"
    assert sum(heads for heads, _ in compact_model.layer_shapes) < 8
    assert np.all(np.isfinite(np.asarray(compact_model(x))))


def test_position_offset_shortens_the_longest_sequence(tmp_path, vocab_file):
    config = BertConfig(**ROBERTA)
    assert (config.max_position_embeddings, config.max_sequence_length) == (20, 18)
    with pytest.raises(ValueError, match="max_position_embeddings 20 less position_offset 2"):
        keras_flop.measure_latency_table(config, seq_length=19)
    model = build_bert_classifier(config)
    with pytest.raises(ValueError, match="max_seq_length 19 exceeds"):
        keras_flop.export_saved_model(model, tmp_path / "export", vocab_file, 19)


def test_a_distilbert_family_student_distills_from_its_teacher():
    keras.utils.set_random_seed(0)
    config = BertConfig(**DISTILBERT)
    teacher = build_bert_classifier(config)
    student = build_bert_classifier(config, layer_shapes=[(2, 32), (4, 0)])
    distiller = keras_flop.Distiller(student, teacher, distillation_weight=0.7,
                                     hidden_distillation_weight=0.5)
    distiller.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    history = distiller.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert all(np.isfinite(values[-1]) for values in history.values())
