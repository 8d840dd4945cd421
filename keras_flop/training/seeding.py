"""Deterministic random-generator states for a loaded model.

A `.keras` file does not keep the states of the model's `SeedGenerator`s (gate sampling,
dropout): a loaded model draws new ones, which depend on what the process did before.
`reseed` sets them from one seed, so a step run in a fresh process repeats exactly.
"""

import numpy as np


def seed_states(model):
    """The state variables of every random generator in `model`, in a stable order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def reseed(model, seed):
    """Sets every generator of `model` to `(seed + index, 0)`."""
    for index, state in enumerate(seed_states(model)):
        state.assign(np.array([seed * 1000 + index, 0], dtype=state.dtype))
