"""BertConfig and the Keras BERT classifier/regressor."""

import json

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.models import encoder_dense_names

TINY = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=32)


def _batch(batch=3, seq=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, seq + 1, size=batch)
    mask = np.arange(seq)[None, :] < lengths[:, None]
    return {"token_ids": np.where(mask, rng.integers(5, 60, (batch, seq)), 0).astype("int32"),
            "segment_ids": (np.arange(seq)[None, :] >= lengths[:, None] // 2).astype("int32")
            * mask, "padding_mask": mask}


def test_config_json_round_trip(tmp_path):
    config = BertConfig(**TINY, hidden_act="gelu_exact")
    path = tmp_path / "bert_config.json"
    config.to_json_file(path)
    assert json.loads(path.read_text())["hidden_act"] == "gelu_exact"
    assert BertConfig.from_json_file(path) == config
    assert config.head_size == 8


@pytest.mark.parametrize("change, field", [
    ({"hidden_size": 30}, "num_attention_heads (4) must divide hidden_size (30)"),
    ({"num_hidden_layers": 0}, "BertConfig.num_hidden_layers must be a positive integer"),
    ({"vocab_size": "30522"}, "BertConfig.vocab_size must be a positive integer"),
    ({"hidden_dropout_prob": 1.0}, "BertConfig.hidden_dropout_prob must be a number in [0, 1)"),
    ({"hidden_act": "gelu_fast"}, "BertConfig.hidden_act must be one of"),
    ({"initializer_range": -1}, "BertConfig.initializer_range must be a positive number"),
    ({"hidden_sizes": 32}, "Unknown BertConfig field(s) ['hidden_sizes']"),
])
def test_config_validation_names_the_field(change, field):
    with pytest.raises(ValueError) as error:
        BertConfig.from_dict({**TINY, **change})
    assert field in str(error.value)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        BertConfig.from_json_file(tmp_path / "missing.json")
    bad = tmp_path / "bert_config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bert_config.json: not a valid JSON"):
        BertConfig.from_json_file(bad)
    bad.write_text(json.dumps({k: v for k, v in TINY.items() if k != "vocab_size"}))
    with pytest.raises(ValueError, match="'vocab_size' is missing"):
        BertConfig.from_json_file(bad)


@pytest.mark.parametrize("num_labels", [1, 3])
def test_classifier_and_regressor_outputs(num_labels):
    model = build_bert_classifier(BertConfig(**TINY), num_labels=num_labels)
    logits = model(_batch())
    assert tuple(logits.shape) == (3, num_labels)
    assert len(encoder_dense_names(2)) == 12
    for name in encoder_dense_names(2):
        assert isinstance(model.get_layer(name), keras.layers.Dense)


def test_padding_does_not_change_the_logits():
    model = build_bert_classifier(BertConfig(**TINY))
    batch = _batch()
    other = dict(batch, token_ids=np.where(batch["padding_mask"], batch["token_ids"], 7))
    np.testing.assert_allclose(np.asarray(model(batch)), np.asarray(model(other)), atol=1e-5)


