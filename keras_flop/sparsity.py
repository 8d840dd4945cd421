"""Expected and realized sparsity of a gated model (`algorithm.md` §3, §5).

Every encoder dense layer `[a, b]` (factorized at rank `k` or not) counts its kernel
parameters given how many of its units its gates keep: the rank gate sets `k`, a head mask the
output width of q/k/v and the input width of the attention output, an FFN-unit mask the width
of the intermediate layer, a block mask the whole block. The same formula gives the
differentiable expectation (kept counts replaced by `Σ P(z ≠ 0)`) and the realized count of
the compacted model.
"""

import numpy as np
from keras import ops

from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.structure import all_gates, dense_dims, encoder_layer_parts, kept_units

DENOMINATORS = ("dense", "factorized")


def _network(model):
    return getattr(model, "network", model)


def require_gates(model):
    """The encoder layer parts of a pruning model (or its network); an error if it has no
    gate."""
    network = _network(model)
    if not all_gates(network):
        raise ValueError(f"Model {model.name!r} has no gates: build the pruning model with "
                         "keras_flop.factorize(...) first.")
    return encoder_layer_parts(network)


def _kernel_params(parts, count, any_kept, realized):
    """`Σ` over the encoder dense layers of their kernel parameters, with every gate's kept
    units given by `count(mask)` and whether any is kept by `any_kept(mask)` (expectations or
    realized counts).

    A factorized layer whose gated side loses every unit loses its other factor too
    (compaction removes the whole block), hence the `any_kept` factor on the ungated side.
    """
    total = 0.0
    for part in parts:
        for suffix, layer in part.dense.items():
            a, b = dense_dims(layer)
            alive = 1.0
            mask, unit = part.input_mask(suffix)
            if mask is not None:
                a, alive = unit * count(mask), any_kept(mask)
            mask, unit = part.output_mask(suffix)
            if mask is not None:
                b, alive = unit * count(mask), any_kept(mask)
            if isinstance(layer, FactorizedDense):
                rank = count(layer.gate) if layer.gate is not None else layer.rank
                gated_in = part.input_mask(suffix)[0] is not None
                cost = rank * ((a + b * alive) if gated_in else (a * alive + b))
                if realized:  # compaction keeps the cheaper of the factor pair and the merge
                    cost = min(cost, a * b)
            else:
                cost = a * b
            block = part.block_mask(suffix)
            if block is not None:
                cost = count(block) * cost
            total = total + cost
    return total


def sparsity_denominator(model, denominator="dense"):
    """`Σ a·b` over the encoder dense layers (`"dense"`), or their parameters as they are in
    the network (`"factorized"`: `(a+b)·k` for a factorized layer)."""
    if denominator not in DENOMINATORS:
        raise ValueError(f"`sparsity_denominator` must be one of {DENOMINATORS}; "
                         f"got {denominator!r}.")
    parts = require_gates(model)
    layers = [layer for part in parts for layer in part.dense.values()]
    if denominator == "dense":
        return float(sum(np.prod(dense_dims(layer)) for layer in layers))
    return float(sum(layer.factor_params if isinstance(layer, FactorizedDense)
                     else np.prod(dense_dims(layer)) for layer in layers))


def expected_sparsity(model, denominator="dense"):
    """The differentiable expected fraction of prunable parameters removed, `ŝ`.

    `ŝ = 1 - E[kept kernel parameters] / D`: for a factorized layer `P: [a, k]`, `Q: [k, b]`
    with rank gate `z`, `(a + b) Σ_j P(z_j ≠ 0)`; structural masks scale the widths and blocks
    they gate (module docstring), and a factor whose other side may lose every unit counts
    with the probability that some unit is kept, `1 - Π_j (1 - P(z_j ≠ 0))`. `D` per
    `sparsity_denominator`. A float32 scalar tensor; with the dense denominator a full-rank
    factorization starts below 0 (a square kernel is twice as large factored).

    Example:
    >>> pruning_model = keras_flop.factorize(model)        # doctest: +SKIP
    >>> float(keras_flop.expected_sparsity(pruning_model))  # doctest: +SKIP
    -0.75
    """
    parts = require_gates(model)
    expected = _kernel_params(
        parts, lambda mask: mask.l0_norm(),
        lambda mask: 1.0 - ops.prod(1.0 - mask.prob_nonzero()), realized=False)
    expected = ops.cast(ops.convert_to_tensor(expected), "float32")
    return 1.0 - expected / sparsity_denominator(model, denominator)


