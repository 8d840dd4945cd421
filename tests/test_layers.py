"""FactorizedDense and HardConcreteMask as algorithm.md specifies them."""

import math

import keras
import numpy as np
import pytest

from keras_flop.layers import FactorizedDense, HardConcreteMask
from keras_flop.layers.svd import choose_rank, svd_factors


def _random(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("shape", [(24, 16), (16, 24), (20, 20)])
def test_full_rank_factorization_reproduces_dense(shape):
    kernel, bias, x = _random(shape, 0), _random(shape[1:], 1), _random((7, 5, shape[0]), 2)
    layer = FactorizedDense.from_kernel(kernel, bias, gated=False)
    assert layer.rank == min(shape)
    expected = x @ kernel + bias
    assert np.max(np.abs(np.asarray(layer(x)) - expected)) <= 1e-5


def test_sqrt_sigma_and_input_rank_policy_reproduce_dense():
    kernel, x = _random((12, 5), 0), _random((4, 12), 1)
    for kwargs in ({"sigma": "sqrt"}, {"rank_policy": "input"}):
        layer = FactorizedDense.from_kernel(kernel, None, gated=False, **kwargs)
        assert np.max(np.abs(np.asarray(layer(x)) - x @ kernel)) <= 1e-5
    p, q, _ = svd_factors(kernel, rank_policy="input")
    assert p.shape == (12, 12) and q.shape == (12, 5)
    assert np.all(q[5:] == 0.0)  # the ranks past min(in, out) carry nothing


def test_energy_truncation_keeps_requested_energy():
    singular_values = np.array([4.0, 2.0, 1.0, 0.5])
    energy = np.cumsum(singular_values ** 2) / np.sum(singular_values ** 2)
    assert choose_rank(singular_values, energy[0]) == 1
    assert choose_rank(singular_values, energy[1] + 1e-3) == 3
    assert choose_rank(singular_values, 1.0) == 4
    p, q, _ = svd_factors(_random((10, 8), 3), energy=0.9)
    assert p.shape[1] == q.shape[0] < 8


def test_open_gates_equal_the_ungated_layer():
    kernel, bias, x = _random((16, 12), 0), _random((12,), 1), _random((3, 16), 2)
    gated = FactorizedDense.from_kernel(kernel, bias, gated=True)
    plain = FactorizedDense.from_kernel(kernel, bias, gated=False)
    # log_alpha = 5 (the default) opens every gate of the inference mask.
    np.testing.assert_array_equal(np.asarray(gated.gate.mask(training=False)), np.ones(12))
    np.testing.assert_array_equal(np.asarray(gated(x, training=False)), np.asarray(plain(x)))


def test_sampled_gates_match_the_probability_of_a_nonzero_gate():
    gate = HardConcreteMask(9, seed=7)
    gate.build()
    log_alpha = np.linspace(-4.0, 4.0, 9).astype("float32")
    gate.log_alpha.assign(log_alpha)
    draws = 3000
    samples = np.stack([np.asarray(gate.mask(training=True)) for _ in range(draws)])
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    frequency = (samples > 0).mean(axis=0)
    closed_form = 1.0 / (1.0 + np.exp(-(log_alpha + math.log(11.0))))
    np.testing.assert_allclose(np.asarray(gate.prob_nonzero()), closed_form, rtol=1e-5)
    standard_error = np.sqrt(closed_form * (1.0 - closed_form) / draws)
    assert np.all(np.abs(frequency - closed_form) <= 3.0 * standard_error + 1e-9), (
        frequency, closed_form)
    assert float(gate.l0_norm()) == pytest.approx(closed_form.sum(), rel=1e-5)


def test_samples_differ_between_steps_and_are_shared_across_the_batch():
    gate = HardConcreteMask(6, init="paper", seed=3)
    x = np.ones((4, 6), "float32")
    first, second = (np.asarray(gate(x, training=True)) for _ in range(2))
    assert not np.array_equal(first, second)
    assert np.all(first == first[0])


@pytest.mark.parametrize("eval_mask", ["deterministic", "topk"])
def test_inference_mask_keeps_the_expected_number_of_units(eval_mask):
    size = 40
    gate = HardConcreteMask(size, eval_mask=eval_mask)
    gate.build()
    log_alpha = np.random.default_rng(0).normal(0.0, 3.0, size).astype("float32")
    gate.log_alpha.assign(log_alpha)
    mask = np.asarray(gate.mask(training=False))
    np.testing.assert_array_equal(mask, np.asarray(gate.mask(training=False)))
    p = 1.0 / (1.0 + np.exp(-(log_alpha + math.log(11.0))))
    if eval_mask == "topk":
        expected_kept = size - round(size - p.sum())
        soft = 1.0 / (1.0 + np.exp(-0.8 * log_alpha))
        z_hat = np.clip(1.2 / (1.0 + np.exp(-log_alpha)) - 0.1, 0.0, 1.0)
        kept = mask > 0
        np.testing.assert_allclose(mask[kept], np.maximum(z_hat, soft)[kept], rtol=1e-6)
        assert soft[kept].min() >= soft[~kept].max()  # the smallest ones were dropped
    else:
        # clip(σ(logα)·1.2 − 0.1, 0, 1) > 0  ⇔  σ(logα) > 1/12  ⇔  P(z ≠ 0) > 1/2
        expected_kept = int(np.sum(p > 0.5))
        expected = np.clip(1.2 / (1.0 + np.exp(-log_alpha)) - 0.1, 0.0, 1.0)
        np.testing.assert_allclose(mask, expected, atol=1e-6)
    assert int(np.sum(mask > 0)) == expected_kept


def test_keras_round_trip_gives_identical_outputs(tmp_path):
    kernel, bias = _random((10, 6), 0), _random((6,), 1)
    inputs = keras.Input((10,))
    factorized = FactorizedDense.from_kernel(kernel, bias, rank=4, activation="relu",
                                             gate_config={"eval_mask": "topk"})
    factorized.gate.log_alpha.assign(np.array([3.0, -2.0, 0.5, 1.0], "float32"))
    outputs = HardConcreteMask(6, name="outer_gate")(factorized(inputs))
    model = keras.Model(inputs, outputs)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    x = _random((5, 10), 2)
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(restored(x)))
    layer = restored.layers[1]
    assert isinstance(layer, FactorizedDense) and layer.rank == 4
    assert layer.gate.eval_mask == "topk"
    np.testing.assert_array_equal(np.asarray(layer.gate.log_alpha),
                                  np.asarray(factorized.gate.log_alpha))


