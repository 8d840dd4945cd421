"""`PruningModel`: FLOP's constrained objective as a Keras `train_step` (`algorithm.md` §4)."""

import inspect
import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_flop.training import optimizers as flop_optimizers
from keras_flop.gates.cost import (DENOMINATORS, ExpectedCounts, ParamsCost, StructureAccount,
                                   check_cost)
from keras_flop.training.distillation import (TEACHER_LOGITS, check_settings, check_teacher,
                                              feature_view, hidden_state_loss, logit_loss,
                                              split_teacher_logits, teacher_targets)
from keras_flop.compat import DistributedBuildMixin, update_loss_metric
from keras_flop.lagrangian.family import DEFAULT_TOLERANCE, TargetFamily, family_targets
from keras_flop.latency.table import LatencyCost
from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.gates.sparsity import TARGET_TOLERANCE
from keras_flop.gates.structure import all_gates

# Dynamic loss scaling under mixed_float16, one scale for all three optimizers.
_INITIAL_LOSS_SCALE = 2.0 ** 15
CONSTRAINTS = ("equality", "absolute")
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


@keras.saving.register_keras_serializable(package="keras_flop")
class PruningModel(DistributedBuildMixin, keras.Model):
    """A factorized, gated model trained with FLOP's Lagrangian in `fit`.

    Each training step minimizes
    `L = L_task + L_l2 + λ1 g + λ2 g²` with `g = |ŝ - t|` (`constraint="absolute"`, the
    default) or FLOP's `g = ŝ - t` (`constraint="equality"`), with three optimizers: the compiled
    `optimizer` on the model weights (from `L_task + L_l2`; a constant learning rate of 0, or
    `optimizer=None`, freezes them and computes no gradient for them), `alpha_optimizer` on the
    gates' `log_alpha` (from `L_task + L_lagrangian`), and `lambda_optimizer` doing gradient
    **ascent** on `λ1, λ2`. `ŝ` is the expected sparsity of the cost model, `t` the target
    after its linear warmup. Evaluation and prediction use the deterministic gate mask.

    Two costs, both read from the gates' account (`keras_flop.gates.cost`): `cost="params"` (the
    default), `ŝ = keras_flop.expected_sparsity`, the expected fraction of the encoder's dense
    kernel parameters removed; `cost="latency"`, `ŝ = 1 - E[latency] / dense latency` as the
    `latency_table` measured on the target device predicts it (`keras_flop.latency.table`), and
    `target_speedup=S` is the target `t = 1 - 1/S`: the expected latency at most `1/S` of
    dense. The latency cost prices heads, FFN units and blocks (`structure="heads+ffn"` or
    `"heads+ffn+layers"`); rank gates are refused with it, as the table has no time for a
    factorized layer.

    Why `|ŝ - t|`: Adam moves λ1 by about its learning rate per step whatever the size of the
    gap, so under FLOP's form λ1 keeps growing while ŝ lags the rising target, and when ŝ
    arrives it carries on past it until λ1 has unwound (measured on MiniLM, heads+ffn, 100
    steps: 0.76 for a target of 0.5). With `|ŝ - t|` the multiplier only sets how hard the gates
    are pulled toward the target, from either side: the same run settled at 0.500 and stayed
    there.

    The run's length sizes the target warmup (a third of it) and `compile`'s default gate
    and λ optimizers (`keras_flop.training.optimizers.sized_gate_optimizer`,
    `sized_lambda_optimizer`), so that short runs reach their target too: `pruning_steps`, or
    else the steps of the first `fit` (its epochs times its steps per epoch, from
    `steps_per_epoch` or the data's known size; a `fit` whose steps are unknown is refused
    with a `ValueError`). A `fit` after the schedules have ended starts them again, sized to
    its own steps (as `apps.prune --start_from prune` continues a finished pruning).
    `compile` keeps the default optimizers the model has, and a `.keras` file keeps their
    state: a model saved, loaded and compiled again goes on with its schedules where it was
    saved. A `fit` that ends the run, or that a callback stopped, with `ŝ` more than
    `TARGET_TOLERANCE` (0.02) from its target warns.

    A family from one run: `targets=(t1, t2, ...)` (increasing sparsities of the cost model)
    or, with `cost="latency"`, `target_speedups=(S1, S2, ...)`. The target ramps to `t1` over
    `target_sparsity_warmup` steps and stays there until `|ŝ - t1| <= target_tolerance` has
    held for `hold_steps` steps in a row; the network's trainable weights (gates and model
    weights) are then snapshotted and the target ramps on to `t2` over `ramp_steps` steps, and
    so on. The schedule and the snapshots live in `self.family`, a
    `keras_flop.lagrangian.family.TargetFamily` layer (`status()`, `missing()`, `load(index)`): a
    `tf.train.Checkpoint` or `.keras` file keeps them and a resumed run goes on where it
    stopped. They hold one copy of the network's trainable weights per member. `fit` warns when
    it ends with members whose target was never met. Sized from `pruning_steps` `P`: first ramp
    `P // 5`, later ramps `P // 10`, hold `max(1, P // 20)`: the schedule itself takes `0.55 P`
    for three members, the rest of the run is the time `ŝ` takes to catch up with each ramp,
    so that a family of three fits in 1.5 times the steps of a single-target run.

    Every step logs: `loss`, `task_loss`, `lagrangian`, `expected_sparsity`,
    `target_sparsity`, `constraint_gap` (`|ŝ - t|`, of the model's own cost), `lambda_1`,
    `lambda_2`, `alpha_lr`, `lambda_lr`, plus the compiled metrics; `family_snapshots`
    (members snapshotted so far) for a family; `model_lr` when the model weights train,
    `l2_regularization_loss` when `regularization_scale > 0`, `distillation_loss` with a
    teacher. `loss` is Keras' mean over the epoch, the others are the step's.

    What to monitor with `EarlyStopping` or `ModelCheckpoint`: not `loss`. It is the
    Lagrangian, `L_task + λ1 g + λ2 g²` (plus the distillation terms), and λ is maximized:
    it grows for as long as the gap is open, so `loss` rises in a run that goes well.
    EarlyStopping on it ended a tiny run after 2 of 12 epochs at ŝ = 0.17 for a target of
    0.5, and `save_best_only` on it keeps an early, little-pruned model. `constraint_gap`
    says whether the constraint holds; while the target rises pruning raises the task loss,
    so monitor it from the end of the target warmup:
    `EarlyStopping(monitor="constraint_gap", mode="min", start_from_epoch=warmup_epochs)`.
    `task_loss` and `val_loss` (the task loss of the inference mask on validation data)
    compare epochs whose `constraint_gap` is within 0.02. The schedules are sized to end at
    the target: the last epoch is the one to keep.

    With a `teacher` (the fine-tuned dense model) the task loss gains
    `distillation_weight · T² · KL(softmax(teacher / T) ‖ softmax(student / T))` (mean squared
    error between the two outputs for a regression model), which keeps accuracy at high
    sparsity when the model weights train too; `hidden_distillation_weight` adds the mean
    squared error between the student's and the teacher's hidden states, layer `i` matched to
    layer `i` (the output of each encoder layer; a pruned block keeps its layer's output).
    With logit distillation only, the teacher's outputs on the training set are fixed: a
    batch whose features carry them as `"teacher_logits"` (`[batch, num_labels]`, computed
    once with `training=False`) skips the teacher's forward pass.
    The teacher is frozen here without being changed: it gets no gradient, its weights are
    listed in `non_trainable_weights` (and saved with this model), and the caller's model
    stays trainable.

    Under a `mixed_float16` policy the loss is scaled once (dynamic scale, halved and the step
    skipped for all three optimizers on a non-finite gradient, doubled after
    `loss_scale_growth_steps` (2000) finite steps in a row); gates, λ, the sparsity and the
    loss stay float32.

    Args:
        network: a functional model with gated `FactorizedDense` layers
            (`keras_flop.factorize_model`); usually built by `keras_flop.factorize`.
        target_sparsity: `T` in [0, 1) (default 0.5).
        cost: `"params"` or `"latency"` (above).
        latency_table: with `cost="latency"`, a `keras_flop.LatencyTable` of this model's
            dimensions (or its dict, or the path of its JSON file).
        target_speedup: `S >= 1` with `cost="latency"`, instead of `target_sparsity`
            (`T = 1 - 1/S`).
        target_sparsity_warmup: steps `W` of the linear warmup of the target (0: none);
            default a third of `pruning_steps` (a fifth for a family).
        sparsity_denominator: `"dense"` or `"factorized"` (see `expected_sparsity`).
        regularization_scale: scale of `Σ ‖K‖² / 2` over the factor and pooler kernels.
        teacher: optional model with the same inputs and outputs to distill from.
        distillation_weight: `α_pred >= 0` (needs a teacher when > 0).
        distillation_temperature: `T > 0`.
        hidden_distillation_weight: weight `>= 0` of the hidden-state loss (needs a teacher
            with as many encoder layers when > 0).
        constraint: `"absolute"` or `"equality"` (above).
        pruning_steps: the number of training steps the run will take, or None: the
            steps of the first `fit`.
        targets: a family's increasing target sparsities (at least two), instead of
            `target_sparsity`.
        target_speedups: a family's increasing speedups `>= 1` with `cost="latency"`.
        hold_steps: steps the constraint must hold at a member's target before its snapshot;
            default `max(1, pruning_steps // 20)` (needs `pruning_steps` or this).
        ramp_steps: steps of the ramp from one member's target to the next; default
            `pruning_steps // 10`, or 0 (a step) without `pruning_steps`.
        target_tolerance: `|ŝ - t|` at which the constraint counts as met (default 0.01).

    Example:
    >>> import keras_flop, numpy as np
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> pruning_model = keras_flop.factorize(dense, target_sparsity=0.5, pruning_steps=2)
    >>> pruning_model.compile(optimizer=None)  # model frozen: only gates and λ learn
    >>> x = {"token_ids": np.ones((8, 6), "int32"), "segment_ids": np.zeros((8, 6), "int32"),
    ...      "padding_mask": np.ones((8, 6), bool)}
    >>> history = pruning_model.fit(x, np.zeros(8, "int32"), batch_size=4, verbose=0)
    >>> [key for key in ("expected_sparsity", "lambda_1", "task_loss")
    ...  if key in history.history]
    ['expected_sparsity', 'lambda_1', 'task_loss']

    A family of three members, each snapshotted once its target has held for 15 steps:
    >>> pruning_model = keras_flop.factorize(dense, targets=(0.3, 0.5, 0.7), pruning_steps=300)
    >>> (pruning_model.target_sparsity_warmup, pruning_model.family_ramp_steps,
    ...  pruning_model.family_hold_steps)
    (60, 30, 15)
    >>> pruning_model.compile(optimizer=None)
    >>> pruning_model.family.status()
    [{'target': 0.3, 'snapshot_step': None}, {'target': 0.5, 'snapshot_step': None},
     {'target': 0.7, 'snapshot_step': None}]
    """

    # Finite steps after which the mixed-precision loss scale doubles (Keras' default); read
    # when the train step is traced, so set it on an instance before `fit`.
    loss_scale_growth_steps = 2000

    def __init__(self, network, target_sparsity=None, target_sparsity_warmup=None,
                 sparsity_denominator="dense", regularization_scale=0.0, teacher=None,
                 distillation_weight=0.0, distillation_temperature=1.0,
                 hidden_distillation_weight=0.0, constraint="absolute", pruning_steps=None,
                 cost="params", latency_table=None, target_speedup=None, targets=None,
                 target_speedups=None, hold_steps=None, ramp_steps=None,
                 target_tolerance=DEFAULT_TOLERANCE, **kwargs):
        super().__init__(**kwargs)
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
        if not all_gates(network):
            raise ValueError(f"Model {network.name!r} has no gates: factorize it first "
                             "(keras_flop.factorize).")
        cost_model = LatencyCost(latency_table) if cost == "latency" else \
            ParamsCost(sparsity_denominator)
        cost_model.check(StructureAccount(network))
        check_settings(teacher, distillation_weight, hidden_distillation_weight,
                       distillation_temperature, temperature_name="distillation_temperature")
        if teacher is not None:
            check_teacher(teacher, network, hidden_distillation_weight, role="pruned model")
        self.network = network
        self.target_sparsity = float(target_sparsity)
        # Given, or None: a third of `pruning_steps` (a fifth for a family), once known.
        self.__dict__["_target_warmup"] = (None if target_sparsity_warmup is None else
                                           int(target_sparsity_warmup))
        self.__dict__["_family_warmup"] = targets is not None
        self.sparsity_denominator = sparsity_denominator
        self.regularization_scale = float(regularization_scale)
        self.teacher = teacher
        self.distillation_weight = float(distillation_weight)
        self.distillation_temperature = float(distillation_temperature)
        self.hidden_distillation_weight = float(hidden_distillation_weight)
        self.constraint = constraint
        self.pruning_steps = None if pruning_steps is None else int(pruning_steps)
        # The run-sized default gate and λ optimizers (`compile`): which attributes hold
        # them, and the steps `(start, length)` of `pruning_step` their schedules span.
        self.__dict__["_run_sized"] = ()
        self.__dict__["_schedule"] = None
        self.cost = cost
        self.target_speedup = None if target_speedup is None else float(target_speedup)
        # A plain object, kept out of Keras' tracking (which would wrap the table's lists).
        self.__dict__["cost_model"] = cost_model
        # Views of the student and the teacher that also return the hidden states, kept out
        # of Keras' tracking: they only share the layers the two models already track.
        self.__dict__["_feature_views"] = None
        if self.hidden_distillation_weight > 0:
            self.__dict__["_feature_views"] = (feature_view(network), feature_view(teacher))

        def scalar(name, dtype="float32", initializer="zeros", trainable=False):
            return self.add_weight(name=name, shape=(), dtype=dtype, initializer=initializer,
                                   trainable=trainable, autocast=False)

        self.lambda_1 = scalar("lambda_1", trainable=True)
        self.lambda_2 = scalar("lambda_2", trainable=True)
        self.pruning_step = scalar("pruning_step", dtype="int64")
        self.loss_scale = scalar("loss_scale",
                                 initializer=keras.initializers.Constant(_INITIAL_LOSS_SCALE))
        self.finite_steps = scalar("finite_steps", dtype="int64")
        self.family = None if targets is None else TargetFamily(
            targets, network.trainable_variables, speedups=target_speedups,
            hold_steps=hold_steps, ramp_steps=ramp_steps, tolerance=target_tolerance,
            name="family")
        self.built = True

    # -- variable groups -------------------------------------------------------------------
    # The teacher is frozen by leaving its weights out of the trainable lists, not by setting
    # `teacher.trainable`: that would change the caller's model (and the layers it shares).
    def _split(self, variables):
        """`(trainable, non_trainable)` of `variables`, the teacher's among the latter."""
        teacher = getattr(self, "teacher", None)
        frozen = set() if teacher is None else {id(v) for v in teacher.variables}
        trains = [self.trainable and v.trainable and id(v) not in frozen for v in variables]
        return ([v for v, t in zip(variables, trains) if t],
                [v for v, t in zip(variables, trains) if not t])

    @property
    def trainable_weights(self):
        return self._split(self.weights)[0]

    @property
    def non_trainable_weights(self):
        return self._split(self.weights)[1]

    @property
    def trainable_variables(self):
        return self._split(self.variables)[0]

    @property
    def non_trainable_variables(self):
        return self._split(self.variables)[1]

    @property
    def gate_variables(self):
        return [gate.log_alpha for gate in all_gates(self.network)]

    @property
    def lambda_variables(self):
        return [self.lambda_1, self.lambda_2]

    @property
    def model_variables(self):
        gates = {id(v) for v in self.gate_variables}
        return [v for v in self.network.trainable_variables if id(v) not in gates]

    def _l2_kernels(self):
        kernels = []
        for layer in self.network.layers:
            if isinstance(layer, FactorizedDense):
                kernels += [layer.p_kernel, layer.q_kernel]
        pooler = next((layer for layer in self.network.layers if layer.name == "pooler"), None)
        if pooler is not None:
            kernels.append(pooler.kernel)
        return kernels

    @property
    def mixed_precision(self):
        return any(layer.dtype_policy.name == "mixed_float16" for layer in self.network.layers)

    # -- model API -------------------------------------------------------------------------
    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def compile(self, optimizer=None, alpha_optimizer=None, lambda_optimizer=None, loss=None,
                metrics=None, jit_compile=None, **kwargs):
        """Sets the three optimizers and the task loss.

        Args:
            optimizer: the model-weight optimizer, as `keras.Model.compile` takes it (an
                instance, a name such as `"adamw"`, or a config dict;
                `keras_flop.optimizers.model_optimizer` makes the AdamW of the recipe). None,
                or a constant learning rate of 0, freezes the model: only the gates and λ
                learn (the original FLOP SST-2 recipe).
            alpha_optimizer: for `log_alpha` (an instance, name or config dict); default
                `keras_flop.training.optimizers.sized_gate_optimizer` over the run
                (`pruning_steps`, or the first `fit`'s steps). The default optimizers the
                model already has (a previous `compile`, or loaded with it) are kept with
                their state, so compiling again continues their schedules; one passed here
                starts afresh (`gate_optimizer()` is the original recipe's `5 · noam(step)`).
            lambda_optimizer: for λ (ascent), likewise (`sized_lambda_optimizer`;
                `lambda_optimizer()`: `10 · noam(step)`).
            loss: default sparse categorical cross-entropy on logits, or mean squared error
                for a one-output (regression) model.
            jit_compile: default XLA where it pays: on a GPU and outside a `tf.distribute`
                strategy (on a 2-core CPU XLA measured slower than graph mode).
        """
        kwargs.pop("auto_scale_loss", None)  # loss scaling is done here, for all groups
        # Resolved here, not by Keras: each optimizer is built on its own group below.
        if optimizer is None:
            optimizer = keras.optimizers.AdamW(learning_rate=0.0, name="model_optimizer")
        optimizer = keras.optimizers.get(optimizer)
        self.model_frozen = flop_optimizers.is_frozen(optimizer)
        if loss is None:
            regression = self.network.outputs[0].shape[-1] == 1
            loss = (keras.losses.MeanSquaredError() if regression else
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if jit_compile is None:
            jit_compile = bool(tf.config.list_physical_devices("GPU")) and \
                not tf.distribute.has_strategy()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, auto_scale_loss=False, **kwargs)
        self._set_gate_and_lambda_optimizers(alpha_optimizer, lambda_optimizer)
        # Every optimizer is built on its own group now, not inside the traced step.
        if not self.optimizer.built:
            self.optimizer.build([] if self.model_frozen else self.model_variables)
        if not self.alpha_optimizer.built:
            self.alpha_optimizer.build(self.gate_variables)
        if not self.lambda_optimizer.built:
            self.lambda_optimizer.build(self.lambda_variables)

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

    # -- a family's schedule (keras_flop.lagrangian.family.TargetFamily) --------------------
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

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the run's schedules sized to its steps first (see the
        class) and a warning at its end when the target was not reached."""
        arguments = inspect.signature(super().fit).bind(*args, **kwargs).arguments
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

    def target_sparsity_at(self, step):
        """`t(step) = T · min(1, step / W)` (or `T` without warmup); for a family, the target
        of its schedule's current member."""
        if self.family is not None:
            return self.family.target(step, self.target_sparsity_warmup,
                                      self.family_ramp_steps)[0]
        if self.target_sparsity_warmup <= 0:
            return ops.convert_to_tensor(self.target_sparsity, "float32")
        fraction = ops.cast(step, "float32") / float(self.target_sparsity_warmup)
        return self.target_sparsity * ops.minimum(fraction, 1.0)

    def expected_sparsity(self):
        """`ŝ` of the model's cost (`"params"`: `keras_flop.expected_sparsity`; `"latency"`:
        `1 - E[latency] / dense latency`), differentiable, float32."""
        return self.cost_model.sparsity(StructureAccount(self.network), ExpectedCounts())

    def lagrangian(self, sparsity, target):
        """`λ1 g + λ2 g²` with `g = ŝ - t` (`"equality"`) or `g = |ŝ - t|` (`"absolute"`)."""
        gap = sparsity - target
        if self.constraint == "absolute":
            gap = ops.abs(gap)
        return self.lambda_1 * gap + self.lambda_2 * ops.square(gap)

    def l2_regularization_loss(self):
        if self.regularization_scale == 0.0:
            return ops.convert_to_tensor(0.0, "float32")
        squares = [ops.sum(ops.square(ops.cast(k, "float32"))) for k in self._l2_kernels()]
        return self.regularization_scale * ops.sum(ops.stack(squares)) / 2.0

    def distillation_loss(self, teacher_outputs, student_outputs):
        """`T² · KL(teacher ‖ student)` at the model's temperature (MSE for a regressor),
        float32 (`keras_flop.training.distillation.logit_loss`)."""
        return logit_loss(teacher_outputs, student_outputs, self.distillation_temperature)

    def _forward(self, x, teacher_logits=None):
        """Student (training) and teacher outputs: `(logits, states, teacher_logits,
        teacher_states)`, the teacher parts None without distillation. `teacher_logits` fed
        with the batch replace the teacher's forward pass (logit distillation only)."""
        if teacher_logits is not None and (self.teacher is None or
                                           self.distillation_weight <= 0):
            raise ValueError(f"The batch carries {TEACHER_LOGITS!r} but the model has no "
                             "teacher with distillation_weight > 0.")
        views = self._feature_views
        if views is not None:
            outputs = views[0](x, training=True)
            y_pred, states = outputs[0], outputs[1:]
        else:
            y_pred, states = self(x, training=True), None
        return (y_pred, states, *teacher_targets(x, teacher_logits, self.teacher,
                                                 None if views is None else views[1],
                                                 self.distillation_weight > 0))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, fed_teacher = split_teacher_logits(x)
        gate_vars, lambda_vars = self.gate_variables, self.lambda_variables
        model_vars = [] if self.model_frozen else self.model_variables
        variables = model_vars + gate_vars + lambda_vars
        mixed = self.mixed_precision

        # Under a tf.distribute strategy compute_loss divides the task loss by the replica
        # count and the gradients are summed over replicas: the penalties are divided too.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch([v.value for v in variables])
            y_pred, states, teacher_pred, teacher_states = self._forward(x, fed_teacher)
            task_loss = ops.cast(self.compute_loss(x=x, y=y, y_pred=y_pred,
                                                   sample_weight=sample_weight, training=True),
                                 "float32")
            # Per-replica means, like the penalties: divided by the replica count below.
            distill = hidden = None
            if self.teacher is not None and self.distillation_weight > 0:
                distill = self.distillation_loss(teacher_pred, y_pred)
            if states is not None:
                hidden = hidden_state_loss(teacher_states, states)
            l2_loss = self.l2_regularization_loss()
            sparsity = self.expected_sparsity()
            target = self.target_sparsity_at(self.pruning_step)
            lagrangian = self.lagrangian(sparsity, target)
            gap = ops.abs(sparsity - target)
            if self.family is not None:  # before the update: ŝ is of the snapshot's weights
                self.family.advance(sparsity, self.pruning_step, self.target_sparsity_warmup,
                                    self.family_ramp_steps, self.family_hold_steps)
            loss = task_loss + (l2_loss + lagrangian) / replicas
            if distill is not None:
                loss = loss + self.distillation_weight * distill / replicas
            if hidden is not None:
                loss = loss + self.hidden_distillation_weight * hidden / replicas
            scaled_loss = loss * self.loss_scale if mixed else loss
        grads = tape.gradient(scaled_loss, [v.value for v in variables])
        grads = [ops.zeros_like(v) if g is None else ops.cast(g, "float32") for g, v in
                 zip(grads, variables)]
        if mixed:
            grads = [g / self.loss_scale for g in grads]
        n_model, n_gate = len(model_vars), len(gate_vars)
        model_grads = grads[:n_model]
        gate_grads = grads[n_model:n_model + n_gate]
        lambda_grads = [-g for g in grads[n_model + n_gate:]]  # ascent on λ

        def apply_all():
            if model_vars:
                self.optimizer.apply(model_grads, model_vars)
            self.alpha_optimizer.apply(gate_grads, gate_vars)
            self.lambda_optimizer.apply(lambda_grads, lambda_vars)

        if mixed:
            self._apply_with_loss_scale(grads, apply_all)
        else:
            apply_all()
        self.pruning_step.assign_add(1)

        update_loss_metric(self, loss * replicas, ops.shape(tf.nest.flatten(x)[0])[0])
        logs = self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        logs.update({
            "task_loss": task_loss * replicas,
            "lagrangian": lagrangian,
            "expected_sparsity": sparsity,
            "target_sparsity": target,
            "constraint_gap": gap,
            "lambda_1": ops.convert_to_tensor(self.lambda_1),
            "lambda_2": ops.convert_to_tensor(self.lambda_2),
            "alpha_lr": ops.convert_to_tensor(self.alpha_optimizer.learning_rate),
            "lambda_lr": ops.convert_to_tensor(self.lambda_optimizer.learning_rate),
        })
        # Constants are left out of the logs (and the progress bar): the model's learning rate
        # when it is frozen, the L2 penalty when it is off.
        if not self.model_frozen:
            logs["model_lr"] = ops.convert_to_tensor(self.optimizer.learning_rate)
        if self.regularization_scale != 0.0:
            logs["l2_regularization_loss"] = l2_loss
        if distill is not None:
            logs["distillation_loss"] = distill
        if hidden is not None:
            logs["hidden_distillation_loss"] = hidden
        if mixed:
            logs["loss_scale"] = ops.convert_to_tensor(self.loss_scale)
        if self.family is not None:
            logs["family_snapshots"] = ops.convert_to_tensor(self.family.member)
        return logs

    def _apply_with_loss_scale(self, grads, apply_all):
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads]))

        def on_finite():
            apply_all()
            grow = self.finite_steps + 1 >= self.loss_scale_growth_steps
            self.loss_scale.assign(ops.where(grow, self.loss_scale * 2.0, self.loss_scale))
            self.finite_steps.assign(ops.where(grow, 0, self.finite_steps + 1))
            return ops.convert_to_tensor(True)

        def on_overflow():
            self.loss_scale.assign(ops.maximum(self.loss_scale / 2.0, 1.0))
            self.finite_steps.assign(0)
            return ops.convert_to_tensor(False)

        return ops.cond(finite, on_finite, on_overflow)

    def get_compile_config(self):
        # Three optimizers and their schedules: a loaded pruning model is compiled again by
        # its user (`compile(...)`), as after `factorize`.
        return None

    def get_config(self):
        return {
            "name": self.name,
            "network": keras.saving.serialize_keras_object(self.network),
            "target_sparsity": (self.target_sparsity if self.target_speedup is None and
                                self.targets is None else None),
            "target_speedup": self.target_speedup,
            "cost": self.cost,
            "latency_table": (self.cost_model.table.to_dict() if self.cost == "latency"
                              else None),
            "target_sparsity_warmup": self._target_warmup,  # None: sized to the run
            "sparsity_denominator": self.sparsity_denominator,
            "regularization_scale": self.regularization_scale,
            "teacher": (None if self.teacher is None else
                        keras.saving.serialize_keras_object(self.teacher)),
            "distillation_weight": self.distillation_weight,
            "distillation_temperature": self.distillation_temperature,
            "hidden_distillation_weight": self.hidden_distillation_weight,
            "constraint": self.constraint,
            "pruning_steps": self.pruning_steps,
            **self._family_config(),
            **self._schedule_config(),
        }

    def _schedule_config(self):
        # The default gate and λ optimizers' schedules: `from_config` makes them again for
        # the `.keras` file's optimizer states to load into (`compile` then keeps them).
        if not self._run_sized or self._schedule is None:
            return {}
        return {"schedule": {"start": self._schedule[0], "steps": self._schedule[1],
                             "optimizers": list(self._run_sized)}}

    def _family_config(self):
        family = self.family
        if family is None:
            return {}
        return {"targets": None if family.speedups is not None else family.targets,
                "target_speedups": family.speedups, "hold_steps": family.hold_steps,
                "ramp_steps": family.ramp_steps, "target_tolerance": family.tolerance}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        if config.get("teacher") is not None:
            config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        schedule = config.pop("schedule", None)
        model = cls(**config)
        if schedule is not None:
            model.__dict__["_schedule"] = (int(schedule["start"]), int(schedule["steps"]))
            model.__dict__["_run_sized"] = tuple(schedule["optimizers"])
            for name in model._run_sized:
                setattr(model, name, model._run_sized_optimizer(name))
        return model


class _RunSizing(keras.callbacks.Callback):
    """`PruningModel.fit`'s first callback: sizes the run to the fit's steps (Keras' steps
    per epoch times the fit's epochs, None when unknown) before the first step."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = int(epochs)

    def on_train_begin(self, logs=None):
        per_epoch = (self.params or {}).get("steps")
        self.model._size_run(None if per_epoch is None else per_epoch * self.epochs)
