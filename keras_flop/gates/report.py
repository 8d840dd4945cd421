"""`parameter_report`: the original FLOP `info.txt` figures (`algorithm.md` §6)."""

import json
import os

from keras_flop.gates.cost import RealizedCounts, require_account
from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.gates.sparsity import realized_sparsity


def parameter_report(model, threshold=0.0):
    """Parameter counts of a pruning model before and after compaction.

    Sums run over the encoder dense layers (`a·b` dense, `c_i` the compact cost of the kernel,
    see `keras_flop.kept_parameters`): `factorized_kernel_params` (their kernels as they are
    in the pruning model: `(a+b)·k` when factorized; the original FLOP code called it
    `dense_total_params`), `dense_origin_params = Σ a·b`, `dense_pruned_params = Σ c_i`,
    `dense_sparsity = 1 - pruned / origin` (`dense_sparsity_of_factorized = 1 - pruned /
    factorized`, the original's figure),
    `non_kernel_params` (embeddings, LayerNorms, biases, pooler, classifier),
    `total_params = origin + non_kernel`, `pruned_total_params` (the compact model's count:
    pruned kernels plus what is left of the rest), `actual_compact_rate = pruned_total /
    total`; plus `kept_ranks` per factorized layer and, with structural gates, `kept_heads` and
    `kept_ffn_units` per encoder layer.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> pruning_model = keras_flop.factorize(keras_flop.build_bert_classifier(config))
    >>> report = keras_flop.parameter_report(pruning_model)
    >>> report["pruned_total_params"] == keras_flop.compact(pruning_model).count_params()
    True
    """
    network = getattr(model, "network", model)
    account = require_account(network)
    counts = RealizedCounts(threshold)
    dense_total = account.factorized_params()
    dense_origin = account.dense_params()
    dense_pruned = int(account.kernel_params(counts))
    biases = sum(int(layer.bias.shape[0]) for layer in account.dense_layers() if layer.use_bias)
    gates = sum(gate.size for gate in account.gates())
    other = network.count_params() - dense_total - biases - gates
    non_kernel = other + biases
    total = dense_origin + non_kernel
    pruned_total = dense_pruned + other + account.bias_params(counts)
    report = {
        "factorized_kernel_params": dense_total,
        "dense_origin_params": dense_origin,
        "dense_pruned_params": dense_pruned,
        "dense_sparsity": realized_sparsity(network, threshold),
        "dense_sparsity_of_factorized": 1.0 - dense_pruned / dense_total,
        "non_kernel_params": non_kernel,
        "total_params": total,
        "pruned_total_params": pruned_total,
        "actual_compact_rate": pruned_total / total,
        "kept_ranks": {layer.name: counts.count(layer.gate)
                       for layer in account.dense_layers()
                       if isinstance(layer, FactorizedDense) and layer.gate is not None},
    }
    for key, index in (("kept_heads", 0), ("kept_ffn_units", 1)):
        blocks = [pair[index] for pair in account.layers]
        if any(block.unit_mask is not None for block in blocks):
            report[key] = {f"layer_{layer}": (block.kept_units(counts) if block.unit_mask
                                              is not None else None)
                           for layer, block in enumerate(blocks)}
    return report


def write_parameter_report(report, directory):
    """Writes `info.txt` (one `key = value` per line) and `info.json` into `directory`."""
    os.makedirs(directory, exist_ok=True)
    per_unit = {"kept_ranks": "kept_rank", "kept_heads": "kept_heads",
                "kept_ffn_units": "kept_ffn_units"}
    lines = [f"{key} = {value}" for key, value in report.items() if key not in per_unit]
    for key, label in per_unit.items():
        lines += [f"{label}[{name}] = {value}" for name, value in report.get(key, {}).items()]
    for name, text in (("info.txt", "\n".join(lines) + "\n"),
                       ("info.json", json.dumps(report, indent=2) + "\n")):
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return os.path.join(directory, "info.txt")
