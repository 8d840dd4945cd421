"""Distillation from the fine-tuned dense model: the losses a `PruningModel` adds to its task
loss, on the teacher's logits and on its encoder layers' hidden states, and `Distiller`, which
fine-tunes a (compact) student with them."""

import warnings

import keras
import tensorflow as tf
from keras import ops

from keras_flop.compat import DistributedBuildMixin
from keras_flop.input_checks import CheckedData
from keras_flop.models.bert import bert_structure_of, hidden_state_layers

# Feature key of precomputed teacher logits: logit distillation from a frozen teacher
# without running it every step.
TEACHER_LOGITS = "teacher_logits"


def feature_view(model):
    """`model` returning `[outputs, *hidden_states]`, sharing its layers."""
    outputs = [model.outputs[0]] + [layer.output for layer in hidden_state_layers(model)]
    return keras.Model(model.inputs, outputs, name=f"{model.name}_with_hidden_states")


def logit_loss(teacher_outputs, student_outputs, temperature):
    """`T² · KL(softmax(teacher / T) ‖ softmax(student / T))`, or the mean squared error for a
    one-output (regression) model; float32, no gradient to the teacher.

    >>> import numpy as np
    >>> logits = np.array([[2.0, -1.0], [0.5, 0.5]], "float32")
    >>> float(logit_loss(logits, logits, temperature=2.0))
    0.0
    """
    teacher = ops.stop_gradient(ops.cast(teacher_outputs, "float32"))
    student = ops.cast(student_outputs, "float32")
    if student.shape[-1] == 1:
        return ops.mean(ops.square(student - teacher))
    t = temperature
    target = ops.softmax(teacher / t, axis=-1)
    log_ratio = ops.log_softmax(teacher / t, axis=-1) - ops.log_softmax(student / t, axis=-1)
    return t * t * ops.mean(ops.sum(target * log_ratio, axis=-1))


def distilled_layers(student):
    """Indices of the encoder layers whose hidden states the student matches to the teacher's
    (layer i to layer i): every layer but those a compact model emptied (no heads, no FFN
    units). An emptied layer's output is its input, the state one layer down, which already
    matches the teacher's layer there; matching it to the teacher's next layer too would ask
    one state to be two."""
    _, _, shapes = bert_structure_of(student)
    return [index for index, (heads, units) in enumerate(shapes) if heads or units]


def hidden_state_loss(teacher_states, student_states):
    """Mean over matched layers of the mean squared hidden-state difference, float32."""
    return ops.mean(ops.stack([
        ops.mean(ops.square(ops.cast(s, "float32") - ops.stop_gradient(ops.cast(t, "float32"))))
        for t, s in zip(teacher_states, student_states)]))


def check_teacher(teacher, student, hidden_distillation_weight, role="student"):
    """Raises a `ValueError` unless `teacher` can teach `student` (called `role` in the
    message): as many outputs, and for hidden-state distillation, which matches layer i to
    layer i, as many encoder layers."""
    outputs = teacher.outputs[0].shape[-1], student.outputs[0].shape[-1]
    if outputs[0] != outputs[1]:
        raise ValueError(f"The teacher {teacher.name!r} has {outputs[0]} outputs, the {role} "
                         f"{outputs[1]}: distill between models of one task.")
    if hidden_distillation_weight > 0:
        layers = len(hidden_state_layers(teacher)), len(hidden_state_layers(student))
        if layers[0] != layers[1]:
            raise ValueError(f"Hidden-state distillation matches layer i to layer i: the "
                             f"teacher has {layers[0]} encoder layers, the {role} "
                             f"{layers[1]}.")


def check_settings(teacher, distillation_weight, hidden_distillation_weight, temperature,
                   temperature_name="temperature", logits_may_be_fed=False):
    """Raises a `ValueError` for weights < 0, a temperature <= 0 (named `temperature_name` in
    the message), or a weight > 0 without a `teacher` (logit distillation may go without one
    when `logits_may_be_fed`: the batches then carry its outputs)."""
    for name, value in (("distillation_weight", distillation_weight),
                        ("hidden_distillation_weight", hidden_distillation_weight)):
        if not value >= 0:
            raise ValueError(f"`{name}` must be >= 0 (0 turns that loss off); got {value}.")
    if not temperature > 0:
        raise ValueError(f"`{temperature_name}` must be > 0; got {temperature}.")
    if hidden_distillation_weight > 0 and teacher is None:
        raise ValueError("`hidden_distillation_weight` > 0 needs a `teacher` model (the "
                         "fine-tuned dense model): its hidden states cannot be fed with the "
                         "batch.")
    if distillation_weight > 0 and teacher is None and not logits_may_be_fed:
        raise ValueError("`distillation_weight` > 0 needs a `teacher` model (the fine-tuned "
                         "dense model).")


