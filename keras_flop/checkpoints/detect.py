"""Any BERT checkpoint in: which kind a path holds, told from the files present, and the
`BertClassifier`, vocabulary and fine-tuned flag of each kind.

Three kinds, all read offline:
- `"tf1"`: a google-research/bert checkpoint, its directory or prefix: `bert_model.ckpt.index`
  and `.data-*`, `bert_config.json`, `vocab.txt`;
- `"hugging_face"`: a Hugging Face BERT, RoBERTa, XLM-RoBERTa or DistilBERT directory
  (`save_pretrained`): `config.json`, `model.safetensors`, and the tokenizer file of its model
  type (`HF_TOKENIZER_FILES`: `vocab.txt`, RoBERTa's `vocab.json` + `merges.txt`, XLM-R's
  `sentencepiece.bpe.model`);
- `"keras_hub"`: a keras-hub preset directory (`save_to_preset`): `config.json` (a Keras
  serialized backbone, which tells it from Hugging Face's), `metadata.json`, `model.weights.h5`,
  `assets/tokenizer/vocabulary.txt` (RoBERTa's `vocabulary.json` + `merges.txt`, XLM-R's
  `vocabulary.spm`); a classifier's also `task.json` and `task.weights.h5`.

A fine-tuned checkpoint is one with a classification head: TF1's `output_weights`, Hugging
Face's `classifier` (RoBERTa's `classifier.out_proj`), a keras-hub preset of a
`TextClassifier` (its `task.json`). The others get a fresh head of `num_labels` outputs.

Example:
>>> checkpoint = describe_checkpoint("bert-base-uncased/")    # doctest: +SKIP
>>> checkpoint.kind, checkpoint.vocab_file, checkpoint.fine_tuned  # doctest: +SKIP
('hugging_face', 'bert-base-uncased/vocab.txt', False)
>>> model, vocab_file, fine_tuned = load_checkpoint("bert-base-uncased/", num_labels=3)
...                                                           # doctest: +SKIP
"""

import dataclasses
import json
import os
from typing import NamedTuple

from keras_flop.text.subword import CANONICAL_NAMES

TF1 = "tf1"
HUGGING_FACE = "hugging_face"
KERAS_HUB = "keras_hub"
KINDS = (TF1, HUGGING_FACE, KERAS_HUB)

_DESCRIPTIONS = {
    TF1: "a TF1 checkpoint (bert_model.ckpt.index and .data-*, bert_config.json, vocab.txt)",
    HUGGING_FACE: "a Hugging Face BERT-family directory (config.json, model.safetensors, "
                  "vocab.txt or a RoBERTa/XLM-R tokenizer file)",
    KERAS_HUB: "a keras-hub preset directory (config.json, metadata.json, model.weights.h5, "
               "assets/tokenizer/vocabulary.txt)",
}
EXPECTED = "one of: {}; {}; or {}".format(*_DESCRIPTIONS.values())
KERAS_HUB_VOCABULARY = os.path.join("assets", "tokenizer", "vocabulary.txt")
KERAS_HUB_SUBWORD = (os.path.join("assets", "tokenizer", "vocabulary.json"),
                     os.path.join("assets", "tokenizer", "vocabulary.spm"))
# BertConfig fields that only change training, not the weights: a config given to `load`
# may differ from the checkpoint's in these.
_TRAINING_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "initializer_range")


def _listing(directory, limit=8):
    names = sorted(os.listdir(directory))
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit
                                        else "")
    return shown or "nothing"


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as JSON ({' '.join(str(error).split())})."
                         ) from None


def _is_keras_config(values):
    """A Keras serialized object (keras-hub's `config.json`), not Hugging Face's config."""
    return isinstance(values, dict) and "class_name" in values and "config" in values


