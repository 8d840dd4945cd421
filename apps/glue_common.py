"""What the GLUE apps share: task data, fine-tuning, evaluation and its result files.

TensorFlow, Keras and keras_flop are imported by the functions that use them, so that an app's
`--help` and flag checks answer without loading them.
"""

import dataclasses
import hashlib
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from apps import common

# The teacher's outputs on the training set, kept beside a distilled fine-tuning's checkpoints.
TEACHER_OUTPUTS = "teacher_outputs.npz"

if TYPE_CHECKING:
    import keras_flop


@dataclasses.dataclass
class TaskData:
    """A task's examples, their preprocessing and how they are batched (`--pad_to_max_length`,
    `--bucket_boundaries`); each split is tokenized once, on first use."""

    task: "keras_flop.glue.GlueTask"
    train: list
    evals: dict  # split -> examples
    tests: dict  # split -> examples
    preprocessor: "keras_flop.BertPreprocessor"
    pad_to_max_length: bool = False
    boundaries: list = None
    _tokenized: dict = dataclasses.field(default_factory=dict, repr=False)

    def tokenized(self, split, labeled=True):
        """The `TokenizedExamples` of a split (`"train"`, an eval or a test split)."""
        from keras_flop import glue

        if (split, labeled) not in self._tokenized:
            examples = self.train if split == "train" else \
                self.evals.get(split) or self.tests[split]
            self._tokenized[split, labeled] = glue.tokenize_examples(
                examples, self.task, self.preprocessor, labeled, self.pad_to_max_length,
                self.boundaries)
        return self._tokenized[split, labeled]

    def train_dataset(self, batch_size, seed):
        from keras_flop import glue

        return for_strategy(glue.make_dataset(self.tokenized("train"), self.task, None,
                                              batch_size, training=True, seed=seed))

    def training_stream(self, batch_size, seed, total_steps, start_step=0, **features):
        """Training batches of steps `start_step..total_steps - 1`; `features` (arrays, one
        row per training example, e.g. `teacher_logits`) travel with the model inputs."""
        from keras_flop import glue

        train = self.tokenized("train")
        if features:
            train = train.with_features(**features)
        return for_strategy(glue.make_training_stream(
            train, self.task, None, batch_size, seed, total_steps, start_step))

    def eval_dataset(self, split, batch_size):
        from keras_flop import glue

        return for_strategy(glue.make_dataset(self.tokenized(split), self.task, None,
                                              batch_size))

    def test_dataset(self, split, batch_size):
        from keras_flop import glue

        return for_strategy(glue.make_dataset(self.tokenized(split, labeled=False), self.task,
                                              None, batch_size, labeled=False))


def for_strategy(dataset):
    """Under a tf.distribute strategy the padding mask travels as int32 (0/1): the strategy's
    input handling cannot aggregate bool tensors; the model casts it back."""
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return dataset

    def cast(features, *rest):
        features = dict(features, padding_mask=tf.cast(features["padding_mask"], tf.int32))
        return (features, *rest) if rest else features

    return dataset.map(cast)


def add_batching_flags(parser):
    parser.add_argument("--pad_to_max_length", action="store_true",
                        help="Pad every batch to --max_seq_length (fixed shapes). Default: "
                             "batches of examples of similar length, each padded to the "
                             "smallest --bucket_boundaries value that fits it.")
    parser.add_argument("--bucket_boundaries", default=None,
                        help="Comma-separated padded lengths; default 8,16,24,32,48,64,96,"
                             "128,... up to --max_seq_length, which is always the last.")


def bucket_boundaries(args):
    """`--bucket_boundaries` as a list of ints (None: the default), checked."""
    if not args.bucket_boundaries:
        return None
    try:
        values = [int(part) for part in args.bucket_boundaries.split(",") if part.strip()]
    except ValueError:
        raise common.UsageError("--bucket_boundaries must be comma-separated integers; got "
                                f"{args.bucket_boundaries!r}.") from None
    if not values or min(values) < 1 or max(values) > args.max_seq_length:
        raise common.UsageError(f"--bucket_boundaries must be integers in [1, --max_seq_length "
                                f"{args.max_seq_length}]; got {args.bucket_boundaries!r}.")
    return values


def load_task_data(data_dir, task, vocab_file, max_seq_length, max_train_examples=None,
                   max_eval_examples=None, seed=0, need_train=True, pad_to_max_length=False,
                   boundaries=None):
    """Reads the splits present for `task`; a missing train split is an error if needed."""
    from keras_flop import glue

    from keras_flop.preprocessor import BertPreprocessor

    task = glue.get_task(task)
    splits = glue.available_splits(data_dir, task)
    if need_train and "train" not in splits:
        raise common.UsageError(f"No train split for {task.name} in "
                                f"{glue.readers.task_dir(data_dir, task)} (expected train.tsv).")
    eval_splits = [s for s in task.eval_splits if s in splits]
    if not eval_splits:
        raise common.UsageError(f"No dev split for {task.name} in "
                                f"{glue.readers.task_dir(data_dir, task)}.")
    rng = np.random.default_rng(seed)

    def subset(examples, limit):
        if limit and len(examples) > limit:
            keep = np.sort(rng.choice(len(examples), limit, replace=False))
            return [examples[i] for i in keep]
        return examples

    train = subset(glue.read_split(data_dir, task, "train"), max_train_examples) \
        if "train" in splits else []
    evals = {s: subset(glue.read_split(data_dir, task, s), max_eval_examples)
             for s in eval_splits}
    tests = {s: glue.read_split(data_dir, task, s) for s in task.test_splits if s in splits}
    preprocessor = BertPreprocessor(vocab_file, max_seq_length)
    return TaskData(task, train, evals, tests, preprocessor, pad_to_max_length, boundaries)


