"""The RoBERTa-family tokenizers, and which tokenizer a file is.

RoBERTa's byte-level BPE (`vocab.json` + `merges.txt`) and XLM-RoBERTa's SentencePiece
(`sentencepiece.bpe.model`) run as keras-hub's tokenizer layers (`RobertaTokenizer`,
`XLMRobertaTokenizer`): graph ops, so the `tf.data` pipelines map them and the SavedModel text
signatures embed them (their vocabularies as graph constants) like `BertTokenizer`. keras-hub's
XLM-R layer applies fairseq's id layout (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, every
SentencePiece id past those one up), as Hugging Face's tokenizer does.

A tokenizer is named by one file everywhere a vocabulary is (`--vocab_file`, a run's copy, an
export): `vocab.txt` is WordPiece, a `.json` vocabulary is byte-level BPE with `merges.txt`
beside it, a `.model` (or keras-hub's `.spm`) file is SentencePiece. `tokenizer_for_file`
makes the tokenizer, `copy_tokenizer` copies it beside a model (`tokenizer_file_in` finds it
there), and each tokenizer's `packing` says how the preprocessor packs a pair: `"bert"`
(`[CLS] a [SEP] b [SEP]`, segment ids 0/1) or `"roberta"` (`<s> a </s></s> b </s>`, no segment
ids).
"""

import os
import shutil

import tensorflow as tf

BPE_MERGES = "merges.txt"
# The packing each model family's tokenizers use (BertConfig.classifier_head -> packing).
FAMILY_PACKING = {"bert": "bert", "distilbert": "bert", "roberta": "roberta"}
# Where `copy_tokenizer` puts each kind (Hugging Face's names).
CANONICAL_NAMES = {"wordpiece": "vocab.txt", "bpe": "vocab.json",
                   "sentencepiece": "sentencepiece.bpe.model"}
_KINDS = {"wordpiece": "a WordPiece vocab.txt",
          "bpe": "a byte-level BPE vocab.json with merges.txt beside it",
          "sentencepiece": "a SentencePiece .model file (XLM-R's sentencepiece.bpe.model)"}


def tokenizer_kind(path):
    """`"wordpiece"`, `"bpe"` or `"sentencepiece"`, told from a tokenizer file's name.

    Example:
    >>> tokenizer_kind("roberta-base/vocab.json"), tokenizer_kind("xlmr/sentencepiece.bpe.model")
    ('bpe', 'sentencepiece')
    """
    name = os.path.basename(os.fspath(path))
    if name.endswith(".json"):
        return "bpe"
    if name.endswith((".model", ".spm")):  # Hugging Face's and keras-hub's names
        return "sentencepiece"
    return "wordpiece"


def tokenizer_files(path):
    """The files that make up the tokenizer named by `path` (BPE's `merges.txt` too).

    Example:
    >>> tokenizer_files("roberta-base/vocab.json")
    ['roberta-base/vocab.json', 'roberta-base/merges.txt']
    """
    path = os.fspath(path)
    if tokenizer_kind(path) == "bpe":
        return [path, os.path.join(os.path.dirname(path), BPE_MERGES)]
    return [path]


def copy_tokenizer(path, directory):
    """Copies the tokenizer named by `path` into `directory` under its kind's usual name
    (`vocab.txt`; `vocab.json` and `merges.txt`; `sentencepiece.bpe.model`), where
    `tokenizer_file_in` finds it; returns the copy's path.

    Example:
    >>> import tempfile
    >>> source, target = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> for name in ("vocabulary.json", "merges.txt"):  # a keras-hub preset's names
    ...     _ = open(os.path.join(source, name), "w").write("{}")
    >>> copy = copy_tokenizer(os.path.join(source, "vocabulary.json"), target)
    >>> os.path.basename(copy), sorted(os.listdir(target))
    ('vocab.json', ['merges.txt', 'vocab.json'])
    >>> tokenizer_file_in(target) == copy
    True
    """
    files = tokenizer_files(path)
    names = [CANONICAL_NAMES[tokenizer_kind(path)]] + [BPE_MERGES] * (len(files) - 1)
    os.makedirs(directory, exist_ok=True)
    for source, name in zip(files, names):
        shutil.copyfile(source, os.path.join(directory, name))
    return os.path.join(directory, names[0])


