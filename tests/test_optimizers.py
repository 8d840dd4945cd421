"""The learning-rate schedules and optimizers of keras_flop.optimizers (algorithm.md §4)."""

import keras
import pytest

from keras_flop.optimizers import is_frozen, model_optimizer


@pytest.mark.parametrize("optimizer, frozen", [
    (None, True),
    ("adamw", False),
    ({"class_name": "SGD", "config": {"learning_rate": 0.0}}, True),
    ({"class_name": "Adam", "config": {"learning_rate": 1e-3}}, False),
    (keras.optimizers.SGD(0.0), True),
    (model_optimizer(0.0, 10), True),
    (model_optimizer(1e-3, 10), False),
])
def test_is_frozen_reads_what_compile_accepts(optimizer, frozen):
    assert is_frozen(optimizer) is frozen
