"""`compact`: fold the inference gates into the weights and cut what they prune (§5);
`drop_layers`: keep the bottom encoder layers of a dense model (the layer-dropping baseline)."""

import dataclasses
import numbers

import keras
import numpy as np

from keras_flop.gates.cost import RealizedCounts, StructureAccount, factor_pair_pays
from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.models.bert import bert_structure_of, build_bert_classifier
from keras_flop.gates.structure import all_gates, dense_dims


def _factors(layer, account, counts):
    """`(P, Q)` of a layer with its rank gate folded into `P` and pruned ranks cut, or
    `(kernel, None)` for a `Dense`."""
    if not isinstance(layer, FactorizedDense):
        return np.asarray(layer.kernel), None
    kept, values = account.rank_features(layer, counts)
    return np.asarray(layer.p_kernel)[:, kept] * values, np.asarray(layer.q_kernel)[kept, :]


def _compact_dense(layer, rows, row_scale, cols, out_scale, account, counts):
    """The compact form of one encoder dense layer.

    Keeps input features `rows` (scaled by `row_scale`, the gates on them) and output units
    `cols`, multiplies outputs and bias by `out_scale` (the block's gate), and becomes the
    cheaper in multiply-adds of the factor pair and the merged kernel (the account's
    `factor_pair_pays`, which the parameter count reads too).
    """
    first, second = _factors(layer, account, counts)
    first = first[rows] * row_scale[:, None]
    if second is None:
        kernel = first[:, cols] * out_scale
        factor_pair = None
    else:
        second = second[:, cols] * out_scale
        factor_pair = (first, second)
        kernel = first @ second
    a, b = kernel.shape
    common = dict(activation=layer.activation, use_bias=layer.use_bias, name=layer.name,
                  dtype=layer.dtype_policy)
    if factor_pair is not None and factor_pair_pays(first.shape[1], a, b):
        new = FactorizedDense(b, rank=first.shape[1], gated=False, **common)
        new.build((None, a))
        new.p_kernel.assign(factor_pair[0])
        new.q_kernel.assign(factor_pair[1])
    else:
        new = keras.layers.Dense(b, **common)
        new.build((None, a))
        new.kernel.assign(kernel)
    if layer.use_bias:
        new.bias.assign(np.asarray(layer.bias)[cols] * out_scale)
    return new


def _compact_block(block, account, counts):
    """`(compact layers by name, kept units, the removed block's bias or None)` of one
    attention or FFN block, as the account keeps it."""
    features, values, scale = block.features(counts)
    out = block.consumer
    if len(features) == 0:  # the whole block is gone: only its output bias is left
        if out is None:
            return {}, 0, None
        bias = np.asarray(out.bias) if out.use_bias else np.zeros(dense_dims(out)[1])
        return {}, 0, bias * scale
    layers = {}
    for layer in block.producers:
        rows = np.arange(dense_dims(layer)[0])
        layers[layer.name] = _compact_dense(layer, rows, np.ones(len(rows), "float32"),
                                            features, 1.0, account, counts)
    cols = np.arange(dense_dims(out)[1])
    layers[out.name] = _compact_dense(out, features, values, cols, scale, account, counts)
    return layers, len(features) // block.unit_size, None


