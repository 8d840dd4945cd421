"""The nine GLUE tasks: where their files are, what their columns and labels are."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class TsvLayout:
    """Columns of one kind of GLUE tsv file (`None`: absent). `num_columns=None` means at least
    `min_columns` (MNLI's dev files carry more annotator labels than its train file)."""

    header: bool
    num_columns: int | None
    text_a: int
    text_b: int | None = None
    label: int | None = None
    guid: int | None = None
    min_columns: int = 0


@dataclasses.dataclass(frozen=True)
class GlueTask:
    name: str
    directory: str
    labels: tuple  # class names as the tsv files write them; () for regression
    train_layout: TsvLayout
    test_layout: TsvLayout
    metrics: tuple
    main_metric: str
    tfds_name: str
    eval_splits: tuple = ("dev",)
    test_splits: tuple = ("test",)

    @property
    def is_regression(self):
        return not self.labels

    @property
    def num_labels(self):
        return 1 if self.is_regression else len(self.labels)


def _pair(label=3, a=1, b=2, n=4, guid=0):
    return TsvLayout(header=True, num_columns=n, text_a=a, text_b=b, label=label, guid=guid)


_TEST_PAIR = TsvLayout(header=True, num_columns=3, text_a=1, text_b=2, guid=0)
_TEST_SINGLE = TsvLayout(header=True, num_columns=2, text_a=1, guid=0)
_ENTAILMENT = ("entailment", "not_entailment")

TASKS = {task.name: task for task in [
    GlueTask("cola", "CoLA", ("0", "1"),
             TsvLayout(header=False, num_columns=4, text_a=3, label=1),
             _TEST_SINGLE, ("accuracy", "mcc"), "mcc", "glue/cola"),
    GlueTask("sst2", "SST-2", ("0", "1"),
             TsvLayout(header=True, num_columns=2, text_a=0, label=1),
             _TEST_SINGLE, ("accuracy",), "accuracy", "glue/sst2"),
    GlueTask("mrpc", "MRPC", ("0", "1"), _pair(label=0, a=3, b=4, n=5, guid=None),
             TsvLayout(header=True, num_columns=5, text_a=3, text_b=4, guid=0),
             ("accuracy", "f1"), "f1", "glue/mrpc"),
    GlueTask("stsb", "STS-B", (), _pair(label=9, a=7, b=8, n=10),
             TsvLayout(header=True, num_columns=9, text_a=7, text_b=8, guid=0),
             ("pearson", "spearman"), "pearson", "glue/stsb"),
    GlueTask("qqp", "QQP", ("0", "1"), _pair(label=5, a=3, b=4, n=6), _TEST_PAIR,
             ("accuracy", "f1"), "f1", "glue/qqp"),
    GlueTask("mnli", "MNLI", ("contradiction", "entailment", "neutral"),
             TsvLayout(header=True, num_columns=None, min_columns=11, text_a=8, text_b=9,
                       label=-1, guid=0),
             TsvLayout(header=True, num_columns=None, min_columns=10, text_a=8, text_b=9,
                       guid=0),
             ("accuracy",), "accuracy", "glue/mnli",
             eval_splits=("dev_matched", "dev_mismatched"),
             test_splits=("test_matched", "test_mismatched")),
    GlueTask("qnli", "QNLI", _ENTAILMENT, _pair(), _TEST_PAIR, ("accuracy",), "accuracy",
             "glue/qnli"),
    GlueTask("rte", "RTE", _ENTAILMENT, _pair(), _TEST_PAIR, ("accuracy",), "accuracy",
             "glue/rte"),
    GlueTask("wnli", "WNLI", ("0", "1"), _pair(), _TEST_PAIR, ("accuracy",), "accuracy",
             "glue/wnli"),
]}


def _key(name):
    return name.lower().replace("-", "").replace("_", "")


def get_task(name):
    """The task named `name`, case-insensitive, GLUE directory names too ("SST-2", "sst2").

    Example:
    >>> get_task("SST-2").num_labels, get_task("sts-b").is_regression
    (2, True)
    """
    if isinstance(name, GlueTask):
        return name
    for task in TASKS.values():
        if _key(str(name)) in (task.name, _key(task.directory)):
            return task
    raise ValueError(f"Unknown GLUE task {name!r}; expected one of {sorted(TASKS)}.")