def test_dropout_as_configured():
    batch = _batch()
    no_dropout = build_bert_classifier(
        BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    np.testing.assert_allclose(np.asarray(no_dropout(batch, training=True)),
                               np.asarray(no_dropout(batch)), atol=1e-6)
    dropout = build_bert_classifier(BertConfig(**TINY, hidden_dropout_prob=0.3))
    assert not np.allclose(np.asarray(dropout(batch, training=True)), np.asarray(dropout(batch)))


def test_logits_are_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_bert_classifier(BertConfig(**TINY))
        assert model.get_layer("layer_0_intermediate").compute_dtype == "float16"
        logits = model(_batch())
        assert keras.backend.standardize_dtype(logits.dtype) == "float32"
        assert np.all(np.isfinite(np.asarray(logits)))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_model_keras_round_trip(tmp_path):
    model = build_bert_classifier(BertConfig(**TINY, hidden_act="gelu"), num_labels=2)
    path = tmp_path / "bert.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    batch = _batch()
    np.testing.assert_array_equal(np.asarray(model(batch)), np.asarray(restored(batch)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`num_labels` must be a positive integer"):
        build_bert_classifier(BertConfig(**TINY), num_labels=0)
    with pytest.raises(ValueError, match="`config` must be a BertConfig"):
        build_bert_classifier(TINY)


def _mixed_dense_factory(config):
    """Encoder dense layers of three kinds: gated and un-gated `FactorizedDense` of different
    ranks in layer 0, `Dense` elsewhere."""
    from keras_flop.layers import FactorizedDense

    def make(name, units, activation):
        if name == "layer_0_attention_query":
            return FactorizedDense(units, rank=3, activation=activation, name=name)
        if name == "layer_0_intermediate":
            return FactorizedDense(units, rank=5, gated=False, activation=activation, name=name)
        return keras.layers.Dense(units, activation=activation, name=name)
    return make


def test_model_carries_its_architecture_through_keras_files(tmp_path):
    from keras_flop.models import bert_structure_of

    config = BertConfig(**TINY, hidden_act="relu", initializer_range=0.07,
                        attention_probs_dropout_prob=0.25)
    shapes = [(2, 16), (0, 8)]
    model = build_bert_classifier(config, num_labels=3, layer_shapes=shapes, gates=("heads",),
                                  gate_config={"eval_mask": "topk"},
                                  dense_factory=_mixed_dense_factory(config), name="carried")
    assert isinstance(model, keras_flop.BertClassifier)
    assert (model.bert_config, model.num_labels, model.layer_shapes) == (config, 3,
                                                                         tuple(shapes))
    assert model.gates == ("heads",) and model.gate_config == {"eval_mask": "topk"}
    rebuilt = keras_flop.BertClassifier.from_config(model.get_config())
    path = tmp_path / "carried.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    batch = _batch()
    np.testing.assert_array_equal(np.asarray(model(batch)), np.asarray(restored(batch)))
    for other in (rebuilt, restored):
        assert type(other) is keras_flop.BertClassifier and other.name == "carried"
        assert bert_structure_of(other) == (config, 3, shapes)
        assert other.gates == ("heads",) and other.gate_config == {"eval_mask": "topk"}
        assert [(layer.name, type(layer), getattr(layer, "rank", None),
                 getattr(layer, "gated", None)) for layer in other.layers] == \
            [(layer.name, type(layer), getattr(layer, "rank", None),
              getattr(layer, "gated", None)) for layer in model.layers]
    assert restored.get_layer("layer_0_intermediate").activation is keras.activations.relu
    assert restored.get_layer("layer_0_head_mask").eval_mask == "topk"


def test_dtype_policy_survives_keras_files(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_bert_classifier(BertConfig(**TINY))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "mixed.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # under float32: the model keeps its policy
    assert restored.dtype_policy.name == "mixed_float16"
    assert restored.get_layer("layer_0_intermediate").compute_dtype == "float16"
    assert restored.get_layer("layer_1_attention").compute_dtype == "float16"
    assert restored.get_layer("classifier").compute_dtype == "float32"


def test_structure_is_only_read_from_keras_flop_models():
    from keras_flop.models import bert_structure_of

    model = build_bert_classifier(BertConfig(**TINY))
    plain = keras.Model(model.inputs, model.outputs, name="plain")  # same layers, no structure
    with pytest.raises(ValueError, match="'plain' .* is not a keras-flop BERT model"):
        bert_structure_of(plain)
    with pytest.raises(ValueError, match="is not a keras-flop BERT model"):
        keras_flop.factorize(plain)


def test_bad_structure_arguments_say_what_to_pass():
    config = BertConfig(**TINY)
    with pytest.raises(ValueError, match=r"`layer_shapes\[1\]` = \(5, 64\) is out of range"):
        keras_flop.BertClassifier(config, layer_shapes=[(4, 64), (5, 64)])
    with pytest.raises(ValueError, match="`layer_shapes` needs one"):
        keras_flop.BertClassifier(config, layer_shapes=[(4, 64)])
    with pytest.raises(ValueError, match="`gates` must be drawn from"):
        keras_flop.BertClassifier(config, gates=("rank",))
    with pytest.raises(ValueError, match="'layer_1_intermediate', which is not an encoder"):
        keras_flop.BertClassifier(config, layer_shapes=[(4, 64), (4, 0)], dense_layers={
            "layer_1_intermediate": keras.layers.Dense(64, name="layer_1_intermediate")})
    with pytest.raises(ValueError, match="has 64 units; the structure needs 16"):
        keras_flop.BertClassifier(config, layer_shapes=[(2, 64), (4, 64)], dense_layers={
            "layer_0_attention_query": keras.layers.Dense(64, name="layer_0_attention_query")})
    with pytest.raises(ValueError, match="is named 'query': name it 'layer_0_attention_query'"):
        keras_flop.BertClassifier(config, dense_layers={
            "layer_0_attention_query": keras.layers.Dense(32, name="query")})
    with pytest.raises(ValueError, match="`bert_config` must be a BertConfig"):
        keras_flop.BertClassifier("bert_config.json")


def test_forward_view_is_the_model_with_its_gates_removed_blocks_and_hidden_states():
    from keras_flop.models.bert import hidden_state_layers

    config = BertConfig(**TINY, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    model = build_bert_classifier(config, num_labels=3, layer_shapes=[(0, 16), (3, 0)],
                                  gates=("heads", "ffn", "layers"),
                                  gate_config={"init": "paper", "seed": 1})
    batch = _batch()
    view = model.forward_view()
    logits, states = view(batch, hidden_states=True)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(model(batch)), atol=1e-5)
    probe = keras.Model(model.inputs, [layer.output for layer in hidden_state_layers(model)])
    for state, expected in zip(states[1:], probe(batch)):
        np.testing.assert_allclose(np.asarray(state), np.asarray(expected), atol=1e-5)
    # Block by block: the same states; the masks multiply after the model's own gates.
    pm = batch["padding_mask"]
    x = view.ffn(0, view.attention(0, view.embed(batch), pm).output).output
    np.testing.assert_allclose(np.asarray(x), np.asarray(states[1]), atol=1e-6)
    closed = view.attention(1, x, pm, head_mask=np.zeros(3, "float32")).residual
    bias = model.get_layer("layer_1_attention_output").bias
    gate = model.get_layer("layer_1_attention_mask").mask()
    np.testing.assert_allclose(np.asarray(closed), np.asarray(x + np.asarray(bias) * gate),
                               atol=1e-5)


def test_forward_view_arguments_say_what_to_pass():
    model = build_bert_classifier(BertConfig(**TINY), layer_shapes=[(4, 64), (2, 0)])
    view = model.forward_view()
    batch = _batch()
    with pytest.raises(ValueError, match=r"`head_masks` needs one mask \(or None\) per encoder "
                                         r"layer \(2\); got 1"):
        view(batch, head_masks=[np.ones(4)])
    with pytest.raises(ValueError, match=r"head mask of encoder layer 1 has shape \(4,\): "
                                         r"pass \[2\] or \[batch, 2\]"):
        view(batch, head_masks=[None, np.ones(4)])
    with pytest.raises(ValueError, match=r"`index` must be an encoder layer index in \[0, 2\)"):
        view.attention(2, view.embed(batch), batch["padding_mask"])
    with pytest.raises(ValueError, match="Encoder layer 1 has no FFN units"):
        view.intermediate(1, view.embed(batch))
    with pytest.raises(ValueError, match="takes a keras-flop BertClassifier"):
        keras_flop.models.BertForward(keras.Model(model.inputs, model.outputs))
