"""`export_saved_model`: a SavedModel that TF Serving loads, with id and raw-text signatures."""

import json
import os
import shutil

import keras
import tensorflow as tf
import tensorflow_text as tf_text

ID_SIGNATURE = "serving_default"
TEXT_SIGNATURE = "predict_text"
TEXT_PAIR_SIGNATURE = "predict_text_pair"
METADATA_FILE = "keras_flop_export.json"


def read_vocab(path):
    """The WordPiece vocabulary, one token a line; errors name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Vocabulary file not found: {path}")
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\n") for line in f]
    if not tokens:
        raise ValueError(f"Vocabulary file {path} is empty.")
    return tokens


class TextEncoder(tf.Module):
    """BERT WordPiece tokenization and packing as TF ops, exportable in a SavedModel.

    `[CLS] a [SEP] (b [SEP])`, segment ids 0/1, the longer segment truncated first (round
    robin), padded with 0 to `max_seq_length`. The vocabulary is a tracked lookup table whose
    file becomes a SavedModel asset.

    Example:
    >>> encoder = TextEncoder("vocab.txt", max_seq_length=128)          # doctest: +SKIP
    >>> encoder(tf.constant(["a fine movie"]))["token_ids"].shape         # doctest: +SKIP
    TensorShape([1, 128])
    """

    def __init__(self, vocab_file, max_seq_length, lowercase=True):
        super().__init__(name="text_encoder")
        tokens = read_vocab(vocab_file)
        for special in ("[CLS]", "[SEP]", "[UNK]"):
            if special not in tokens:
                raise ValueError(f"Vocabulary file {vocab_file} has no {special} token.")
        if max_seq_length < 3:
            raise ValueError(f"`max_seq_length` must be >= 3; got {max_seq_length}.")
        self.max_seq_length = int(max_seq_length)
        self.cls_id = tokens.index("[CLS]")
        self.sep_id = tokens.index("[SEP]")
        initializer = tf.lookup.TextFileInitializer(
            os.fspath(vocab_file), key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
        self.vocab_table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self.tokenizer = tf_text.BertTokenizer(self.vocab_table, token_out_type=tf.int64,
                                               lower_case=lowercase, unknown_token="[UNK]")

    def __call__(self, text_a, text_b=None):
        segments = [self.tokenizer.tokenize(text).merge_dims(-2, -1)
                    for text in ([text_a] if text_b is None else [text_a, text_b])]
        budget = self.max_seq_length - len(segments) - 1
        segments = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        ids, segment_ids = tf_text.combine_segments(
            segments, start_of_sequence_id=self.cls_id, end_of_segment_id=self.sep_id)
        ids, mask = tf_text.pad_model_inputs(ids, self.max_seq_length)
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, self.max_seq_length)
        return {"token_ids": tf.cast(ids, tf.int32), "segment_ids": tf.cast(segment_ids, tf.int32),
                "padding_mask": tf.cast(mask, tf.bool)}


def _next_version(export_dir):
    versions = [int(name) for name in os.listdir(export_dir) if name.isdigit()] \
        if os.path.isdir(export_dir) else []
    return max(versions, default=0) + 1


def export_saved_model(model, export_dir, vocab_file, max_seq_length, lowercase=True,
                       version=None, label_names=None):
    """Exports `model` to `export_dir/<version>/` for TF Serving and `tf.saved_model.load`.

    Signatures:
    - `serving_default`: `token_ids`, `segment_ids` (int32) and `padding_mask` (bool), each
      `[batch, seq]` → `logits` and `probabilities` (a classifier) or `score` (a one-output
      regressor, STS-B).
    - `predict_text`: `text` (string `[batch]`) → the same outputs, tokenized in the graph.
    - `predict_text_pair`: `text_a`, `text_b` (string `[batch]`) → the same outputs.

    Args:
        model: a dense, pruning or compact model (a `PruningModel` exports its network, i.e.
            the deterministic mask; compact it first for speed).
        export_dir: the model base path; the version folder is created inside it.
        vocab_file: the checkpoint's `vocab.txt` (copied into the SavedModel's assets).
        max_seq_length: sequence length the text signatures pad to.
        lowercase: lowercase the text (uncased checkpoints).
        version: integer version folder; default one past the highest present.
        label_names: optional class names, recorded in `assets.extra/keras_flop_export.json`.

    Returns:
        The path of the version folder. The SavedModel needs `tensorflow_text` imported to
        load the text signatures (the stock TF Serving binary links its ops); not keras_flop.

    Example:
    >>> export_saved_model(compact_model, "export", "vocab.txt", 128)    # doctest: +SKIP
    'export/1'
    """
    network = getattr(model, "network", model)
    version = _next_version(export_dir) if version is None else int(version)
    final = os.path.join(os.fspath(export_dir), str(version))
    if os.path.exists(final):
        raise ValueError(f"Export version folder {final} exists already.")
    encoder = TextEncoder(vocab_file, max_seq_length, lowercase=lowercase)
    regression = network.outputs[0].shape[-1] == 1

    def outputs(inputs):
        logits = tf.cast(network(inputs, training=False), tf.float32)
        if regression:
            return {"score": logits[:, 0]}
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    def from_ids(token_ids, segment_ids, padding_mask):
        return outputs({"token_ids": token_ids, "segment_ids": segment_ids,
                        "padding_mask": padding_mask})

    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.track(encoder)
    ids = [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
           tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
           tf.TensorSpec([None, None], tf.bool, name="padding_mask")]
    archive.add_endpoint(ID_SIGNATURE, from_ids, input_signature=ids)
    archive.add_endpoint(TEXT_SIGNATURE, lambda text: outputs(encoder(text)),
                         input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    archive.add_endpoint(TEXT_PAIR_SIGNATURE,
                         lambda text_a, text_b: outputs(encoder(text_a, text_b)),
                         input_signature=[tf.TensorSpec([None], tf.string, name="text_a"),
                                          tf.TensorSpec([None], tf.string, name="text_b")])
    temporary = final + ".tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    archive.write_out(temporary, verbose=False)
    os.makedirs(os.path.join(temporary, "assets.extra"), exist_ok=True)
    with open(os.path.join(temporary, "assets.extra", METADATA_FILE), "w") as f:
        json.dump({"max_seq_length": int(max_seq_length), "lowercase": bool(lowercase),
                   "regression": bool(regression), "label_names": label_names,
                   "signatures": [ID_SIGNATURE, TEXT_SIGNATURE, TEXT_PAIR_SIGNATURE]}, f,
                  indent=2)
    os.replace(temporary, final)
    return final
