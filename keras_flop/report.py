"""`parameter_report`: the original FLOP `info.txt` figures (`algorithm.md` §6)."""

import json
import os

from keras_flop.sparsity import require_gated_layers, compact_cost, kept_ranks


def parameter_report(model, threshold=0.0):
    """Parameter counts of a pruning model before and after compaction.

    Sums run over the gated layers (`P: [a, k]`, `Q: [k, b]`, `c_i` the compact cost):
    `dense_total_params = Σ (a·k + k·b)`, `dense_origin_params = Σ a·b`,
    `dense_pruned_params = Σ c_i`, `dense_sparsity = 1 - pruned / origin`
    (`dense_sparsity_of_factorized = 1 - pruned / total`, the original's figure),
    `non_kernel_params` (embeddings, LayerNorms, biases, pooler, classifier),
    `total_params = origin + non_kernel`, `pruned_total_params = pruned + non_kernel`,
    `actual_compact_rate = pruned_total / total`; plus `kept_ranks` per layer.

    Example:
    >>> report = keras_flop.parameter_report(pruning_model)   # doctest: +SKIP
    >>> report["pruned_total_params"] == keras_flop.compact(pruning_model).count_params()
    True
    """
    network = getattr(model, "network", model)
    layers = require_gated_layers(network)
    dense_total = sum(layer.factor_params for layer in layers)
    dense_origin = sum(layer.dense_params for layer in layers)
    kept = {layer.name: len(kept_ranks(layer, threshold)) for layer in layers}
    dense_pruned = sum(compact_cost(layer, kept[layer.name]) for layer in layers)
    gated_params = sum(layer.factor_params + layer.gate.size for layer in layers)
    non_kernel = network.count_params() - gated_params
    total = dense_origin + non_kernel
    pruned_total = dense_pruned + non_kernel
    return {
        "dense_total_params": dense_total,
        "dense_origin_params": dense_origin,
        "dense_pruned_params": dense_pruned,
        "dense_sparsity": 1.0 - dense_pruned / dense_origin,
        "dense_sparsity_of_factorized": 1.0 - dense_pruned / dense_total,
        "non_kernel_params": non_kernel,
        "total_params": total,
        "pruned_total_params": pruned_total,
        "actual_compact_rate": pruned_total / total,
        "kept_ranks": kept,
    }


def write_parameter_report(report, directory):
    """Writes `info.txt` (one `key = value` per line) and `info.json` into `directory`."""
    os.makedirs(directory, exist_ok=True)
    lines = [f"{key} = {value}" for key, value in report.items() if key != "kept_ranks"]
    lines += [f"kept_rank[{name}] = {rank}" for name, rank in report["kept_ranks"].items()]
    for name, text in (("info.txt", "\n".join(lines) + "\n"),
                       ("info.json", json.dumps(report, indent=2) + "\n")):
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return os.path.join(directory, "info.txt")
