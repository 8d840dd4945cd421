"""A GLUE task's data for training: its splits, tokenized once, as `tf.data` pipelines that a
`tf.distribute` strategy can take, and the task's loss."""

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from keras_flop.glue.tasks import GlueTask
    from keras_flop.text.preprocessor import BertPreprocessor

# The split of training examples held out for choices (learning rate, recipe, target), so
# that the dev split is scored once per final model instead of being chosen on.
SELECTION = "selection"
# Mixed into the selection split's seed: drawn with the same number as `seed`, it still picks
# examples unrelated to the training subset's.
_SELECTION_STREAM = 0x5E1EC7


@dataclasses.dataclass
class TaskData:
    """A task's examples, their preprocessing and how they are batched (`--pad_to_max_length`,
    `--bucket_boundaries`); each split is tokenized once, on first use."""

    task: "GlueTask"
    train: list
    evals: dict  # split -> examples; dev first, then "selection" when held out
    tests: dict  # split -> examples
    preprocessor: "BertPreprocessor"
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
    input handling cannot aggregate bool tensors; the model casts it back.

    Example:
    >>> import tensorflow as tf
    >>> from keras_flop.training.data import for_strategy
    >>> dataset = tf.data.Dataset.from_tensors({"padding_mask": tf.constant([[True, False]])})
    >>> for_strategy(dataset) is dataset  # no strategy: the dataset as it is
    True
    >>> with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
    ...     for_strategy(dataset).element_spec["padding_mask"].dtype
    tf.int32
    """
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return dataset

    def cast(features, *rest):
        features = dict(features, padding_mask=tf.cast(features["padding_mask"], tf.int32))
        return (features, *rest) if rest else features

    return dataset.map(cast)


def load_task_data(data_dir, task, vocab_file, max_seq_length, max_train_examples=None,
                   max_eval_examples=None, seed=0, need_train=True, pad_to_max_length=False,
                   boundaries=None, selection_examples=0, selection_seed=0):
    """A `TaskData` of the splits of `task` present in `data_dir` (tsv layout), tokenized
    with the tokenizer file `vocab_file` (a WordPiece `vocab.txt`, a RoBERTa `vocab.json`, an
    XLM-R SentencePiece model: `keras_flop.BertPreprocessor`) to `max_seq_length`; a missing
    train split is a ValueError if `need_train`, a missing dev split always.
    `max_train_examples` and `max_eval_examples` draw random subsets (by `seed`).

    `selection_examples` > 0 holds that many training examples out as the eval split
    `"selection"` (after the dev split), drawn by `selection_seed` alone: runs with other
    `seed`s share it. They are taken out before `max_train_examples` draws its subset, so no
    run trains on them. At 0 (the default) nothing changes.

    Example:
    >>> import os, tempfile
    >>> from keras_flop.training.data import load_task_data
    >>> data_dir = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(data_dir, "SST-2"))
    >>> for split, rows in (("train", 3), ("dev", 2)):
    ...     with open(os.path.join(data_dir, "SST-2", f"{split}.tsv"), "w") as f:
    ...         _ = f.write("sentence\\tlabel\\n" + "a charming journey .\\t1\\n" * rows)
    >>> vocab = os.path.join(data_dir, "vocab.txt")
    >>> with open(vocab, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "charming",
    ...                            "journey", "."]))
    >>> data = load_task_data(data_dir, "sst2", vocab, max_seq_length=16)
    >>> data.task.name, len(data.train), {split: len(dev) for split, dev in data.evals.items()}
    ('sst2', 3, {'dev': 2})
    >>> data.preprocessor.max_seq_length, data.tests
    (16, {})
    >>> load_task_data(data_dir, "rte", vocab, max_seq_length=16)
    Traceback (most recent call last):
    ...
    ValueError: No train split for rte in .../RTE (expected train.tsv).
    >>> data = load_task_data(data_dir, "sst2", vocab, 16, selection_examples=1)
    >>> len(data.train), {split: len(examples) for split, examples in data.evals.items()}
    (2, {'dev': 2, 'selection': 1})
    """
    from keras_flop import glue
    from keras_flop.text.preprocessor import BertPreprocessor

    task = glue.get_task(task)
    _check_selection(selection_examples, selection_seed)
    splits = glue.available_splits(data_dir, task)
    if need_train and "train" not in splits:
        raise ValueError(f"No train split for {task.name} in "
                         f"{glue.readers.task_dir(data_dir, task)} (expected train.tsv).")
    eval_splits = [s for s in task.eval_splits if s in splits]
    if not eval_splits:
        raise ValueError(f"No dev split for {task.name} in "
                         f"{glue.readers.task_dir(data_dir, task)}.")
    rng = np.random.default_rng(seed)

    def subset(examples, limit):
        if limit and len(examples) > limit:
            keep = np.sort(rng.choice(len(examples), limit, replace=False))
            return [examples[i] for i in keep]
        return examples

    train = glue.read_split(data_dir, task, "train") if "train" in splits else []
    train, selection = _hold_out(train, selection_examples, selection_seed, task,
                                 glue.readers.task_dir(data_dir, task))
    train = subset(train, max_train_examples)
    evals = {s: subset(glue.read_split(data_dir, task, s), max_eval_examples)
             for s in eval_splits}
    if selection_examples:
        evals[SELECTION] = selection
    tests = {s: glue.read_split(data_dir, task, s) for s in task.test_splits if s in splits}
    preprocessor = BertPreprocessor(vocab_file, max_seq_length)
    return TaskData(task, train, evals, tests, preprocessor, pad_to_max_length, boundaries)


def _check_selection(count, seed):
    for name, value in (("selection_examples", count), ("selection_seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be an integer; got {value!r} of type "
                            f"{type(value).__name__}.")
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0" + (" (0: no selection split)" if
                             name == "selection_examples" else "") + f"; got {value}.")


def _hold_out(train, count, seed, task, where):
    """(the training examples left, the `count` held out, in file order), drawn by `seed`."""
    if not count:
        return train, []
    if not train:
        raise ValueError(f"`selection_examples` holds out training examples, and {task.name} "
                         f"has no train split in {where}: pass selection_examples=0.")
    if count >= len(train):
        what = "leave none to train on" if count == len(train) else "exceed them"
        raise ValueError(f"`selection_examples` must be smaller than the {len(train)} training "
                         f"examples of {task.name}: {count} would {what}; pass fewer.")
    rng = np.random.default_rng([_SELECTION_STREAM, seed])
    held = np.zeros(len(train), bool)
    held[rng.choice(len(train), count, replace=False)] = True
    return ([e for e, h in zip(train, held) if not h],
            [e for e, h in zip(train, held) if h])


def task_loss(task):
    """The training loss of `task`: cross-entropy on logits, mean squared error for STS-B.

    Example:
    >>> import numpy as np
    >>> from keras_flop.training.data import task_loss
    >>> type(task_loss("sst2")).__name__, type(task_loss("stsb")).__name__
    ('SparseCategoricalCrossentropy', 'MeanSquaredError')
    >>> loss = task_loss("sst2")
    >>> labels, logits = np.array([1, 0]), np.array([[0.0, 2.0], [1.0, 1.0]])
    >>> round(float(loss(labels, logits)), 3)
    0.41
    """
    import keras
    from keras_flop import glue

    if glue.get_task(task).is_regression:
        return keras.losses.MeanSquaredError()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
