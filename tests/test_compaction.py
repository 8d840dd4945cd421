"""compact and parameter_report."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.layers import FactorizedDense
from keras_flop.gates.structure import all_gates
from conftest import random_inputs

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


def _inputs(n=6, seq=10, seed=0):
    return random_inputs(n, seq, seed)


def _pruned(seed=0, num_labels=2, eval_mask="deterministic"):
    """A pruning model with random gates: some layers nearly empty, some nearly full."""
    keras.utils.set_random_seed(seed)
    dense = build_bert_classifier(BertConfig(**TINY), num_labels=num_labels)
    pruning_model = keras_flop.factorize(dense, gate_config={"eval_mask": eval_mask})
    rng = np.random.default_rng(seed)
    for i, gate in enumerate(all_gates(pruning_model.network)):
        open_fraction = [0.05, 0.3, 0.9, 1.0][i % 4]
        values = rng.normal(-4.0, 1.0, gate.size)
        values[rng.random(gate.size) < open_fraction] = rng.uniform(-1.0, 6.0)
        gate.log_alpha.assign(values.astype("float32"))
    return pruning_model


@pytest.mark.parametrize("eval_mask", ["deterministic", "topk"])
def test_compact_model_equals_the_pruning_model(eval_mask):
    pruning_model = _pruned(eval_mask=eval_mask)
    compact_model = keras_flop.compact(pruning_model)
    x = _inputs()
    np.testing.assert_allclose(np.asarray(compact_model(x)),
                               np.asarray(pruning_model.predict(x, verbose=0)), atol=1e-4)
    kinds = {type(layer) for layer in compact_model.layers
             if layer.name.startswith("layer_") and layer.weights}
    assert FactorizedDense in kinds and keras.layers.Dense in kinds  # both forms chosen
    assert not any(isinstance(layer, FactorizedDense) and layer.gated
                   for layer in compact_model.layers)


def test_no_layer_costs_more_than_dense_and_counts_match_the_report():
    pruning_model = _pruned(seed=1)
    report = keras_flop.parameter_report(pruning_model)
    compact_model = keras_flop.compact(pruning_model)
    assert compact_model.count_params() == report["pruned_total_params"]
    dense_model = build_bert_classifier(BertConfig(**TINY))
    assert dense_model.count_params() == report["total_params"]
    for layer in compact_model.layers:
        if isinstance(layer, FactorizedDense):
            assert layer.factor_params < layer.dense_params
    assert report["dense_origin_params"] == 8 * 32 * 32 + 4 * 32 * 64
    assert report["factorized_kernel_params"] == 8 * 64 * 32 + 4 * 96 * 32
    assert 0 < report["dense_sparsity"] < 1
    assert report["actual_compact_rate"] == pytest.approx(
        report["pruned_total_params"] / report["total_params"])


def test_empty_layer_outputs_its_bias_and_everything_pruned_still_works(tmp_path):
    pruning_model = _pruned(num_labels=1)
    for gate in all_gates(pruning_model.network):
        gate.log_alpha.assign(np.full(gate.size, -10.0, "float32"))
    compact_model = keras_flop.compact(pruning_model)
    x = _inputs()
    np.testing.assert_allclose(np.asarray(compact_model(x)),
                               np.asarray(pruning_model.predict(x, verbose=0)), atol=1e-4)
    intermediate = compact_model.get_layer("layer_0_intermediate")
    assert isinstance(intermediate, FactorizedDense) and intermediate.rank == 0
    assert keras_flop.parameter_report(pruning_model)["dense_pruned_params"] == 0
    path = tmp_path / "empty.keras"
    compact_model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(x)),
                               np.asarray(compact_model(x)), atol=1e-6)


def test_compact_model_round_trips_and_fine_tunes(tmp_path):
    compact_model = keras_flop.compact(_pruned(seed=2))
    path = tmp_path / "compact.keras"
    compact_model.save(path)
    restored = keras.saving.load_model(path)
    x = _inputs()
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(compact_model(x)))
    assert [getattr(layer, "rank", None) for layer in restored.layers] == \
        [getattr(layer, "rank", None) for layer in compact_model.layers]
    restored.compile(keras.optimizers.Adam(1e-3),
                     keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = restored.fit(x, np.zeros(6, "int32"), epochs=2, verbose=0).history
    assert history["loss"][1] < history["loss"][0]


def test_parameter_report_files(tmp_path):
    report = keras_flop.parameter_report(_pruned())
    info = keras_flop.write_parameter_report(report, tmp_path)
    text = open(info).read()
    for key in ("factorized_kernel_params", "dense_pruned_params", "dense_origin_params",
                "dense_sparsity", "non_kernel_params", "total_params", "pruned_total_params",
                "actual_compact_rate"):
        assert f"{key} = " in text
    assert (tmp_path / "info.json").exists()


# -- compact models keep their architecture: head size, activation, initializer, dropout --------

def _structured(config, structure, gates, num_labels=2, seed=0):
    """A pruning model of `config` with its structural masks set by name: `gates` maps a mask
    name to its `log_alpha` values (±10 prunes or keeps a unit; in between scales it)."""
    keras.utils.set_random_seed(seed)
    pruning_model = keras_flop.factorize(build_bert_classifier(config, num_labels),
                                         structure=structure)
    for name, values in gates.items():
        pruning_model.network.get_layer(name).log_alpha.assign(np.asarray(values, "float32"))
    return pruning_model


def _text_inputs(n=4, seq=8, seed=0):
    """Token ids inside the tiny vocabulary of `conftest.WORDS`, so the export can be fed."""
    from conftest import WORDS
    rng = np.random.default_rng(seed)
    mask = np.arange(seq)[None, :] < rng.integers(3, seq + 1, n)[:, None]
    return {"token_ids": (rng.integers(1, len(WORDS), (n, seq)) * mask).astype("int32"),
            "segment_ids": (np.arange(seq)[None, :] >= 4).astype("int32") * mask,
            "padding_mask": mask}


def _check_compact(pruning_model, config, num_labels, shapes, tmp_path, vocab_file):
    """Compacts `pruning_model` and checks that the compact model carries `config`,
    `num_labels` and the per-layer `(heads, ffn units)` `shapes`, before and after a `.keras`
    round trip, and that it, its reload and its SavedModel export all compute the gated
    model's inference outputs."""
    from keras_flop.models import bert_structure_of

    compact_model = keras_flop.compact(pruning_model)
    x = _text_inputs()
    expected = np.asarray(pruning_model(x, training=False))
    assert bert_structure_of(compact_model) == (config, num_labels, shapes)
    np.testing.assert_allclose(np.asarray(compact_model(x)), expected, atol=1e-5)
    for index, (heads, units) in enumerate(shapes):
        names = {layer.name for layer in compact_model.layers}
        assert (f"layer_{index}_attention" in names) == (heads > 0)
        assert (f"layer_{index}_attention_pruned" in names) == (heads == 0)
        assert (f"layer_{index}_intermediate" in names) == (units > 0)
        assert (f"layer_{index}_output_pruned" in names) == (units == 0)
        if heads:
            attention = compact_model.get_layer(f"layer_{index}_attention")
            assert (attention.num_heads, attention.head_size) == (heads, config.head_size)
            assert attention.dropout == config.attention_probs_dropout_prob
    path = tmp_path / "compact.keras"
    compact_model.save(path)
    loaded = keras.saving.load_model(path)
    assert bert_structure_of(loaded) == (config, num_labels, shapes)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-5)
    export = keras_flop.export_saved_model(loaded, tmp_path / "export", vocab_file, 8)
    served = tf.saved_model.load(export).signatures["serving_default"](
        **{name: tf.constant(value) for name, value in x.items()})
    np.testing.assert_allclose(served["logits"].numpy(), expected, atol=1e-5)
    return compact_model


