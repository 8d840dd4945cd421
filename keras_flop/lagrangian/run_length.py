"""The length of a pruning run and what is sized to it: the target's warmup (from where it
starts to the target), the default gate
and λ schedules (`compile`'s, sized to `pruning_steps`, or to `fit`'s steps when that is not
given), their continuation over the added steps of a later `fit`, their state across a
`.keras` reload, and the warning when a run ends off its target.

`RunLength` is a mixin of `PruningModel`: it reads the model's `pruning_step`,
`pruning_steps`, gate and λ variables, cost and target.
"""

import inspect
import warnings

import keras
from keras import ops

from keras_flop.gates.sparsity import TARGET_TOLERANCE
from keras_flop.lagrangian.arguments import check_target_start
from keras_flop.training import optimizers as flop_optimizers

# The default gate and λ optimizers (`compile`), each sized to the run: peak rate × steps.
RUN_SIZED_RATES = {"alpha_optimizer": flop_optimizers.GATE_RATE_STEPS,
                   "lambda_optimizer": flop_optimizers.LAMBDA_RATE_STEPS}


def default_target_warmup(pruning_steps, family=False):
    """The target's linear warmup when none is given: a third of the pruning steps, a fifth
    for a family (its later members need the rest of the run).

    >>> default_target_warmup(300), default_target_warmup(300, family=True)
    (100, 60)
    """
    return int(pruning_steps) // (5 if family else 3)


