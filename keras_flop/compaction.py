"""`compact`: fold the inference gates into the factors and cut the pruned ranks (§5)."""

import keras
import numpy as np

from keras_flop.factorization import rebuild
from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.sparsity import kept_ranks


def _compact_layer(layer, threshold):
    """The cheaper of the kept factor pair and the merged dense kernel, gates folded in."""
    mask = np.asarray(layer.gate.mask(training=False))
    kept = kept_ranks(layer, threshold)
    p = np.asarray(layer.p_kernel)[:, kept] * mask[kept]
    q = np.asarray(layer.q_kernel)[kept, :]
    bias = np.asarray(layer.bias) if layer.use_bias else None
    common = dict(activation=layer.activation, use_bias=layer.use_bias, name=layer.name,
                  dtype=layer.dtype_policy)
    if len(kept) * (layer.input_dim + layer.units) < layer.dense_params:
        new = FactorizedDense(layer.units, rank=len(kept), gated=False, **common)
        new.build((None, layer.input_dim))
        new.p_kernel.assign(p)
        new.q_kernel.assign(q)
    else:
        new = keras.layers.Dense(layer.units, **common)
        new.build((None, layer.input_dim))
        new.kernel.assign(p @ q)
    if bias is not None:
        new.bias.assign(bias)
    return new


def compact(model, threshold=0.0):
    """A plain smaller Keras model: inference gates folded in, pruned ranks removed.

    For every gated layer the ranks whose inference gate is `> threshold` are kept (the default
    0 makes this exact), the gate values are multiplied into `P`, and the layer becomes the
    cheaper in multiply-adds of the factor pair (`FactorizedDense` without a gate, `r·(in+out)`)
    and the merged kernel (`Dense`, `in·out`), so no layer costs more than it did dense. A layer
    with no rank kept outputs its bias.

    Args:
        model: a `PruningModel` or the gated functional network inside it.
        threshold: gate values at or below it are pruned (the original FLOP used 0.5).

    Returns:
        A functional `keras.Model` without gates whose outputs equal `model`'s inference
        outputs. It saves and loads with `.keras` and exports like the dense model.

    Example:
    >>> compact_model = keras_flop.compact(pruning_model)   # doctest: +SKIP
    """
    network = getattr(model, "network", model)

    def replace(layer):
        if isinstance(layer, FactorizedDense) and layer.gate is not None:
            return _compact_layer(layer, threshold)
        return None

    compact_model = rebuild(network, replace)
    compact_model.name = f"{network.name}_compact"
    return compact_model
