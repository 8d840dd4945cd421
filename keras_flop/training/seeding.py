"""Deterministic random-generator states for a loaded model.

A `.keras` file does not keep the states of the model's `SeedGenerator`s (gate sampling,
dropout): a loaded model draws new ones, which depend on what the process did before.
`reseed` sets them from one seed, so a step run in a fresh process repeats exactly.
"""

import numpy as np


def seed_states(model):
    """The state variables of every random generator in `model`, in a stable order.

    Example:
    >>> import keras
    >>> from keras_flop.training.seeding import seed_states
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5),
    ...                           keras.layers.Dense(2), keras.layers.Dropout(0.1)])
    >>> states = seed_states(model)  # one per dropout layer
    >>> len(states), states[0].path.endswith("seed_generator_state")
    (2, True)
    """
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def reseed(model, seed):
    """Sets every generator of `model` to `(seed * 1000 + index, 0)`.

    Example:
    >>> import keras, numpy as np
    >>> from keras_flop.training.seeding import reseed
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dropout(0.5)])
    >>> x = np.ones((1, 4), "float32")
    >>> reseed(model, 7)
    >>> first = model(x, training=True)
    >>> reseed(model, 7)  # the same seed: the same dropout mask
    >>> np.array_equal(first, model(x, training=True))
    True
    """
    for index, state in enumerate(seed_states(model)):
        state.assign(np.array([seed * 1000 + index, 0], dtype=state.dtype))
