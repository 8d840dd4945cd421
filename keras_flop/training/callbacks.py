"""Callbacks for pruning runs: TensorBoard scalars and run settings, every step's logs in a CSV
file, periodic evaluation with the task's metrics, checkpoints every N steps, a clear stop
on a non-finite loss, and progress lines for logs (where no progress bar is drawn).

They are ordinary `keras.callbacks.Callback`s and compose with any others in `fit`.
"""

import csv
import logging
import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

logger = logging.getLogger("keras_flop")

# The original FLOP summary names, then the rest of what PruningModel.train_step logs.
PRUNING_SCALARS = ("lambda_1", "lambda_2", "model_lr", "alpha_lr", "lambda_lr",
                   "expected_sparsity", "target_sparsity", "constraint_gap",
                   "l2_regularization_loss",
                   "loss", "task_loss", "lagrangian", "loss_scale")


class _StepCounter(keras.callbacks.Callback):
    """Counts training steps across epochs and `fit` calls (resumable via `initial_step`)."""

    def __init__(self, initial_step=0):
        super().__init__()
        self.step = int(initial_step)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1


class PruningTensorBoard(_StepCounter):
    """Writes every scalar of the training logs each `update_freq` steps to `log_dir/train`,
    evaluation logs (`val_*`) at each epoch end to `log_dir/eval`, and the run's settings
    once as an hparams summary and a text table.

    Args:
        log_dir: TensorBoard directory.
        update_freq: write training scalars every this many steps.
        hparams: a dict of the run's settings (flat; values str, bool, int or float).

    Example:
    >>> pruning_model.fit(ds, callbacks=[PruningTensorBoard("logs", hparams=vars(args))])  # doctest: +SKIP
    """

    def __init__(self, log_dir, update_freq=10, hparams=None, initial_step=0):
        super().__init__(initial_step)
        if update_freq < 1:
            raise ValueError(f"`update_freq` must be >= 1; got {update_freq}.")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = int(update_freq)
        self.hparams = dict(hparams or {})
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_train_begin(self, logs=None):
        if not self.hparams:
            return
        clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                 for k, v in self.hparams.items()}
        with self._writer("train").as_default():
            rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(clean.items()))
            tf.summary.text("hparams", "| setting | value |\n|---|---|\n" + rows, step=0)
            try:
                from tensorboard.plugins.hparams import api as hp
                hp.hparams(clean)
            except ImportError:  # the text table above still records the settings
                pass

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.step % self.update_freq:
            return
        self.write(logs or {}, "train")

    def on_epoch_end(self, epoch, logs=None):
        evaluation = {k[len("val_"):]: v for k, v in (logs or {}).items()
                      if k.startswith("val_")}
        if evaluation:
            self.write(evaluation, "eval")

    def write(self, logs, writer="train"):
        """Writes the scalar entries of `logs` at the current step."""
        with self._writer(writer).as_default():
            for name, value in logs.items():
                value = np.asarray(value)
                if value.ndim == 0 and np.issubdtype(value.dtype, np.number):
                    tf.summary.scalar(name, float(value), step=self.step)
        self._writer(writer).flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.flush()


class StepCSVLogger(_StepCounter):
    """Writes the training logs of every step to a CSV file: a `step` column, then each
    scalar of the first step's logs (later new keys are left out). The curves of a run, in a
    form any tool reads (`apps.prune`'s report plots them).

    Resumable like the run: with `initial_step` > 0, an existing file keeps its rows up to
    that step (rows past it came from a run stopped before its next checkpoint, and will be
    trained again) and new rows are appended; with `initial_step` 0 it starts afresh.

    Args:
        path: the CSV file.
        initial_step: the step training starts from.
        flush_every: write to disk every this many steps (and at the end of training); every
            step by default, so that a killed run loses no row it will not train again.

    Example:
    >>> pruning_model.fit(ds, callbacks=[StepCSVLogger("run/trace.csv")])  # doctest: +SKIP
    """

    def __init__(self, path, initial_step=0, flush_every=1):
        super().__init__(initial_step)
        if flush_every < 1:
            raise ValueError(f"`flush_every` must be >= 1; got {flush_every}.")
        self.path = os.fspath(path)
        self.flush_every = int(flush_every)
        self._file = self._writer = self.columns = None

    def on_train_begin(self, logs=None):
        kept = []
        if self.step > 0 and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                self.columns = next(reader, None)
                kept = [row for row in reader if row and int(row[0]) <= self.step]
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if self.columns:
            self._writer.writerows([self.columns] + kept)

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        logs = logs or {}
        if self.columns is None:
            self.columns = ["step"] + [k for k, v in logs.items() if np.size(v) == 1]
            self._writer.writerow(self.columns)
        self._writer.writerow([self.step] + [
            f"{float(np.asarray(logs[k]).reshape(())):.6g}" if k in logs else ""
            for k in self.columns[1:]])
        if self.step % self.flush_every == 0:
            self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


