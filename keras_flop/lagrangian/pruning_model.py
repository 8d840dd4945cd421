"""`PruningModel`: FLOP's constrained objective as a Keras `train_step` (`algorithm.md` §4)."""

import keras
import tensorflow as tf
from keras import ops

from keras_flop.training import optimizers as flop_optimizers
from keras_flop.gates.cost import ExpectedCounts, ParamsCost, StructureAccount
from keras_flop.training.distillation import (TEACHER_LOGITS, check_settings, check_teacher,
                                              feature_view, hidden_state_loss, logit_loss,
                                              split_teacher_logits, teacher_targets)
from keras_flop.compat import DistributedBuildMixin, update_loss_metric
from keras_flop.input_checks import CheckedData
from keras_flop.lagrangian.arguments import (PRUNING_ARGUMENTS, check_pruning_arguments,
                                             check_pruning_values)
from keras_flop.lagrangian.family import DEFAULT_TOLERANCE, FamilySchedule, TargetFamily
from keras_flop.lagrangian.run_length import RunLength
from keras_flop.lagrangian.variables import VariableGroups
from keras_flop.latency.table import LatencyCost
from keras_flop.gates.structure import all_gates

# Dynamic loss scaling under mixed_float16, one scale for all three optimizers.
_INITIAL_LOSS_SCALE = 2.0 ** 15


@keras.saving.register_keras_serializable(package="keras_flop")
class PruningModel(DistributedBuildMixin, RunLength, CheckedData, VariableGroups,
                   FamilySchedule, keras.Model):
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
        target_sparsity_start: `t0`, where the warmup starts (default 0); after starting
            the gates from a mask, their `expected_sparsity()` keeps the mask's cost.
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
                 target_sparsity_start=0.0,
                 sparsity_denominator="dense", regularization_scale=0.0, teacher=None,
                 distillation_weight=0.0, distillation_temperature=1.0,
                 hidden_distillation_weight=0.0, constraint="absolute", pruning_steps=None,
                 cost="params", latency_table=None, target_speedup=None, targets=None,
                 target_speedups=None, hold_steps=None, ramp_steps=None,
                 target_tolerance=DEFAULT_TOLERANCE, **kwargs):
        super().__init__(**kwargs)
        check_pruning_arguments({name: value for name, value in locals().items()
                                 if name in PRUNING_ARGUMENTS}, caller="PruningModel")
        target_sparsity, targets = check_pruning_values(
            target_sparsity=target_sparsity, target_speedup=target_speedup, targets=targets,
            target_speedups=target_speedups, cost=cost, latency_table=latency_table,
            constraint=constraint, pruning_steps=pruning_steps, hold_steps=hold_steps,
            target_sparsity_warmup=target_sparsity_warmup,
            sparsity_denominator=sparsity_denominator,
            regularization_scale=regularization_scale)
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
        self.target_sparsity_start = target_sparsity_start
        self.built = True

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
            "target_sparsity_start": self.target_sparsity_start,
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
