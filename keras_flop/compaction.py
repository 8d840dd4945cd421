"""`compact`: fold the inference gates into the weights and cut what they prune (§5)."""

import keras
import numpy as np

from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.models.bert import bert_structure_of, build_bert_classifier
from keras_flop.structure import (dense_dims, encoder_layer_parts,
                                  kept_units, mask_values)


def _factors(layer, threshold):
    """`(P, Q)` of a layer with its rank gate folded into `P` and pruned ranks cut, or
    `(kernel, None)` for a `Dense`."""
    if not isinstance(layer, FactorizedDense):
        return np.asarray(layer.kernel), None
    p, q = np.asarray(layer.p_kernel), np.asarray(layer.q_kernel)
    if layer.gate is not None:
        kept = kept_units(layer.gate, threshold)
        p = p[:, kept] * mask_values(layer.gate)[kept]
        q = q[kept, :]
    return p, q


def _compact_dense(layer, rows, row_scale, cols, out_scale, threshold):
    """The compact form of one encoder dense layer.

    Keeps input features `rows` (scaled by `row_scale`, the gates on them) and output units
    `cols`, multiplies outputs and bias by `out_scale` (the block's gate), and becomes the
    cheaper in multiply-adds of the factor pair and the merged kernel.
    """
    first, second = _factors(layer, threshold)
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
    if factor_pair is not None and first.shape[1] * (a + b) < a * b:
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


def _block_scale(mask, threshold):
    """The inference value of a block mask (1 without one); 0 when it is pruned."""
    if mask is None:
        return 1.0
    value = float(mask_values(mask)[0])
    return value if value > threshold else 0.0


def _units(mask, unit_size, width, threshold, block_scale):
    """Kept feature indices and their gate values along an axis gated by `mask` in units of
    `unit_size` (every feature when `mask` is None); none when the block is pruned."""
    if block_scale == 0.0:
        return np.zeros(0, int), np.zeros(0, "float32")
    if mask is None:
        return np.arange(width), np.ones(width, "float32")
    kept = kept_units(mask, threshold)
    features = (kept[:, None] * unit_size + np.arange(unit_size)).reshape(-1)
    return features, np.repeat(mask_values(mask)[kept], unit_size)


def _compact_encoder_layer(part, threshold):
    """`(compact layers by name, num_heads, intermediate units, pruned-block biases)`."""
    layers, biases = {}, {}
    blocks = (("attention", ("attention_query", "attention_key", "attention_value"),
               "attention_output", part.masks["head"], part.head_size),
              ("ffn", ("intermediate",), "output", part.masks["intermediate"], 1))
    sizes = []
    for block, producers, consumer, mask, unit_size in blocks:
        scale = _block_scale(part.masks[block], threshold)
        width = dense_dims(part.dense[producers[0]])[1]
        features, values = _units(mask, unit_size, width, threshold, scale)
        sizes.append(len(features) // unit_size)
        out = part.dense[consumer]
        if len(features) == 0:  # the whole block is gone: only its output bias is left
            bias = np.asarray(out.bias) if out.use_bias else np.zeros(dense_dims(out)[1])
            biases[consumer] = bias * scale
            continue
        for suffix in producers:
            layer = part.dense[suffix]
            rows = np.arange(dense_dims(layer)[0])
            layers[layer.name] = _compact_dense(layer, rows, np.ones(len(rows), "float32"),
                                                features, 1.0, threshold)
        cols = np.arange(dense_dims(out)[1])
        layers[out.name] = _compact_dense(out, features, values, cols, scale, threshold)
    return layers, sizes[0], sizes[1], biases


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
        model: a `PruningModel` or the gated functional network inside it.
        threshold: gate values at or below it are pruned (the original FLOP used 0.5).

    Returns:
        A `BertClassifier` without gates whose outputs equal `model`'s inference outputs. It
        carries the original `BertConfig` and `num_labels`, and in `layer_shapes` each layer's
        kept head count and FFN width (0 for a removed block); it saves and loads with
        `.keras` (each dense layer's kind and rank with it) and exports like the dense model.

    Example:
    >>> compact_model = keras_flop.compact(pruning_model)   # doctest: +SKIP
    """
    network = getattr(model, "network", model)
    config, num_labels, _ = bert_structure_of(network)
    layers, shapes, biases = {}, [], {}
    for part in encoder_layer_parts(network):
        new, heads, units, pruned = _compact_encoder_layer(part, threshold)
        layers.update(new)
        shapes.append((heads, units))
        biases.update({f"layer_{part.index}_{name}": bias for name, bias in pruned.items()})

    def reuse(name, units, activation):
        return layers[name]

    compact_model = build_bert_classifier(config, num_labels, dense_factory=reuse,
                                          layer_shapes=shapes, name=f"{network.name}_compact",
                                          dtype=network.dtype_policy)
    for layer in compact_model.layers:
        if layer.name in layers or not layer.weights:
            continue
        if layer.name.endswith("_pruned"):
            owner = layer.name.replace("attention_pruned", "attention_output") \
                .replace("output_pruned", "output")
            layer.bias.assign(biases[owner])
        else:
            layer.set_weights(network.get_layer(layer.name).get_weights())
    return compact_model
