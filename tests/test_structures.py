"""Structured gates: heads, FFN units, whole blocks; their sparsity, compaction, distillation."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.layers import HardConcreteMask, PrunedSublayer
from keras_flop.gates.sparsity import sparsity_denominator
from keras_flop.gates.structure import all_gates, encoder_layer_parts
from conftest import random_inputs

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=16)
STRUCTURES = ["heads+ffn", "heads+ffn+layers", "all"]


def _inputs(n=6, seq=10, seed=0):
    return random_inputs(n, seq, seed)


def _dense(seed=0, num_labels=2):
    keras.utils.set_random_seed(seed)
    return build_bert_classifier(BertConfig(**TINY), num_labels=num_labels)


def _set_gates(pruning_model, seed, hard=False):
    """Random gates: about half the units of every structural mask closed, two ranks of every
    rank gate kept (so the factor pair stays cheaper than the merged kernel); layer 1's FFN
    block and layer 2's heads all closed, so that whole blocks disappear. `hard` drives every
    gate to 0 or 1 (|log α| = 30) so that expectations equal realized counts."""
    rng = np.random.default_rng(seed)
    for gate in all_gates(pruning_model.network):
        keep = rng.random(gate.size) < 0.5
        keep[rng.integers(gate.size)] = True
        if gate.name == "gate":  # a rank gate inside a FactorizedDense
            keep = np.arange(gate.size) < 2
        if gate.size == 1 and "attention_mask" in gate.name:
            keep[:] = True
        high, low = (30.0, -30.0) if hard else (rng.uniform(0.5, 6.0), rng.uniform(-6, -3))
        if gate.name in ("layer_1_ffn_mask", "layer_2_head_mask"):
            keep[:], low = False, -30.0
        gate.log_alpha.assign(np.where(keep, high, low).astype("float32"))


@pytest.mark.parametrize("structure", STRUCTURES)
def test_open_gates_reproduce_the_dense_model(structure):
    dense = _dense()
    pruning_model = keras_flop.factorize(dense, structure=structure)
    x = _inputs()
    np.testing.assert_allclose(np.asarray(pruning_model(x, training=False)),
                               np.asarray(dense(x)), atol=1e-4)
    masks = [layer for layer in pruning_model.network.layers
             if isinstance(layer, HardConcreteMask)]
    per_layer = 2 if structure == "heads+ffn" else 4
    assert len(masks) == per_layer * TINY["num_hidden_layers"]
    assert (len(all_gates(pruning_model.network)) > len(masks)) == (structure == "all")


@pytest.mark.parametrize("structure", STRUCTURES)
def test_expected_sparsity_counts_what_compaction_removes(structure):
    dense = _dense(seed=1)
    pruning_model = keras_flop.factorize(dense, structure=structure)
    _set_gates(pruning_model, seed=2, hard=True)
    compact_model = keras_flop.compact(pruning_model)
    kernels = sum(int(np.prod(layer.kernel.shape)) for layer in compact_model.layers
                  if layer.name.startswith("layer_") and isinstance(layer, keras.layers.Dense))
    kernels += sum(layer.factor_params for layer in compact_model.layers
                   if isinstance(layer, keras_flop.layers.FactorizedDense))
    assert kernels == keras_flop.kept_parameters(pruning_model)
    denominator = sparsity_denominator(pruning_model, "dense")
    np.testing.assert_allclose(float(keras_flop.expected_sparsity(pruning_model)),
                               1.0 - kernels / denominator, atol=1e-5)
    report = keras_flop.parameter_report(pruning_model)
    assert report["pruned_total_params"] == compact_model.count_params()
    assert report["total_params"] == dense.count_params()


def test_a_head_and_an_ffn_unit_count_their_rows_and_columns():
    pruning_model = keras_flop.factorize(_dense(), structure="heads+ffn")
    hidden = TINY["hidden_size"]
    head_size = hidden // TINY["num_attention_heads"]
    part = encoder_layer_parts(pruning_model.network)[0]
    before = keras_flop.kept_parameters(pruning_model)
    log_alpha = np.full(TINY["num_attention_heads"], 10.0, "float32")
    log_alpha[0] = -10.0
    part.masks["head"].log_alpha.assign(log_alpha)
    assert before - keras_flop.kept_parameters(pruning_model) == 4 * hidden * head_size
    log_alpha = np.full(TINY["intermediate_size"], 10.0, "float32")
    log_alpha[:3] = -10.0
    part.masks["intermediate"].log_alpha.assign(log_alpha)
    assert before - keras_flop.kept_parameters(pruning_model) == \
        4 * hidden * head_size + 3 * 2 * hidden


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("eval_mask", ["deterministic", "topk"])
def test_compact_removes_heads_units_and_blocks_and_matches(structure, eval_mask, tmp_path):
    dense = _dense(seed=3, num_labels=3)
    pruning_model = keras_flop.factorize(dense, structure=structure,
                                         gate_config={"eval_mask": eval_mask})
    _set_gates(pruning_model, seed=4)
    compact_model = keras_flop.compact(pruning_model)
    x = _inputs()
    expected = np.asarray(pruning_model(x, training=False))
    np.testing.assert_allclose(np.asarray(compact_model(x)), expected, atol=1e-4)
    heads = [compact_model.get_layer(f"layer_{i}_attention").num_heads
             for i in range(2)]
    assert all(0 < h < TINY["num_attention_heads"] for h in heads)
    names = {layer.name for layer in compact_model.layers}
    assert "layer_2_attention_pruned" in names and "layer_2_attention" not in names
    if "layers" in structure:
        assert "layer_1_output_pruned" in names and "layer_1_intermediate" not in names
    assert not any(isinstance(layer, HardConcreteMask) for layer in compact_model.layers)
    assert any(isinstance(layer, PrunedSublayer) for layer in compact_model.layers)
    # Different head counts per layer survive .keras saving and the SavedModel export.
    path = str(tmp_path / "compact.keras")
    compact_model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(x)), expected,
                               atol=1e-4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_structured_pruning_model_round_trips_and_trains(tmp_path, jit_compile):
    dense = _dense(seed=5)
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn+layers",
                                         target_sparsity=0.5, teacher=dense,
                                         distillation_weight=1.0, distillation_temperature=2.0,
                                         hidden_distillation_weight=0.5)
    pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 10),
                          jit_compile=jit_compile)
    x = _inputs(n=8)
    y = np.arange(8) % 2
    history = pruning_model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for key in ("distillation_loss", "hidden_distillation_loss", "expected_sparsity",
                "lambda_1"):
        assert np.all(np.isfinite(history.history[key]))
    # The student moved away from its teacher: both distillation terms are positive.
    assert history.history["hidden_distillation_loss"][-1] > 0.0
    assert history.history["distillation_loss"][-1] > 0.0
    gates_before = [np.asarray(v) for v in pruning_model.gate_variables]
    path = str(tmp_path / "pruning.keras")
    pruning_model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.distillation_weight == 1.0 and loaded.teacher is not None
    assert loaded.hidden_distillation_weight == 0.5
    for before, after in zip(gates_before, loaded.gate_variables):
        np.testing.assert_array_equal(before, np.asarray(after))
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(pruning_model(x, training=False)), atol=1e-5)


def test_distillation_loss_is_zero_against_itself_and_positive_otherwise():
    dense = _dense(seed=6)
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn", teacher=dense,
                                         distillation_weight=1.0)
    logits = np.asarray(dense(_inputs()))
    assert abs(float(pruning_model.distillation_loss(logits, logits))) < 1e-6
    shifted = logits + np.array([3.0, -3.0], "float32")
    other = float(pruning_model.distillation_loss(logits, shifted))
    # T² KL(p ‖ q) computed independently in numpy.
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    q = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    np.testing.assert_allclose(other, np.mean(np.sum(p * np.log(p / q), -1)), rtol=1e-4)


def test_bad_structure_and_distillation_arguments_say_what_is_allowed():
    dense = _dense()
    with pytest.raises(ValueError, match="`structure` must be one of"):
        keras_flop.factorize(dense, structure="heads")
    with pytest.raises(ValueError, match="needs a `teacher`"):
        keras_flop.factorize(dense, structure="heads+ffn", distillation_weight=1.0)
    with pytest.raises(ValueError, match="`hidden_distillation_weight` > 0 needs a `teacher`"):
        keras_flop.factorize(dense, hidden_distillation_weight=1.0)
    shallow = build_bert_classifier(BertConfig(**dict(TINY, num_hidden_layers=2)))
    with pytest.raises(ValueError, match="teacher has 2 encoder layers, the pruned model 3"):
        keras_flop.factorize(dense, teacher=shallow, hidden_distillation_weight=1.0)
    with pytest.raises(ValueError, match="`distillation_temperature` must be > 0"):
        keras_flop.factorize(dense, teacher=dense, distillation_temperature=0.0)
    with pytest.raises(ValueError, match="input's last axis must be 12"):
        HardConcreteMask(3, unit_size=4)(np.ones((2, 8), "float32"))


def test_structured_pruning_under_mixed_precision_and_xla():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        dense = _dense(seed=7)
        pruning_model = keras_flop.factorize(dense, structure="all", target_sparsity=0.5,
                                             teacher=dense, distillation_weight=1.0)
        assert all(v.dtype == "float32" for v in pruning_model.gate_variables)
        pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 4),
                              jit_compile=True)
        x = _inputs(n=8)
        history = pruning_model.fit(x, np.arange(8) % 2, batch_size=4, verbose=0).history
        for key in ("loss", "distillation_loss", "expected_sparsity"):
            assert np.all(np.isfinite(history[key])), key
        _set_gates(pruning_model, seed=8)
        compact_model = keras_flop.compact(pruning_model)
        outputs = np.asarray(compact_model(x))
        assert outputs.dtype == np.float32
        np.testing.assert_allclose(outputs, np.asarray(pruning_model(x, training=False)),
                                   atol=2e-2)  # float16 activations
    finally:
        keras.mixed_precision.set_global_policy("float32")
