"""Expected and realized sparsity of a gated model (`algorithm.md` §3, §5)."""

import numpy as np
from keras import ops

from keras_flop.factorization import gated_layers

DENOMINATORS = ("dense", "factorized")


def _network(model):
    return getattr(model, "network", model)


def require_gated_layers(model):
    """The gated layers of a pruning model (or its network); an error if it has none."""
    layers = gated_layers(_network(model))
    if not layers:
        raise ValueError(f"Model {model.name!r} has no gated FactorizedDense layers: build the "
                         "pruning model with keras_flop.factorize(...) first.")
    return layers


def sparsity_denominator(model, denominator="dense"):
    """`Σ a·b` over the gated layers (`"dense"`) or `Σ (a+b)·k` at their ranks (`"factorized"`)."""
    if denominator not in DENOMINATORS:
        raise ValueError(f"`sparsity_denominator` must be one of {DENOMINATORS}; "
                         f"got {denominator!r}.")
    layers = require_gated_layers(model)
    if denominator == "dense":
        return float(sum(layer.dense_params for layer in layers))
    return float(sum(layer.factor_params for layer in layers))


def expected_sparsity(model, denominator="dense"):
    """The differentiable expected fraction of prunable parameters removed, `ŝ`.

    `ŝ = 1 - Σ_i (a_i + b_i) Σ_j P(z_ij ≠ 0) / D` over the gated layers `P: [a, k]`, `Q: [k, b]`;
    `D` per `sparsity_denominator`. A float32 scalar tensor; with the dense denominator a
    full-rank factorization starts below 0 (a square kernel is twice as large factored).

    Example:
    >>> pruning_model = keras_flop.factorize(model)        # doctest: +SKIP
    >>> float(keras_flop.expected_sparsity(pruning_model))  # doctest: +SKIP
    -0.75
    """
    layers = require_gated_layers(model)
    expected = ops.sum(ops.stack([
        float(layer.input_dim + layer.units) * layer.gate.l0_norm() for layer in layers]))
    return 1.0 - expected / sparsity_denominator(model, denominator)


def kept_ranks(layer, threshold=0.0):
    """Indices of the ranks of a gated layer whose inference gate exceeds `threshold`."""
    mask = np.asarray(layer.gate.mask(training=False))
    return np.flatnonzero(mask > threshold)


def compact_cost(layer, kept):
    """Parameters of the compact form of a layer keeping `kept` ranks: the cheaper of the
    factor pair `kept·(a+b)` and the merged dense kernel `a·b`."""
    return min(kept * (layer.input_dim + layer.units), layer.dense_params)


def kept_parameters(model, threshold=0.0):
    """Kernel parameters of the gated layers after compaction under the inference mask.

    Each layer costs the cheaper of its kept factor pair and its merged dense kernel, as
    `keras_flop.compact` builds it; biases are not counted.
    """
    return int(sum(compact_cost(layer, len(kept_ranks(layer, threshold)))
                   for layer in require_gated_layers(model)))
