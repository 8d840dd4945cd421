"""The learning-rate schedules and optimizers of keras_flop.training.optimizers
(algorithm.md §4)."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.training.optimizers import (NoamSchedule, WarmupLinearDecay, is_frozen,
                                            model_optimizer)


@pytest.mark.parametrize("step, rate", [
    (0, 0.0), (10, 1e-3), (20, 2e-3),           # warmup: 2e-3 · step / 20
    (60, 1e-3), (90, 2.5e-4), (100, 0.0),       # decay: 2e-3 · (100 - step) / 80
    (130, 0.0),                                 # past the end: stays 0
])
def test_warmup_linear_decay_values(step, rate):
    schedule = WarmupLinearDecay(2e-3, total_steps=100, warmup_steps=20)
    assert float(schedule(step)) == pytest.approx(rate, abs=1e-9)


def test_warmup_linear_decay_without_warmup_starts_at_the_peak():
    schedule = WarmupLinearDecay(1e-3, total_steps=10)
    assert [round(float(schedule(s)), 9) for s in (0, 5, 10)] == [1e-3, 5e-4, 0.0]


@pytest.mark.parametrize("step, rate", [
    (0, 0.000127578),    # 10 · (1 / 200^1.5) / sqrt(768): not 0 at the first step
    (199, 0.0255155),    # 10 · (200 / 200^1.5 = 1 / sqrt(200)) / sqrt(768): the peak
    (799, 0.0127578),    # 10 · (1 / sqrt(800)) / sqrt(768): half the peak
])
def test_noam_schedule_values(step, rate):
    schedule = NoamSchedule(10.0, warmup_steps=200, model_dim=768)
    assert float(schedule(step)) == pytest.approx(rate, rel=1e-5)


def test_noam_schedule_with_other_dimensions():
    schedule = NoamSchedule(5.0, warmup_steps=50, model_dim=384)
    # 5 · (10 / 50^1.5) / sqrt(384); 5 · (1 / sqrt(50)) / sqrt(384); 5 · (1 / sqrt(200)) / sqrt(384)
    np.testing.assert_allclose([float(schedule(s)) for s in (9, 49, 199)],
                               [0.00721688, 0.0360844, 0.0180422], rtol=1e-5)


@pytest.mark.parametrize("schedule", [WarmupLinearDecay(1e-3, 50, 5), NoamSchedule(3.0, 7, 64)])
def test_schedules_round_trip_through_their_config(schedule):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert type(restored) is type(schedule) and restored.get_config() == schedule.get_config()
    assert float(restored(12)) == pytest.approx(float(schedule(12)))


def test_adamw_decays_kernels_but_not_layer_norms_and_biases():
    keras.utils.set_random_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=16)
    variables = keras_flop.factorize(build_bert_classifier(config)).model_variables
    optimizer = model_optimizer(0.1, total_steps=10, warmup_fraction=0.0, weight_decay=0.01)
    optimizer.build(variables)
    before = [np.array(v) for v in variables]
    # Zero gradients: Adam moves nothing, so any change is the decoupled weight decay
    # `w ← w · (1 - lr · decay)` with lr 0.1 at step 0.
    optimizer.apply([np.zeros(v.shape, "float32") for v in variables], variables)
    excluded = decayed = 0
    for variable, old in zip(variables, before):
        new = np.asarray(variable)
        if variable.name in ("bias", "gamma", "beta"):
            np.testing.assert_array_equal(new, old, err_msg=variable.path)
            excluded += 1
        else:
            np.testing.assert_allclose(new, old * (1.0 - 0.1 * 0.01), rtol=1e-6,
                                       err_msg=variable.path)
            decayed += 1
    names = {v.name for v in variables}
    assert {"bias", "gamma", "beta", "p_kernel", "q_kernel", "kernel", "embeddings"} <= names
    assert excluded > 0 and decayed > 0


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
