"""Activation functions by the names `bert_config.json` uses.

`"gelu"` in a google-research/bert config is the tanh approximation: an imported checkpoint
must reproduce its original logits, so it maps to `gelu_tanh`, not Keras' exact `gelu`.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_flop")
def gelu_tanh(x):
    """GELU, tanh approximation (google-research/bert `modeling.gelu`).

    Example:
    >>> from keras_flop.models.activations import gelu_tanh
    >>> round(float(gelu_tanh(1.0)), 4)
    0.8412
    """
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="keras_flop")
def gelu_exact(x):
    """GELU with the exact erf (Hugging Face `"gelu"`).

    Example:
    >>> from keras_flop.models.activations import gelu_exact
    >>> round(float(gelu_exact(1.0)), 4)  # 1.0 · Φ(1.0)
    0.8413
    """
    # Written with erf: Keras' exact gelu lowers to TensorFlow's Erfc, which tf2onnx cannot
    # convert (ONNX has Erf, not Erfc), so an exported model would not load in ONNX Runtime.
    return 0.5 * x * (1.0 + keras.ops.erf(x * 0.7071067811865476))


ACTIVATIONS = {
    "gelu": gelu_tanh,
    "gelu_new": gelu_tanh,
    "gelu_tanh": gelu_tanh,
    "gelu_exact": gelu_exact,
    "relu": keras.activations.relu,
    "tanh": keras.activations.tanh,
    "swish": keras.activations.silu,
    "silu": keras.activations.silu,
}


def get_activation(name):
    """Returns the activation function for a `hidden_act` name.

    Example:
    >>> from keras_flop.models.activations import get_activation
    >>> get_activation("gelu").__name__  # google-research/bert's "gelu" is the tanh form
    'gelu_tanh'
    >>> get_activation("mish")
    Traceback (most recent call last):
    ...
    ValueError: Unknown activation 'mish'; expected one of ['gelu', 'gelu_exact', ...].
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}.") from None
