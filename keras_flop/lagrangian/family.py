"""A family of targets pruned in one run: the target's schedule and the members' snapshots.

The target ramps to the first member's target and stays there until the constraint is met,
`|ŝ - t| <= tolerance`, for `hold_steps` steps in a row; the network's trainable weights are
then copied into that member's snapshot and the target ramps on to the next member. Every part
of that state is a variable of the `TargetFamily` layer, so a checkpoint or a `.keras` file of
the model that holds it keeps it, and a resumed run goes on where it stopped.
"""

import keras
import numpy as np
from keras import ops

# How close `ŝ` must be to a member's target for the constraint to count as met.
DEFAULT_TOLERANCE = 0.01


def family_targets(targets, target_speedups, cost):
    """A family's target sparsities, checked, or None when neither list is given.

    Example:
    >>> from keras_flop.lagrangian.family import family_targets
    >>> family_targets((0.3, 0.5), None, cost="params")
    (0.3, 0.5)
    >>> family_targets(None, (2, 4), cost="latency")  # speedup S is the sparsity 1 - 1/S
    (0.5, 0.75)
    >>> family_targets((0.5, 0.3), None, cost="params")
    Traceback (most recent call last):
    ...
    ValueError: `targets` must be increasing, without duplicates (...); got (0.5, 0.3).
    """
    if targets is None and target_speedups is None:
        return None
    if targets is not None and target_speedups is not None:
        raise ValueError("Pass either `targets` (sparsities) or `target_speedups`, not both.")
    name, values = ("targets", targets) if target_speedups is None else \
        ("target_speedups", target_speedups)
    values = tuple(float(v) for v in values)
    if len(values) < 2:
        raise ValueError(f"`{name}` must list at least two values (one target: "
                         f"`target_sparsity` or `target_speedup`); got {values}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"`{name}` must be increasing, without duplicates (the target "
                         f"ramps from one to the next); got {values}.")
    if target_speedups is not None:
        if cost != "latency":
            raise ValueError("`target_speedups` are latency targets: pass cost='latency' and "
                             "a `latency_table` (keras_flop.measure_latency_table).")
        if values[0] < 1.0:
            raise ValueError(f"`target_speedups` must be >= 1; got {values}.")
        return tuple(1.0 - 1.0 / v for v in values)
    if not (0.0 <= values[0] and values[-1] < 1.0):
        raise ValueError(f"`targets` must be in [0, 1); got {values}.")
    return values


class TargetFamily(keras.layers.Layer):
    """The schedule and snapshots of a family of targets, for a `PruningModel`.

    Sized from the run's `pruning_steps` `P` unless given: the first ramp is the model's target
    warmup, later ramps `P // 10` steps, hold `max(1, P // 20)` steps. Three members' schedule
    then takes `0.55 P`; the rest of the run is the time `ŝ` takes to catch up with each ramp.

    Args:
        targets: increasing target sparsities of the cost model (at least two).
        weights: the network's trainable weights, the ones each snapshot copies (kept out of
            this layer's own weights).
        speedups: the speedups the targets came from (`1 - 1/S`), for the status and messages.
        hold_steps: steps the constraint must hold at a member's target before its snapshot.
        ramp_steps: steps of the ramp from one member's target to the next.
        tolerance: `|ŝ - t|` at which the constraint counts as met.

    Example (a `PruningModel` built with `targets=` drives its own; here, by hand, the
    weights are one variable and the steps int64 like the model's step counter):
    >>> import keras, numpy as np
    >>> from keras_flop.lagrangian.family import TargetFamily
    >>> weight = keras.Variable([1.0, 2.0])
    >>> family = TargetFamily((0.3, 0.5), [weight], hold_steps=2)
    >>> [round(float(family.target(np.int64(step), 2, 0)[0]), 2) for step in range(3)]
    [0.0, 0.15, 0.3]
    >>> for step in (2, 3):  # ŝ at the first target for two steps: member 0's snapshot
    ...     family.advance(0.3, np.int64(step), first_ramp=2, ramp_steps=0, hold_steps=2)
    >>> family.status(), family.missing()
    ([{'target': 0.3, 'snapshot_step': 3}, {'target': 0.5, 'snapshot_step': None}], [1])
    >>> _ = weight.assign([0.0, 0.0])  # training goes on...
    >>> family.load(0)  # ...and member 0's weights come back
    >>> weight.numpy()
    array([1., 2.], dtype=float32)
    """

    def __init__(self, targets, weights, speedups=None, hold_steps=None, ramp_steps=None,
                 tolerance=DEFAULT_TOLERANCE, **kwargs):
        super().__init__(**kwargs)
        for arg, value, least in (("hold_steps", hold_steps, 1), ("ramp_steps", ramp_steps, 0)):
            if value is not None and (isinstance(value, bool) or int(value) < least):
                raise ValueError(f"`{arg}` must be an integer >= {least} or None; got {value}.")
        if not 0.0 < tolerance < 1.0:
            raise ValueError(f"`target_tolerance` must be in (0, 1); got {tolerance}.")
        self.targets = tuple(float(t) for t in targets)
        self.speedups = None if speedups is None else tuple(float(s) for s in speedups)
        self.hold_steps = None if hold_steps is None else int(hold_steps)
        self.ramp_steps = None if ramp_steps is None else int(ramp_steps)
        self.tolerance = float(tolerance)
        # Read and written, not owned: kept out of Keras' tracking (the model tracks them).
        self.__dict__["_sources"] = list(weights)
        members = len(self.targets)

        def counter(name, shape=(), initializer="zeros"):
            return self.add_weight(name=name, shape=shape, dtype="int64",
                                   initializer=initializer, trainable=False, autocast=False)

        self.member = counter("member")  # the member being pruned for; `members` when done
        self.held = counter("held")  # steps in a row the constraint has been met
        self.ramp_start = counter("ramp_start")
        self.snapshot_steps = counter("snapshot_steps", (members,),
                                      keras.initializers.Constant(-1))
        # One copy of each weight per member, created with the model (not at compile time) so
        # that checkpoints and .keras files restore them.
        self.snapshots = [
            self.add_weight(name=f"snapshot_{i}", shape=(members,) + tuple(v.shape),
                            dtype=v.dtype, initializer="zeros", trainable=False, autocast=False)
            for i, v in enumerate(self._sources)]
        self.built = True

    def sized_hold_steps(self, pruning_steps):
        if self.hold_steps is not None:
            return self.hold_steps
        if pruning_steps is None:
            raise ValueError("A family needs `pruning_steps` (the run's length sizes the holds) "
                             "or `hold_steps`.")
        return max(1, pruning_steps // 20)

    def sized_ramp_steps(self, pruning_steps):
        if self.ramp_steps is not None:
            return self.ramp_steps
        return 0 if pruning_steps is None else pruning_steps // 10

    def target(self, step, first_ramp, ramp_steps):
        """`(t, member's target, ramp finished)` at `step`: the target ramps to the current
        member's over `first_ramp` steps for the first member, `ramp_steps` for later ones."""
        members = len(self.targets)
        member = ops.minimum(self.member, members - 1)
        goal = ops.take(ops.convert_to_tensor(self.targets, "float32"), member)
        start = ops.take(ops.convert_to_tensor((0.0,) + self.targets[:-1], "float32"), member)
        ramps = (first_ramp,) + (ramp_steps,) * (members - 1)
        ramp = ops.take(ops.convert_to_tensor(ramps, "float32"), member)
        elapsed = ops.cast(step - self.ramp_start, "float32")
        fraction = ops.where(ramp > 0, ops.clip(elapsed / ops.maximum(ramp, 1.0), 0.0, 1.0),
                             1.0)
        # Every member snapshotted: the target stays at the last one.
        fraction = ops.where(self.member >= members, 1.0, fraction)
        return start + (goal - start) * fraction, goal, fraction >= 1.0

    def advance(self, sparsity, step, first_ramp, ramp_steps, hold_steps):
        """Counts the steps the constraint has held at the current member's target; once they
        reach `hold_steps`, snapshots the weights (as they were when `sparsity` was computed)
        and moves the target on to the next member."""
        members = len(self.targets)
        _, goal, ramped = self.target(step, first_ramp, ramp_steps)
        met = ops.logical_and(ops.logical_and(self.member < members, ramped),
                              ops.abs(sparsity - goal) <= self.tolerance)
        held = ops.where(met, self.held + 1, 0)
        due = held >= hold_steps
        self.held.assign(ops.where(due, 0, held))

        def snapshot():
            member = ops.minimum(self.member, members - 1)
            for copy, variable in zip(self.snapshots, self._sources):
                start = [member] + [0] * len(variable.shape)
                copy.assign(ops.slice_update(copy, start, ops.expand_dims(variable, 0)))
            self.snapshot_steps.assign(ops.slice_update(
                self.snapshot_steps, [member], ops.reshape(step, (1,))))
            self.member.assign(self.member + 1)
            self.ramp_start.assign(step + 1)
            return ops.convert_to_tensor(True)

        ops.cond(due, snapshot, lambda: ops.convert_to_tensor(False))

    def status(self):
        """One dict per member, in target order: its `target` (a sparsity of the cost
        model), `speedup` for speedup targets, and `snapshot_step`, the number of training
        steps after which its snapshot was taken (None: not reached yet)."""
        steps = np.asarray(self.snapshot_steps)
        status = []
        for i, target in enumerate(self.targets):
            member = {"target": target}
            if self.speedups is not None:
                member["speedup"] = self.speedups[i]
            member["snapshot_step"] = int(steps[i]) if steps[i] >= 0 else None
            status.append(member)
        return status

    def missing(self):
        """Indices (0-based, target order) of the members whose target was never met."""
        return [i for i, m in enumerate(self.status()) if m["snapshot_step"] is None]

    def load(self, index):
        """Sets the weights (gates and model weights) to member `index`'s snapshot (0-based,
        target order), e.g. before `keras_flop.calibrate_mask` to its target and
        `keras_flop.compact`. Training afterwards goes on from there; the other snapshots
        are kept."""
        status = self.status()
        if not 0 <= index < len(status):
            raise ValueError(f"`index` must be in [0, {len(status)}); got {index}.")
        if status[index]["snapshot_step"] is None:
            raise ValueError(f"Member {index} ({self.member_name(index)}) has no snapshot: its "
                             "constraint was never met. Train longer (fit again: the schedule "
                             "goes on where it stopped).")
        for copy, variable in zip(self.snapshots, self._sources):
            variable.assign(np.asarray(copy)[index])

    def member_name(self, index):
        if self.speedups is not None:
            return f"speedup {self.speedups[index]:.4g}x"
        return f"target {self.targets[index]:.4g}"

    def call(self, inputs):
        raise TypeError("A TargetFamily holds a pruning run's schedule and snapshots; it is "
                        "not called on inputs.")


class FamilySchedule:
    """`PruningModel`'s view of its family (`self.family`, a `TargetFamily`, or None): the
    targets and the ramps and holds sized to `pruning_steps`."""

    @property
    def targets(self):
        """A family's target sparsities, or None for a single target."""
        return None if self.family is None else self.family.targets

    @property
    def family_hold_steps(self):
        """Steps the constraint must hold at a member's target before its snapshot."""
        return None if self.family is None else \
            self.family.sized_hold_steps(self.pruning_steps)

    @property
    def family_ramp_steps(self):
        """Steps of the ramp from one member's target to the next."""
        return None if self.family is None else \
            self.family.sized_ramp_steps(self.pruning_steps)

    def _family_config(self):
        family = self.family
        if family is None:
            return {}
        return {"targets": None if family.speedups is not None else family.targets,
                "target_speedups": family.speedups, "hold_steps": family.hold_steps,
                "ramp_steps": family.ramp_steps, "target_tolerance": family.tolerance}