def detect_checkpoint(path):
    """`(kind, path)` of the checkpoint at `path`: the kind in `KINDS`, told from the files
    present, and the path to read it from (a TF1 `.index` file becomes its prefix).

    Raises:
        ValueError: naming what was found and what is expected when `path` holds none of
            the three kinds.

    Example:
    >>> import os, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> with open(os.path.join(directory, "bert_config.json"), "w") as f:
    ...     _ = f.write("{}")
    >>> detect_checkpoint(directory)[0]
    'tf1'
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        if os.path.exists(path + ".index"):
            return TF1, path
        raise ValueError(f"Checkpoint not found: {path} does not exist; expected {EXPECTED}.")
    if os.path.isfile(path):
        if path.endswith(".index"):
            return TF1, path[:-len(".index")]
        raise ValueError(f"{path} is a file; expected a TF1 checkpoint prefix or a directory, "
                         f"{EXPECTED}.")
    names = set(os.listdir(path))
    if any(name.endswith(".index") for name in names) or "bert_config.json" in names:
        return TF1, path
    if "config.json" in names:
        values = _read_json(os.path.join(path, "config.json"))
        return (KERAS_HUB if _is_keras_config(values) else HUGGING_FACE), path
    if "model.safetensors" in names:
        return HUGGING_FACE, path
    if "model.weights.h5" in names or "metadata.json" in names:
        return KERAS_HUB, path
    raise ValueError(f"{path} holds no BERT checkpoint (found {_listing(path)}); expected "
                     f"{EXPECTED}.")


class LoadedCheckpoint(NamedTuple):
    """What `load_checkpoint` returns: the dense `BertClassifier`, the tokenizer file (see
    `keras_flop.text.subword`), and whether the checkpoint was fine-tuned (had a
    classification head)."""

    model: object
    vocab_file: str
    fine_tuned: bool


@dataclasses.dataclass
class Checkpoint:
    """A BERT checkpoint described without loading its weights (`describe_checkpoint`).

    Attributes:
        kind: `"tf1"`, `"hugging_face"` or `"keras_hub"`.
        path: the directory (or TF1 prefix) it is read from.
        config: its `BertConfig`.
        vocab_file: its tokenizer file (a WordPiece `vocab.txt`, RoBERTa's `vocab.json`,
            XLM-R's SentencePiece model), checked against `config.vocab_size` and the family.
        fine_tuned: whether it has a classification head.
        num_labels: that head's number of outputs, or None.
        config_file: a TF1 checkpoint's `bert_config.json` when given apart from it.
    """

    kind: str
    path: str
    config: object
    vocab_file: str
    fine_tuned: bool
    num_labels: int = None
    config_file: str = None

    def load(self, num_labels=None, config=None):
        """`LoadedCheckpoint(model, vocab_file, fine_tuned)`: the dense `BertClassifier` with
        the checkpoint's weights.

        Args:
            num_labels: outputs of the head; a fine-tuned checkpoint's head fixes it (another
                number is an error), a pre-trained one gets a fresh head (default 2).
            config: a `BertConfig` to build the model with instead of the checkpoint's; it may
                differ only in dropout and initializer range (e.g. a run's dropout settings).
        """
        from keras_flop.models.bert import BertClassifier

        if config is not None:
            _check_same_architecture(config, self.config, self.path)
        if self.kind == TF1:
            from keras_flop.checkpoints.tf1 import load_tf1_checkpoint

            model = load_tf1_checkpoint(self.path, config=config or self.config,
                                        num_labels=num_labels)
        else:
            model = (self._load_hugging_face if self.kind == HUGGING_FACE
                     else self._load_keras_hub)(num_labels)
            if config is not None and config != model.bert_config:
                rebuilt = BertClassifier(config, model.num_labels)
                rebuilt.set_weights(model.get_weights())
                model = rebuilt
        return LoadedCheckpoint(model, self.vocab_file, self.fine_tuned)

    def _load_hugging_face(self, num_labels):
        from keras_flop.checkpoints.hugging_face import load_hf_checkpoint

        return load_hf_checkpoint(self.path, num_labels=num_labels)

    def _load_keras_hub(self, num_labels):
        import keras_hub

        from keras_flop.checkpoints.keras_hub import from_keras_hub

        if self.fine_tuned:
            if num_labels is not None and num_labels != self.num_labels:
                raise ValueError(f"{self.path} is a keras-hub classifier with a "
                                 f"{self.num_labels}-label head, but num_labels={num_labels} "
                                 "was asked.")
            hub = keras_hub.models.TextClassifier.from_preset(self.path)
            return from_keras_hub(hub)
        backbone = keras_hub.models.Backbone.from_preset(self.path)
        return from_keras_hub(backbone, num_labels=2 if num_labels is None else num_labels)


def _check_same_architecture(config, checkpoint_config, path):
    fields = [f.name for f in dataclasses.fields(config) if f.name not in _TRAINING_FIELDS]
    differ = [f"{name}={getattr(config, name)!r} (the checkpoint has "
              f"{getattr(checkpoint_config, name)!r})" for name in fields
              if getattr(config, name) != getattr(checkpoint_config, name)]
    if differ:
        raise ValueError(f"The config given for {path} does not match the checkpoint's: "
                         f"{', '.join(differ)}; only dropout and initializer_range may differ.")


def _vocabulary(path, vocab_file, default, config, kind):
    from keras_flop.checkpoints.tf1 import check_vocabulary
    from keras_flop.text.subword import check_tokenizer_for

    vocab = os.fspath(vocab_file) if vocab_file else os.path.join(path, default)
    if not os.path.isfile(vocab):
        where = "" if vocab_file else \
            f" ({_short(kind)} keeps its WordPiece vocabulary there)"
        raise ValueError(f"Vocabulary file not found: {vocab}{where}; pass the vocab.txt the "
                         "model was trained with.")
    check_tokenizer_for(config, vocab)
    check_vocabulary(vocab, config)
    return vocab


# The tokenizer file of each Hugging Face model type, where `save_pretrained` writes it (the
# names `keras_flop.text.subword` gives each kind).
HF_TOKENIZER_FILES = {model_type: CANONICAL_NAMES[kind] for model_type, kind in (
    ("bert", "wordpiece"), ("distilbert", "wordpiece"), ("roberta", "bpe"),
    ("xlm-roberta", "sentencepiece"))}


def _hf_tokenizer(path, vocab_file, config):
    """The tokenizer file of a Hugging Face directory: `vocab_file`, else the one its model
    type keeps (a RoBERTa `vocab.json` with `merges.txt`, XLM-R's SentencePiece model, BERT's
    and DistilBERT's `vocab.txt`); a one-line error when it holds another kind only."""
    if vocab_file:
        return _vocabulary(path, vocab_file, None, config, HUGGING_FACE)
    model_type = _read_json(os.path.join(path, "config.json")).get("model_type", "bert")
    default = os.path.join(path, HF_TOKENIZER_FILES.get(model_type, "vocab.txt"))
    if not os.path.isfile(default):
        present = [name for name in sorted(set(HF_TOKENIZER_FILES.values()))
                   if os.path.isfile(os.path.join(path, name))]
        holds = f"holds {' and '.join(present)} only" if present else "holds no tokenizer file"
        raise ValueError(f"{path} is a Hugging Face {model_type} checkpoint, whose tokenizer is "
                         f"{os.path.basename(default)}, but it {holds}: pass the "
                         "tokenizer file the model was trained with (--vocab_file).")
    return _vocabulary(path, default, None, config, HUGGING_FACE)


def _short(kind):
    return _DESCRIPTIONS[kind].split(" (")[0]


def _not_tf1(kind, path, config_file):
    if config_file is not None:
        raise ValueError(f"{path} is {_short(kind)}, whose config is its "
                         f"own config.json: a separate BERT config file ({config_file}) applies "
                         "to TF1 checkpoints only.")


def describe_checkpoint(path, config_file=None, vocab_file=None):
    """The `Checkpoint` at `path` (kind, config, vocabulary, fine-tuned or not), read without
    its weights.

    Args:
        path: a TF1 checkpoint directory or prefix, a Hugging Face BERT-family directory or a
            keras-hub preset directory; the kind is told from the files present.
        config_file: a TF1 checkpoint's `bert_config.json`, when it is not beside it (an error
            for the other kinds, which carry their own `config.json`).
        vocab_file: the tokenizer file, when it is not where the kind keeps it (`vocab.txt`,
            a Hugging Face RoBERTa's `vocab.json` or XLM-R's `sentencepiece.bpe.model`, a
            keras-hub preset's `assets/tokenizer/vocabulary.txt`); one of another family's
            kind is an error.

    Raises:
        ValueError: naming what was found and what is expected, or the file at fault (a
            config, a vocabulary longer than the config's `vocab_size`, ...).
    """
    from keras_flop.checkpoints.tf1 import checkpoint_files, has_classifier_head, \
        resolve_checkpoint

    kind, path = detect_checkpoint(path)
    if kind == TF1:
        config, vocab = checkpoint_files(path, config_file, vocab_file)
        fine_tuned = has_classifier_head(path)
        num_labels = None
        if fine_tuned:
            import tensorflow as tf

            prefix, _ = resolve_checkpoint(path)
            num_labels = int(dict(tf.train.list_variables(prefix))["output_weights"][0])
        return Checkpoint(kind, path, config, vocab, fine_tuned, num_labels, config_file)
    _not_tf1(kind, path, config_file)
    if kind == HUGGING_FACE:
        from keras_flop.checkpoints.hugging_face import hf_has_classifier_head, read_hf_config

        config = read_hf_config(path)
        fine_tuned = hf_has_classifier_head(path)
        vocab = _hf_tokenizer(path, vocab_file, config)
        return Checkpoint(kind, path, config, vocab, fine_tuned)
    return _describe_keras_hub(path, vocab_file)


def _describe_keras_hub(path, vocab_file):
    import keras_hub

    from keras_flop.checkpoints.keras_hub import _split, config_from_keras_hub

    missing = [name for name in ("config.json", "metadata.json", "model.weights.h5")
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ValueError(f"{path} looks like a keras-hub preset but has no "
                         f"{', '.join(missing)} (found {_listing(path)}); a preset saved with "
                         "save_to_preset has config.json, metadata.json and model.weights.h5.")
    try:
        backbone = keras_hub.models.Backbone.from_preset(path, load_weights=False)
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: keras-hub cannot build the preset's backbone "
                         f"({' '.join(str(error).split())}).") from None
    _split(backbone, 2)  # a BERT-family backbone, or an error naming what is supported
    config = config_from_keras_hub(backbone)
    default = KERAS_HUB_VOCABULARY
    if config.classifier_head == "roberta" and not vocab_file:
        # keras-hub saves RoBERTa's BPE as vocabulary.json + merges.txt, XLM-R's SentencePiece
        # as vocabulary.spm.
        found = [name for name in KERAS_HUB_SUBWORD
                 if os.path.isfile(os.path.join(path, name))]
        if not found:
            raise ValueError(f"{path}: a RoBERTa-family preset keeps its tokenizer in "
                             f"{' or '.join(KERAS_HUB_SUBWORD)}, and this one has neither: "
                             "save the tokenizer with the preset, or pass --vocab_file.")
        default = found[0]
    task_file = os.path.join(path, "task.json")
    num_labels = None
    if os.path.isfile(task_file):
        task = _read_json(task_file)
        if "TextClassifier" in str(task.get("class_name", "")):
            num_labels = int(task.get("config", {}).get("num_classes", 2))
    vocab = _vocabulary(path, vocab_file, default, config, KERAS_HUB)
    return Checkpoint(KERAS_HUB, path, config, vocab, num_labels is not None, num_labels)


def load_checkpoint(path, num_labels=None, config=None, config_file=None, vocab_file=None):
    """`LoadedCheckpoint(model, vocab_file, fine_tuned)` of the BERT checkpoint at `path`,
    whichever of the three kinds it is (`describe_checkpoint`, then `Checkpoint.load`).

    Args:
        path: a TF1 checkpoint directory or prefix, a Hugging Face BERT directory or a
            keras-hub preset directory.
        num_labels: outputs of the head (a fine-tuned checkpoint's head fixes it).
        config: a `BertConfig` differing from the checkpoint's in dropout only, to build the
            model with.
        config_file, vocab_file: as for `describe_checkpoint`.
    """
    return describe_checkpoint(path, config_file, vocab_file).load(num_labels, config)