def compact(model, threshold=0.0):
    """A plain smaller Keras model: inference gates folded in, pruned units removed.

    Every gate's units whose inference value is `> threshold` are kept (the default 0 makes
    this exact) and the gate values are multiplied into the weights: rank gates into `P`, head
    and FFN-unit masks into the rows of the projection that consumes them, block masks into the
    block's output projection. Pruned heads leave their q/k/v columns and output rows (each
    layer keeps its own head count), pruned FFN units their columns and rows, and a block with
    nothing left becomes a `PrunedSublayer` (its bias). Each factorized layer becomes the
    cheaper in multiply-adds of the factor pair (`FactorizedDense` without a gate, `r·(in+out)`)
    and the merged kernel (`Dense`, `in·out`), so no layer costs more than it did dense.

    Args:
        model: a `PruningModel` or the gated functional network inside it; a model without
            gates (a dense or compact model) is a `ValueError`.
        threshold: gate values at or below it are pruned (the original FLOP used 0.5).

    Returns:
        A `BertClassifier` without gates whose outputs equal `model`'s inference outputs. It
        carries the original `BertConfig` and `num_labels`, and in `layer_shapes` each layer's
        kept head count and FFN width (0 for a removed block); it saves and loads with
        `.keras` (each dense layer's kind and rank with it) and exports like the dense model.

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    >>> heads = pruning_model.network.get_layer("layer_0_head_mask")
    >>> _ = heads.log_alpha.assign([5.0, -5.0])  # the second head pruned
    >>> units = pruning_model.network.get_layer("layer_0_intermediate_mask")
    >>> _ = units.log_alpha.assign([5.0] * 12 + [-5.0] * 4)  # 4 of 16 FFN units pruned
    >>> compact_model = keras_flop.compact(pruning_model)
    >>> compact_model.layer_shapes  # (heads, FFN units) kept in each encoder layer
    ((1, 12),)
    >>> compact_model.count_params() < dense.count_params()
    True
    >>> x = {"token_ids": np.array([[2, 7, 9, 3]], "int32"),
    ...      "segment_ids": np.zeros((1, 4), "int32"), "padding_mask": np.ones((1, 4), bool)}
    >>> np.allclose(compact_model(x), pruning_model(x), atol=1e-5)  # its inference outputs
    True
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or \
            not 0.0 <= threshold < 1.0:
        raise ValueError(f"`threshold` must be a number in [0, 1) (gate values at or below it "
                         f"are pruned); got {threshold!r}.")
    network = getattr(model, "network", model)
    config, num_labels, _ = bert_structure_of(network)
    if not all_gates(network):
        raise ValueError(
            f"Model {network.name!r} has no gates: there is nothing to compact. Factorize and "
            "prune it first (keras_flop.factorize, then fit the pruning model; or "
            "keras_flop.prune_post_training, which returns the compact model).")
    account, counts = StructureAccount(network), RealizedCounts(threshold)
    layers, shapes, biases = {}, [], {}
    for index, pair in enumerate(account.layers):
        shape = []
        for block in pair:
            new, units, bias = _compact_block(block, account, counts)
            layers.update(new)
            shape.append(units)
            if bias is not None:
                consumer = "attention_output" if block.kind == "attention" else "output"
                biases[f"layer_{index}_{consumer}"] = bias
        shapes.append(tuple(shape))

    def reuse(name, units, activation):
        return layers[name]

    compact_model = build_bert_classifier(config, num_labels, dense_factory=reuse,
                                          layer_shapes=shapes, name=f"{network.name}_compact",
                                          dtype=network.dtype_policy)
    for layer in compact_model.layers:
        if layer.name in layers or not layer.weights:
            continue
        owner = layer.name.replace("attention_pruned", "attention_output") \
            .replace("output_pruned", "output")
        if layer.name.endswith("_pruned") and owner in biases:
            layer.bias.assign(biases[owner])
        else:  # a block removed before keeps its bias layer as it is
            layer.set_weights(network.get_layer(layer.name).get_weights())
    return compact_model


def drop_layers(model, num_layers):
    """The dense `model` with only its bottom `num_layers` encoder layers (Sajjad et al.'s
    top-layer dropping): the embeddings, those layers, the pooler and the classifier keep their
    weights; the last kept layer's output goes to the classifier head.

    Args:
        model: a dense `BertClassifier` (no gates, no factorized layers), e.g. a fine-tuned
            teacher.
        num_layers: how many encoder layers to keep, from 1 to the model's count.

    Returns:
        A new `BertClassifier` whose config has `num_hidden_layers = num_layers`; `model` is
        left as it is.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=3,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> keras_flop.drop_layers(dense, 1).bert_config.num_hidden_layers
    1
    """
    network = getattr(model, "network", model)
    config, num_labels, shapes = bert_structure_of(network)
    if not network.is_dense():
        raise ValueError(f"Model {network.name!r} has gates or factorized layers: drop layers of "
                         "the dense fine-tuned model (compact a pruning model with "
                         "keras_flop.compact instead).")
    if isinstance(num_layers, bool) or not isinstance(num_layers, numbers.Integral) or \
            not 1 <= num_layers <= config.num_hidden_layers:
        raise ValueError(f"`num_layers` must be an integer from 1 to the model's "
                         f"{config.num_hidden_layers} encoder layers; got {num_layers!r}.")
    kept = build_bert_classifier(dataclasses.replace(config, num_hidden_layers=int(num_layers)),
                                 num_labels, layer_shapes=shapes[:num_layers],
                                 name=f"{network.name}_{num_layers}_layers",
                                 dtype=network.dtype_policy)
    for layer in kept.layers:
        if layer.weights:  # every kept layer has its namesake in the original
            layer.set_weights(network.get_layer(layer.name).get_weights())
    return kept
