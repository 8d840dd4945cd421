"""Expected and realized sparsity of a gated model (`algorithm.md` §3, §5).

Every figure here reads `keras_flop.gates.cost.StructureAccount`, which states what each gate (rank,
head, FFN unit, block) keeps: the differentiable expectation counts kept units as `Σ P(z ≠ 0)`,
the realized figures count the units of the inference mask that `keras_flop.compact` keeps.
"""

import dataclasses

import numpy as np

from keras_flop.gates.cost import ExpectedCounts, ParamsCost, RealizedCounts, require_account


def sparsity_denominator(model, denominator="dense"):
    """`Σ a·b` over the encoder dense layers (`"dense"`), or their parameters as they are in
    the network (`"factorized"`: `(a+b)·k` for a factorized layer)."""
    return ParamsCost(denominator).total(require_account(model))


def expected_sparsity(model, denominator="dense"):
    """The differentiable expected fraction of prunable parameters removed, `ŝ`.

    `ŝ = 1 - E[kept kernel parameters] / D`: for a factorized layer `P: [a, k]`, `Q: [k, b]`
    with rank gate `z`, `(a + b) Σ_j P(z_j ≠ 0)`; structural masks scale the widths and blocks
    they gate (`keras_flop.gates.cost.Block.kernel_params`), and a factor whose other side may lose
    every unit counts with the probability that some unit is kept,
    `1 - Π_j (1 - P(z_j ≠ 0))`. `D` per `sparsity_denominator`. A float32 scalar tensor; with
    the dense denominator a full-rank factorization starts below 0 (a square kernel is twice
    as large factored).

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> pruning_model = keras_flop.factorize(keras_flop.build_bert_classifier(config))
    >>> round(float(keras_flop.expected_sparsity(pruning_model)), 2)  # full rank, gates open
    -0.75
    >>> round(float(keras_flop.expected_sparsity(pruning_model, denominator="factorized")), 2)
    0.0
    """
    return ParamsCost(denominator).sparsity(require_account(model), ExpectedCounts())


def kept_parameters(model, threshold=0.0):
    """Kernel parameters of the encoder dense layers after compaction under the inference
    mask.

    Each factorized layer costs the cheaper of its kept factor pair and its merged dense
    kernel, as `keras_flop.compact` builds it; pruned heads, FFN units and blocks cost
    nothing; biases are not counted.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> pruning_model = keras_flop.factorize(keras_flop.build_bert_classifier(config))
    >>> keras_flop.kept_parameters(pruning_model)  # full rank compacts to the dense kernels
    512
    >>> gate = pruning_model.network.get_layer("layer_0_intermediate").gate
    >>> _ = gate.log_alpha.assign([5.0] * 2 + [-5.0] * 6)  # keep 2 of its 8 ranks
    >>> keras_flop.kept_parameters(pruning_model)  # its [8, 16] kernel as 2 · (8 + 16)
    432
    """
    return int(require_account(model).kernel_params(RealizedCounts(threshold)))


def realized_sparsity(model, threshold=0.0, cost="params"):
    """`1 - kept_parameters / Σ a·b`: the sparsity of the encoder's dense weights in the
    compact model that `keras_flop.compact` builds under the inference mask; or the sparsity
    of another `cost` (`cost_of`; None: the pruning model's own, e.g. `1 - latency / dense
    latency` predicted by its latency table).

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    >>> keras_flop.realized_sparsity(pruning_model)
    0.0
    >>> heads = pruning_model.network.get_layer("layer_0_head_mask")
    >>> _ = heads.log_alpha.assign([5.0, -5.0])  # prune the second of the two heads
    >>> keras_flop.realized_sparsity(pruning_model)  # half of q, k, v and attention output
    0.25
    """
    account = require_account(model)
    cost = ParamsCost("dense") if cost == "params" else cost_of(model, cost)
    cost.check(account)
    return float(cost.sparsity(account, RealizedCounts(threshold)))


def cost_of(model, cost=None):
    """The cost model `cost` names: `"params"`, a cost object (`keras_flop.gates.cost.ParamsCost`,
    `keras_flop.latency.table.LatencyCost`), or None for the pruning model's own (`"params"` for a
    bare network)."""
    if cost is None:
        return getattr(model, "cost_model", None) or ParamsCost()
    if cost == "params":
        return ParamsCost()
    if hasattr(cost, "sparsity") and hasattr(cost, "total"):
        return cost
    raise ValueError(f"`cost` must be 'params', a cost object (keras_flop.gates.cost.ParamsCost, "
                     f"keras_flop.latency.table.LatencyCost) or None; got {cost!r}.")


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


