"""Read GLUE splits from the tsv layout (`<data_dir>/<TASK>/<split>.tsv`) or from TFDS."""

import dataclasses
import os

from keras_flop.glue.tasks import get_task

STSB_RANGE = (0.0, 5.0)


class GlueDataError(ValueError):
    """A GLUE file is missing, empty or malformed; the message names file and line."""


@dataclasses.dataclass
class Example:
    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | None = None  # a class name, an STS-B score, or None (test)


def task_dir(data_dir, task):
    """The folder of `task`'s tsv files under `data_dir`: GLUE's directory name for it.

    Example:
    >>> from keras_flop.glue.readers import task_dir
    >>> task_dir("glue", "sst2"), task_dir("glue", "STS-B")
    ('glue/SST-2', 'glue/STS-B')
    """
    return os.path.join(os.fspath(data_dir), get_task(task).directory)


def _lines(path):
    """(line number, decoded line) of a file, one error per bad line, never partial text."""
    if not os.path.isfile(path):
        raise GlueDataError(f"GLUE file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise GlueDataError(f"{path}:{number}: not valid UTF-8 ({e.reason} at byte "
                                f"{e.start}).") from None
        if number == 1:
            text = text.lstrip("\ufeff")  # MRPC's files start with a byte-order mark
        yield number, text


def _parse_rows(path, task, layout, labeled):
    task = get_task(task)
    examples = []
    for number, line in _lines(path):
        if layout.header and number == 1:
            continue
        if not line.strip():
            continue
        columns = line.split("\t")
        if layout.num_columns is not None and len(columns) != layout.num_columns:
            raise GlueDataError(f"{path}:{number}: expected {layout.num_columns} tab-separated "
                                f"columns for {task.name} ({'labeled' if labeled else 'test'}), "
                                f"found {len(columns)}.")
        if layout.num_columns is None and len(columns) < layout.min_columns:
            raise GlueDataError(f"{path}:{number}: expected at least {layout.min_columns} "
                                f"tab-separated columns for {task.name}, found {len(columns)}.")
        guid = columns[layout.guid] if layout.guid is not None else str(len(examples))
        text_b = columns[layout.text_b] if layout.text_b is not None else None
        label = None
        if labeled:
            label = _parse_label(task, columns[layout.label].strip(), path, number)
        examples.append(Example(guid, columns[layout.text_a], text_b, label))
    if not examples:
        raise GlueDataError(f"{path}: no examples (expected {task.name} rows"
                            f"{' after the header' if layout.header else ''}).")
    return examples


def _parse_label(task, value, path, number):
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise GlueDataError(f"{path}:{number}: cannot parse the {task.name} score "
                                f"{value!r} as a number.") from None
        if not STSB_RANGE[0] <= score <= STSB_RANGE[1]:
            raise GlueDataError(f"{path}:{number}: {task.name} score {score} is outside "
                                f"[{STSB_RANGE[0]}, {STSB_RANGE[1]}].")
        return score
    if value not in task.labels:
        raise GlueDataError(f"{path}:{number}: unknown {task.name} label {value!r}; expected "
                            f"one of {list(task.labels)}.")
    return value


def _mrpc_from_source(directory, split):
    """MRPC from Microsoft's files: train minus `dev_ids.tsv` rows, those rows, the test file."""
    task = get_task("mrpc")
    if split == "test":
        return _parse_rows(os.path.join(directory, "msr_paraphrase_test.txt"), task,
                           task.train_layout, labeled=True)
    examples = _parse_rows(os.path.join(directory, "msr_paraphrase_train.txt"), task,
                           task.train_layout, labeled=True)
    ids_path = os.path.join(directory, "dev_ids.tsv")
    dev_ids = {tuple(line.split("\t")[:2]) for _, line in _lines(ids_path) if line.strip()}
    rows = [(line.split("\t")[1], line.split("\t")[2])
            for number, line in _lines(os.path.join(directory, "msr_paraphrase_train.txt"))
            if number > 1 and line.strip()]
    chosen = [example for example, ids in zip(
        examples, rows) if (ids in dev_ids) == (split == "dev")]
    for index, example in enumerate(chosen):
        example.guid = str(index)
    return chosen


def read_split(data_dir, task, split):
    """The examples of one split: `train`, `dev`, `test` (MNLI: `dev_matched`,
    `dev_mismatched`, `test_matched`, `test_mismatched`; `dev`/`test` mean the matched ones).

    Raises `GlueDataError` naming the file and line for a malformed row (wrong column count,
    unknown label, unparsable or out-of-range score, bytes that are not UTF-8) and naming the
    path for a missing or empty split.

    Example:
    >>> import os, tempfile
    >>> from keras_flop.glue import read_split
    >>> data_dir = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(data_dir, "SST-2"))
    >>> with open(os.path.join(data_dir, "SST-2", "dev.tsv"), "w") as f:
    ...     _ = f.write("sentence\\tlabel\\n"
    ...                 "a charming journey . \\t1\\n"
    ...                 "the plot is thin . \\t0\\n")
    >>> examples = read_split(data_dir, "sst2", "dev")
    >>> examples[0]
    Example(guid='0', text_a='a charming journey . ', text_b=None, label='1')
    >>> [example.label for example in examples]
    ['1', '0']
    >>> with open(os.path.join(data_dir, "SST-2", "train.tsv"), "w") as f:
    ...     _ = f.write("sentence\\tlabel\\na charming journey . \\tyes\\n")
    >>> read_split(data_dir, "sst2", "train")
    Traceback (most recent call last):
    ...
    keras_flop.glue.readers.GlueDataError: .../SST-2/train.tsv:2: unknown sst2 label 'yes'; ...
    """
    task = get_task(task)
    if task.name == "mnli" and split in ("dev", "test"):
        split = f"{split}_matched"
    allowed = ("train",) + task.eval_splits + task.test_splits
    if split not in allowed:
        raise ValueError(f"Unknown split {split!r} for {task.name}; expected one of {allowed}.")
    directory = task_dir(data_dir, task)
    path = os.path.join(directory, f"{split}.tsv")
    if task.name == "mrpc" and not os.path.exists(path) and \
            os.path.exists(os.path.join(directory, "msr_paraphrase_train.txt")):
        return _mrpc_from_source(directory, "dev" if split == "dev" else split)
    labeled = split not in task.test_splits
    layout = task.train_layout if labeled else task.test_layout
    return _parse_rows(path, task, layout, labeled)


def available_splits(data_dir, task):
    """The splits of `task` whose files exist under `data_dir`.

    Example:
    >>> import os, tempfile
    >>> from keras_flop.glue import available_splits
    >>> data_dir = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(data_dir, "RTE"))
    >>> for split in ("test", "dev"):
    ...     open(os.path.join(data_dir, "RTE", f"{split}.tsv"), "w").close()
    >>> available_splits(data_dir, "rte")  # in the order train, eval splits, test splits
    ['dev', 'test']
    >>> available_splits(data_dir, "sst2")
    []
    """
    task = get_task(task)
    directory = task_dir(data_dir, task)
    splits = ("train",) + task.eval_splits + task.test_splits
    found = [s for s in splits if os.path.exists(os.path.join(directory, f"{s}.tsv"))]
    if task.name == "mrpc" and os.path.exists(os.path.join(directory,
                                                           "msr_paraphrase_train.txt")):
        found = sorted(set(found) | {"train", "dev", "test"}, key=splits.index)
    return found


_TFDS_SPLITS = {"train": "train", "dev": "validation", "test": "test",
                "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched",
                "test_matched": "test_matched", "test_mismatched": "test_mismatched"}
_TFDS_TEXT = {"cola": ("sentence", None), "sst2": ("sentence", None),
              "mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
              "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
              "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"),
              "wnli": ("sentence1", "sentence2")}


