"""`from_keras_hub`: a keras-hub BERT-family model as the library's `BertClassifier`.

A Keras user who fine-tuned (or built) a classifier with keras-hub gets the same network,
weight for weight, as a `BertClassifier` that `factorize`, `compact` and the exports take.
keras-hub keeps each model's architecture in its backbone's config, so nothing is guessed
from shapes; its layers map one to one onto this library's:

| keras-hub (`BertBackbone`, `BertTextClassifier`) | `BertClassifier` |
|---|---|
| `token_embedding`, `position_embedding`, `segment_embedding` | `word_embeddings`, `position_embeddings`, `token_type_embeddings` |
| `embeddings_layer_norm` | `embeddings_layer_norm` |
| `transformer_layer_{i}`: attention query/key/value kernels `[hidden, heads, head_size]`, output `[heads, head_size, hidden]` | `layer_{i}_attention_{query,key,value,output}`, reshaped to 2-D |
| `transformer_layer_{i}`: attention and feed-forward layer norms, FFN dense layers | `layer_{i}_attention_layer_norm`, `layer_{i}_intermediate`, `layer_{i}_output`, `layer_{i}_output_layer_norm` |
| `pooled_dense` (tanh), `logits` | `pooler`, `classifier` |

RoBERTa, XLM-RoBERTa and DistilBERT map the same way, but for their embeddings (words and
positions in one `TokenAndPositionEmbedding`, no token types) and heads (the classifier's
`pooled_dense` and `logits`); `keras_flop.checkpoints.keras_hub_families` says what differs.

Supported:
- `keras_hub.models.BertTextClassifier`, or a `BertBackbone` plus `num_labels` (a fresh
  head). keras-hub's BERT uses the tanh GELU and layer-norm epsilon 1e-12, as the original.
- `keras_hub.models.ElectraBackbone` plus `num_labels`, when `embedding_dim == hidden_dim`:
  ELECTRA's discriminator is BERT's encoder (token types, learned absolute positions from 0,
  tanh GELU, epsilon 1e-12, a tanh pooler on `[CLS]`); a smaller embedding needs a projection
  this model does not have. keras-hub has no ELECTRA classifier, hence the fresh head.
- `RobertaTextClassifier` and `XLMRobertaTextClassifier` (epsilon 1e-5, exact GELU, no token
  types, dropout–tanh dense–dropout–classifier on `<s>`), `DistilBertTextClassifier` (epsilon
  1e-12, exact GELU, no token types, a ReLU pre-classifier on `[CLS]`), or their backbones
  plus `num_labels`: a backbone has no head, so the pooler and classifier are fresh.

Declined, with an error saying why: ALBERT (layers share weights), DeBERTa (relative
attention), an ELECTRA embedding smaller than its hidden size, a classifier head whose width
is not the hidden size, and any other model.

Tokenization: `preprocessor_from_keras_hub` writes a keras-hub tokenizer's files out (a BERT
WordPiece vocabulary, RoBERTa's BPE vocabulary and merges, XLM-R's SentencePiece model) and
builds a `keras_flop.BertPreprocessor` over them for the data pipelines and the exported text
signatures.
"""

import json
import logging
import os

import keras
import keras_hub
import numpy as np

from keras_flop.checkpoints.keras_hub_families import (  # noqa: F401 (SUPPORTED: re-exported)
    SUPPORTED, config_from_keras_hub, embedding_tables, split)
from keras_flop.compat import encoder_sublayers
from keras_flop.models.bert import BertClassifier
from keras_flop.text.preprocessor import BertPreprocessor
from keras_flop.text.subword import CANONICAL_NAMES, BPE_MERGES, SubwordTokenizer
from keras_flop.text.tokenizer import BertTokenizer

logger = logging.getLogger(__name__)

_split = split  # the name `keras_flop.checkpoints.detect` imports


def _assign(variable, value):
    value = np.asarray(keras.ops.convert_to_numpy(value), np.float32)
    variable.assign(value.reshape(tuple(variable.shape)))


def from_keras_hub(model, num_labels=None):
    """A `BertClassifier` with the weights of a keras-hub BERT-family model.

    Args:
        model: a keras-hub `BertTextClassifier`, `RobertaTextClassifier`,
            `XLMRobertaTextClassifier` or `DistilBertTextClassifier`; one of their backbones,
            or an `ElectraBackbone` (`embedding_dim == hidden_dim`); or the path of a `.keras`
            file holding one.
        num_labels: size of a fresh head for a backbone (default 2); a classifier's head fixes
            it.

    Returns:
        A dense `BertClassifier` of the model's family (its `bert_config` says which) whose
        inference logits equal the keras-hub model's. A backbone gets a fresh, randomly
        initialized classifier (and, but for BERT's and ELECTRA's pooler, a fresh pooler),
        with a log line saying so.

    Raises:
        ValueError: naming what is supported, for any other model or a setting (pre-LN, a
            final activation, a head of another width) that the model does not have.

    Example:
    >>> import numpy as np
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    >>> hub = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    >>> model = from_keras_hub(hub)
    >>> batch = {"token_ids": np.ones((2, 5), "int32"), "segment_ids": np.zeros((2, 5), "int32"),
    ...          "padding_mask": np.ones((2, 5), bool)}
    >>> bool(np.allclose(model(batch), hub(batch), atol=1e-5)), model.num_labels
    (True, 3)
    """
    if isinstance(model, (str, os.PathLike)):
        from keras_flop.checkpoints.keras_file import load_keras_file

        model = load_keras_file(model, "keras-hub model file")
    asked = num_labels
    backbone, classifier, num_labels = split(model, num_labels)
    config = config_from_keras_hub(backbone)
    converted = BertClassifier(config, num_labels=num_labels)
    get = converted.get_layer
    words, positions, types = embedding_tables(backbone)
    _assign(get("word_embeddings").embeddings, words.embeddings)
    _assign(get("position_embeddings").position_embeddings, positions.position_embeddings)
    if config.type_vocab_size:
        _assign(get("token_type_embeddings").embeddings, types.embeddings)
    _copy_norm(get("embeddings_layer_norm"), backbone.embeddings_layer_norm)
    for index, layer in enumerate(backbone.transformer_layers):
        prefix = f"layer_{index}_"
        for name, theirs in encoder_sublayers(layer).items():
            copy = _copy_norm if name.endswith("layer_norm") else _copy_dense
            copy(get(prefix + name), theirs)
    # BERT's pooler is the backbone's; the other families' is their classifier's.
    pooler = getattr(backbone, "pooled_dense", None) if config.classifier_head == "bert" \
        else getattr(classifier, "pooled_dense", None)
    if pooler is not None:
        _copy_dense(get("pooler"), pooler)
    if classifier is not None:
        _copy_dense(get("classifier"), classifier.output_dense)
    else:
        fresh = "classifier" if pooler is not None else "pooler and classifier"
        log = logger.warning if asked is None else logger.info
        log("%s has no classifier head: initialized a fresh %d-label %s %s%s.",
            type(model).__name__, num_labels, config.classifier_head, fresh,
            " (pass num_labels)" if asked is None else "")
    return converted


