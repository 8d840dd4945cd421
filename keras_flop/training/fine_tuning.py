"""Fine-tuning that resumes where it stopped, on the batches an uninterrupted run would see,
with distillation from a teacher whose outputs are computed once per training set."""

import hashlib
import os
import time

import numpy as np

from keras_flop.training.data import task_loss

# The teacher's outputs on the training set, kept beside a distilled fine-tuning's checkpoints.
TEACHER_OUTPUTS = "teacher_outputs.npz"


def fine_tune(model, data, learning_rate, epochs, batch_size, seed, callbacks=(),
              jit_compile=False, warmup_proportion=0.1, checkpoint_dir=None,
              checkpoint_every_n_steps=None, restore_from=None, teacher=None,
              distillation_weight=0.0, hidden_distillation_weight=0.0,
              distillation_temperature=2.0, teacher_outputs_file=None):
    """Fine-tuning (AdamW, warmup + linear decay); returns (history, seconds).

    With a `teacher` and a distillation weight > 0, the task loss gains distillation from it
    (`keras_flop.Distiller`); for logit distillation alone the teacher's outputs on the
    training set are computed once (`teacher_outputs`: kept beside the checkpoints for a
    resumed run, and in `teacher_outputs_file` for other runs of the same teacher).

    A model whose outputs do not match the task's labels, or data without training examples,
    is a `ValueError` before anything trains. A NaN or Inf loss stops training with an error
    naming the step. With `checkpoint_dir`,
    the model, the optimizer and the step are saved there every `checkpoint_every_n_steps`
    steps (default a tenth of the run), and a call on the same model and data continues from
    the latest checkpoint in `restore_from` (default `checkpoint_dir`) with the batches the
    interrupted run had not seen: the weights come out as an uninterrupted run's. When that
    checkpoint is the run's last step, nothing trains and the history's loss is NaN."""
    import keras

    from keras_flop.training.callbacks import StepCheckpoint, StopOnNonFiniteLoss
    from keras_flop.input_checks import check_task_data
    from keras_flop.training.optimizers import model_optimizer

    check_task_data(model, data)
    stop = StopOnNonFiniteLoss()
    per_epoch = int(np.ceil(len(data.train) / batch_size))
    steps = max(1, epochs * per_epoch)
    trainer, features = model, {}
    if teacher is not None and (distillation_weight > 0 or hidden_distillation_weight > 0):
        from keras_flop.training.distillation import TEACHER_LOGITS, Distiller

        fed = hidden_distillation_weight == 0  # the teacher's logits are all it needs
        trainer = Distiller(model, None if fed else teacher, distillation_weight,
                            distillation_temperature, hidden_distillation_weight)
        if fed:
            here = [] if checkpoint_dir is None else [os.path.join(checkpoint_dir,
                                                                   TEACHER_OUTPUTS)]
            there = [] if restore_from is None else [os.path.join(restore_from,
                                                                  TEACHER_OUTPUTS)]
            features[TEACHER_LOGITS] = teacher_outputs(
                teacher, data, keep=[*filter(None, [teacher_outputs_file]), *here], read=there)
    trainer.compile(model_optimizer(learning_rate, steps, warmup_proportion),
                    task_loss(data.task), jit_compile=jit_compile)
    callbacks = list(callbacks) + [stop]
    done = 0
    if checkpoint_dir is not None:
        saver = StepCheckpoint(checkpoint_dir, trainer,
                               every_n_steps=checkpoint_every_n_steps or max(1, steps // 10),
                               restore_from=restore_from)
        if saver.restore():
            done = int(trainer.optimizer.iterations.numpy())
            print(f"   resuming fine-tuning from step {done} of {steps}")
        saver.step = stop.step = done
        callbacks.append(saver)
    start = time.perf_counter()
    history = fit_from_step(trainer, data, batch_size, seed, done, epochs * per_epoch,
                            callbacks, stop, **features)
    if history is None:  # the checkpoint was the run's last step
        history = keras.callbacks.History()
        history.history = {"loss": [float("nan")]}
    if stop.failed_step is not None:
        raise ValueError(f"Non-finite loss at fine-tuning step {stop.failed_step}: "
                         "lower the learning rate.")
    return history, time.perf_counter() - start


def teacher_outputs(teacher, data, keep=(), read=(), batch_size=64):
    """The teacher's outputs on the training set, `[examples, num_labels]`.

    They are computed once per teacher and training set: a file of `keep` or `read` (`.npz`)
    that holds outputs of the same teacher weights on the same tokenized examples (its
    fingerprint) is read instead, and the outputs are written to each file of `keep` that does
    not hold them yet (a run's checkpoint directory, or one file shared by the runs of one
    teacher: apps.prune `--teacher_outputs`), with the seconds computing them took (`seconds`,
    read by `benchmarks/frontier.py` to charge every run that reads them)."""
    fingerprint = outputs_fingerprint(teacher, data.tokenized("train"))
    held = [path for path in [*keep, *read] if _holds_outputs(path, fingerprint)]
    if held:
        with np.load(held[0]) as kept:
            outputs = kept["outputs"]
            # What computing them cost, for the runs that read them (files of older versions
            # have no record: nan).
            seconds = float(kept["seconds"]) if "seconds" in kept else float("nan")
        print(f"   teacher outputs read from {held[0]}")
    else:
        began = time.perf_counter()
        outputs = np.asarray(data.tokenized("train").predict(teacher, batch_size))
        seconds = time.perf_counter() - began
        print(f"   teacher outputs on {len(data.train):,} training examples computed once "
              f"({seconds:.0f} s)")
    for path in keep:
        if path not in held:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path + ".tmp", "wb") as f:  # a crash mid-write leaves no torn file
                np.savez(f, outputs=outputs, fingerprint=np.array(fingerprint),
                         seconds=np.array(seconds))
            os.replace(path + ".tmp", path)
    return outputs