def load_tfds(task, split, data_dir=None, download=True):
    """The same examples from TensorFlow Datasets (`glue/<config>`), for machines online (or
    with a prepared TFDS `data_dir`). Class ids are mapped to the tsv label names."""
    import tensorflow_datasets as tfds

    task = get_task(task)
    if task.name == "mnli" and split in ("dev", "test"):
        split = f"{split}_matched"
    if split not in _TFDS_SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {sorted(_TFDS_SPLITS)}.")
    dataset, info = tfds.load(task.tfds_name, split=_TFDS_SPLITS[split], data_dir=data_dir,
                              download=download, with_info=True)
    names = info.features["label"].names if not task.is_regression else None
    key_a, key_b = _TFDS_TEXT[task.name]
    examples = []
    for row in tfds.as_numpy(dataset):
        label = row["label"]
        if task.is_regression:
            label = float(label) if split != "test" else None
        elif label < 0:
            label = None  # GLUE's hidden test labels
        elif task.labels == ("0", "1"):
            label = str(int(label))
        else:
            label = names[int(label)]
        examples.append(Example(
            str(int(row["idx"])), row[key_a].decode("utf-8"),
            row[key_b].decode("utf-8") if key_b else None, label))
    if not examples:
        raise GlueDataError(f"TFDS {task.tfds_name} split {split} is empty.")
    return examples