def task_loss(task):
    import keras
    from keras_flop import glue

    if glue.get_task(task).is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


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

    A NaN or Inf loss stops training with an error naming the step. With `checkpoint_dir`,
    the model, the optimizer and the step are saved there every `checkpoint_every_n_steps`
    steps (default a tenth of the run), and a call on the same model and data continues from
    the latest checkpoint in `restore_from` (default `checkpoint_dir`) with the batches the
    interrupted run had not seen: the weights come out as an uninterrupted run's. When that
    checkpoint is the run's last step, nothing trains and the history's loss is NaN."""
    import keras

    from keras_flop.callbacks import StepCheckpoint, StopOnNonFiniteLoss
    from keras_flop.optimizers import model_optimizer

    stop = StopOnNonFiniteLoss()
    per_epoch = int(np.ceil(len(data.train) / batch_size))
    steps = max(1, epochs * per_epoch)
    trainer, features = model, {}
    if teacher is not None and (distillation_weight > 0 or hidden_distillation_weight > 0):
        from keras_flop.distillation import TEACHER_LOGITS, Distiller

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
        raise common.UsageError(f"Non-finite loss at fine-tuning step {stop.failed_step}: "
                                "lower the learning rate.")
    return history, time.perf_counter() - start


def teacher_outputs(teacher, data, keep=(), read=(), batch_size=64):
    """The teacher's outputs on the training set, `[examples, num_labels]`.

    They are computed once per teacher and training set: a file of `keep` or `read` (`.npz`)
    that holds outputs of the same teacher weights on the same tokenized examples (its
    fingerprint) is read instead, and the outputs are written to each file of `keep` that does
    not hold them yet (a run's checkpoint directory, or one file shared by the runs of one
    teacher: apps.prune `--teacher_outputs`)."""
    fingerprint = outputs_fingerprint(teacher, data.tokenized("train"))
    held = [path for path in [*keep, *read] if _holds_outputs(path, fingerprint)]
    if held:
        with np.load(held[0]) as kept:
            outputs = kept["outputs"]
        print(f"   teacher outputs read from {held[0]}")
    else:
        began = time.perf_counter()
        outputs = np.asarray(data.tokenized("train").predict(teacher, batch_size))
        print(f"   teacher outputs on {len(data.train):,} training examples computed once "
              f"({time.perf_counter() - began:.0f} s)")
    for path in keep:
        if path not in held:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path + ".tmp", "wb") as f:  # a crash mid-write leaves no torn file
                np.savez(f, outputs=outputs, fingerprint=np.array(fingerprint))
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
    depend on (the padding of a batch changes them only by round-off)."""
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
    from keras_flop.callbacks import ProgressLog

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
    stream has (one `fit` of `steps_per_epoch` batches an epoch would run out in its last)."""
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


def metrics_and_loss(task, outputs, labels):
    """The task's dev metrics (`eval_*`) and `eval_loss` of `outputs` against `labels`."""
    from keras_flop import glue

    import keras

    metrics = glue.compute_metrics(task, outputs, labels)
    # The per-example losses, averaged here: a Keras loss object divides its result by the
    # replica count under a tf.distribute strategy (for summing across replicas).
    if glue.get_task(task).is_regression:
        losses = keras.losses.mean_squared_error(labels.reshape(-1, 1), outputs)
    else:
        losses = keras.losses.sparse_categorical_crossentropy(labels, outputs, from_logits=True)
    metrics["eval_loss"] = float(np.mean(np.asarray(losses)))
    return metrics


def evaluate(model, data, batch_size):
    """Dev metrics, loss and time of every eval split: `{split: {eval_*: ...}}`."""
    results = {}
    for split in data.evals:
        dataset = data.eval_dataset(split, batch_size)
        labels = np.concatenate([np.asarray(y) for _, y in dataset])
        start = time.perf_counter()
        outputs = model.predict(dataset.map(lambda x, y: x), verbose=0)
        seconds = time.perf_counter() - start
        metrics = metrics_and_loss(data.task, outputs, labels)
        metrics["eval_time"] = seconds
        metrics["eval_examples"] = len(labels)
        results[split] = metrics
    return results


def write_eval_results(directory, results, extra):
    """`eval_results.txt` (`key = value`, the original BERT's format) and `.json`."""
    os.makedirs(directory, exist_ok=True)
    flat = dict(extra)
    for split, metrics in results.items():
        prefix = "" if split in ("dev", "dev_matched") else f"{split}_"
        flat.update({f"{prefix}{k}" if prefix else k: v for k, v in metrics.items()})
    common.write_text(os.path.join(directory, "eval_results.txt"),
                      "".join(f"{key} = {flat[key]}\n" for key in sorted(flat)))
    common.write_json(os.path.join(directory, "eval_results.json"), flat)
    return flat


def write_test_results(directory, model, data, batch_size):
    """`test_results.tsv` (GLUE submission format) for every test split present."""
    from keras_flop import glue

    paths = []
    for split, examples in data.tests.items():
        outputs = model.predict(data.test_dataset(split, batch_size), verbose=0)
        name = "test_results.tsv" if split == "test" else f"{split}_results.tsv"
        paths.append(glue.write_test_predictions(os.path.join(directory, name), data.task,
                                                 examples, outputs))
    return paths
