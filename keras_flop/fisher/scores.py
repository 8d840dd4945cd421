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

    Example:
    >>> import keras_flop, numpy as np
    >>> model = keras_flop.build_bert_classifier(keras_flop.BertConfig(
    ...     vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=16))
    >>> x = {"token_ids": np.arange(1, 21, dtype="int32").reshape(4, 5),
    ...      "segment_ids": np.zeros((4, 5), "int32"), "padding_mask": np.ones((4, 5), bool)}
    >>> batches = [(x, np.array([0, 1, 0, 1]))]
    >>> head_grads, unit_grads = per_example_mask_gradients(model, batches)
    >>> [g.shape for g in head_grads], [g.shape for g in unit_grads]
    ([(4, 2), (4, 2)], [(4, 16), (4, 16)])
    >>> [s.shape for s in fisher_scores(head_grads)]
    [(2,), (2,)]
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
    gradient of `per_example_mask_gradients`' `[examples, units]` arrays.

    Example:
    >>> import numpy as np
    >>> fisher_scores([np.array([[1.0, 0.0], [3.0, 2.0]])])[0].tolist()
    [5.0, 2.0]
    """
    return [np.mean(np.square(g), axis=0) for g in grads]
