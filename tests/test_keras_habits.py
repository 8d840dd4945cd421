"""A PruningModel used as Keras users use a model: `fit` without `pruning_steps`, `fit` again,
callbacks that monitor a metric, `save`, `load_model` and `compile` again."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.gates.sparsity import TARGET_TOLERANCE
from keras_flop.training.seeding import reseed

TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)
# What every step logs, each of that step alone (Keras' `loss` is a mean over the epoch).
STEP_KEYS = ("task_loss", "lagrangian", "expected_sparsity", "target_sparsity",
             "constraint_gap", "lambda_1", "lambda_2", "alpha_lr", "lambda_lr")


def _data(batches, seed=0, batch=8, seq=8):
    rng = np.random.default_rng(seed)
    n = batches * batch
    x = {"token_ids": rng.integers(1, 50, (n, seq)).astype("int32"),
         "segment_ids": np.zeros((n, seq), "int32"), "padding_mask": np.ones((n, seq), bool)}
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def _dataset(batches, seed=0):
    return tf.data.Dataset.from_tensor_slices(_data(batches, seed)).batch(8)


def _pruning_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs.setdefault("structure", "heads+ffn+layers")
    return keras_flop.factorize(build_bert_classifier(BertConfig(**TINY)), **kwargs)


class _StepLogs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({k: float(np.asarray(v)) for k, v in logs.items()})

    def column(self, key):
        return np.array([logs[key] for logs in self.steps])


def _fit(model, *args, **kwargs):
    """`model.fit`, and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(*args, verbose=0, shuffle=False, **kwargs)
    return history.history, [str(w.message) for w in caught]


def _ours(messages):
    return [m for m in messages if "target" in m or "schedules" in m]


def test_fit_sizes_the_run_so_the_readme_example_reaches_its_target():
    """The README's structured example has no `pruning_steps`: `fit` sizes the gate and λ
    schedules and the target warmup to its 3 epochs (before, ŝ stayed near 0)."""
    keras.utils.set_random_seed(0)
    dense = build_bert_classifier(BertConfig(**TINY))
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn+layers",
                                         target_sparsity=0.7, teacher=dense,
                                         distillation_weight=1.0)
    pruning_model.compile(optimizer=None)
    history, messages = _fit(pruning_model, _dataset(30), epochs=3)
    assert (pruning_model.pruning_steps, pruning_model.target_sparsity_warmup) == (90, 30)
    schedule = pruning_model.alpha_optimizer._learning_rate
    assert (schedule.total_steps, schedule.peak) == pytest.approx((90, 80.0 / 90))
    assert abs(float(pruning_model.expected_sparsity()) - 0.7) <= TARGET_TOLERANCE
    assert abs(history["constraint_gap"][-1]) <= TARGET_TOLERANCE
    assert not _ours(messages)


def test_a_run_of_unknown_length_is_refused_in_one_line_and_an_off_target_end_warns():
    pruning_model = _pruning_model(target_sparsity=0.5)
    pruning_model.compile(optimizer=None)
    unknown = _dataset(4).filter(lambda x, y: True)  # cardinality unknown to Keras
    with pytest.raises(ValueError) as error:
        pruning_model.fit(unknown, epochs=2, verbose=0, shuffle=False)
    message = str(error.value)
    assert "\n" not in message
    assert "pruning_steps=" in message and "steps_per_epoch=" in message
    assert int(pruning_model.pruning_step) == 0
    # Given the steps per epoch, the run is sized to them; 8 steps do not reach the target,
    # and the end of the run says so.
    _, messages = _fit(pruning_model, unknown.repeat(), epochs=2, steps_per_epoch=4)
    assert pruning_model.pruning_steps == 8
    assert pruning_model.lambda_optimizer._learning_rate.total_steps == 8
    assert abs(float(pruning_model.expected_sparsity()) - 0.5) > TARGET_TOLERANCE
    warned = _ours(messages)
    assert len(warned) == 1 and "\n" not in warned[0]
    assert warned[0].startswith("The run ended at step 8 with the expected sparsity at")
    assert "fit again to continue" in warned[0]


