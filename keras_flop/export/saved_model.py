"""`export_saved_model`: a SavedModel that TF Serving loads, with id and raw-text signatures."""

import json
import os
import shutil

import keras
import tensorflow as tf

from keras_flop.text.preprocessor import BertPreprocessor
from keras_flop.text.subword import tokenizer_for_file

ID_SIGNATURE = "serving_default"
TEXT_SIGNATURE = "predict_text"
TEXT_PAIR_SIGNATURE = "predict_text_pair"
TOKENIZE_SIGNATURE = "tokenize_text"
TOKENIZE_PAIR_SIGNATURE = "tokenize_text_pair"
METADATA_FILE = "keras_flop_export.json"


def _next_version(export_dir):
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()] \
        if os.path.isdir(export_dir) else []
    return max(versions, default=0) + 1


def embedding_limits(network):
    """`(vocab_size, longest sequence)` of a BERT network: its `BertClassifier` config (whose
    `max_sequence_length` discounts a RoBERTa-style position offset), else its
    `word_embeddings` and `position_embeddings` layers; None for what it lacks."""
    config = getattr(network, "bert_config", None)
    if config is not None:
        return config.vocab_size, config.max_sequence_length
    layers = {layer.name: layer for layer in getattr(network, "layers", [])}
    words, positions = layers.get("word_embeddings"), layers.get("position_embeddings")
    return (getattr(words, "input_dim", None), getattr(positions, "sequence_length", None))


def check_preprocessor(network, preprocessor):
    """Raises a `ValueError` when the text signatures would produce ids the model cannot take:
    a vocabulary with more tokens than the model has embedding rows, or a `max_seq_length`
    past its position embeddings. Either would only fail on a serving request."""
    vocab_size, positions = embedding_limits(network)
    tokens = preprocessor.tokenizer.vocabulary_size
    if vocab_size is not None and tokens > vocab_size:
        raise ValueError(
            f"The vocabulary {preprocessor.tokenizer.vocab_file} has {tokens} tokens but the "
            f"model has vocab_size={vocab_size}: ids past {vocab_size - 1} have no embedding "
            "row; export with the vocabulary the model was trained with.")
    if positions is not None and preprocessor.max_seq_length > positions:
        raise ValueError(
            f"max_seq_length {preprocessor.max_seq_length} exceeds the model's "
            f"max_position_embeddings {positions}: pass max_seq_length <= {positions}.")


