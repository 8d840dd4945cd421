"""The arguments of `PruningModel` (and of `factorize`, which passes them on): their kinds,
checked before anything is built, and their values, with the target they resolve to."""

import numbers

import keras

from keras_flop.gates.cost import DENOMINATORS, check_cost
from keras_flop.lagrangian.family import family_targets

CONSTRAINTS = ("equality", "absolute")

# The keyword arguments of `PruningModel` that `factorize` passes on, by the kind of value each
# takes (None is allowed for all of them); the strings and the latency table are checked by
# the model itself.
_REALS = ("target_sparsity", "target_sparsity_start", "regularization_scale", "distillation_weight",
          "distillation_temperature", "hidden_distillation_weight", "target_speedup",
          "target_tolerance")
_INTEGERS = ("pruning_steps", "target_sparsity_warmup", "hold_steps", "ramp_steps")
_REAL_LISTS = ("targets", "target_speedups")
_OTHERS = ("sparsity_denominator", "teacher", "constraint", "cost", "latency_table")
PRUNING_ARGUMENTS = _REALS + _INTEGERS + _REAL_LISTS + _OTHERS


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def shown(value):
    return f"{value!r} ({type(value).__name__})"


def check_pruning_arguments(arguments, caller="factorize"):
    """Raises a `TypeError` naming the argument for a `PruningModel` keyword argument of the
    wrong kind: a number given as a string, a step count that is not an integer (2.7 steps is
    not silently 2), a family's targets that are not a list of numbers, or a name the model
    does not take. Values are checked by the model (ranges, choices).

    Example:
    >>> check_pruning_arguments({"target_sparsity": "0.5"})
    Traceback (most recent call last):
    ...
    TypeError: factorize: `target_sparsity` must be a number; got '0.5' (str).
    """
    unknown = sorted(set(arguments) - set(PRUNING_ARGUMENTS))
    if unknown:
        raise TypeError(f"{caller} got unexpected keyword argument(s) {unknown}; the pruning "
                        f"model takes {sorted(PRUNING_ARGUMENTS)}.")
    for name, value in arguments.items():
        if value is None:
            continue
        if name in _REALS and not is_real(value):
            raise TypeError(f"{caller}: `{name}` must be a number; got {shown(value)}.")
        if name in _INTEGERS and not is_integer(value):
            raise TypeError(f"{caller}: `{name}` must be an integer (a number of steps); got "
                            f"{shown(value)}.")
        if name in _REAL_LISTS and (isinstance(value, (str, bytes)) or
                                    not hasattr(value, "__iter__") or
                                    not all(is_real(v) for v in value)):
            raise TypeError(f"{caller}: `{name}` must be a list of numbers; got "
                            f"{shown(value)}.")
        if name == "teacher" and not isinstance(value, keras.Model):
            raise TypeError(f"{caller}: `teacher` must be a Keras model (the fine-tuned dense "
                            f"model); got {type(value).__name__}.")


def check_target_start(value):
    """`target_sparsity_start` as a float, or a `ValueError` saying what it takes.

    >>> check_target_start(0.45)
    0.45
    """
    if not is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError("`target_sparsity_start` must be a number in [0, 1) (the target at "
                         f"step 0, e.g. the gates' expected sparsity); got {shown(value)}.")
    return float(value)


def check_pruning_values(target_sparsity, target_speedup, targets, target_speedups, cost,
                         latency_table, constraint, pruning_steps, hold_steps,
                         target_sparsity_warmup, sparsity_denominator, regularization_scale):
    """`(target_sparsity, targets)` the arguments resolve to: the single target (0.5 when none
    is given; `1 - 1/S` for `target_speedup=S`; a family's last target) and a family's target
    sparsities, or None. Raises a `ValueError` that names the argument for a value out of its
    range, a choice that does not exist, or arguments that exclude each other.

    Example:
    >>> arguments = dict(target_sparsity=None, target_speedup=None, targets=None,
    ...                  target_speedups=None, cost="params", latency_table=None,
    ...                  pruning_steps=None, hold_steps=None, target_sparsity_warmup=None,
    ...                  sparsity_denominator="dense", regularization_scale=0.0)
    >>> check_pruning_values(constraint="absolute", **arguments)
    (0.5, None)
    >>> check_pruning_values(constraint="strict", **arguments)
    Traceback (most recent call last):
    ...
    ValueError: `constraint` must be one of ('equality', 'absolute'); got 'strict'.
    """
    if constraint not in CONSTRAINTS:
        raise ValueError(f"`constraint` must be one of {CONSTRAINTS}; got {constraint!r}.")
    check_cost(cost, latency_table)
    if target_speedup is not None:
        if cost != "latency":
            raise ValueError("`target_speedup` is a latency target: pass cost='latency' "
                             "and a `latency_table` (keras_flop.measure_latency_table).")
        if not target_speedup >= 1.0:
            raise ValueError(f"`target_speedup` must be >= 1; got {target_speedup}.")
        if target_sparsity is not None:
            raise ValueError("Pass either `target_speedup` or `target_sparsity`, not both "
                             "(a speedup S is the latency sparsity 1 - 1/S).")
        target_sparsity = 1.0 - 1.0 / target_speedup
    if (targets is not None or target_speedups is not None) and \
            (target_sparsity is not None or target_speedup is not None):
        raise ValueError("A family's `targets`/`target_speedups` replace `target_sparsity` "
                         "and `target_speedup`: pass one of them only.")
    targets = family_targets(targets, target_speedups, cost)
    if targets is not None:
        target_sparsity = targets[-1]
        if pruning_steps is None and hold_steps is None:
            raise ValueError("`targets` needs `pruning_steps` (the run's length sizes the "
                             "ramps and holds) or `hold_steps`.")
    if target_sparsity is None:
        target_sparsity = 0.5
    if not 0.0 <= target_sparsity < 1.0:
        raise ValueError(f"`target_sparsity` must be in [0, 1); got {target_sparsity}.")
    if pruning_steps is not None and (isinstance(pruning_steps, bool) or
                                      int(pruning_steps) < 1):
        raise ValueError(f"`pruning_steps` must be an integer >= 1 or None; got "
                         f"{pruning_steps}.")
    if target_sparsity_warmup is not None and (isinstance(target_sparsity_warmup, bool)
                                               or int(target_sparsity_warmup) < 0):
        raise ValueError("`target_sparsity_warmup` must be an integer >= 0; got "
                         f"{target_sparsity_warmup}.")
    if sparsity_denominator not in DENOMINATORS:
        raise ValueError(f"`sparsity_denominator` must be one of {DENOMINATORS}; got "
                         f"{sparsity_denominator!r}.")
    if regularization_scale < 0:
        raise ValueError(f"`regularization_scale` must be >= 0; got {regularization_scale}.")
    return target_sparsity, targets
