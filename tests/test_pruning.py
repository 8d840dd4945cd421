"""factorize, expected_sparsity and the PruningModel's Lagrangian train_step."""

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.layers import FactorizedDense
from keras_flop.gates.sparsity import sparsity_denominator
from keras_flop.gates.structure import all_gates

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


def _data(n=32, seq=8, seed=0):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1, 50, (n, seq)).astype("int32"),
         "segment_ids": np.zeros((n, seq), "int32"),
         "padding_mask": np.ones((n, seq), bool)}
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def _pruning_model(seed=0, dropout=0.1, **kwargs):
    keras.utils.set_random_seed(seed)
    config = BertConfig(**TINY, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return keras_flop.factorize(build_bert_classifier(config), **kwargs)


def test_factorized_model_with_open_gates_equals_the_dense_model():
    dense = build_bert_classifier(BertConfig(**TINY), num_labels=3)
    pruning_model = keras_flop.factorize(dense)
    x, _ = _data()
    np.testing.assert_allclose(np.asarray(pruning_model.predict(x, verbose=0)),
                               np.asarray(dense.predict(x, verbose=0)), atol=1e-4)
    gates = all_gates(pruning_model.network)
    assert len(gates) == 12 and all(gate.size == 32 for gate in gates)
    # No variable is shared: training the pruning model leaves the dense model alone.
    dense_ids = {id(v) for v in dense.weights}
    assert not any(id(v) in dense_ids for v in pruning_model.weights)


def test_rank_truncation():
    dense = build_bert_classifier(BertConfig(**TINY))
    assert {gate.size for gate in all_gates(keras_flop.factorize_model(dense, rank=8))} == {8}
    truncated = all_gates(keras_flop.factorize_model(dense, rank=0.5))
    assert all(1 <= gate.size < 32 for gate in truncated)
    # Break-even: the factor pair of a [32, 32] kernel at rank 16 costs what the kernel costs,
    # of a [32, 64] one at rank 21 a little less; the expected sparsity starts at 0, not below.
    even = keras_flop.factorize(dense, rank="break_even")
    assert sorted({gate.size for gate in all_gates(even.network)}) == [16, 21]
    assert 0.0 <= float(keras_flop.expected_sparsity(even)) < 0.02
    with pytest.raises(ValueError, match="`rank` must be a positive int"):
        keras_flop.factorize_model(dense, rank=0)
    with pytest.raises(ValueError, match="already factorized"):
        keras_flop.factorize_model(keras_flop.factorize_model(dense))


def test_expected_sparsity_at_full_rank():
    pruning_model = _pruning_model()
    # Square 32x32 layers double when factored, 32x64 ones grow by half: 1 - 14336/8192.
    p_open = 1.0 / (1.0 + np.exp(-(5.0 + np.log(11.0))))
    expected = 1.0 - p_open * (8 * 64 * 32 + 4 * 96 * 32) / (8 * 32 * 32 + 4 * 32 * 64)
    assert float(keras_flop.expected_sparsity(pruning_model)) == pytest.approx(expected, 1e-5)
    factorized = float(keras_flop.expected_sparsity(pruning_model, denominator="factorized"))
    assert factorized == pytest.approx(1.0 - p_open, abs=1e-5)
    dense_count = sparsity_denominator(pruning_model, "dense")
    assert keras_flop.kept_parameters(pruning_model) == dense_count  # merged back at worst


@pytest.mark.parametrize("kwargs, message", [
    ({"target_sparsity": 1.0}, "`target_sparsity` must be in [0, 1)"),
    ({"target_sparsity": -0.1}, "`target_sparsity` must be in [0, 1)"),
    ({"sparsity_denominator": "sparse"}, "`sparsity_denominator` must be one of"),
    ({"regularization_scale": -1.0}, "`regularization_scale` must be >= 0"),
    ({"constraint": "inequality"}, "`constraint` must be one of"),
    ({"pruning_steps": 0}, "`pruning_steps` must be an integer >= 1"),
    ({"target_sparsity_start": 1.0}, "`target_sparsity_start` must be a number in [0, 1)"),
    ({"targets": [0.3, 0.5], "pruning_steps": 100, "target_sparsity_start": 0.2},
     "`target_sparsity_start` is the single target's"),
])
def test_pruning_model_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError) as error:
        _pruning_model(**kwargs)
    assert message in str(error.value)


