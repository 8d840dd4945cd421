"""Distillation from the fine-tuned dense model: the losses a `PruningModel` adds to its task
loss, on the teacher's logits and on its encoder layers' hidden states."""

import keras
from keras import ops

from keras_flop.models.bert import hidden_state_layers

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


def hidden_state_loss(teacher_states, student_states):
    """Mean over matched layers of the mean squared hidden-state difference, float32."""
    return ops.mean(ops.stack([
        ops.mean(ops.square(ops.cast(s, "float32") - ops.stop_gradient(ops.cast(t, "float32"))))
        for t, s in zip(teacher_states, student_states)]))