def kept_parameters(model, threshold=0.0):
    """Kernel parameters of the encoder dense layers after compaction under the inference
    mask.

    Each factorized layer costs the cheaper of its kept factor pair and its merged dense
    kernel, as `keras_flop.compact` builds it; pruned heads, FFN units and blocks cost
    nothing; biases are not counted.
    """
    parts = require_gates(model)

    def count(mask):
        return len(kept_units(mask, threshold))

    return int(_kernel_params(parts, count, lambda mask: int(count(mask) > 0), realized=True))


def realized_sparsity(model, threshold=0.0):
    """`1 - kept_parameters / Σ a·b`: the sparsity of the encoder's dense weights in the
    compact model that `keras_flop.compact` builds under the inference mask."""
    return 1.0 - kept_parameters(model, threshold) / sparsity_denominator(model, "dense")


def _shift_towards(variables, target, realized, iterations):
    """Adds one constant to every `log_alpha` in `variables`, the one whose realized
    sparsity is closest to `target` (bisection: the realized sparsity falls as the shift
    grows); returns it."""
    originals = [np.asarray(variable) for variable in variables]

    def realized_at(shift):
        for variable, value in zip(variables, originals):
            variable.assign(value + shift)
        return realized()

    low, high = -30.0, 30.0  # `high` opens every one of these gates, `low` closes them
    if realized_at(high) >= target:
        return high  # even all open, the other gates prune more than the target
    if realized_at(low) < target:
        return low
    for _ in range(iterations):
        middle = (low + high) / 2.0
        if realized_at(middle) >= target:
            low = middle
        else:
            high = middle
    best = min((low, high), key=lambda shift: abs(realized_at(shift) - target))
    realized_at(best)
    return best


def calibrate_mask(model, target, tolerance=0.005, threshold=0.0, iterations=40):
    """Shifts the gates' `log_alpha` so that the compact model's sparsity
    (`realized_sparsity`) is as close to `target` as the gates allow, unless it is within
    `tolerance` of it already; returns the two shifts `(all_gates, unit_gates)`, `(0.0, 0.0)`
    when nothing changed.

    Training brings the expected sparsity `ŝ` to the target, but the inference mask rounds
    each gate on its own: where gates end undecided (`p(z ≠ 0)` near 1/2), a kept block
    times its rounded units can keep far more than `ŝ` says, and a dropped block far less.
    One shift of every gate first settles the blocks; a second shift of the rank, head and
    FFN-unit gates only then fills the gap the coarse blocks leave. A shared shift keeps the
    order of the units within and across gates and moves the realized sparsity
    monotonically, so a bisection finds it; after a run whose gates have decided, nothing is
    changed.
    """
    if not 0.0 <= target < 1.0:
        raise ValueError(f"`target` must be in [0, 1); got {target}.")
    blocks = {id(part.masks[kind]) for part in require_gates(model)
              for kind in ("attention", "ffn")}
    gates = all_gates(_network(model))

    def realized():
        return realized_sparsity(model, threshold)

    if abs(realized() - target) <= tolerance:
        return 0.0, 0.0
    shifts = [_shift_towards([gate.log_alpha for gate in gates], target, realized,
                             iterations), 0.0]
    units = [gate.log_alpha for gate in gates if id(gate) not in blocks]
    if abs(realized() - target) > tolerance and len(units) < len(gates) and units:
        shifts[1] = _shift_towards(units, target, realized, iterations)
    return tuple(shifts)