def read_step_csv(path):
    """The columns of a `StepCSVLogger` file as a dict of lists of floats (None where empty)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    return {name: [float(row[i]) if i < len(row) and row[i] != "" else None for row in rows[1:]]
            for i, name in enumerate(rows[0])}


class PeriodicEvaluation(_StepCounter):
    """Every `every_n_steps` training steps (and at the end), predicts `dataset` and computes
    `metric_fn(labels, predictions) -> dict`; the results go into the logs of that step (as
    `eval_*`), to `tensorboard` if given, and to `history` (a list of dicts).

    Args:
        dataset: a finite `tf.data.Dataset` of `(features, labels)`.
        metric_fn: e.g. `lambda y, p: keras_flop.glue.compute_metrics("sst2", p, y)`.
        every_n_steps: evaluation period in training steps.
        tensorboard: a `PruningTensorBoard` to write the results to its `eval` directory.
    """

    def __init__(self, dataset, metric_fn, every_n_steps=1000, tensorboard=None,
                 initial_step=0):
        super().__init__(initial_step)
        if every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be >= 1; got {every_n_steps}.")
        self.dataset = dataset
        self.metric_fn = metric_fn
        self.every_n_steps = int(every_n_steps)
        self.tensorboard = tensorboard
        self.history = []
        self._last_step = None

    def evaluate(self):
        labels = np.concatenate([np.asarray(y) for _, y in self.dataset])
        predictions = self.model.predict(self.dataset.map(lambda x, y: x), verbose=0)
        results = {key: float(value) for key, value in
                   self.metric_fn(labels, np.asarray(predictions)).items()}
        results["global_step"] = self.step
        self.history.append(results)
        self._last_step = self.step
        if self.tensorboard is not None:
            self.tensorboard.step = self.step
            self.tensorboard.write({k: v for k, v in results.items() if k != "global_step"},
                                   "eval")
        logger.info("step %d: %s", self.step,
                    ", ".join(f"{k} {v:.4f}" for k, v in results.items() if k != "global_step"))
        return results

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.step % self.every_n_steps == 0:
            results = self.evaluate()
            if logs is not None:
                logs.update(results)

    def on_train_end(self, logs=None):
        if self._last_step != self.step:
            self.evaluate()


class StepCheckpoint(_StepCounter):
    """Saves a `tf.train.Checkpoint` of the model and every optimizer it has (the pruning
    model's three) every `every_n_steps` steps and at the end of training, keeping the last
    `max_to_keep`. A step whose loss is NaN or Inf is never saved, so the latest checkpoint is
    the last good one. `restore()` loads the latest one (call it before `fit` to resume).

    Under `MultiWorkerMirroredStrategy` every worker must save (a save may read variables
    through a collective): the chief into `directory`, the others into a directory of their
    own, each with `restore_from` set to the chief's, so that all resume from the same step."""

    def __init__(self, directory, model, every_n_steps=1000, max_to_keep=3, restore_from=None):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"`every_n_steps` must be >= 1; got {every_n_steps}.")
        self.every_n_steps = int(every_n_steps)
        self.checkpoint = tf.train.Checkpoint(**trackables(model))
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.fspath(directory),
                                                  max_to_keep=max_to_keep)
        self.restore_from = os.fspath(restore_from or directory)
        self._finite = True

    def restore(self):
        """Restores the latest checkpoint in `restore_from` (default the directory saved to)
        if there is one; returns its path or None."""
        path = tf.train.latest_checkpoint(self.restore_from)
        if path:
            self.checkpoint.restore(path).expect_partial()
        return path

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        self._finite = self._finite and (loss is None or math.isfinite(float(loss)))
        if self._finite and self.step % self.every_n_steps == 0:
            self.manager.save(checkpoint_number=self.step)

    def on_train_end(self, logs=None):
        if self._finite and self.step and \
                self.manager.latest_checkpoint != self._path(self.step):
            self.manager.save(checkpoint_number=self.step)

    def _path(self, step):
        return os.path.join(self.manager.directory, f"ckpt-{step}")


def trackables(model):
    """The model, all its variables (random-generator states included) and its optimizers, by
    name, for `tf.train.Checkpoint`."""
    found = {"model": model, "variables": list(model.variables)}
    for name in ("optimizer", "alpha_optimizer", "lambda_optimizer"):
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            found[name] = optimizer
    return found


class StopOnNonFiniteLoss(_StepCounter):
    """Stops training at the first NaN or Inf loss and names the step (a `StepCheckpoint`
    never saves such a step, so its latest checkpoint is the last good one)."""

    def __init__(self, initial_step=0):
        super().__init__(initial_step)
        self.failed_step = None

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failed_step = self.step
            logger.error("Non-finite loss (%s) at step %d: training stopped.", loss, self.step)
            self.model.stop_training = True


class ProgressLog(_StepCounter):
    """A progress line every `every_n_steps` steps (default a twentieth of the run) for a log
    file or CI, where Keras writes one line per epoch: the step of `total_steps`, the
    epoch's mean loss so far, the time spent and the time left at this process's pace.

    >>> progress = ProgressLog(total_steps=100, initial_step=40, every_n_steps=30)
    >>> progress.line(70, {"loss": 0.25}, seconds=120.0)
    'step 70 of 100 (70%): loss 0.2500, 2.0 min, about 2.0 min left'
    """

    def __init__(self, total_steps, initial_step=0, every_n_steps=None, stream=None):
        super().__init__(initial_step)
        self.total_steps = int(total_steps)
        self.first_step = int(initial_step)
        self.every_n_steps = every_n_steps or max(1, self.total_steps // 20)
        self.stream = stream
        self._began = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._began is None:
            self._began = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        if self.step % self.every_n_steps == 0 or self.step == self.total_steps:
            line = self.line(self.step, logs or {}, time.perf_counter() - self._began)
            print(line, file=self.stream or sys.stdout, flush=True)

    def line(self, step, logs, seconds):
        done = step - self.first_step
        left = seconds / done * (self.total_steps - step) if done > 0 else float("nan")
        loss = logs.get("loss")
        loss = "" if loss is None else f"loss {float(loss):.4f}, "
        return (f"step {step} of {self.total_steps} ({100 * step // self.total_steps}%): "
                f"{loss}{seconds / 60:.1f} min, about {left / 60:.1f} min left")