def test_fit_after_the_schedules_are_spent_continues_them_as_apps_prune_does():
    """A further `fit` restarts the default gate and λ schedules sized to its own steps: the
    same gates and λ as a compile with `sized_*_optimizer(added steps)` (apps.prune
    --start_from prune with more epochs). Before, the gates stayed where they were."""
    runs = {}
    for way in ("fit again", "compile as apps.prune"):
        pruning_model = _pruning_model(structure="heads+ffn", target_sparsity=0.5,
                                       pruning_steps=6)
        pruning_model.compile(optimizer=None)
        _fit(pruning_model, *_data(6), batch_size=8)
        spent = [np.array(v) for v in pruning_model.gate_variables]
        if way == "compile as apps.prune":
            pruning_model.compile(
                optimizer=None,
                alpha_optimizer=keras_flop.optimizers.sized_gate_optimizer(4),
                lambda_optimizer=keras_flop.optimizers.sized_lambda_optimizer(4))
        steps = _StepLogs()
        _fit(pruning_model, *_data(4, seed=1), batch_size=8, callbacks=[steps])
        runs[way] = (pruning_model, steps)
    model, steps = runs["fit again"]
    assert int(model.pruning_step) == 10
    schedule = keras_flop.optimizers.sized_gate_optimizer(4)._learning_rate
    np.testing.assert_allclose(steps.column("alpha_lr"),
                               [float(schedule(i + 1)) for i in range(4)], rtol=1e-6)
    assert any(not np.array_equal(old, np.asarray(new))
               for old, new in zip(spent, model.gate_variables))
    reference, reference_steps = runs["compile as apps.prune"]
    for a, b in zip(model.gate_variables + model.lambda_variables,
                    reference.gate_variables + reference.lambda_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    for key in STEP_KEYS:
        np.testing.assert_allclose(steps.column(key), reference_steps.column(key),
                                   rtol=1e-5, atol=1e-6, err_msg=key)


def test_early_stopping_on_loss_stops_a_healthy_run_and_says_so():
    """`loss` holds λ1 g + λ2 g², and λ grows while the gap is open: it rose from the first
    epoch to the second and EarlyStopping ended the run at ŝ = 0.17 for a target of 0.5."""
    pruning_model = _pruning_model(target_sparsity=0.5)
    pruning_model.compile(optimizer=None)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=1)
    history, messages = _fit(pruning_model, _dataset(10), epochs=12, callbacks=[stop])
    assert len(history["loss"]) == 2 and history["loss"][1] > history["loss"][0]
    warned = _ours(messages)
    assert len(warned) == 1
    assert warned[0].startswith("Training was stopped at step 20 of 120 with the expected "
                                "sparsity at")
    assert "monitor `constraint_gap`" in warned[0]


def test_constraint_gap_is_logged_and_early_stopping_on_it_ends_at_the_target():
    pruning_model = _pruning_model(target_sparsity=0.5, pruning_steps=120)
    pruning_model.compile(optimizer=None)
    per_epoch = 10
    stop = keras.callbacks.EarlyStopping(
        monitor="constraint_gap", mode="min", patience=1,
        start_from_epoch=pruning_model.target_sparsity_warmup // per_epoch)
    steps = _StepLogs()
    history, messages = _fit(pruning_model, _dataset(per_epoch), epochs=12,
                             callbacks=[stop, steps])
    np.testing.assert_allclose(
        steps.column("constraint_gap"),
        np.abs(steps.column("expected_sparsity") - steps.column("target_sparsity")),
        atol=1e-6)
    assert "task_loss" in history and history["constraint_gap"][-1] <= TARGET_TOLERANCE
    assert abs(float(pruning_model.expected_sparsity()) - 0.5) <= TARGET_TOLERANCE
    assert not _ours(messages)


class _ReseedAt(keras.callbacks.Callback):
    """Sets the random generators (gate noise) from `seed` before step `step`."""

    def __init__(self, step, seed):
        super().__init__()
        self.at, self.seed = step, seed

    def on_train_batch_begin(self, batch, logs=None):
        if batch == self.at:
            reseed(self.model, self.seed)


def test_a_reloaded_model_compiled_again_continues_its_schedules(tmp_path):
    """Saved at step k, loaded, compiled again and trained to N: the gates, λ and every
    step's logs are those of an uninterrupted run (the gate and λ optimizers' state is in
    the `.keras` file, and `compile` keeps it). Before, compile restarted both optimizers at
    iteration 0 while `pruning_step` went on. A `.keras` file keeps no random-generator
    state (`keras_flop.training.seeding`): both runs draw the gate noise from step k on
    from the same reseeded state."""
    tf.config.experimental.enable_op_determinism()  # turned off again by conftest.py
    total, saved_at, seed = 12, 5, 7
    x, y = _data(total)
    head = ({k: v[:8 * saved_at] for k, v in x.items()}, y[:8 * saved_at])
    tail = ({k: v[8 * saved_at:] for k, v in x.items()}, y[8 * saved_at:])

    whole = _pruning_model(target_sparsity=0.5, pruning_steps=total)
    whole.compile(optimizer=None)
    whole_steps = _StepLogs()
    _fit(whole, x, y, batch_size=8, callbacks=[_ReseedAt(saved_at, seed), whole_steps])

    first = _pruning_model(target_sparsity=0.5, pruning_steps=total)
    first.compile(optimizer=None)
    first_steps = _StepLogs()
    _fit(first, *head, batch_size=8, callbacks=[first_steps])
    alpha_optimizer = first.alpha_optimizer
    first.compile(optimizer=None)  # compiling again keeps the run's optimizers
    assert first.alpha_optimizer is alpha_optimizer
    path = str(tmp_path / "pm.keras")
    first.save(path)
    loaded = keras.saving.load_model(path)
    loaded.compile(optimizer=None)
    assert int(loaded.alpha_optimizer.iterations) == saved_at
    reseed(loaded, seed)
    second_steps = _StepLogs()
    _fit(loaded, *tail, batch_size=8, callbacks=[second_steps])

    assert int(loaded.pruning_step) == total
    for a, b in zip(loaded.gate_variables + loaded.lambda_variables,
                    whole.gate_variables + whole.lambda_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    for key in STEP_KEYS:
        resumed = np.concatenate([first_steps.column(key), second_steps.column(key)])
        np.testing.assert_allclose(resumed, whole_steps.column(key), rtol=1e-6, atol=1e-6,
                                   err_msg=key)
