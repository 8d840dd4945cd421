"""The account of what each gate controls, and the latency cost read from it."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop import BertConfig, LatencyTable, build_bert_classifier
from keras_flop.gates.cost import ExpectedCounts, RealizedCounts, StructureAccount
from keras_flop.gates.structure import all_gates
from conftest import random_inputs

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=16)
# log α giving P(z ≠ 0) = 1/2 at the default stretch (-0.1, 1.1): σ(log α + ln 11).
HALF = -math.log(11.0)
_ENCODER = ("attention_query", "attention_key", "attention_value", "attention_output",
            "intermediate", "output", "attention_pruned", "output_pruned")


def _dense(seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    return build_bert_classifier(BertConfig(**dict(TINY, **overrides)))


def _random_gates(pruning_model, seed):
    """Every gate keeps a random part of its units (at random open values); layer 1 loses its
    whole FFN block, some rank gates keep few ranks and some many."""
    rng = np.random.default_rng(seed)
    for gate in all_gates(pruning_model.network):
        keep = rng.random(gate.size) < rng.uniform(0.1, 0.9)
        keep[rng.integers(gate.size)] = True
        if gate.name == "layer_1_intermediate_mask":
            keep[:] = False
        values = np.where(keep, rng.uniform(0.5, 6.0, gate.size), -30.0)
        gate.log_alpha.assign(values.astype("float32"))


@pytest.mark.parametrize("structure", ["rank", "heads+ffn", "heads+ffn+layers", "all"])
def test_the_account_counts_the_compact_model(structure):
    dense = _dense(seed=1)
    pruning_model = keras_flop.factorize(dense, structure=structure)
    _random_gates(pruning_model, seed=2)
    compact_model = keras_flop.compact(pruning_model)
    account, counts = StructureAccount(pruning_model), RealizedCounts()
    encoder = sum(layer.count_params() for layer in compact_model.layers
                  if layer.name.startswith("layer_") and layer.name.endswith(_ENCODER))
    assert account.kernel_params(counts) + account.bias_params(counts) == encoder
    report = keras_flop.parameter_report(pruning_model)
    assert report["pruned_total_params"] == compact_model.count_params()
    assert report["dense_sparsity"] == keras_flop.realized_sparsity(pruning_model)
    if structure != "rank":
        kept = [(a.kept_units(counts), f.kept_units(counts)) for a, f in account.layers]
        assert tuple(kept) == compact_model.layer_shapes and kept[1][1] == 0


def _table(**changes):
    """A hand-written table for the model `_small()`: 2 heads, 8 FFN units, 1 layer."""
    fields = dict(model={"hidden_size": 8, "num_attention_heads": 2, "intermediate_size": 8,
                         "num_hidden_layers": 1},
                  batch_size=1, seq_length=4, attention_heads=[0, 1, 2],
                  attention_seconds=[0.0, 3.0, 4.0], ffn_units=[0, 4, 8],
                  ffn_seconds=[0.0, 2.0, 6.0], fixed_seconds=1.0)
    fields.update(changes)
    return LatencyTable(**fields)


def _small(structure="heads+ffn+layers", **kwargs):
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=8, max_position_embeddings=8)
    keras.utils.set_random_seed(0)
    return keras_flop.factorize(build_bert_classifier(config), structure=structure, **kwargs)


def _assign(pruning_model, name, values):
    pruning_model.network.get_layer(name).log_alpha.assign(np.asarray(values, "float32"))


def test_latency_interpolation_worked_by_hand():
    table = _table()
    assert table.attention_time(1) == 3.0 and table.ffn_time(6) == 4.0
    assert table.ffn_time(1) == 0.5 and table.dense_seconds() == 11.0
    pruning_model = _small()
    # Decided gates: 1 head, 6 FFN units, both blocks kept: 1 + 3 + 4 = 8 of 11.
    for block in ("attention", "ffn"):
        _assign(pruning_model, f"layer_0_{block}_mask", [30.0])
    _assign(pruning_model, "layer_0_head_mask", [30.0, -30.0])
    _assign(pruning_model, "layer_0_intermediate_mask", [30.0] * 6 + [-30.0] * 2)
    np.testing.assert_allclose(float(keras_flop.expected_latency(pruning_model, table)), 8.0,
                               rtol=1e-6)
    assert keras_flop.predicted_speedup(pruning_model, table) == pytest.approx(11.0 / 8.0)
    # Undecided: heads at p = 1/2 each: P(H = 0) = 1/4, E[H] = 1, so
    # E[T] ≈ 3/4 · T(E[H] / (3/4)) = 3/4 · T(4/3) = 3/4 · (3 + 1/3) = 2.5 (= E[T(H)] exactly:
    # 1/4·0 + 1/2·3 + 1/4·4, as T is affine on [1, 2]).
    _assign(pruning_model, "layer_0_head_mask", [HALF, HALF])
    # FFN units: 4 sure, 4 at p = 1/2: E[H] = 6, P(H = 0) ≈ 0: T(6) = 4.
    _assign(pruning_model, "layer_0_intermediate_mask", [30.0] * 4 + [HALF] * 4)
    # The attention block itself at p = 1/2: 1/2 · 2.5 + 1/2 · T(0) = 1.25.
    _assign(pruning_model, "layer_0_attention_mask", [HALF])
    np.testing.assert_allclose(float(keras_flop.expected_latency(pruning_model, table)),
                               1.0 + 1.25 + 4.0, rtol=1e-6)


def test_expected_latency_has_a_finite_nonzero_gradient_for_every_gate():
    pruning_model = _small(cost="latency", latency_table=_table(), target_speedup=2.0)
    rng = np.random.default_rng(0)
    for variable in pruning_model.gate_variables:
        variable.assign(rng.uniform(-2.0, 2.0, variable.shape).astype("float32"))
    with tf.GradientTape() as tape:
        sparsity = pruning_model.expected_sparsity()
    grads = tape.gradient(sparsity, pruning_model.gate_variables)
    assert len(grads) == 4
    for variable, grad in zip(pruning_model.gate_variables, grads):
        grad = np.asarray(grad)
        assert np.all(np.isfinite(grad)) and np.all(grad != 0.0), variable.path
    # Closing gates lowers the latency: the latency sparsity rises with every log α falling.
    assert all(np.all(np.asarray(g) < 0) for g in grads)


def test_latency_table_round_trips_and_refuses_other_models(tmp_path):
    table = _table(info={"device": "elsewhere"})
    path = table.save(str(tmp_path / "table.json"))
    loaded = LatencyTable.load(path)
    assert loaded == table and loaded.info == {"device": "elsewhere"}
    # A table from another machine's file prunes as the original does.
    first = _small(cost="latency", latency_table=table, target_speedup=2.0)
    second = _small(cost="latency", latency_table=path, target_speedup=2.0)
    assert float(first.expected_sparsity()) == float(second.expected_sparsity())
    with pytest.raises(ValueError, match="measured for another model: intermediate_size 8 "
                                         r"\(table 16\)"):
        _small(cost="latency", target_speedup=2.0, latency_table=_table(
            model=dict(table.model, intermediate_size=16), ffn_units=[0, 8, 16]))
    (tmp_path / "other.json").write_text(json.dumps({"heads": [0, 1]}))
    with pytest.raises(ValueError, match="other.json is not a keras-flop latency table"):
        LatencyTable.load(str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match="ffn counts must rise from 0 to 8"):
        _table(ffn_units=[0, 8, 4])


def test_latency_cost_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="rank gates .* have no measured time"):
        _small("all", cost="latency", latency_table=_table(), target_speedup=2.0)
    with pytest.raises(ValueError, match="rank gates .* have no measured time"):
        _small("rank", cost="latency", latency_table=_table(), target_speedup=2.0)
    with pytest.raises(ValueError, match="`target_speedup` is a latency target"):
        _small(target_speedup=2.0)
    with pytest.raises(ValueError, match="needs a `latency_table`"):
        _small(cost="latency")
    with pytest.raises(ValueError, match="either `target_speedup` or `target_sparsity`"):
        _small(cost="latency", latency_table=_table(), target_speedup=2.0,
               target_sparsity=0.5)


def test_measured_table_has_the_model_grid_and_reloads(tmp_path):
    config = BertConfig(**TINY)
    table = keras_flop.measure_latency_table(config, batch_size=2, seq_length=8,
                                             ffn_points=2, rounds=3, min_seconds=0.005)
    assert table.attention_heads == [0, 1, 2, 3, 4]
    assert table.ffn_units == [0, 1, 24, 48]
    assert (table.batch_size, table.seq_length) == (2, 8)
    assert table.fixed_seconds > 0 and table.dense_seconds() > table.fixed_seconds
    assert table.info["measured_dense_seconds"] > 0 and "CPU" in table.info["device"]
    assert LatencyTable.load(table.save(str(tmp_path / "t.json"))) == table


def test_fit_to_a_target_speedup_and_calibrate_and_reload(tmp_path):
    dense = _dense(seed=3)
    # Times that grow with heads and FFN units, for this model's dimensions.
    table = LatencyTable(
        {field: TINY[field] for field in ("hidden_size", "num_attention_heads",
                                          "intermediate_size", "num_hidden_layers")},
        batch_size=8, seq_length=10, attention_heads=[0, 1, 2, 3, 4],
        attention_seconds=[0.0, 2.0, 2.5, 3.0, 3.5], ffn_units=[0, 1, 24, 48],
        ffn_seconds=[0.0, 1.0, 3.0, 5.0], fixed_seconds=1.0)
    steps = 60
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn+layers", cost="latency",
                                         latency_table=table, target_speedup=2.0,
                                         pruning_steps=steps)
    assert pruning_model.target_sparsity == 0.5
    pruning_model.compile(optimizer=None)
    x = random_inputs(8, 10, seed=4)
    history = pruning_model.fit(x, np.arange(8) % 2, batch_size=8, epochs=steps,
                                verbose=0).history
    assert abs(history["expected_sparsity"][-1] - 0.5) < 0.05, history["expected_sparsity"]
    # The inference mask is calibrated to the latency target, not to a parameter count.
    keras_flop.calibrate_mask(pruning_model, 0.5, tolerance=0.01)
    speedup = keras_flop.predicted_speedup(pruning_model, table)
    assert speedup == pytest.approx(2.0, abs=0.08)
    assert keras_flop.realized_sparsity(pruning_model, cost=None) == \
        pytest.approx(1.0 - 1.0 / speedup)
    path = str(tmp_path / "pruning.keras")
    pruning_model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.cost == "latency" and loaded.target_speedup == 2.0
    assert loaded.cost_model.table == table
    assert float(loaded.expected_sparsity()) == float(pruning_model.expected_sparsity())


def test_latency_cost_trains_under_xla_and_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pruning_model = _small(cost="latency", latency_table=_table(), target_speedup=1.5,
                               pruning_steps=4)
        pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 4),
                              jit_compile=True)
        x = random_inputs(8, 6, seed=5, vocab_size=20)
        history = pruning_model.fit(x, np.arange(8) % 2, batch_size=4, epochs=2,
                                    verbose=0).history
        for key in ("loss", "expected_sparsity", "lambda_1"):
            assert np.all(np.isfinite(history[key])), key
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_expected_counts_equal_realized_counts_once_gates_decide():
    pruning_model = _small("heads+ffn", cost="latency", latency_table=_table(),
                           target_speedup=2.0)
    _assign(pruning_model, "layer_0_head_mask", [30.0, -30.0])
    _assign(pruning_model, "layer_0_intermediate_mask", [30.0] * 3 + [-30.0] * 5)
    account = StructureAccount(pruning_model)
    for kind in ("kernel_params",):
        assert float(getattr(account, kind)(ExpectedCounts())) == pytest.approx(
            getattr(account, kind)(RealizedCounts()))
    assert float(pruning_model.expected_sparsity()) == pytest.approx(
        keras_flop.realized_sparsity(pruning_model, cost=None), abs=1e-6)


def test_a_table_of_the_task_s_lengths_mixes_one_table_per_length(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from apps.prune.context import PruningRun
    from keras_flop.glue.batching import TokenizedExamples
    from keras_flop.latency.table import mix_tables

    config = BertConfig(**TINY)
    # Six short examples and two long ones: batches of 2 padded to 4 (three) and to 8 (one).
    token_ids = tf.ragged.constant([[2, 3]] * 6 + [[2] * 7] * 2, tf.int32)
    tokenized = TokenizedExamples(token_ids, tf.zeros_like(token_ids), boundaries=[4, 8])
    assert tokenized.length_shares(2) == {4: 0.75, 8: 0.25}
    run = SimpleNamespace(
        args=SimpleNamespace(latency_lengths="train", eval_batch_size=2, max_seq_length=8,
                             verbose=False),
        latency_table=None, config=config, data=SimpleNamespace(tokenized=lambda split: tokenized),
        out=lambda step, name: str(tmp_path / name), pricing_step=lambda: "factorize")
    measured = []
    real = keras_flop.measure_latency_table

    def measure(config, batch_size=8, seq_length=128, **kwargs):
        measured.append((batch_size, seq_length, kwargs.get("lengths")))
        return real(config, batch_size, seq_length, ffn_points=2, rounds=1, min_seconds=0.001,
                    lengths=kwargs.get("lengths"))

    monkeypatch.setattr(keras_flop, "measure_latency_table", measure)
    table = PruningRun.measured_latency_table(run)
    assert measured == [(2, 8, {4: 0.75, 8: 0.25})]
    assert table.info["lengths"] == {"4": 0.75, "8": 0.25} and table.seq_length == 8
    assert LatencyTable.load(str(tmp_path / "latency_table.json")) == table
    # Each block's time is the weighted mean of the two lengths' tables.
    short, long = (LatencyTable.from_dict(dict(table.to_dict(), seq_length=n,
                                               fixed_seconds=t, info={}))
                   for n, t in ((4, 1.0), (8, 3.0)))
    assert mix_tables([(short, 3), (long, 1)]).fixed_seconds == pytest.approx(1.5)
    with pytest.raises(ValueError, match="tables of one model, batch size and grid"):
        mix_tables([(short, 1), (LatencyTable.from_dict(dict(long.to_dict(), batch_size=4)),
                                 1)])
    with pytest.raises(ValueError, match="weights >= 0 with a positive sum"):
        mix_tables([])
    with pytest.raises(ValueError, match="`lengths` must map sequence lengths"):
        real(config, 2, 8, lengths={"long": 1.0})