@pytest.mark.parametrize("hidden, heads, act", [(48, 4, "gelu_exact"), (384, 12, "relu")],
                         ids=["4_heads_of_12", "12_heads_of_32"])
def test_compact_keeps_the_head_size_where_attention_is_left(hidden, heads, act, tmp_path,
                                                             vocab_file):
    from conftest import WORDS
    config = BertConfig(vocab_size=len(WORDS), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=heads, intermediate_size=32, hidden_act=act,
                        initializer_range=0.05, attention_probs_dropout_prob=0.2,
                        hidden_dropout_prob=0.15, max_position_embeddings=16)
    # Layer 0 loses its attention block through the block gate, layer 1 every head through
    # the head gates; the other layer keeps some heads, one of them scaled.
    kept = np.full(heads, 10.0)
    kept[[0, 2]] = -10.0
    kept[1] = 0.5
    blocks = {"layer_0_attention_mask": [-10.0], "layer_1_head_mask": kept} if hidden == 48 \
        else {"layer_0_head_mask": kept, "layer_1_head_mask": np.full(heads, -10.0)}
    pruning_model = _structured(config, "heads+ffn+layers", blocks)
    shapes = [(0, 32), (heads - 2, 32)] if hidden == 48 else [(heads - 2, 32), (0, 32)]
    _check_compact(pruning_model, config, 2, shapes, tmp_path, vocab_file)