def test_frozen_model_trains_only_gates_and_lambdas():
    pruning_model = _pruning_model(target_sparsity=0.5)
    pruning_model.compile(optimizer=None, alpha_optimizer=keras.optimizers.Adam(0.05),
                          lambda_optimizer=keras.optimizers.Adam(0.05))
    assert pruning_model.model_frozen
    before = [np.array(v) for v in pruning_model.model_variables]
    gates_before = [np.array(v) for v in pruning_model.gate_variables]
    x, y = _data()
    history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    for old, new in zip(before, pruning_model.model_variables):
        np.testing.assert_array_equal(old, np.asarray(new))
    gates_after = [np.asarray(v) for v in pruning_model.gate_variables]
    assert all(not np.array_equal(old, new) for old, new in zip(gates_before, gates_after))
    assert np.mean(np.concatenate(gates_after)) < np.mean(np.concatenate(gates_before))
    # Ascent on λ1 |ŝ - t| + λ2 (ŝ - t)²: both gradients are >= 0, both λ grow.
    assert history["lambda_1"][-1] > 0 and history["lambda_2"][-1] > 0
    for key in ("loss", "task_loss", "lagrangian", "expected_sparsity", "target_sparsity",
                "lambda_1", "lambda_2", "alpha_lr", "lambda_lr"):
        assert key in history, key
    # Constants are not logged: a frozen model's learning rate, an L2 penalty that is off.
    assert "model_lr" not in history and "l2_regularization_loss" not in history


def test_target_sparsity_warmup_and_l2():
    pruning_model = _pruning_model(target_sparsity=0.6, target_sparsity_warmup=8,
                                   regularization_scale=1e-3)
    pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 100),
                          metrics=["accuracy"])
    x, y = _data()
    history = pruning_model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    # Logged after steps 3 and 7 (0-based): t = 0.6 · step / 8.
    np.testing.assert_allclose(history["target_sparsity"], [0.6 * 3 / 8, 0.6 * 7 / 8], rtol=1e-5)
    kernels = pruning_model._l2_kernels()
    assert len(kernels) == 2 * 12 + 1
    assert history["l2_regularization_loss"][-1] > 0
    assert history["model_lr"][-1] > 0


def test_target_warmup_starts_where_the_gates_start():
    pruning_model = _pruning_model(target_sparsity=0.6, target_sparsity_warmup=8)
    for gate in all_gates(pruning_model.network):  # every other rank closed, as a mask would
        gate.log_alpha.assign(np.where(np.arange(gate.size) % 2, 5.0, -5.0).astype("float32"))
    start = float(pruning_model.expected_sparsity())
    assert 0.0 < start < 0.6
    pruning_model.target_sparsity_start = start
    pruning_model.compile()
    x, y = _data()
    history = pruning_model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    # Logged after steps 3 and 7 (0-based): t = t0 + (0.6 - t0) · step / 8.
    np.testing.assert_allclose(history["target_sparsity"],
                               [start + (0.6 - start) * s / 8 for s in (3, 7)], rtol=1e-5)
    assert float(pruning_model.target_sparsity_at(12)) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="`target_sparsity_start` must be a number"):
        pruning_model.target_sparsity_start = "half"


def test_evaluate_and_predict_use_the_deterministic_mask():
    pruning_model = _pruning_model()
    gate = all_gates(pruning_model.network)[0]
    gate.log_alpha.assign(np.linspace(-3.0, 3.0, gate.size).astype("float32"))
    x, _ = _data(n=8)
    first = pruning_model.predict(x, verbose=0)
    np.testing.assert_array_equal(first, pruning_model.predict(x, verbose=0))
    np.testing.assert_allclose(first, np.asarray(pruning_model.network(x, training=False)),
                               atol=1e-5)