def tokenizer_file_in(directory):
    """The tokenizer file `copy_tokenizer` leaves in `directory`, or None."""
    for name in CANONICAL_NAMES.values():
        if os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def check_tokenizer_for(config, path):
    """Raises a one-line `ValueError` when the tokenizer file `path` packs text another way
    than the model family of `config` (a `BertConfig`) was trained on.

    Example:
    >>> from keras_flop.models.config import BertConfig
    >>> config = BertConfig(vocab_size=50265, classifier_head="roberta", type_vocab_size=0)
    >>> check_tokenizer_for(config, "roberta-base/vocab.json")
    >>> check_tokenizer_for(config, "roberta-base/vocab.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: roberta-base/vocab.txt is a WordPiece vocab.txt, but a roberta-family model ...
    """
    kind = tokenizer_kind(path)
    wanted = FAMILY_PACKING[config.classifier_head]
    if ("bert" if kind == "wordpiece" else "roberta") != wanted:
        expected = _KINDS["wordpiece"] if wanted == "bert" else \
            f"{_KINDS['bpe']} (RoBERTa), or {_KINDS['sentencepiece']}"
        raise ValueError(f"{os.fspath(path)} is {_KINDS[kind]}, but a "
                         f"{config.classifier_head}-family model was trained on text "
                         f"tokenized with {expected}: pass that file.")


def tokenizer_for_file(path, lowercase=None):
    """The tokenizer named by `path`: a `BertTokenizer` for a WordPiece `vocab.txt`, else a
    `SubwordTokenizer`. `lowercase` applies to WordPiece only (the others keep case).

    Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"]) + "\\n")
    >>> type(tokenizer_for_file(path)).__name__, tokenizer_for_file(path).packing
    ('BertTokenizer', 'bert')
    """
    if tokenizer_kind(path) == "wordpiece":
        from keras_flop.text.tokenizer import BertTokenizer

        return BertTokenizer(path, lowercase=lowercase)
    if lowercase is not None:
        raise ValueError(f"{os.fspath(path)} is {_KINDS[tokenizer_kind(path)]}, which keeps "
                         "case as it was trained: leave `lowercase` out.")
    return SubwordTokenizer(path)


class SubwordTokenizer(tf.Module):
    """Text to RoBERTa byte-level BPE or XLM-R SentencePiece ids, with keras-hub's layers.

    Args:
        vocab_file: a RoBERTa `vocab.json` (its `merges.txt` beside it) or an XLM-R
            `sentencepiece.bpe.model`.

    Calling it on a string tensor `[batch]` returns a `tf.RaggedTensor` of int32 ids
    `[batch, (tokens)]`, no special tokens added. `cls_id`, `sep_id` and `pad_id` are
    `<s>`, `</s>` and `<pad>`; `packing` is `"roberta"`.

    Example:
    >>> import json, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6,
    ...          "\\u0120": 7, "ab": 8, "\\u0120ab": 9}
    >>> with open(os.path.join(directory, "vocab.json"), "w") as f:
    ...     json.dump(vocab, f)
    >>> with open(os.path.join(directory, "merges.txt"), "w") as f:
    ...     _ = f.write("#version: 0.2\\na b\\n\\u0120 ab\\n")
    >>> tokenizer = SubwordTokenizer(os.path.join(directory, "vocab.json"))
    >>> tokenizer(tf.constant(["ab ab", "ba"])).to_list()
    [[8, 9], [6, 5]]
    >>> tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.vocabulary_size
    (0, 2, 1, 10)
    """

    packing = "roberta"
    lowercase = None  # byte-level BPE and SentencePiece keep the case they were trained on

    def __init__(self, vocab_file):
        super().__init__(name="subword_tokenizer")
        import keras_hub

        self.vocab_file = os.fspath(vocab_file)
        self.kind = tokenizer_kind(self.vocab_file)
        missing = [f for f in tokenizer_files(self.vocab_file) if not os.path.isfile(f)]
        if missing:
            raise ValueError(f"Tokenizer file not found: {missing[0]} ({_KINDS[self.kind]} is "
                             "what a RoBERTa-family model reads).")
        try:
            if self.kind == "bpe":
                self.layer = keras_hub.models.RobertaTokenizer(
                    vocabulary=self.vocab_file, merges=tokenizer_files(self.vocab_file)[1])
            else:
                self.layer = keras_hub.models.XLMRobertaTokenizer(proto=self.vocab_file)
        except (ValueError, TypeError, RuntimeError, KeyError) as error:
            # e.g. a vocabulary without RoBERTa's special tokens, an unreadable proto
            raise ValueError(f"{self.vocab_file}: not a usable {_KINDS[self.kind]} "
                             f"({' '.join(str(error).split())}).") from None
        self.cls_id = int(self.layer.start_token_id)
        self.sep_id = int(self.layer.end_token_id)
        self.pad_id = int(self.layer.pad_token_id)
        # Traced once: keras-hub's layers return Python lists when called eagerly, tensors in
        # a graph, and every caller here wants the ragged tensor.
        self._tokenize = tf.function(self.layer.tokenize, autograph=False,
                                     input_signature=[tf.TensorSpec([None], tf.string)])

    @property
    def vocabulary_size(self):
        return int(self.layer.vocabulary_size())

    def token_to_id(self, token):
        return int(self.layer.token_to_id(token))

    @tf.autograph.experimental.do_not_convert
    def __call__(self, text):
        return tf.cast(self._tokenize(tf.convert_to_tensor(text, tf.string)), tf.int32)