def test_ungated_rank_zero_layer_outputs_its_bias():
    layer = FactorizedDense(units=3, rank=0, gated=False, bias_initializer="ones")
    np.testing.assert_array_equal(np.asarray(layer(_random((2, 5), 0))), np.ones((2, 3)))


def test_mixed_precision_keeps_the_gate_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = FactorizedDense.from_kernel(_random((8, 4), 0), _random((4,), 1))
        assert layer.compute_dtype == "float16" and layer.gate.compute_dtype == "float32"
        assert layer.gate.log_alpha.dtype == "float32"
        y = layer(_random((2, 8), 2), training=True)
        assert str(y.dtype) in ("float16", "<dtype: 'float16'>")
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "`size` must be a positive integer"),
    ({"size": 4, "init": "xavier"}, "`init` must be one of"),
    ({"size": 4, "drop_rate": 1.0}, "`drop_rate` must be in (0, 1)"),
    ({"size": 4, "temperature": 0.0}, "`temperature` must be > 0"),
    ({"size": 4, "limit_l": 0.1}, "`limit_l` must be < 0"),
    ({"size": 4, "limit_r": 0.9}, "`limit_r` must be > 1"),
    ({"size": 4, "epsilon": 0.6}, "`epsilon` must be in (0, 0.5)"),
    ({"size": 4, "eval_mask": "random"}, "`eval_mask` must be one of"),
    ({"size": 4, "seed": 1.5}, "`seed` must be an integer or None"),
])
def test_hard_concrete_mask_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        HardConcreteMask(**kwargs)
    assert message in str(error.value)


@pytest.mark.parametrize("call, message", [
    (lambda: FactorizedDense(units=0, rank=2), "`units` must be a positive integer"),
    (lambda: FactorizedDense(units=4, rank=0), "`rank` must be an integer >= 1"),
    (lambda: FactorizedDense(units=4, rank=-1, gated=False), "`rank` must be an integer >= 0"),
    (lambda: FactorizedDense.from_kernel(np.ones((4, 3)), rank=4), "in [1, 3]"),
    (lambda: FactorizedDense.from_kernel(np.ones((4, 3)), sigma="half"), "`sigma` must be one"),
    (lambda: FactorizedDense.from_kernel(np.ones((4, 3)), energy=1.5), "in (0, 1]"),
    (lambda: FactorizedDense.from_kernel(np.ones(4)), "2-D kernel"),
])
def test_factorized_dense_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_gates_built_from_one_seed_draw_their_own_noise():
    def draws(seed):
        gates = [HardConcreteMask(6, seed=seed, init_log_alpha=0.0, name=name)
                 for name in ("first", "second")]
        return [np.stack([np.asarray(gate.mask(training=True)) for _ in range(3)])
                for gate in gates]

    first, second = draws(11)
    assert not np.array_equal(first, second)
    again = draws(11)
    np.testing.assert_array_equal(first, again[0])
    np.testing.assert_array_equal(second, again[1])
    assert not np.array_equal(first, draws(12)[0])


def test_rank_gates_of_factorized_layers_from_one_seed_draw_their_own_noise():
    kernel = _random((8, 8), 0)

    def draws(seed):
        layers = [FactorizedDense.from_kernel(kernel, gate_config={"seed": seed,
                                                                   "init_log_alpha": 0.0},
                                              name=name) for name in ("query", "key")]
        return [np.asarray(layer.gate.mask(training=True)) for layer in layers]

    query, key = draws(5)
    assert not np.array_equal(query, key)
    np.testing.assert_array_equal(np.stack(draws(5)), np.stack([query, key]))


def test_topk_mask_keeps_open_gates_at_one_and_round_l0_units_nonzero():
    # At the default init every gate is open; rounding the expected number of zeros of a
    # 3072-unit gate (3072 · (1 - σ(5 + ln 11)) ≈ 1.9) must not close any of them.
    for size in (4, 768, 3072):
        gate = HardConcreteMask(size, eval_mask="topk")
        np.testing.assert_array_equal(np.asarray(gate.mask(training=False)), np.ones(size))
    # 4 open gates and 6 parked at P(z ≠ 0) ≈ 0.1: l0 ≈ 4.6, so 5 units are kept; the
    # fifth carries σ(0.8 · -4.6), where the threshold rule (z_hat = 0) would drop it.
    gate = HardConcreteMask(10, eval_mask="topk")
    gate.build()
    gate.log_alpha.assign(np.array([5.0] * 4 + [-4.6] * 6, "float32"))
    mask = np.asarray(gate.mask(training=False))
    np.testing.assert_array_equal(mask[:4], np.ones(4))
    np.testing.assert_allclose(np.sort(mask[4:]), [0.0] * 5 + [1.0 / (1.0 + np.exp(0.8 * 4.6))],
                               rtol=1e-6)  # which of the tied six is kept is by index