# float32 under XLA in the second tier: mixed precision here covers XLA and the loss scale
@pytest.mark.process  # XLA compiles the whole step: the fast suite keeps test_structures' one
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_graph_and_xla_agree_on_the_first_step(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        x, y = _data(n=16)
        losses = {}
        for jit_compile in (False, True):
            pruning_model = _pruning_model(seed=3, dropout=0.0, target_sparsity=0.5)
            pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 10),
                                  jit_compile=jit_compile)
            first = pruning_model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
            losses[jit_compile] = first["loss"][0]
            history = pruning_model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
            for key in ("loss", "task_loss", "expected_sparsity", "constraint_gap"):
                assert np.all(np.isfinite(history[key])), key
            assert pruning_model.predict(x, verbose=0).dtype == np.float32
        tolerance = 1e-4 if policy == "float32" else 1e-2
        assert losses[False] == pytest.approx(losses[True], abs=tolerance)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_keeps_gates_lambda_and_loss_in_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pruning_model = _pruning_model()
        assert pruning_model.mixed_precision
        assert all(v.dtype == "float32" for v in pruning_model.gate_variables)
        assert pruning_model.lambda_1.dtype == "float32"
        pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 4))
        x, y = _data(n=16)
        history = pruning_model.fit(x, y, batch_size=8, verbose=0).history
        assert history["loss_scale"][-1] == 2.0 ** 15
        assert isinstance(pruning_model.network.get_layer("layer_0_attention_query"),
                          FactorizedDense)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_pruning_model_keras_round_trip(tmp_path):
    pruning_model = _pruning_model(target_sparsity=0.3, target_sparsity_warmup=5,
                                   target_sparsity_start=0.125)
    gate = all_gates(pruning_model.network)[2]
    gate.log_alpha.assign(np.linspace(-3.0, 3.0, gate.size).astype("float32"))
    pruning_model.lambda_1.assign(0.25)
    path = tmp_path / "pruning.keras"
    pruning_model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, keras_flop.PruningModel)
    assert restored.target_sparsity == 0.3 and restored.target_sparsity_warmup == 5
    assert restored.target_sparsity_start == 0.125
    assert float(restored.lambda_1) == 0.25
    x, _ = _data(n=4)
    np.testing.assert_array_equal(np.asarray(restored(x)), np.asarray(pruning_model(x)))


def test_lagrangian_drives_expected_sparsity_to_the_target():
    """Seed recipe on a tiny task: fine-tune dense, factorize, train gates and λ only."""
    keras.utils.set_random_seed(0)
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    dense = build_bert_classifier(config)
    x, y = _data(n=4800, seed=1)
    dense.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=True)
    dense.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert dense.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.9
    # The authors' top-k inference mask keeps round(Σ p) ranks per layer. The seed's
    # threshold rule keeps only gates with p > 0.5 and drifts below the target (gates
    # stuck near p ≈ 0.1 still count in the expectation).
    pruning_model = keras_flop.factorize(dense, target_sparsity=0.5, target_sparsity_warmup=100,
                                         gate_config={"eval_mask": "topk"})
    pruning_model.compile(optimizer=None, alpha_optimizer=keras.optimizers.Adam(0.1),
                          lambda_optimizer=keras.optimizers.Adam(0.05), metrics=["accuracy"])
    history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert history["expected_sparsity"][-1] == pytest.approx(0.5, abs=0.03)
    assert abs(history["lambda_1"][-1]) > 0 and history["lambda_2"][-1] > 0.1
    kept = keras_flop.kept_parameters(pruning_model)
    dense_count = sparsity_denominator(pruning_model, "dense")
    assert kept / dense_count == pytest.approx(1.0 - 0.5, abs=0.1)
    assert pruning_model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.8


