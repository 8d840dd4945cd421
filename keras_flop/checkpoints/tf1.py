"""Import google-research/bert TF1 checkpoints (`bert_model.ckpt`) into the Keras model."""

import logging
import os
import re

import numpy as np
import tensorflow as tf

from keras_flop.models.config import BertConfig
from keras_flop.models.bert import build_bert_classifier
from keras_flop.text.subword import tokenizer_for_file, tokenizer_kind

logger = logging.getLogger("keras_flop")

CONFIG_FILE = "bert_config.json"
CHECKPOINT_NAME = "bert_model.ckpt"

# Checkpoint entries that are not model weights: optimizer slots, the step counter and the
# pre-training heads (`cls/predictions`, `cls/seq_relationship`).
_IGNORED = re.compile(r"(/adam_[mv]$|^global_step$|^cls/|/Adam(_1)?$|^beta[12]_power$)")

# TF1 scope of each encoder dense layer -> the Keras layer suffix (`layer_{i}_<suffix>`).
_ENCODER_SCOPES = {
    "attention/self/query": "attention_query",
    "attention/self/key": "attention_key",
    "attention/self/value": "attention_value",
    "attention/output/dense": "attention_output",
    "intermediate/dense": "intermediate",
    "output/dense": "output",
    "attention/output/LayerNorm": "attention_layer_norm",
    "output/LayerNorm": "output_layer_norm",
}
_PARAMETER = {"kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta"}


def tf1_variable_map(num_layers):
    """`{TF1 variable name: Keras variable path}` for the encoder and pooler.

    The classifier (`output_weights`, `output_bias`) is handled apart: its kernel is stored
    transposed.

    Example:
    >>> from keras_flop.checkpoints.tf1 import tf1_variable_map
    >>> mapping = tf1_variable_map(num_layers=2)
    >>> mapping["bert/encoder/layer_1/attention/self/query/kernel"]
    'layer_1_attention_query/kernel'
    >>> mapping["bert/embeddings/LayerNorm/gamma"]
    'embeddings_layer_norm/gamma'
    >>> len(mapping)  # 7 embedding and pooler variables, 16 per encoder layer
    39
    """
    mapping = {
        "bert/embeddings/word_embeddings": "word_embeddings/embeddings",
        "bert/embeddings/token_type_embeddings": "token_type_embeddings/embeddings",
        "bert/embeddings/position_embeddings": "position_embeddings/embeddings",
        "bert/embeddings/LayerNorm/gamma": "embeddings_layer_norm/gamma",
        "bert/embeddings/LayerNorm/beta": "embeddings_layer_norm/beta",
        "bert/pooler/dense/kernel": "pooler/kernel",
        "bert/pooler/dense/bias": "pooler/bias",
    }
    for i in range(num_layers):
        for scope, suffix in _ENCODER_SCOPES.items():
            params = ("gamma", "beta") if scope.endswith("LayerNorm") else ("kernel", "bias")
            for param in params:
                mapping[f"bert/encoder/layer_{i}/{scope}/{param}"] = \
                    f"layer_{i}_{suffix}/{_PARAMETER[param]}"
    return mapping