def _copy_dense(ours, theirs):
    # keras-hub's attention projections are EinsumDense with 3-D kernels and 2-D biases: the
    # same numbers in the same (row-major) order as the 2-D Dense kernel.
    _assign(ours.kernel, theirs.kernel)
    _assign(ours.bias, theirs.bias)


def _copy_norm(ours, theirs):
    _assign(ours.gamma, theirs.gamma)
    _assign(ours.beta, theirs.beta)


def preprocessor_from_keras_hub(preprocessor, vocab_file, max_seq_length=None):
    """A `keras_flop.BertPreprocessor` over a keras-hub BERT-family tokenizer's vocabulary.

    Args:
        preprocessor: a keras-hub `BertTextClassifierPreprocessor` (its `tokenizer` and
            `sequence_length` are used), a `BertTokenizer`, or a classifier carrying either;
            or RoBERTa's or XLM-R's (`RobertaTokenizer`, `XLMRobertaTokenizer`).
        vocab_file: where to write a WordPiece vocabulary (`vocab.txt`, one token a line); it
            becomes an asset of exported SavedModels. RoBERTa's and XLM-R's files are written
            beside it under Hugging Face's names (`vocab.json` + `merges.txt`,
            `sentencepiece.bpe.model`); the result's `tokenizer.vocab_file` says which.
        max_seq_length: default the preprocessor's `sequence_length`.

    Casing follows the keras-hub tokenizer's `lowercase`. One difference remains: with
    `lowercase=True` this preprocessor also strips accents, as google-research/bert's
    tokenizer (and the checkpoints' pre-training) did, while keras-hub's keeps them unless
    built with `strip_accents=True`; texts without accents get the same ids.

    Example:
    >>> import tempfile
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> pre = preprocessor_from_keras_hub(tokenizer, path, max_seq_length=6)
    >>> pre(["Good film"])["token_ids"].numpy().tolist()
    [[2, 5, 6, 3, 0, 0]]
    """
    if isinstance(getattr(preprocessor, "preprocessor", None), keras.layers.Layer):
        preprocessor = preprocessor.preprocessor
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    subword = (keras_hub.models.RobertaTokenizer, keras_hub.models.XLMRobertaTokenizer)
    if not isinstance(tokenizer, (keras_hub.tokenizers.WordPieceTokenizer,) + subword):
        raise ValueError(f"Expected a keras-hub BERT-family preprocessor or tokenizer "
                         f"(WordPiece, RoBERTa's or XLM-R's); got {type(tokenizer).__name__}. "
                         "Pass --vocab_file (the tokenizer file) instead.")
    if max_seq_length is None:
        max_seq_length = getattr(preprocessor, "sequence_length", None)
        if max_seq_length is None:
            raise ValueError("A keras-hub tokenizer has no sequence length: pass "
                             "`max_seq_length`.")
    directory = os.path.dirname(os.fspath(vocab_file))
    if directory:
        os.makedirs(directory, exist_ok=True)
    if isinstance(tokenizer, subword):
        return BertPreprocessor(SubwordTokenizer(_write_subword(tokenizer, directory)),
                                int(max_seq_length))
    vocabulary = tokenizer.get_vocabulary()
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    return BertPreprocessor(BertTokenizer(vocab_file, lowercase=tokenizer.lowercase),
                            int(max_seq_length))


def _write_subword(tokenizer, directory):
    """Writes a keras-hub RoBERTa or XLM-R tokenizer's files into `directory` under Hugging
    Face's names; returns the one that names the tokenizer."""
    if isinstance(tokenizer, keras_hub.models.XLMRobertaTokenizer):
        path = os.path.join(directory, CANONICAL_NAMES["sentencepiece"])
        with open(path, "wb") as f:
            f.write(tokenizer.proto)
        return path
    path = os.path.join(directory, CANONICAL_NAMES["bpe"])
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tokenizer.vocabulary, f, ensure_ascii=False)
    with open(os.path.join(directory, BPE_MERGES), "w", encoding="utf-8") as f:
        merges = [merge for merge in tokenizer.merges if not merge.startswith("#version")]
        f.write("#version: 0.2\n" + "".join(f"{merge}\n" for merge in merges))
    return path