def _holds_outputs(path, fingerprint):
    """Whether the `.npz` at `path` holds outputs with this fingerprint (its outputs are not
    read: an `.npz` loads each array on access)."""
    if not os.path.exists(path):
        return False
    with np.load(path) as kept:
        return str(kept["fingerprint"]) == fingerprint


def outputs_fingerprint(model, examples):
    """A digest of a model's weights and of tokenized examples: what its outputs on them
    depend on (the padding of a batch changes them only by round-off).

    Example:
    >>> import keras, numpy as np, tensorflow as tf
    >>> from keras_flop.glue.batching import TokenizedExamples
    >>> from keras_flop.training.fine_tuning import outputs_fingerprint
    >>> ids = tf.ragged.constant([[2, 5, 3], [2, 6, 7, 3]], tf.int32)
    >>> examples = TokenizedExamples(ids, tf.zeros_like(ids))
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> fingerprint = outputs_fingerprint(model, examples)
    >>> len(fingerprint), fingerprint == outputs_fingerprint(model, examples)
    (64, True)
    >>> _ = model.layers[0].bias.assign([1.0])  # other weights: other outputs
    >>> fingerprint == outputs_fingerprint(model, examples)
    False
    """
    from keras import ops

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(ops.convert_to_numpy(weight)).tobytes())
    for ragged in (examples.token_ids, examples.segment_ids):
        digest.update(ragged.flat_values.numpy().tobytes())
        digest.update(ragged.row_lengths().numpy().tobytes())
    return digest.hexdigest()


def fit_from_step(model, data, batch_size, seed, done, steps, callbacks, stop, **features):
    """Trains steps `done..steps - 1` of a run of `steps` on the batches an uninterrupted run
    sees there, in the `fit` calls of `epoch_segments`; stops once `stop` (the
    `StopOnNonFiniteLoss` among `callbacks`) has fired. `features` travel with the inputs
    (`TaskData.training_stream`). Returns the last `fit`'s history, None if nothing was left
    to train."""
    from keras_flop.training.callbacks import ProgressLog

    per_epoch = -(-len(data.train) // batch_size)
    if fit_verbosity() == 2:  # no progress bar: a line every twentieth of the run
        callbacks = list(callbacks) + [ProgressLog(steps, initial_step=done)]
    history = None
    for begin, end in epoch_segments(done, steps, per_epoch):
        if stop.failed_step is not None:
            break
        history = model.fit(data.training_stream(batch_size, seed, steps, begin, **features),
                            epochs=-(-end // per_epoch), initial_epoch=begin // per_epoch,
                            steps_per_epoch=min(per_epoch, end - begin), callbacks=callbacks,
                            verbose=fit_verbosity(), shuffle=False)  # the stream shuffles
    return history


def epoch_segments(done, steps, per_epoch):
    """`(begin, end)` step ranges of the `fit` calls that train steps `done..steps - 1`. A run
    resumed mid-epoch first finishes that epoch, whole epochs follow in one call, and a run
    whose length is not whole epochs (`--pruning_steps`) ends with the part of an epoch left:
    the progress bar's epochs are the data's, and no `fit` asks for more batches than the
    stream has (one `fit` of `steps_per_epoch` batches an epoch would run out in its last).

    Example:
    >>> from keras_flop.training.fine_tuning import epoch_segments
    >>> epoch_segments(done=0, steps=10, per_epoch=4)  # two whole epochs, then half of one
    [(0, 8), (8, 10)]
    >>> epoch_segments(done=5, steps=10, per_epoch=4)  # resumed mid-epoch: finish it first
    [(5, 8), (8, 10)]
    >>> epoch_segments(done=10, steps=10, per_epoch=4)  # nothing left to train
    []
    """
    segments = []
    if done % per_epoch and done < steps:
        boundary = min(steps, (done // per_epoch + 1) * per_epoch)
        segments.append((done, boundary))
        done = boundary
    whole = done + (steps - done) // per_epoch * per_epoch
    if whole > done:
        segments.append((done, whole))
        done = whole
    if done < steps:
        segments.append((done, steps))
    return segments


def fit_verbosity():
    """A progress bar on a terminal, one line per epoch in logs and CI."""
    return 1 if os.isatty(2) else 2
