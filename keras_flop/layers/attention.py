"""`ScaledDotProductAttention`: the weight-free core of BERT's self-attention.

The query, key, value and output projections are separate layers of the model so that the
factorizer can replace each of them; this layer only splits heads, attends and merges heads.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_flop")
class ScaledDotProductAttention(keras.layers.Layer):
    """Multi-head attention over projected `query`, `key`, `value` `[batch, seq, heads*size]`.

    Padding positions (`padding_mask == False`) get an additive `-10000` on their scores, as
    the original BERT does, so imported checkpoints reproduce their logits. Scores and softmax
    run in float32 under mixed precision.

    Args:
        num_heads: number of heads (positive int).
        head_size: size of each head (positive int).
        dropout: dropout rate on the attention probabilities, in [0, 1).

    Example:
    >>> import numpy as np
    >>> q = np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")
    >>> mask = np.ones((2, 5), bool)
    >>> tuple(ScaledDotProductAttention(num_heads=2, head_size=4)(q, q, q, mask).shape)
    (2, 5, 8)
    """

    def __init__(self, num_heads, head_size, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("num_heads", num_heads), ("head_size", head_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive integer; got {arg}={value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1); got dropout={dropout}.")
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout = dropout
        self.dropout_layer = keras.layers.Dropout(dropout)

    def _split_heads(self, x):
        batch, seq = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, seq, self.num_heads, self.head_size))
        return ops.transpose(x, (0, 2, 1, 3))

    def call(self, query, key, value, padding_mask, training=None):
        q, k, v = (self._split_heads(t) for t in (query, key, value))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        scores = ops.cast(scores, "float32") / math.sqrt(self.head_size)
        adder = (1.0 - ops.cast(padding_mask, "float32")) * -10000.0
        # expand_dims, not `[:, None, None, :]`: LiteRT's builtin strided slice has no new axes.
        scores = scores + ops.expand_dims(ops.expand_dims(adder, 1), 1)
        probs = ops.cast(ops.softmax(scores, axis=-1), v.dtype)
        probs = self.dropout_layer(probs, training=training)
        context = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
        batch, seq = ops.shape(context)[0], ops.shape(context)[1]
        return ops.reshape(context, (batch, seq, self.num_heads * self.head_size))

    def compute_output_shape(self, query_shape, key_shape, value_shape, padding_mask_shape):
        return tuple(query_shape[:-1]) + (self.num_heads * self.head_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "head_size": self.head_size,
                       "dropout": self.dropout})
        return config
