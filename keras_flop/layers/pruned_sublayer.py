"""`PrunedSublayer`: what is left of an attention or FFN block whose every unit was pruned."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_flop")
class PrunedSublayer(keras.layers.Layer):
    """The constant output of a removed sublayer: its output bias, broadcast over the input.

    When compaction removes every head of an attention block (or every unit of an FFN block),
    the block still adds its output projection's bias (times the block's gate) to the residual
    stream; this layer keeps exactly that, with no matmul.

    Args:
        units: size of the output's last axis (positive int).

    Example:
    >>> import numpy as np
    >>> layer = PrunedSublayer(4)
    >>> tuple(layer(np.ones((2, 3, 4), "float32")).shape)
    (2, 3, 4)
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive integer; got units={units!r}.")
        self.units = units

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.built = True

    def call(self, inputs):
        return ops.zeros_like(inputs[..., :1]) + ops.cast(self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
