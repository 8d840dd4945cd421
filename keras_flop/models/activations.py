"""Activation functions by the names `bert_config.json` uses.

`"gelu"` in a google-research/bert config is the tanh approximation: an imported checkpoint
must reproduce its original logits, so it maps to `gelu_tanh`, not Keras' exact `gelu`.
"""

import keras


@keras.saving.register_keras_serializable(package="keras_flop")
def gelu_tanh(x):
    """GELU, tanh approximation (google-research/bert `modeling.gelu`)."""
    return keras.activations.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="keras_flop")
def gelu_exact(x):
    """GELU with the exact erf (Hugging Face `"gelu"`)."""
    return keras.activations.gelu(x, approximate=False)


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
    """Returns the activation function for a `hidden_act` name."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}.") from None
