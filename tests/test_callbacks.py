"""Callbacks: TensorBoard scalars and hparams, periodic evaluation, checkpoints, NaN stop."""

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.training.callbacks import (PRUNING_SCALARS, PeriodicEvaluation, ProgressLog,
                                           PruningTensorBoard, StepCheckpoint, StepCSVLogger,
                                           StopOnNonFiniteLoss, read_step_csv)

TINY = dict(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


def _data(n=32, seq=8):
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 50, (n, seq)).astype("int32"),
         "segment_ids": np.zeros((n, seq), "int32"), "padding_mask": np.ones((n, seq), bool)}
    return x, (x["token_ids"][:, 1] > 25).astype("int32")


def _pruning_model():
    keras.utils.set_random_seed(0)
    model = keras_flop.factorize(build_bert_classifier(BertConfig(**TINY)), target_sparsity=0.3)
    model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 20),
                  metrics=["accuracy"])
    return model


def _scalars(directory):
    found = {}
    for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(event.step)
    return found


class _UserCallback(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_train_batch_end(self, batch, logs=None):
        self.seen.append(dict(logs))


def test_fit_logs_every_pruning_scalar_to_tensorboard(tmp_path):
    model = _pruning_model()
    x, y = _data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    board = PruningTensorBoard(tmp_path / "logs", update_freq=2,
                               hparams={"target_sparsity": 0.3, "task": "toy"})
    evaluation = PeriodicEvaluation(
        dataset, lambda labels, logits: {"eval_accuracy": np.mean(logits.argmax(-1) == labels)},
        every_n_steps=4, tensorboard=board)
    user = _UserCallback()
    model.fit(dataset, epochs=2, validation_data=dataset,
              callbacks=[board, evaluation, user], verbose=0, shuffle=False)
    train = _scalars(str(tmp_path / "logs" / "train"))
    for name in PRUNING_SCALARS:
        # Logged only when they move: under mixed precision, with an L2 penalty.
        if name not in ("loss_scale", "l2_regularization_loss"):
            assert train.get(name) == [2, 4, 6, 8], name
    assert "hparams" in train  # the run's settings as a text table
    assert "_hparams_/session_start_info" in train  # and in the hparams plugin
    evals = _scalars(str(tmp_path / "logs" / "eval"))
    assert evals["eval_accuracy"] == [4, 8] and "accuracy" in evals  # val_* at epoch end
    assert [r["global_step"] for r in evaluation.history] == [4, 8]
    assert len(user.seen) == 8 and "eval_accuracy" in user.seen[3]
    assert "lambda_1" in user.seen[0]


def test_step_checkpoint_saves_and_restores_all_optimizers(tmp_path):
    model = _pruning_model()
    x, y = _data()
    saver = StepCheckpoint(tmp_path / "ckpt", model, every_n_steps=3)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[saver], verbose=0)
    names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "ckpt" / "*.index")))
    assert names == ["ckpt-3.index", "ckpt-6.index", "ckpt-8.index"]
    restored = _pruning_model()
    assert StepCheckpoint(tmp_path / "ckpt", restored).restore().endswith("ckpt-8")
    for a, b in zip(model.weights, restored.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.alpha_optimizer.iterations) == 8
    assert int(restored.lambda_optimizer.iterations) == 8
    assert int(restored.optimizer.iterations) == 8


def test_non_finite_loss_stops_training_and_is_not_checkpointed(tmp_path):
    model = _pruning_model()
    x, y = _data()
    saver = StepCheckpoint(tmp_path / "ckpt", model, every_n_steps=1)
    stop = StopOnNonFiniteLoss()

    class Poison(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                model.lambda_1.assign(float("nan"))

    model.fit(x, y, batch_size=8, epochs=3, callbacks=[Poison(), saver, stop], verbose=0)
    assert stop.failed_step == 3
    assert saver.manager.latest_checkpoint.endswith("ckpt-2")


def test_step_csv_logger_writes_every_step_and_resumes_after_its_checkpoint(tmp_path):
    model = _pruning_model()
    x, y = _data()
    path = tmp_path / "trace.csv"
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[StepCSVLogger(path)], verbose=0)
    trace = read_step_csv(path)
    assert trace["step"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert {"loss", "task_loss", "expected_sparsity", "target_sparsity", "lambda_1",
            "lambda_2"} <= set(trace)
    assert trace["lambda_1"][-1] == pytest.approx(float(model.lambda_1.numpy()), rel=1e-5)
    # A run that restarts from its step-6 checkpoint drops rows 7 and 8 and appends its own.
    model.fit({k: v[:16] for k, v in x.items()}, y[:16],
              batch_size=8, epochs=1, callbacks=[StepCSVLogger(path, initial_step=6)],
              verbose=0)
    resumed = read_step_csv(path)
    assert resumed["step"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert resumed["loss"][:6] == trace["loss"][:6]
    # Starting from step 0 starts a new file.
    model.fit(x, y, batch_size=8, epochs=1, callbacks=[StepCSVLogger(path)], verbose=0)
    assert read_step_csv(path)["step"] == [1, 2, 3, 4]


def test_progress_log_prints_a_line_every_n_steps_with_the_time_left():
    import io

    stream = io.StringIO()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.ones((20, 3), "float32"), np.zeros((20, 1), "float32")
    progress = ProgressLog(12, initial_step=2, every_n_steps=5, stream=stream)
    model.fit(x, y, batch_size=2, epochs=1, callbacks=[progress], verbose=0)
    lines = stream.getvalue().splitlines()
    # Steps 3..12 of a resumed run: lines at steps 5 and 10, and at the last step.
    assert [line.split(" (")[0] for line in lines] == ["step 5 of 12", "step 10 of 12",
                                                       "step 12 of 12"]
    assert all("loss " in line and "min left" in line for line in lines)
    assert lines[-1].endswith("about 0.0 min left")