def calibrate_mask(model, target, tolerance=0.005, threshold=0.0, iterations=40, cost=None):
    """Shifts the gates' `log_alpha` so that the compact model's sparsity
    (`realized_sparsity`) is as close to `target` as the gates allow, unless it is within
    `tolerance` of it already; returns the two shifts `(all_gates, unit_gates)`, `(0.0, 0.0)`
    when nothing changed. The sparsity is that of `cost` (`cost_of`): by default the pruning
    model's own, so a model pruned to a speedup is calibrated to its latency.

    Training brings the expected sparsity `ŝ` to the target, but the inference mask rounds
    each gate on its own: where gates end undecided (`p(z ≠ 0)` near 1/2), a kept block
    times its rounded units can keep far more than `ŝ` says, and a dropped block far less.
    One shift of every gate first settles the blocks; a second shift of the rank, head and
    FFN-unit gates only then fills the gap the coarse blocks leave. A shared shift keeps the
    order of the units within and across gates and moves the realized sparsity
    monotonically, so a bisection finds it; after a run whose gates have decided, nothing is
    changed.

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    >>> rng = np.random.default_rng(0)
    >>> for log_alpha in pruning_model.gate_variables:  # gates left undecided by training
    ...     _ = log_alpha.assign(rng.normal(-1.5, 0.5, log_alpha.shape).astype("float32"))
    >>> round(float(keras_flop.expected_sparsity(pruning_model)), 2)
    0.31
    >>> keras_flop.realized_sparsity(pruning_model)  # each gate rounded on its own
    0.03125
    >>> shifts = keras_flop.calibrate_mask(pruning_model, 0.3, tolerance=0.02)
    >>> keras_flop.realized_sparsity(pruning_model)
    0.3125
    >>> keras_flop.calibrate_mask(pruning_model, 0.3, tolerance=0.02)  # close enough already
    (0.0, 0.0)
    """
    if not 0.0 <= target < 1.0:
        raise ValueError(f"`target` must be in [0, 1); got {target}.")
    account = require_account(model)
    cost = cost_of(model, cost)
    cost.check(account)
    blocks = {id(block.block_mask) for block in account.blocks}
    gates = account.gates()

    def realized():
        return float(cost.sparsity(account, RealizedCounts(threshold)))

    if abs(realized() - target) <= tolerance:
        return 0.0, 0.0
    shifts = [_shift_towards([gate.log_alpha for gate in gates], target, realized,
                             iterations), 0.0]
    units = [gate.log_alpha for gate in gates if id(gate) not in blocks]
    if abs(realized() - target) > tolerance and len(units) < len(gates) and units:
        shifts[1] = _shift_towards(units, target, realized, iterations)
    return tuple(shifts)


# How far from its target a pruning run may end and still count as having reached it: the
# inference mask is then calibrated to the target (`calibrate_if_reached`), and the apps
# report a compact model further from it as short.
TARGET_TOLERANCE = 0.02


@dataclasses.dataclass
class Calibration:
    """What `calibrate_if_reached` found and did: the expected sparsity `expected` at the end
    of training, whether it was within the tolerance of the target (`reached`), the compact
    model's sparsity before and after, and the two `log_alpha` shifts (`(0.0, 0.0)`: none)."""

    expected: float
    reached: bool
    before: float
    after: float
    shifts: tuple = (0.0, 0.0)


def calibrate_if_reached(model, target, threshold=0.0, tolerance=TARGET_TOLERANCE):
    """The inference mask keeps a target that training reached: when the expected sparsity
    `ŝ` of the pruning model's own cost (parameters, or latency under a speedup target) is
    within `tolerance` of `target`, the gates are
    shifted so that the compact model's sparsity is the target (`calibrate_mask`); a run that
    ended further away is left as it is (its gates say what the training found). Returns a
    `Calibration`.

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    >>> rng = np.random.default_rng(0)
    >>> for log_alpha in pruning_model.gate_variables:  # gates left undecided by training
    ...     _ = log_alpha.assign(rng.normal(-1.5, 0.5, log_alpha.shape).astype("float32"))
    >>> round(float(pruning_model.expected_sparsity()), 2)
    0.31
    >>> from keras_flop.gates.sparsity import calibrate_if_reached
    >>> calibrate_if_reached(pruning_model, 0.5).reached  # ŝ is 0.19 short: left as it is
    False
    >>> calibration = calibrate_if_reached(pruning_model, 0.3)
    >>> calibration.reached, calibration.before, calibration.after
    (True, 0.03125, 0.3125)
    """
    if not callable(getattr(model, "expected_sparsity", None)):
        raise ValueError("`calibrate_if_reached` reads the training's expected cost: pass the "
                         f"PruningModel (keras_flop.factorize); got {type(model).__name__}.")
    expected = float(model.expected_sparsity())
    before = float(realized_sparsity(model, threshold, cost=None))
    if abs(expected - target) > tolerance:
        return Calibration(expected, False, before, before)
    shifts = calibrate_mask(model, target, threshold=threshold)
    after = float(realized_sparsity(model, threshold, cost=None)) if any(shifts) else before
    return Calibration(expected, True, before, after, tuple(shifts))
