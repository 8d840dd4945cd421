"""`BertPreprocessor`: text to the model's three inputs, in `tf.data` and in exported models.

One object defines how text becomes `token_ids`, `segment_ids` and `padding_mask`: the
training and evaluation pipelines map it over their examples and `export_saved_model` embeds
it in the SavedModel's text signatures, so a served model sees the ids it was evaluated on.
"""

import tensorflow as tf

from keras_flop.text.subword import SubwordTokenizer, tokenizer_for_file
from keras_flop.text.tokenizer import BertTokenizer


class BertPreprocessor(tf.Module):
    """Tokenizes one or two texts and packs them the way the tokenizer's model family does,
    the longer segment truncated first so the whole fits `max_seq_length` (as the original
    `run_classifier.py`), padded with the tokenizer's padding id:

    - BERT and DistilBERT (a WordPiece `BertTokenizer`): `[CLS] a [SEP] (b [SEP])`, segment
      ids 0/1, padded with `[PAD]`;
    - RoBERTa and XLM-R (a `keras_flop.text.subword.SubwordTokenizer`):
      `<s> a </s> (</s> b </s>)`, segment ids all 0 (the models have no token types), padded
      with `<pad>` (id 1).

    Args:
        tokenizer: a `keras_flop.BertTokenizer` or `SubwordTokenizer`, or the path of a
            tokenizer file (`vocab.txt`, whose casing then follows the vocabulary; a RoBERTa
            `vocab.json` with `merges.txt` beside it; an XLM-R `sentencepiece.bpe.model`).
        max_seq_length: longest packed sequence, special tokens included (>= 3).

    `__call__(text_a, text_b=None, pad_to_max_length=True)` takes string tensors `[batch]` and
    returns int32 `token_ids`, `segment_ids` and a bool `padding_mask`, each
    `[batch, max_seq_length]`, or `[batch, longest in the batch]` with
    `pad_to_max_length=False`. `pack` returns the unpadded ragged ids.

    Example:
    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> import keras_flop
    >>> vocab = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(vocab, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "charming",
    ...                            "journey", "the", "plot", "is", "thin", "."]))
    >>> preprocessor = keras_flop.BertPreprocessor(vocab, max_seq_length=8)
    >>> inputs = preprocessor(tf.constant(["A charming journey.", "the plot"]))
    >>> inputs["token_ids"].numpy()  # uncased vocabulary: lowercased, "." split off
    array([[ 2,  4,  5,  6, 11,  3,  0,  0],
           [ 2,  7,  8,  3,  0,  0,  0,  0]], dtype=int32)
    >>> inputs["padding_mask"].numpy().sum(axis=1)
    array([6, 4])
    >>> pair = preprocessor(tf.constant(["a charming journey ."]),
    ...                     tf.constant(["the plot is thin ."]))  # 4 + 5 tokens: cut to 3 + 2
    >>> pair["token_ids"].numpy()
    array([[2, 4, 5, 6, 3, 7, 8, 3]], dtype=int32)
    >>> pair["segment_ids"].numpy()
    array([[0, 0, 0, 0, 0, 1, 1, 1]], dtype=int32)
    """

    def __init__(self, tokenizer, max_seq_length):
        super().__init__(name="bert_preprocessor")
        if not isinstance(tokenizer, (BertTokenizer, SubwordTokenizer)):
            tokenizer = tokenizer_for_file(tokenizer)
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) \
                or max_seq_length < 3:
            raise ValueError(f"`max_seq_length` must be an integer >= 3 ([CLS], one token, "
                             f"[SEP]); got {max_seq_length!r}.")
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    # Plain TF ops with no tensor-dependent Python control flow: autograph has nothing to
    # convert, and converting (in `Dataset.map`, `tf.function`) tripled the time to trace.
    @tf.autograph.experimental.do_not_convert
    def pack(self, text_a, text_b=None):
        """Ragged `(token_ids, segment_ids)`, int32 `[batch, (length)]`, before padding.

        As `run_classifier.py`: a second text with no tokens is left out (no second `[SEP]`),
        and of two segments longer than `max_seq_length - 3` tokens together the longer one
        loses its last token until they fit (ties: the second). RoBERTa's packing keeps
        `max_seq_length - 4` and truncates as Hugging Face's fast tokenizers do
        (`longest_first`: the longer text keeps the odd token; ties, the second).

        Example:
        >>> import os, tempfile
        >>> import tensorflow as tf
        >>> import keras_flop
        >>> vocab = os.path.join(tempfile.mkdtemp(), "vocab.txt")
        >>> with open(vocab, "w") as f:
        ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "charming",
        ...                            "journey", "the", "plot", "is", "thin", "."]))
        >>> preprocessor = keras_flop.BertPreprocessor(vocab, max_seq_length=8)
        >>> token_ids, segment_ids = preprocessor.pack(tf.constant(["a journey", "the plot"]),
        ...                                            tf.constant(["is thin", ""]))
        >>> token_ids.to_list()  # an empty second text: no second [SEP]
        [[2, 4, 6, 3, 9, 10, 3], [2, 7, 8, 3]]
        >>> segment_ids.to_list()
        [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0]]
        """
        tokenizer = self.tokenizer
        # RoBERTa's pair separator is `</s></s>`: one more special token than BERT's `[SEP]`.
        extra = 1 if tokenizer.packing == "roberta" else 0
        a = tokenizer(text_a)
        b = tokenizer(text_b) if text_b is not None else a[:, :0]
        len_a, len_b = a.row_lengths(), b.row_lengths()
        budget = tf.where(len_b > 0, tf.constant(self.max_seq_length - 3 - extra, tf.int64),
                          tf.constant(self.max_seq_length - 2, tf.int64))
        # Of two long texts, one keeps half the budget, rounded up: the first text in
        # run_classifier.py; the longer text (ties: the second) in Hugging Face's fast
        # tokenizers, which RoBERTa's fine-tuning recipes use.
        half = budget // 2
        first_up = len_a > len_b if extra else tf.ones_like(len_a, tf.bool)
        half_a = tf.where(first_up, budget - half, half)
        a = _first(a, tf.minimum(len_a, tf.maximum(half_a, budget - len_b)))
        b = _first(b, tf.minimum(len_b, tf.maximum(budget - half_a, budget - len_a)))
        column = tf.RaggedTensor.from_tensor(tf.ones_like(len_a, tf.int32)[:, None])
        has_b = tf.cast(b.row_lengths() > 0, tf.int64)
        # Separators around the second text: `[SEP]` after it, and RoBERTa's `</s>` before.
        before_b = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(has_b) * extra], tokenizer.sep_id), has_b * extra)
        after_b = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(has_b)], tokenizer.sep_id), has_b)
        first = tf.concat([column * tokenizer.cls_id, a, column * tokenizer.sep_id], axis=1)
        second = tf.concat([before_b, b, after_b], axis=1)
        token_ids = tf.concat([first, second], axis=1)
        second_segment = tf.zeros_like(second) if extra else tf.ones_like(second)
        segment_ids = tf.concat([tf.zeros_like(first), second_segment], axis=1)
        return token_ids, segment_ids

    def traced_pack(self, pairs=False):
        """`pack` traced once, for string tensors `[batch]` (and a second text with
        `pairs`): every `tf.data` pipeline that maps it reuses the one trace instead of tracing
        the tokenizer again (seconds each time)."""
        traced = self.__dict__.setdefault("_traced_pack", {})  # not tracked, not exported
        if pairs not in traced:
            spec = tf.TensorSpec([None], tf.string)
            traced[pairs] = tf.function(self.pack, input_signature=[spec, spec] if pairs
                                        else [spec], autograph=False)
        return traced[pairs]

    @tf.autograph.experimental.do_not_convert
    def __call__(self, text_a, text_b=None, pad_to_max_length=True):
        token_ids, segment_ids = self.pack(text_a, text_b)
        length = self.max_seq_length if pad_to_max_length else None
        return pad(token_ids, segment_ids, length, self.tokenizer.pad_id)


def _first(ids, lengths):
    """The first `lengths[i]` ids of each row `i` of a ragged tensor."""
    return tf.ragged.boolean_mask(ids, tf.ragged.range(ids.row_lengths()) < lengths[:, None])


@tf.autograph.experimental.do_not_convert
def pad(token_ids, segment_ids, length=None, pad_id=0):
    """Ragged packed ids padded to `length` (default the longest row): the model's inputs.

    Example:
    >>> import tensorflow as tf
    >>> from keras_flop.text.preprocessor import pad
    >>> token_ids = tf.ragged.constant([[2, 4, 3], [2, 3]])
    >>> inputs = pad(token_ids, tf.zeros_like(token_ids), length=4)
    >>> inputs["token_ids"].numpy()
    array([[2, 4, 3, 0],
           [2, 3, 0, 0]], dtype=int32)
    >>> inputs["padding_mask"].numpy()
    array([[ True,  True,  True, False],
           [ True,  True, False, False]])
    """
    shape = [None, length]
    return {"token_ids": token_ids.to_tensor(pad_id, shape=shape),
            "segment_ids": segment_ids.to_tensor(0, shape=shape),
            "padding_mask": tf.ones_like(token_ids, tf.bool).to_tensor(False, shape=shape)}
