"""A family of pruned models from one run: `PruningModel(targets=...)`, its schedule,
snapshots and resume."""

import warnings

import keras
import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.training.callbacks import StepCheckpoint

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)
# Loose enough for the tiny model's few gates, whose ŝ moves in coarse steps.
SCHEDULE = dict(targets=(0.2, 0.4), pruning_steps=100, hold_steps=3, ramp_steps=10,
                target_tolerance=0.03)


def _data(n, seq=8, seed=2):
    rng = np.random.default_rng(seed)
    x = {"token_ids": rng.integers(1, 50, (n, seq)).astype("int32"),
         "segment_ids": np.zeros((n, seq), "int32"),
         "padding_mask": np.ones((n, seq), bool)}
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def _family(**kwargs):
    keras.utils.set_random_seed(0)
    config = BertConfig(**TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return keras_flop.factorize(build_bert_classifier(config), structure="heads+ffn",
                                **{**SCHEDULE, **kwargs})


class _Recorder(keras.callbacks.Callback):
    """Per step: ŝ, t and the snapshots taken (the train step's logs), and the network's
    trainable weights after the step."""

    def __init__(self):
        super().__init__()
        self.rows, self.weights = [], []

    def on_train_begin(self, logs=None):
        self.weights.append([np.array(v) for v in self.model.network.trainable_variables])

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append((float(logs["expected_sparsity"]), float(logs["target_sparsity"]),
                          int(logs["family_snapshots"])))
        self.weights.append([np.array(v) for v in self.model.network.trainable_variables])


def test_targets_advance_only_after_the_hold_and_snapshot_the_weights_of_that_step():
    model = _family()
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))  # model weights train too
    recorder = _Recorder()
    x, y = _data(8 * 100)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[recorder])
    status = model.family.status()
    assert [m["target"] for m in status] == [0.2, 0.4]
    assert all(m["snapshot_step"] is not None for m in status), status

    # Replay the rule on the logged trajectory: a step counts when the ramp to the member's
    # target is over and |ŝ - t| <= 0.03; the third such step in a row takes the snapshot.
    member, held, expected_steps = 0, 0, []
    for step, (sparsity, target, taken) in enumerate(recorder.rows):
        if member < 2:
            goal = SCHEDULE["targets"][member]
            held = held + 1 if target == pytest.approx(goal, abs=1e-6) and \
                abs(sparsity - goal) <= 0.03 else 0
            if held == 3:
                expected_steps.append(step)
                member, held = member + 1, 0
        assert taken == member, step  # logged after this step's decision
    assert [m["snapshot_step"] for m in status] == expected_steps
    first, second = expected_steps
    # The target ramps to 0.2 over the warmup (100 // 5 steps) and stays there until the
    # first snapshot; then it ramps to 0.4 over ramp_steps, from the next step on.
    targets = np.array([row[1] for row in recorder.rows])
    assert model.target_sparsity_warmup == 20 and first >= 20 + 2
    np.testing.assert_allclose(targets[:21], 0.2 * np.minimum(np.arange(21) / 20, 1),
                               atol=1e-6)
    np.testing.assert_allclose(targets[20:first + 1], 0.2, atol=1e-6)
    np.testing.assert_allclose(targets[first + 1:first + 12],
                               0.2 + 0.2 * np.arange(11) / 10, atol=1e-6)
    assert second >= first + 1 + 10 + 2
    np.testing.assert_allclose(targets[second:], 0.4, atol=1e-6)

    # Each snapshot holds the weights whose ŝ was checked: those before its step's update.
    for index, step in enumerate(expected_steps):
        model.family.load(index)
        for snapshot, before in zip(model.network.trainable_variables,
                                    recorder.weights[step]):
            np.testing.assert_array_equal(np.asarray(snapshot), before)
        assert float(model.expected_sparsity()) == pytest.approx(
            recorder.rows[step][0], abs=1e-5)
    # The weights train on: the snapshot differs from the end of the run.
    assert any(not np.array_equal(np.asarray(v), w) for v, w in
               zip(model.network.trainable_variables, recorder.weights[-1]))


def test_a_run_that_ends_before_a_target_says_which_members_are_missing():
    model = _family(targets=(0.3, 0.5, 0.7))
    model.compile(optimizer=None)
    x, y = _data(8 * 5)
    with pytest.warns(UserWarning, match=r"3 family members \(target 0.3, target 0.5, "
                                         r"target 0.7\): they have no snapshot"):
        model.fit(x, y, batch_size=8, verbose=0)
    assert model.family.missing() == [0, 1, 2]
    with pytest.raises(ValueError, match="Member 0 .* has no snapshot"):
        model.family.load(0)