def export_saved_model(model, export_dir, vocab_file=None, max_seq_length=None, lowercase=None,
                       version=None, label_names=None, preprocessor=None):
    """Exports `model` to `export_dir/<version>/` for TF Serving and `tf.saved_model.load`.

    Signatures:
    - `serving_default`: `token_ids`, `segment_ids` (int32) and `padding_mask` (bool), each
      `[batch, seq]` → `logits` and `probabilities` (a classifier) or `score` (a one-output
      regressor, STS-B).
    - `predict_text`: `text` (string `[batch]`) → the same outputs, tokenized in the graph.
    - `predict_text_pair`: `text_a`, `text_b` (string `[batch]`) → the same outputs.
    - `tokenize_text`, `tokenize_text_pair`: the ids those two feed the model (for checking a
      client's own tokenization).
    Text is tokenized by the very `BertPreprocessor` the training data went through (the
    model family's tokenizer and packing: google-research/bert's WordPiece rules, RoBERTa's
    byte-level BPE or XLM-R's SentencePiece) and padded to the longest text of the request.

    Args:
        model: a dense, pruning or compact model (a `PruningModel` exports its network, i.e.
            the deterministic mask; compact it first for speed).
        export_dir: the model base path; the version folder is created inside it.
        vocab_file: the checkpoint's tokenizer file, when no `preprocessor` is given: a
            WordPiece `vocab.txt` (copied into the SavedModel's assets), a RoBERTa
            `vocab.json` (`merges.txt` beside it) or an XLM-R `sentencepiece.bpe.model` (both
            held in the graph).
        max_seq_length: longest sequence the text signatures keep, when no `preprocessor`.
        lowercase: lowercase and strip accents; `None` follows the vocabulary's casing, as
            the training pipeline does.
        version: integer version folder; default one past the highest present.
        label_names: optional class names, recorded in `assets.extra/keras_flop_export.json`.
        preprocessor: the `keras_flop.BertPreprocessor` used for training and evaluation;
            replaces `vocab_file`, `max_seq_length` and `lowercase`.

    Returns:
        The path of the version folder. The SavedModel needs `tensorflow_text` imported to
        load the text signatures (the stock TF Serving binary links its ops); not keras_flop.

    Raises:
        ValueError: before anything is written, for a vocabulary with more tokens than the
            model's `vocab_size` or a `max_seq_length` past its `max_position_embeddings`
            (`check_preprocessor`): the text signatures would fail on the first request.

    Example:
    >>> export_saved_model(compact_model, "export", "vocab.txt", 128)    # doctest: +SKIP
    'export/1'
    """
    if preprocessor is None:
        if vocab_file is None or max_seq_length is None:
            raise ValueError("Pass `preprocessor` (the training data's BertPreprocessor), or "
                             "`vocab_file` and `max_seq_length`.")
        preprocessor = BertPreprocessor(tokenizer_for_file(vocab_file, lowercase=lowercase),
                                        max_seq_length)
    elif vocab_file is not None or max_seq_length is not None or lowercase is not None:
        raise ValueError("`preprocessor` already fixes the vocabulary, casing and length: "
                         "pass either it or `vocab_file`/`max_seq_length`/`lowercase`.")
    network = getattr(model, "network", model)
    check_preprocessor(network, preprocessor)
    version = _next_version(export_dir) if version is None else int(version)
    final = os.path.join(os.fspath(export_dir), str(version))
    if os.path.exists(final):
        raise ValueError(f"Export version folder {final} exists already.")
    regression = network.outputs[0].shape[-1] == 1

    ids = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
           tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
           tf.TensorSpec([None, None], tf.bool, name="padding_mask")]

    # The network is traced once; the three predicting endpoints call this function.
    @tf.function(input_signature=ids, autograph=False)
    def from_ids(token_ids, segment_ids, padding_mask):
        logits = tf.cast(network({"token_ids": token_ids, "segment_ids": segment_ids,
                                  "padding_mask": padding_mask}, training=False), tf.float32)
        if regression:
            return {"score": logits[:, 0]}
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def outputs(inputs):
        return from_ids(inputs["token_ids"], inputs["segment_ids"],
                        tf.cast(inputs["padding_mask"], tf.bool))

    text = [tf.TensorSpec([None], tf.string, name="text")]
    pair = [tf.TensorSpec([None], tf.string, name="text_a"),
            tf.TensorSpec([None], tf.string, name="text_b")]
    # Tokenization traced once per input kind; the text and tokenize endpoints call it.
    encode_one = tf.function(lambda text: preprocessor(text, pad_to_max_length=False),
                             input_signature=text, autograph=False)
    encode_pair = tf.function(
        lambda text_a, text_b: preprocessor(text_a, text_b, pad_to_max_length=False),
        input_signature=pair, autograph=False)

    def encode(text_a, text_b=None):
        return encode_one(text_a) if text_b is None else encode_pair(text_a, text_b)

    archive = keras.export.ExportArchive()
    # Only the preprocessor is tracked (its vocabulary table); the endpoints capture the
    # network's variables themselves. Tracking the network too would store every weight
    # twice: once as its Keras variable, once as the tf.Variable the endpoints use.
    archive.track(preprocessor)
    archive.add_endpoint(ID_SIGNATURE, from_ids, input_signature=ids)
    archive.add_endpoint(TEXT_SIGNATURE, lambda text: outputs(encode(text)),
                         input_signature=text)
    archive.add_endpoint(TEXT_PAIR_SIGNATURE,
                         lambda text_a, text_b: outputs(encode(text_a, text_b)),
                         input_signature=pair)
    archive.add_endpoint(TOKENIZE_SIGNATURE, lambda text: encode(text), input_signature=text)
    archive.add_endpoint(TOKENIZE_PAIR_SIGNATURE, lambda text_a, text_b: encode(text_a, text_b),
                         input_signature=pair)
    temporary = final + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    archive.write_out(temporary, verbose=False)
    os.makedirs(os.path.join(temporary, "assets.extra"), exist_ok=True)
    with open(os.path.join(temporary, "assets.extra", METADATA_FILE), "w") as f:
        json.dump({"max_seq_length": preprocessor.max_seq_length,
                   "lowercase": preprocessor.tokenizer.lowercase,
                   "packing": preprocessor.tokenizer.packing,
                   "regression": bool(regression), "label_names": label_names,
                   "signatures": [ID_SIGNATURE, TEXT_SIGNATURE, TEXT_PAIR_SIGNATURE,
                                  TOKENIZE_SIGNATURE, TOKENIZE_PAIR_SIGNATURE]}, f,
                  indent=2)
    os.replace(temporary, final)
    return final
