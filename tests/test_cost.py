"""The account of what each gate controls."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.cost import RealizedCounts, StructureAccount
from keras_flop.structure import all_gates

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=48, max_position_embeddings=16)
_ENCODER = ("attention_query", "attention_key", "attention_value", "attention_output",
            "intermediate", "output", "attention_pruned", "output_pruned")


def _dense(seed=0):
    keras.utils.set_random_seed(seed)
    return build_bert_classifier(BertConfig(**TINY))


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