@pytest.mark.parametrize("kwargs, message", [
    ({"targets": (0.5, 0.3)}, "`targets` must be increasing, without duplicates"),
    ({"targets": (0.3, 0.3)}, "`targets` must be increasing, without duplicates"),
    ({"targets": (0.5,)}, "at least two values"),
    ({"targets": (0.3, 1.0)}, r"`targets` must be in \[0, 1\)"),
    ({"targets": (0.3, 0.5), "target_sparsity": 0.5}, "replace `target_sparsity`"),
    ({"targets": None, "target_speedups": (1.5, 2.0)}, "pass cost='latency'"),
    ({"target_speedups": (1.5, 2.0)}, "either `targets` .* or `target_speedups`"),
    ({"targets": (0.3, 0.5), "pruning_steps": None, "hold_steps": None},
     "needs `pruning_steps`"),
    ({"targets": (0.3, 0.5), "hold_steps": 0}, "`hold_steps` must be an integer >= 1"),
    ({"targets": (0.3, 0.5), "target_tolerance": 0.0}, r"`target_tolerance` must be in"),
])
def test_bad_families_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _family(**kwargs)


# float32 under XLA in the second tier: mixed precision here covers XLA and the loss scale
@pytest.mark.process  # XLA compiles the whole step: the fast suite keeps test_structures' one
@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_family_under_xla_and_mixed_precision(policy):
    """A tolerance that every step meets: each step snapshots the next member."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = _family(targets=(0.1, 0.2, 0.3), target_tolerance=0.99, hold_steps=1,
                        ramp_steps=0, target_sparsity_warmup=0)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=True)
        start = [np.array(v) for v in model.network.trainable_variables]
        x, y = _data(8 * 4)
        model.fit(x, y, batch_size=8, verbose=0)
        assert [m["snapshot_step"] for m in model.family.status()] == [0, 1, 2]
        model.family.load(0)
        for variable, value in zip(model.network.trainable_variables, start):
            assert variable.dtype == "float32"
            np.testing.assert_array_equal(np.asarray(variable), value)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_resume_from_a_step_checkpoint_keeps_the_snapshots_and_continues(tmp_path):
    x, y = _data(8 * 100)
    whole = _family()
    whole.compile(optimizer=None)
    whole.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    first, second = [m["snapshot_step"] for m in whole.family.status()]

    # Killed a few steps after the first snapshot, right after a checkpoint.
    stop = first + 3
    killed = _family()
    killed.compile(optimizer=None)
    saver = StepCheckpoint(tmp_path / "checkpoints", killed, every_n_steps=stop)
    with pytest.warns(UserWarning, match="1 of 2 family members"):  # stopped before it
        killed.fit({k: v[:8 * stop] for k, v in x.items()}, y[:8 * stop], batch_size=8,
                   verbose=0, shuffle=False, callbacks=[saver])
    assert [m["snapshot_step"] for m in killed.family.status()] == [first, None]

    resumed = _family()
    resumed.compile(optimizer=None)
    assert StepCheckpoint(tmp_path / "checkpoints", resumed).restore()
    assert int(resumed.pruning_step.numpy()) == stop
    assert [m["snapshot_step"] for m in resumed.family.status()] == [first, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every member reached: no warning
        resumed.fit({k: v[8 * stop:] for k, v in x.items()}, y[8 * stop:], batch_size=8,
                    verbose=0, shuffle=False)
    assert [m["snapshot_step"] for m in resumed.family.status()] == [first, second]
    for index in (0, 1):
        whole.family.load(index)
        resumed.family.load(index)
        for a, b in zip(whole.network.trainable_variables,
                        resumed.network.trainable_variables):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_family_survives_a_keras_round_trip(tmp_path):
    model = _family(target_tolerance=0.99, hold_steps=1, ramp_steps=0,
                    target_sparsity_warmup=0)
    model.compile(optimizer=None)
    x, y = _data(8)
    with pytest.warns(UserWarning, match=r"1 of 2 family members \(target 0.4\)"):
        model.fit(x, y, batch_size=8, verbose=0)
    path = str(tmp_path / "family.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert loaded.targets == (0.2, 0.4) and loaded.family_hold_steps == 1
    assert loaded.family.status() == model.family.status()
    assert loaded.family.missing() == [1]
    loaded.family.load(0)
    model.family.load(0)
    for a, b in zip(model.network.weights, loaded.network.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