def split_teacher_logits(inputs):
    """`(model inputs, teacher logits fed with the batch or None)`."""
    if isinstance(inputs, dict) and TEACHER_LOGITS in inputs:
        return {k: v for k, v in inputs.items() if k != TEACHER_LOGITS}, inputs[TEACHER_LOGITS]
    return inputs, None


def teacher_targets(features, fed_logits, teacher, teacher_view, logits_wanted):
    """What the student learns from, `(teacher logits, teacher hidden states)`, either None
    when not wanted: with a `teacher_view` (`feature_view(teacher)`, hidden-state
    distillation) both from one forward pass; else the `fed_logits`, else, when
    `logits_wanted`, the teacher's forward pass."""
    if teacher_view is not None:
        outputs = teacher_view(features, training=False)
        return outputs[0], outputs[1:]
    if fed_logits is not None:
        return fed_logits, None
    if logits_wanted and teacher is not None:
        return teacher(features, training=False), None
    return None, None


@keras.saving.register_keras_serializable(package="keras_flop")
class Distiller(DistributedBuildMixin, CheckedData, keras.Model):
    """Trains `student` on its task loss plus distillation from `teacher`, with plain `fit`.

    The loss is the compiled task loss plus `distillation_weight · T² · KL(softmax(teacher /
    T) ‖ softmax(student / T))` (mean squared error for a regressor) plus
    `hidden_distillation_weight ·` the mean squared difference of the encoder layers' hidden
    states, layer `i` to layer `i`. A compact model keeps every encoder layer (a removed block
    passes its input on), so the map holds after pruning as before it; a layer the compact
    model emptied entirely is left out of it (`distilled_layers`). Only the student is
    trained; the teacher is run with `training=False` and is not part of the checkpoint.

    For logit distillation alone the teacher's outputs are fixed: batches whose features
    carry them as `"teacher_logits"` (`[batch, num_labels]`, e.g. from `teacher.predict` once)
    skip the teacher's forward pass, and `teacher` may then be None. Prediction runs the
    student alone; save `distiller.student`, the model trained.

    Evaluation (`evaluate`, and `fit`'s validation) reports `loss`, the student's task loss
    alone, and the same `task_loss` and distillation losses as training, on the evaluation
    data with `training=False`: the distillation loss needs the teacher (or
    `"teacher_logits"` in the evaluation batches) and is left out without it.

    Example: recover a compact model's accuracy from the dense model it was pruned from.

    >>> import numpy as np
    >>> import keras_flop as kf
    >>> config = kf.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                        num_attention_heads=2, intermediate_size=32)
    >>> teacher = kf.build_bert_classifier(config, num_labels=2)
    >>> student = kf.build_bert_classifier(config, num_labels=2,
    ...                                    layer_shapes=[(1, 16), (2, 0)])
    >>> distiller = kf.Distiller(student, teacher, distillation_weight=1.0)
    >>> distiller.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x = {"token_ids": np.ones((4, 8), "int32"), "segment_ids": np.zeros((4, 8), "int32"),
    ...      "padding_mask": np.ones((4, 8), bool)}
    >>> history = distiller.fit(x, np.array([0, 1, 0, 1]), epochs=1, verbose=0)
    >>> sorted(history.history)
    ['distillation_loss', 'loss', 'task_loss']
    """

    def __init__(self, student, teacher=None, distillation_weight=1.0, temperature=2.0,
                 hidden_distillation_weight=0.0, **kwargs):
        kwargs.setdefault("name", f"{student.name}_distiller")
        super().__init__(**kwargs)
        check_settings(teacher, distillation_weight, hidden_distillation_weight, temperature,
                       logits_may_be_fed=True)
        if teacher is not None:
            check_teacher(teacher, student, hidden_distillation_weight)
        self.student = student
        # Kept out of Keras' tracking: not trained, not saved with the checkpoints, and the
        # hidden-state views only share layers the two models already have.
        self.__dict__["teacher"] = teacher
        distilled = distilled_layers(student) if hidden_distillation_weight > 0 else []
        if hidden_distillation_weight > 0 and not distilled:
            warnings.warn("Every encoder layer of the student is emptied: the hidden-state "
                          "distillation has nothing to match and is left out.", stacklevel=2)
        self.__dict__["_distilled"] = distilled
        self.__dict__["_views"] = ((feature_view(student), feature_view(teacher))
                                   if distilled else None)
        # Set while `test_step` is traced: the student's hidden states are computed for the
        # evaluation's hidden-state loss, and losses that cannot be are left out of its logs.
        self.__dict__["_evaluating"] = False
        self.__dict__["_not_evaluated"] = ()
        self.distillation_weight = float(distillation_weight)
        self.temperature = float(temperature)
        self.hidden_distillation_weight = float(hidden_distillation_weight)
        self.task_loss_tracker = keras.metrics.Mean(name="task_loss")
        self.distillation_tracker = (keras.metrics.Mean(name="distillation_loss")
                                     if self.distillation_weight > 0 else None)
        self.hidden_tracker = (keras.metrics.Mean(name="hidden_distillation_loss")
                               if distilled else None)
        self.built = True

    def call(self, inputs, training=False):
        inputs, _ = split_teacher_logits(inputs)
        if (training or self._evaluating) and self._views is not None:
            # the hidden states too, for the loss
            return tuple(self._views[0](inputs, training=training))
        return self.student(inputs, training=training)

    def test_step(self, data):
        self.__dict__["_evaluating"] = True
        try:
            return super().test_step(data)
        finally:
            self.__dict__["_evaluating"] = False

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        states = None
        if isinstance(y_pred, (tuple, list)):
            y_pred, *states = y_pred
        task = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)
        # Each loss is a batch mean, weighted by the batch size as Keras weighs `loss`; the
        # task loss as Keras' `loss` is, unscaled from its share of a `tf.distribute` step.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch = ops.shape(tf.nest.flatten(y_pred)[0])[0]
        self.task_loss_tracker.update_state(ops.cast(task, "float32") * replicas,
                                            sample_weight=batch)
        features, fed = split_teacher_logits(x)
        teacher_logits, teacher_states = teacher_targets(
            features, fed, self.teacher, None if states is None else self._views[1],
            self.distillation_weight > 0)
        if teacher_logits is None and self.distillation_weight > 0 and training:
            raise ValueError(f"Logit distillation without a `teacher` needs the teacher's "
                             f"outputs in the batch, as the feature {TEACHER_LOGITS!r}.")
        self.__dict__["_not_evaluated"] = () if teacher_logits is not None or \
            self.distillation_tracker is None else (self.distillation_tracker.name,)
        loss = ops.cast(task, "float32") if training else task
        if self.distillation_tracker is not None and teacher_logits is not None:
            distill = logit_loss(teacher_logits, y_pred, self.temperature)
            self.distillation_tracker.update_state(distill, sample_weight=batch)
            if training:
                loss = loss + self.distillation_weight * distill
        if teacher_states is not None:
            hidden = hidden_state_loss([teacher_states[i] for i in self._distilled],
                                       [states[i] for i in self._distilled])
            self.hidden_tracker.update_state(hidden, sample_weight=batch)
            if training:
                loss = loss + self.hidden_distillation_weight * hidden
        return loss  # evaluation: the student's task loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (tuple, list)):
            y_pred = y_pred[0]
        logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if self._evaluating:  # an evaluation without the teacher's outputs
            for name in self._not_evaluated:
                logs.pop(name, None)
        return logs

    def get_config(self):
        return {"name": self.name,
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": (None if self.teacher is None else
                            keras.saving.serialize_keras_object(self.teacher)),
                "distillation_weight": self.distillation_weight,
                "temperature": self.temperature,
                "hidden_distillation_weight": self.hidden_distillation_weight}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