class RunLength:
    """`PruningModel`'s run length: the target warmup, the run-sized default optimizers, the
    sizing in `fit` and the end-of-fit warning (see `PruningModel`)."""

    # -- the run's length: the default schedules and the target warmup ---------------------
    @property
    def target_sparsity_warmup(self):
        """Steps `W` of the target's linear warmup: as given, else a third of `pruning_steps`
        (a fifth for a family), 0 while the run's length is unknown."""
        if self._target_warmup is not None:
            return self._target_warmup
        if self.pruning_steps is None:
            return 0
        return default_target_warmup(self.pruning_steps, family=self._family_warmup)

    @target_sparsity_warmup.setter
    def target_sparsity_warmup(self, steps):
        if steps is not None and (isinstance(steps, bool) or int(steps) < 0):
            raise ValueError(f"`target_sparsity_warmup` must be an integer >= 0; got {steps}.")
        self.__dict__["_target_warmup"] = None if steps is None else int(steps)

    @property
    def target_sparsity_start(self):
        """`t0`, the target at step 0 of the warmup: 0 (every gate open), or where the gates
        start, so that a run started from a mask keeps it instead of reopening gates to meet
        a target that starts at 0. Read when the train step is traced: set it before `fit`.

        >>> # after `keras_flop.init_gates_from_masks(pruning_model, masks)`:
        >>> # pruning_model.target_sparsity_start = float(pruning_model.expected_sparsity())
        """
        return self.__dict__.get("_target_start", 0.0)

    @target_sparsity_start.setter
    def target_sparsity_start(self, value):
        value = check_target_start(value)
        if value and getattr(self, "family", None) is not None:
            raise ValueError("`target_sparsity_start` is the single target's: a family's "
                             "schedule ramps from 0 through its members.")
        if value != self.target_sparsity_start and getattr(self, "train_function", None):
            self.make_train_function(force=True)
        self.__dict__["_target_start"] = value

    def target_sparsity_at(self, step):
        """`t(step) = t0 + (T - t0) · min(1, step / W)` (or `T` without warmup), `t0` the
        `target_sparsity_start`; for a family, the target of its schedule's current member."""
        if self.family is not None:
            return self.family.target(step, self.target_sparsity_warmup,
                                      self.family_ramp_steps)[0]
        if self.target_sparsity_warmup <= 0:
            return ops.convert_to_tensor(self.target_sparsity, "float32")
        fraction = ops.minimum(ops.cast(step, "float32") / float(self.target_sparsity_warmup),
                               1.0)
        start = self.target_sparsity_start
        return start + (self.target_sparsity - start) * fraction

    def _run_sized_optimizer(self, name):
        """A default gate or λ optimizer sized to the schedule (to one step until the run's
        length is known: `fit` sizes it before the first step), built on its group."""
        steps = 1 if self._schedule is None else self._schedule[1]
        optimizer = keras.optimizers.Adam(
            learning_rate=flop_optimizers.sized_schedule(steps, RUN_SIZED_RATES[name]),
            epsilon=1e-8, name=name)
        optimizer.build(self.gate_variables if name == "alpha_optimizer" else
                        self.lambda_variables)
        return optimizer

    def _set_gate_and_lambda_optimizers(self, alpha_optimizer, lambda_optimizer):
        """`compile`'s gate and λ optimizers: those given, else the run-sized defaults. The
        defaults the model has already (a previous `compile`, or loaded with the model from
        a `.keras` file) are kept with their state while they still fit the run, so that
        compiling again continues their schedules; new ones start at `pruning_step`."""
        given = {"alpha_optimizer": alpha_optimizer, "lambda_optimizer": lambda_optimizer}
        schedule = self._schedule
        keep = bool(self._run_sized) and schedule is not None and (
            schedule[0] > 0 or schedule[1] == self.pruning_steps)
        if not keep:
            schedule = None if self.pruning_steps is None else (0, self.pruning_steps)
            self.__dict__["_schedule"] = schedule
        for name, optimizer in given.items():
            if optimizer is None:
                if keep and name in self._run_sized:
                    optimizer = getattr(self, name)
                else:
                    optimizer = self._run_sized_optimizer(name)
                    if schedule is not None:  # compiled mid-run: the schedule goes on
                        step = int(self.pruning_step.numpy())
                        optimizer.iterations.assign(min(max(step - schedule[0], 0),
                                                        schedule[1]))
            setattr(self, name, keras.optimizers.get(optimizer))
        self.__dict__["_run_sized"] = tuple(name for name, optimizer in given.items()
                                            if optimizer is None)

    def _schedule_end(self):
        """The step at which the run's schedules end (None: not known)."""
        if self._run_sized and self._schedule is not None:
            return sum(self._schedule)
        return self.pruning_steps

    def _size_run(self, fit_steps):
        """Before the first step of a `fit` of `fit_steps` steps (None: unknown): an unknown
        run length becomes the fit's, unsized default schedules are sized to it, and spent
        ones start again, sized to the fit's steps (as `apps.prune` continues a finished
        pruning). Raises a `ValueError` when that needs the fit's steps and they are
        unknown."""
        if fit_steps is not None and fit_steps < 1:
            return  # nothing to train (initial_epoch >= epochs)
        step = int(self.pruning_step.numpy())
        changed = False
        if self.pruning_steps is None:
            if fit_steps is not None:
                self.pruning_steps = step + fit_steps
                changed = True
            elif self._run_sized or self._target_warmup is None:
                raise ValueError(
                    "The number of training steps is unknown (a dataset of unknown or infinite "
                    "cardinality), and the gate and λ schedules and the target warmup are "
                    "sized to it: pass pruning_steps=... to factorize (or PruningModel), or "
                    "steps_per_epoch=... to fit.")
        if self._run_sized:
            end = self._schedule_end()
            if self._schedule is None:
                self._restart_schedules(step, max(1, self.pruning_steps - step))
                changed = True
            elif step >= end:
                if fit_steps is None:
                    raise ValueError(
                        f"The gate and λ schedules ended at step {end}; to continue them over "
                        "the added steps, fit needs their number: pass steps_per_epoch=... to "
                        "fit (or a dataset of known cardinality).")
                self._restart_schedules(step, fit_steps)
                changed = True
            elif fit_steps is not None and step + fit_steps > end:
                warnings.warn(
                    f"This fit trains steps {step} to {step + fit_steps}, past the end of the "
                    f"gate and λ schedules at step {end} (pruning_steps): the gates do not "
                    "learn after it. Fit to that step, then fit again to continue with "
                    "schedules sized to the added steps.", stacklevel=2)
        if changed:  # the schedules and the warmup are read when the train step is traced
            self.make_train_function(force=True)

    def _restart_schedules(self, start, steps):
        """The default gate and λ optimizers start afresh with schedules over steps
        `start..start + steps` of `pruning_step`."""
        self.__dict__["_schedule"] = (int(start), int(steps))
        for name in self._run_sized:
            optimizer = getattr(self, name)
            for variable in optimizer.variables:
                variable.assign(ops.zeros_like(variable))
            optimizer.learning_rate = flop_optimizers.sized_schedule(steps,
                                                                     RUN_SIZED_RATES[name])

    def _cost_name(self):
        return "expected latency sparsity" if self.cost == "latency" else "expected sparsity"

    def _warn_if_off_target(self):
        """At the end of `fit`: a single-target run that is over (or was stopped by a
        callback) with `ŝ` more than `TARGET_TOLERANCE` from its target says so."""
        if self.family is not None:
            return
        step, end = int(self.pruning_step.numpy()), self._schedule_end()
        stopped = bool(getattr(self, "stop_training", False))
        if end is not None and step < end and not stopped:
            return  # the run goes on in a later fit
        sparsity, target = float(self.expected_sparsity()), self.target_sparsity
        gap = sparsity - target
        if not abs(gap) > TARGET_TOLERANCE:  # reached, or NaN (a stop on a NaN loss says so)
            return
        where = f"{abs(gap):.3f} {'short of' if gap < 0 else 'past'} its target {target:.4g}"
        if stopped and end is not None and step < end:
            warnings.warn(
                f"Training was stopped at step {step} of {end} with the {self._cost_name()} "
                f"at {sparsity:.4f}, {where}: a callback monitoring `loss` stops a healthy "
                "run (its λ terms grow while the gap is open); monitor `constraint_gap` once "
                "the target warmup is over (EarlyStopping's start_from_epoch), and fit again "
                "to continue.", stacklevel=3)
        else:
            warnings.warn(
                f"The run ended at step {step} with the {self._cost_name()} at "
                f"{sparsity:.4f}, {where} (tolerance {TARGET_TOLERANCE}): fit again to "
                "continue (the gate and λ schedules start again, sized to the added steps), "
                "or prune with more steps.", stacklevel=3)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the run's schedules sized to its steps first (see the
        class) and a warning at its end when the target was not reached."""
        arguments = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs).arguments
        del arguments["self"]
        sizing = _RunSizing(arguments.get("epochs", 1) - arguments.get("initial_epoch", 0))
        callbacks = arguments.get("callbacks")
        if isinstance(callbacks, keras.callbacks.CallbackList):
            sizing.set_model(self)
            sizing.set_params(callbacks.params)
            callbacks.callbacks.insert(0, sizing)
        else:  # first: the schedules are sized before other callbacks read them
            arguments["callbacks"] = [sizing, *(callbacks or [])]
        history = super().fit(**arguments)
        self._warn_if_off_target()
        missing = [] if self.family is None else self.family.missing()
        if missing:
            what = ", ".join(self.family.member_name(i) for i in missing)
            warnings.warn(f"The run ended before the constraint was met for {len(missing)} of "
                          f"{len(self.targets)} family members ({what}): they have no "
                          "snapshot. Train longer (fit again: the schedule goes on where it "
                          "stopped) or raise `target_tolerance`.", stacklevel=2)
        return history

    def _schedule_config(self):
        # The default gate and λ optimizers' schedules: `from_config` makes them again for
        # the `.keras` file's optimizer states to load into (`compile` then keeps them).
        if not self._run_sized or self._schedule is None:
            return {}
        return {"schedule": {"start": self._schedule[0], "steps": self._schedule[1],
                             "optimizers": list(self._run_sized)}}


class _RunSizing(keras.callbacks.Callback):
    """`PruningModel.fit`'s first callback: sizes the run to the fit's steps (Keras' steps
    per epoch times the fit's epochs, None when unknown) before the first step."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = int(epochs)

    def on_train_begin(self, logs=None):
        per_epoch = (self.params or {}).get("steps")
        self.model._size_run(None if per_epoch is None else per_epoch * self.epochs)