def test_teacher_stays_frozen_without_changing_the_callers_model():
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**TINY))
    pruning_model = keras_flop.factorize(dense, teacher=dense, distillation_weight=1.0,
                                         hidden_distillation_weight=1.0)
    teacher_ids = {id(v) for v in dense.weights}
    assert not any(id(v) in teacher_ids for v in pruning_model.trainable_variables)
    assert teacher_ids <= {id(v) for v in pruning_model.non_trainable_weights}
    before = [np.array(v) for v in dense.weights]
    student_before = [np.array(v) for v in pruning_model.model_variables]
    pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-2, 4))
    x, y = _data(n=16)
    history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert history["distillation_loss"][-1] > 0
    # The caller's model is as it was: trainable, and not moved by the fit.
    assert dense.trainable and all(v.trainable for v in dense.weights)
    for old, new in zip(before, dense.weights):
        np.testing.assert_array_equal(old, np.asarray(new))
    assert any(not np.array_equal(old, np.asarray(new))
               for old, new in zip(student_before, pruning_model.model_variables))


@pytest.mark.parametrize("optimizer", [
    "adamw", {"class_name": "Adam", "config": {"learning_rate": 1e-2}},
    keras.optimizers.SGD(0.1)])
def test_compile_accepts_what_keras_compile_accepts(optimizer):
    pruning_model = _pruning_model()
    pruning_model.compile(optimizer=optimizer)
    assert not pruning_model.model_frozen
    assert isinstance(pruning_model.optimizer, keras.optimizers.Optimizer)
    before = [np.array(v) for v in pruning_model.model_variables]
    x, y = _data(n=16)
    pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = [not np.array_equal(old, np.asarray(new))
               for old, new in zip(before, pruning_model.model_variables)]
    assert sum(changed) > len(changed) // 2  # the model weights trained


@pytest.mark.parametrize("optimizer", [
    None, keras.optimizers.SGD(0.0), {"class_name": "SGD", "config": {"learning_rate": 0.0}}])
def test_compile_with_a_zero_rate_or_none_freezes_the_model(optimizer):
    pruning_model = _pruning_model()
    pruning_model.compile(optimizer=optimizer)
    assert pruning_model.model_frozen


@pytest.mark.parametrize("structure", ["rank", "heads+ffn", "heads+ffn+layers", "all"])
@pytest.mark.parametrize("eval_mask", ["deterministic", "topk"])
def test_factorized_model_reproduces_the_dense_logits_at_step_0(structure, eval_mask):
    keras.utils.set_random_seed(1)
    # Weights 10x BERT's init scale give logits of order 1, so a gate value of 0.98 shows.
    dense = build_bert_classifier(BertConfig(**TINY, initializer_range=0.2), num_labels=3)
    pruning_model = keras_flop.factorize(dense, structure=structure,
                                         gate_config={"eval_mask": eval_mask})
    x, _ = _data(n=8)
    np.testing.assert_allclose(pruning_model.predict(x, verbose=0),
                               dense.predict(x, verbose=0), atol=1e-5, rtol=0)