def resolve_checkpoint(path):
    """`(checkpoint_prefix, directory)` for a checkpoint prefix or a directory holding one.

    Example:
    >>> import os, tempfile
    >>> from keras_flop.checkpoints.tf1 import resolve_checkpoint
    >>> directory = tempfile.mkdtemp()
    >>> resolve_checkpoint(directory)
    Traceback (most recent call last):
    ...
    ValueError: ...: expected one TF1 checkpoint (bert_model.ckpt.index and .data-*); found none.
    >>> for suffix in (".index", ".data-00000-of-00001"):  # the files a checkpoint is
    ...     open(os.path.join(directory, "bert_model.ckpt" + suffix), "w").close()
    >>> prefix, found = resolve_checkpoint(directory)
    >>> os.path.relpath(prefix, directory), found == directory
    ('bert_model.ckpt', True)
    >>> resolve_checkpoint(prefix) == (prefix, directory)
    True
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        # Only files in this directory count: the `checkpoint` state file of a copied
        # directory still names the original location.
        candidates = sorted(f[:-len(".index")] for f in os.listdir(path) if f.endswith(".index"))
        if CHECKPOINT_NAME in candidates:
            candidates = [CHECKPOINT_NAME]
        elif len(candidates) > 1:
            latest = tf.train.latest_checkpoint(path)
            if latest and os.path.basename(latest) in candidates:
                candidates = [os.path.basename(latest)]
        if len(candidates) != 1:
            found = f"found {candidates}" if candidates else "found none"
            raise ValueError(f"{path}: expected one TF1 checkpoint "
                             f"({CHECKPOINT_NAME}.index and .data-*); {found}.")
        prefix = os.path.join(path, candidates[0])
        return prefix, path
    if not os.path.exists(path + ".index"):
        raise ValueError(f"Checkpoint index not found: {path}.index (pass a checkpoint prefix "
                         f"such as .../{CHECKPOINT_NAME}, or the directory holding it).")
    return path, os.path.dirname(path)


def check_vocabulary(vocab_file, config):
    """Number of tokens in the tokenizer file `vocab_file` (a WordPiece `vocab.txt`, or a
    RoBERTa `vocab.json` or XLM-R SentencePiece model), checked against `config.vocab_size`.

    A vocabulary shorter than the embedding table is accepted: released checkpoints often pad
    the table (the unused rows are never looked up). A longer one would produce ids with no
    embedding row, so it is a `ValueError` naming the file.

    Example:
    >>> import os, tempfile
    >>> import keras_flop
    >>> from keras_flop.checkpoints.tf1 import check_vocabulary
    >>> vocab = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(vocab, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]))
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> check_vocabulary(vocab, config)  # 5 tokens for 30 embedding rows: padded, fine
    5
    >>> check_vocabulary(vocab, keras_flop.BertConfig.from_dict(
    ...     {**config.to_dict(), "vocab_size": 4}))
    Traceback (most recent call last):
    ...
    ValueError: .../vocab.txt has 5 tokens but the BERT config says vocab_size=4: ...
    """
    vocab_file = os.fspath(vocab_file)
    if not os.path.isfile(vocab_file):
        raise ValueError(f"Vocabulary file not found: {vocab_file} (pass the vocab.txt the "
                         "checkpoint was trained with).")
    if tokenizer_kind(vocab_file) == "wordpiece":
        with open(vocab_file, encoding="utf-8") as f:
            size = sum(1 for _ in f)
    else:  # RoBERTa's vocab.json, XLM-R's SentencePiece model (built, not run: cheap)
        size = tokenizer_for_file(vocab_file).vocabulary_size
    if size > config.vocab_size:
        raise ValueError(f"{vocab_file} has {size} tokens but the BERT config says "
                         f"vocab_size={config.vocab_size}: ids past {config.vocab_size - 1} "
                         "have no embedding; use the vocabulary the checkpoint was trained "
                         "with.")
    if size < config.vocab_size:
        logger.info("%s has %d tokens for %d embedding rows: the last %d rows are padding.",
                    vocab_file, size, config.vocab_size, config.vocab_size - size)
    return size


def checkpoint_files(path, config_file=None, vocab_file=None):
    """`(BertConfig, vocab file)` of the TF1 checkpoint at `path` (prefix or directory):
    `bert_config.json` and `vocab.txt` beside it unless given, the vocabulary checked against
    the config (shorter than `vocab_size` is fine: the table is padded).

    Example:
    >>> import os, tempfile
    >>> import keras_flop
    >>> from keras_flop.checkpoints.tf1 import checkpoint_files
    >>> directory = tempfile.mkdtemp()
    >>> for suffix in (".index", ".data-00000-of-00001"):
    ...     open(os.path.join(directory, "bert_model.ckpt" + suffix), "w").close()
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> config.to_json_file(os.path.join(directory, "bert_config.json"))
    >>> checkpoint_files(directory)
    Traceback (most recent call last):
    ...
    ValueError: Vocabulary file not found: .../vocab.txt (pass --vocab_file).
    >>> with open(os.path.join(directory, "vocab.txt"), "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"]))
    >>> found, vocab = checkpoint_files(directory)
    >>> found == config, os.path.basename(vocab)
    (True, 'vocab.txt')
    """
    from keras_flop.models.config import BertConfig

    _, directory = resolve_checkpoint(path)
    config = BertConfig.from_json_file(config_file or os.path.join(directory,
                                                                   "bert_config.json"))
    vocab = vocab_file or os.path.join(directory, "vocab.txt")
    if not os.path.isfile(vocab):
        raise ValueError(f"Vocabulary file not found: {vocab} (pass --vocab_file).")
    check_vocabulary(vocab, config)
    return config, vocab


def _read_config(config, directory):
    if config is None:
        config = os.path.join(directory, CONFIG_FILE)
    if isinstance(config, BertConfig):
        return config
    if isinstance(config, dict):
        return BertConfig.from_dict(config)
    return BertConfig.from_json_file(config)


def _open_reader(prefix):
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"Cannot read checkpoint {prefix}: {message}") from None


def _read_tensor(reader, name, prefix):
    try:
        return reader.get_tensor(name)
    except (tf.errors.OpError, IndexError) as e:
        message = str(e).strip().splitlines()[0]
        raise ValueError(f"Cannot read variable {name} from checkpoint {prefix} "
                         f"(truncated or corrupt data shard?): {message}") from None


def _check_shape(name, checkpoint_shape, expected_shape, source):
    if tuple(checkpoint_shape) != tuple(expected_shape):
        raise ValueError(
            f"Variable {name} has shape {list(checkpoint_shape)} in {source}, but "
            f"the model expects {list(expected_shape)}: does bert_config.json match the "
            "checkpoint?")


def has_classifier_head(path):
    """Whether the checkpoint at `path` was fine-tuned (has `output_weights`)."""
    prefix, _ = resolve_checkpoint(path)
    return "output_weights" in _open_reader(prefix).get_variable_to_shape_map()


def load_tf1_checkpoint(path, config=None, num_labels=None):
    """A Keras BERT classifier with the weights of a google-research/bert TF1 checkpoint.

    Args:
        path: a checkpoint prefix (`.../bert_model.ckpt`) or a directory holding
            `bert_config.json` and `bert_model.ckpt.{index,data-*}`.
        config: a `BertConfig`, a dict, or a path to `bert_config.json`; default the
            `bert_config.json` beside the checkpoint.
        num_labels: number of classes (1 for regression). A fine-tuned checkpoint
            (`output_weights`/`output_bias` from `run_classifier.py`) fixes it; a pre-trained one
            gets a freshly initialized head with `num_labels` outputs (default 2).

    Returns:
        The dense Keras model of `build_bert_classifier`, whose logits equal the TF1 model's.

    Raises:
        ValueError: naming the variable when one is missing, of the wrong shape or unreadable,
            and naming the file when the checkpoint or config cannot be read.

    Adam slots (`*/adam_m`, `*/adam_v`), `global_step` and the pre-training heads (`cls/...`)
    are ignored.

    Example:
    >>> model = load_tf1_checkpoint("uncased_L-2_H-128_A-2/")  # doctest: +SKIP
    """
    prefix, directory = resolve_checkpoint(path)
    config = _read_config(config, directory)
    reader = _open_reader(prefix)
    return build_from_variables(config, reader.get_variable_to_shape_map(),
                                lambda name: _read_tensor(reader, name, prefix), num_labels,
                                f"checkpoint {prefix}")


def build_from_variables(config, shapes, read, num_labels, source):
    """The Keras classifier from variables under their TF1 names.

    `shapes` maps TF1 names to shapes, `read(name)` returns an array, `source` names the
    origin in errors. Shared by the TF1 and the Hugging Face importers.

    Example (a model's own weights under their TF1 names, read back):
    >>> import keras_flop, numpy as np
    >>> from keras_flop.checkpoints.tf1 import build_from_variables, tf1_variable_map
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> model = keras_flop.build_bert_classifier(config)
    >>> weights = {weight.path: np.asarray(weight) for weight in model.weights}
    >>> arrays = {name: weights[path] for name, path in tf1_variable_map(1).items()}
    >>> arrays["output_weights"] = weights["classifier/kernel"].T  # [num_labels, hidden]
    >>> arrays["output_bias"] = weights["classifier/bias"]
    >>> shapes = {name: array.shape for name, array in arrays.items()}
    >>> copy = build_from_variables(config, shapes, arrays.get, None, "my arrays")
    >>> x = {"token_ids": np.array([[2, 7, 9, 3]], "int32"),
    ...      "segment_ids": np.zeros((1, 4), "int32"), "padding_mask": np.ones((1, 4), bool)}
    >>> np.array_equal(copy(x), model(x))
    True
    >>> del shapes["bert/pooler/dense/bias"]
    >>> build_from_variables(config, shapes, arrays.get, None, "my arrays")
    Traceback (most recent call last):
    ...
    ValueError: Variable bert/pooler/dense/bias is missing from my arrays.
    """
    checkpoint_layers = {int(m.group(1)) for name in shapes
                         if (m := re.match(r"bert/encoder/layer_(\d+)/", name))}
    if checkpoint_layers and max(checkpoint_layers) + 1 != config.num_hidden_layers:
        raise ValueError(
            f"{source[0].upper() + source[1:]} has {max(checkpoint_layers) + 1} encoder layers "
            f"but the config says num_hidden_layers={config.num_hidden_layers}.")

    has_head = "output_weights" in shapes
    if has_head:
        if "output_bias" not in shapes:
            raise ValueError(f"Variable output_bias is missing from {source} "
                             "(it has output_weights).")
        head_labels = shapes["output_weights"][0]
        if num_labels is not None and num_labels != head_labels:
            raise ValueError(
                f"Variable output_weights has shape {list(shapes['output_weights'])} in "
                f"{source}: a {head_labels}-label head, but num_labels={num_labels} was asked.")
        num_labels = head_labels
    elif num_labels is None:
        num_labels = 2

    model = build_bert_classifier(config, num_labels=num_labels)
    variables = {v.path: v for v in model.weights}
    mapping = tf1_variable_map(config.num_hidden_layers)
    if not config.type_vocab_size:  # a family without token types has no table for them
        del mapping["bert/embeddings/token_type_embeddings"]
    if has_head:
        mapping["output_weights"] = "classifier/kernel"
        mapping["output_bias"] = "classifier/bias"
    elif config.classifier_head != "bert":
        # RoBERTa's and DistilBERT's dense layer before the classifier is part of their head.
        for name in ("bert/pooler/dense/kernel", "bert/pooler/dense/bias"):
            del mapping[name]

    missing = [name for name in mapping if name not in shapes]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"Variable {missing[0]} is missing from {source}{more}.")

    for name, keras_path in mapping.items():
        variable = variables[keras_path]
        transpose = name == "output_weights"  # [num_labels, hidden] -> Keras [hidden, labels]
        expected = tuple(variable.shape)[::-1] if transpose else tuple(variable.shape)
        _check_shape(name, tuple(shapes[name]), expected, source)
        value = read(name)
        variable.assign(np.transpose(value) if transpose else value)

    unused = sorted(n for n in shapes if n not in mapping and not _IGNORED.search(n))
    if unused:
        logger.warning("Ignored %d variable(s) the model does not use: %s", len(unused),
                       ", ".join(unused[:5]) + (" ..." if len(unused) > 5 else ""))
    if not has_head:
        logger.warning("%s has no classifier head: initialized a fresh %d-label head%s.",
                       source[0].upper() + source[1:], num_labels,
                       "" if config.classifier_head == "bert"
                       else f" ({config.classifier_head}'s dense layer and classifier)")
    logger.info("Loaded %d variables from %s.", len(mapping), source)
    return model
