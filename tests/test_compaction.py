"""compact and parameter_report."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.layers import FactorizedDense
from keras_flop.structure import all_gates

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


def _inputs(n=6, seq=10, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.arange(seq)[None, :] < rng.integers(3, seq + 1, n)[:, None]
    return {"token_ids": (rng.integers(1, 50, (n, seq)) * mask).astype("int32"),
            "segment_ids": np.zeros((n, seq), "int32"), "padding_mask": mask}


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
    assert report["dense_total_params"] == 8 * 64 * 32 + 4 * 96 * 32
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
    for key in ("dense_total_params", "dense_pruned_params", "dense_origin_params",
                "dense_sparsity", "non_kernel_params", "total_params", "pruned_total_params",
                "actual_compact_rate"):
        assert f"{key} = " in text
    assert (tmp_path / "info.json").exists()