def test_overflow_skips_all_three_optimizers_and_halves_the_loss_scale():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pruning_model = _pruning_model(target_sparsity=0.5)
        pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 4))
        # A scale this large overflows the float16 backward pass: every gradient is inf.
        pruning_model.loss_scale.assign(2.0 ** 100)
        groups = (pruning_model.model_variables, pruning_model.gate_variables,
                  pruning_model.lambda_variables)
        before = [[np.array(v) for v in group] for group in groups]
        x, y = _data(n=8)
        history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        for group, old_values in zip(groups, before):
            for old, new in zip(old_values, group):
                np.testing.assert_array_equal(old, np.asarray(new))
        for optimizer in (pruning_model.optimizer, pruning_model.alpha_optimizer,
                          pruning_model.lambda_optimizer):
            assert int(optimizer.iterations) == 0
        assert history["loss_scale"][-1] == 2.0 ** 99
        assert int(pruning_model.finite_steps) == 0
        assert int(pruning_model.pruning_step) == 1
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_loss_scale_doubles_after_the_growth_interval():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        pruning_model = _pruning_model()
        pruning_model.loss_scale_growth_steps = 3
        pruning_model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 10))
        x, y = _data(n=16)
        history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        assert history["loss_scale"][-1] == 2.0 ** 15  # two finite steps
        assert int(pruning_model.finite_steps) == 2
        history = pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
        # The third finite step doubled it and restarted the count; the fourth counts 1.
        assert history["loss_scale"][-1] == 2.0 ** 16
        assert int(pruning_model.finite_steps) == 1
        assert keras_flop.PruningModel.loss_scale_growth_steps == 2000
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_precomputed_teacher_logits_replace_the_teacher_pass():
    """Logit distillation from fed teacher outputs trains exactly as from the live teacher
    (dropout off, so the teacher's outputs are fixed), and the fed values are what is used."""
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**TINY, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0))
    x, y = _data(n=16)
    logits = np.asarray(dense.predict(x, verbose=0))
    runs = {}
    for fed in (None, logits, np.zeros_like(logits)):
        keras.utils.set_random_seed(1)
        model = keras_flop.factorize(dense, structure="heads+ffn", teacher=dense,
                                     distillation_weight=1.0, distillation_temperature=2.0)
        model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-2, 4))
        inputs = x if fed is None else dict(x, teacher_logits=fed)
        history = model.fit(inputs, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        runs["live" if fed is None else "fed" if fed is logits else "zeros"] = (
            history.history["distillation_loss"][-1],
            [np.asarray(v) for v in model.gate_variables])
    assert runs["fed"][0] == pytest.approx(runs["live"][0], rel=1e-4)
    for fed, live in zip(runs["fed"][1], runs["live"][1]):
        np.testing.assert_allclose(fed, live, atol=1e-5)
    assert runs["zeros"][0] != pytest.approx(runs["live"][0], rel=1e-2)
    student = _pruning_model()
    student.compile()
    with pytest.raises(ValueError, match="no teacher with distillation_weight > 0"):
        student.fit(dict(x, teacher_logits=logits), y, batch_size=8, verbose=0)


@pytest.mark.parametrize("constraint", ["absolute", "equality"])
def test_lagrangian_of_each_constraint(constraint):
    pruning_model = _pruning_model(constraint=constraint)
    pruning_model.lambda_1.assign(2.0)
    pruning_model.lambda_2.assign(3.0)
    for sparsity, target in ((0.2, 0.5), (0.7, 0.5)):
        gap = sparsity - target
        if constraint == "absolute":
            gap = abs(gap)
        assert float(pruning_model.lagrangian(sparsity, target)) == pytest.approx(
            2.0 * gap + 3.0 * gap ** 2, rel=1e-6)


def test_pruning_steps_size_the_target_warmup_and_the_default_schedules(tmp_path):
    pruning_model = _pruning_model(target_sparsity=0.4, pruning_steps=90)
    assert pruning_model.target_sparsity_warmup == 30
    assert _pruning_model(pruning_steps=90, target_sparsity_warmup=7).target_sparsity_warmup == 7
    assert _pruning_model().target_sparsity_warmup == 0
    pruning_model.compile(optimizer=None)
    for optimizer, peak in ((pruning_model.alpha_optimizer, 80.0 / 90),
                            (pruning_model.lambda_optimizer, 200.0 / 90)):
        schedule = optimizer._learning_rate
        assert isinstance(schedule, keras_flop.optimizers.WarmupLinearDecay)
        assert (schedule.peak, schedule.total_steps, schedule.warmup_steps) == \
            pytest.approx((peak, 90, 4))
    path = str(tmp_path / "pruning_model.keras")
    pruning_model.save(path)
    restored = keras.saving.load_model(path, compile=False)
    assert (restored.pruning_steps, restored.constraint) == (90, "absolute")
    # Without the run's length, `fit` sizes them to its steps (tests/test_keras_habits.py).
    unsized = _pruning_model()
    unsized.compile(optimizer=None)
    assert unsized.pruning_steps is None and unsized.target_sparsity_warmup == 0


def _sparsity_trajectory(constraint, steps=120, target=0.5):
    """`ŝ` after every step of a frozen tiny model pruned with the run-sized defaults."""
    keras.utils.set_random_seed(0)
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pruning_model = keras_flop.factorize(build_bert_classifier(config), structure="heads+ffn",
                                         target_sparsity=target, pruning_steps=steps,
                                         constraint=constraint)
    pruning_model.compile(optimizer=None)
    trajectory = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: trajectory.append(float(logs["expected_sparsity"])))
    x, y = _data(n=8 * steps, seed=2)
    pruning_model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[record])
    return np.array(trajectory), pruning_model.target_sparsity_warmup