def test_compact_removes_an_ffn_block_whose_units_are_all_pruned(tmp_path, vocab_file):
    from conftest import WORDS
    config = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, hidden_act="gelu_exact",
                        initializer_range=0.04, max_position_embeddings=16)
    half = np.where(np.arange(64) % 2, 10.0, -10.0)
    half[0] = 1.0
    pruning_model = _structured(config, "heads+ffn", {
        "layer_0_intermediate_mask": np.full(64, -10.0), "layer_1_intermediate_mask": half})
    compact_model = _check_compact(pruning_model, config, 2, [(4, 0), (4, 33)], tmp_path,
                                   vocab_file)
    # The pruned block still adds its output bias.
    np.testing.assert_array_equal(
        np.asarray(compact_model.get_layer("layer_0_output_pruned").bias),
        np.asarray(pruning_model.network.get_layer("layer_0_output").bias))


def test_compact_of_a_fully_pruned_encoder_keeps_embeddings_layer_norms_and_biases(
        tmp_path, vocab_file):
    from conftest import WORDS
    config = BertConfig(vocab_size=len(WORDS), hidden_size=48, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=32, hidden_act="relu",
                        initializer_range=0.03, attention_probs_dropout_prob=0.3,
                        max_position_embeddings=16)
    closed = {f"layer_{i}_{block}_mask": [-10.0] for i in range(2) for block in ("attention",
                                                                                 "ffn")}
    pruning_model = _structured(config, "heads+ffn+layers", closed, num_labels=3)
    compact_model = _check_compact(pruning_model, config, 3, [(0, 0), (0, 0)], tmp_path,
                                   vocab_file)
    encoder_kinds = {type(layer).__name__ for layer in compact_model.layers
                     if layer.name.startswith("layer_")}
    assert encoder_kinds == {"PrunedSublayer", "Dropout", "Add", "LayerNormalization"}


def test_drop_layers_keeps_the_bottom_layers_and_the_head(tmp_path):
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**dict(TINY, num_hidden_layers=3)), num_labels=3)
    x = _inputs()
    kept = keras_flop.drop_layers(dense, 2)
    assert kept.bert_config.num_hidden_layers == 2 and kept.num_labels == 3
    assert dense.bert_config.num_hidden_layers == 3  # the original is left as it is
    # The second layer's output goes straight to the classifier head.
    _, states = kept.forward_view()(x, hidden_states=True)
    _, original = dense.forward_view()(x, hidden_states=True)
    for mine, theirs in zip(states, original[:3]):
        np.testing.assert_allclose(np.asarray(mine), np.asarray(theirs), atol=1e-5)
    pooled = dense.get_layer("pooler")(np.asarray(states[-1])[:, 0])
    np.testing.assert_allclose(np.asarray(kept(x)),
                               np.asarray(dense.get_layer("classifier")(pooled)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(keras_flop.drop_layers(dense, 3)(x)),
                               np.asarray(dense(x)), atol=1e-6)
    kept.save(tmp_path / "kept.keras")
    again = keras.saving.load_model(tmp_path / "kept.keras", compile=False)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(kept(x)), atol=1e-6)
    for bad in (0, 4, 1.5, True):
        with pytest.raises(ValueError, match="integer from 1 to the model's 3"):
            keras_flop.drop_layers(dense, bad)
    with pytest.raises(ValueError, match="drop layers of the dense fine-tuned model"):
        keras_flop.drop_layers(keras_flop.factorize(dense, structure="heads+ffn"), 1)
