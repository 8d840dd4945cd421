"""Fisher scores of the head and FFN-unit masks (step 1 of `keras_flop.fisher.post_training`).

Every attention head and FFN unit gets a mask variable `m = 1`, applied by the model's own
forward pass (`BertClassifier.forward_view()`); the per-example gradients `g = ∂L/∂m` of the
task loss give the diagonal of the empirical Fisher information, `F_ii = mean(g_i²)`: the loss
increase expected from removing unit `i`. Each example gets its own copy of the masks (masks
of shape `[batch, units]`), so one backward pass per batch yields every per-example gradient.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_flop.fisher.inputs import dense_network


def _per_example_loss(logits, labels):
    if logits.shape[-1] == 1:
        return ops.square(logits[:, 0] - ops.cast(labels, logits.dtype))
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def per_example_mask_gradients(model, batches, verbose=0):
    """`(head_grads, unit_grads)`: per encoder layer, `[examples, units]` arrays of
    `∂ loss_n / ∂ m` at `m = 1` for every head / FFN unit (empty for a removed block).

    `batches`: an iterable of `(features, labels)`.
    """
    network = dense_network(model)
    forward = network.forward_view()
    shapes = network.layer_shapes

    @tf.function(reduce_retracing=True)
    def step(features, labels):
        size = tf.shape(labels)[0]
        heads = [tf.ones((size, max(h, 1))) for h, _ in shapes]
        units = [tf.ones((size, max(u, 1))) for _, u in shapes]
        with tf.GradientTape() as tape:
            tape.watch(heads + units)
            logits = forward(features, [m if h else None for m, (h, _) in zip(heads, shapes)],
                             [m if u else None for m, (_, u) in zip(units, shapes)])
            # A sum: example n's loss depends only on its own mask row, so the gradient of
            # the sum w.r.t. row n is example n's gradient.
            loss = ops.sum(_per_example_loss(ops.cast(logits, "float32"), labels))
        grads = tape.gradient(loss, heads + units)
        return [tf.zeros_like(m) if g is None else g for g, m in zip(grads, heads + units)]

    batches = list(batches)
    progress = keras.utils.Progbar(len(batches), unit_name="batch",
                                   verbose=verbose) if verbose else None
    collected = []
    for index, (features, labels) in enumerate(batches):
        collected.append([g.numpy() for g in step(features, labels)])
        if progress:
            progress.update(index + 1)
    n = len(shapes)
    grads = [np.concatenate([c[i] for c in collected]) for i in range(2 * n)]
    trim = [grads[i][:, :shapes[i][0]] for i in range(n)], \
        [grads[n + i][:, :shapes[i][1]] for i in range(n)]
    return trim


def fisher_scores(grads):
    """The diagonal Fisher score of every unit, per layer: the mean squared per-example
    gradient of `per_example_mask_gradients`' `[examples, units]` arrays."""
    return [np.mean(np.square(g), axis=0) for g in grads]