def test_run_sized_defaults_reach_the_target_and_hold_it_where_flops_form_overshoots():
    """The overshoot guard on a small data set: with the same schedules, FLOP's equality form
    carries ŝ far past the target (λ1 grew all the while ŝ lagged), `|ŝ - t|` holds it."""
    held, warmup = _sparsity_trajectory("absolute")
    assert held[0] < 0.01 and abs(held[warmup] - 0.5) < 0.05
    assert np.max(np.abs(held[warmup:] - 0.5)) < 0.05
    assert np.max(np.abs(held[-20:] - 0.5)) < 0.01
    overshot, _ = _sparsity_trajectory("equality")
    assert np.max(overshot) > 0.7


def test_calibrate_mask_makes_undecided_gates_keep_the_target():
    """Gates left near p(z ≠ 0) = 0.7 give ŝ ≈ 0.5 with blocks, but rounding each gate on
    its own keeps every block and 70 % of its units; shifts of log α restore 0.5."""
    pruning_model = _pruning_model(structure="heads+ffn+layers", target_sparsity=0.5,
                                   gate_config={"eval_mask": "topk"})
    rng = np.random.default_rng(0)
    for gate in all_gates(pruning_model.network):
        gate.log_alpha.assign((-1.55 + 0.3 * rng.normal(size=gate.size)).astype("float32"))
    expected = float(pruning_model.expected_sparsity())
    assert expected == pytest.approx(0.5, abs=0.05)
    assert keras_flop.realized_sparsity(pruning_model) < 0.4
    order = [np.argsort(np.asarray(v)) for v in pruning_model.gate_variables]
    shifts = keras_flop.calibrate_mask(pruning_model, 0.5)
    assert shifts != (0.0, 0.0)
    realized = keras_flop.realized_sparsity(pruning_model)
    assert realized == pytest.approx(0.5, abs=0.02)
    assert all(np.array_equal(o, np.argsort(np.asarray(v)))
               for o, v in zip(order, pruning_model.gate_variables))
    # Gates that decided already are left as they are.
    assert keras_flop.calibrate_mask(pruning_model, realized) == (0.0, 0.0)


@pytest.mark.parametrize("p_block", [0.4, 0.6])
def test_calibrate_mask_when_undecided_blocks_drop_or_keep_too_much(p_block):
    """Blocks at p = 0.4 are all dropped (realized far past ŝ), at 0.6 all kept."""
    pruning_model = _pruning_model(structure="heads+ffn+layers", gate_config={
        "eval_mask": "topk"})
    parts = keras_flop.gates.structure.encoder_layer_parts(pruning_model.network)
    blocks = {id(part.masks[k]) for part in parts for k in ("attention", "ffn")}
    rng = np.random.default_rng(1)
    shift = np.log(11.0)  # p(z ≠ 0) = σ(log α + log 11)
    for gate in all_gates(pruning_model.network):
        p = p_block if id(gate) in blocks else 0.6
        gate.log_alpha.assign((np.log(p / (1 - p)) - shift +
                               0.1 * rng.normal(size=gate.size)).astype("float32"))
    target = float(pruning_model.expected_sparsity())
    keras_flop.calibrate_mask(pruning_model, target)
    assert keras_flop.realized_sparsity(pruning_model) == pytest.approx(target, abs=0.02)
