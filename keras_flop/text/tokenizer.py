"""`BertTokenizer`: google-research/bert's text-to-WordPiece rules as TensorFlow ops.

The checkpoints were pre-trained with the original `tokenization.py`; a model only sees the
token ids it was trained on if it is fed text tokenized the same way. That tokenizer:
1. deletes NUL, U+FFFD and control characters (Unicode category C*, except tab, newline and
   carriage return, which are whitespace) and turns every whitespace character into a space;
2. surrounds each CJK ideograph with spaces;
3. for an uncased vocabulary lowercases with the plain Unicode lower-case mapping (no case
   folding: `ß` stays `ß`), decomposes to NFD and deletes the combining marks (category Mn),
   so `Café` becomes `cafe`;
4. splits on whitespace and around every punctuation character (ASCII symbols and category P*);
5. splits each word greedily into the longest WordPiece pieces of the vocabulary (`##`
   continuations); a word with no complete split, or longer than 100 characters, is `[UNK]`.

keras-hub's and TF Text's BERT tokenizers differ from it (no control-character deletion; case
folding maps `ß` to `ss`; keras-hub keeps accents when lowercasing), so this one module is the
single definition used by the `tf.data` pipelines and embedded in exported SavedModels. Only
TF and TF Text ops are used, all of which the stock TF Serving binary links.
"""

import os

import tensorflow as tf
import tensorflow_text as tf_text

# Longest word, in characters, that WordPiece splits; longer words are `[UNK]` (the original).
MAX_CHARS_PER_WORD = 100
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")

# The original's `_is_chinese_char` blocks: CJK ideographs, not Japanese kana or Hangul.
_CJK = ("\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2B73F}"
        "\\x{2B740}-\\x{2B81F}\\x{2B820}-\\x{2CEAF}\\x{F900}-\\x{FAFF}\\x{2F800}-\\x{2FA1F}")
# Whitespace as Python's `str.split` sees it after cleaning: space separators, line and
# paragraph separators, tab, newline, carriage return.
_WHITESPACE = r"[\p{Zs}\p{Zl}\p{Zp}\t\n\r]"
# Deleted: control, format, private-use and surrogate characters, and U+FFFD.
_DELETED = r"[\p{C}\x{FFFD}]"
# Punctuation: ASCII symbol ranges and Unicode category P*; each is a token of its own.
_PUNCTUATION = r"[!-/:-@\[-`{-~\p{P}]"


def read_vocabulary(path):
    """The tokens of a WordPiece `vocab.txt`, one a line; errors name the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Vocabulary file not found: {path}")
    with open(path, encoding="utf-8") as f:
        tokens = [line.rstrip("\r\n") for line in f]
    while tokens and not tokens[-1]:
        tokens.pop()
    if not tokens:
        raise ValueError(f"Vocabulary file {path} is empty.")
    return tokens


def vocabulary_is_uncased(tokens):
    """True when no ordinary token (not `[...]`) has an upper-case letter."""
    return not any(token[:1] != "[" and token != token.lower() for token in tokens)


class BertTokenizer(tf.Module):
    """Text to WordPiece ids exactly as google-research/bert's `FullTokenizer` does.

    Args:
        vocab_file: the checkpoint's `vocab.txt` (it becomes a SavedModel asset on export).
        lowercase: lowercase and strip accents (uncased checkpoints). `None` decides from the
            vocabulary: uncased vocabularies have no upper-case token.

    Calling it on a string tensor `[batch]` returns a `tf.RaggedTensor` of int32 ids
    `[batch, (tokens)]`; `normalize` returns the cleaned text and `words` the split words.

    Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> with open(path, "w") as f:
    ...     _ = f.write("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "cafe", "na", "##ive",
    ...                            "!"]) + "\\n")
    >>> tokenizer = BertTokenizer(path)
    >>> tokenizer(tf.constant(["Café\\tnaïve!"])).to_list()
    [[4, 5, 6, 7]]
    """

    packing = "bert"  # `[CLS] a [SEP] b [SEP]`, segment ids 0/1 (see `BertPreprocessor`)

    def __init__(self, vocab_file, lowercase=None):
        super().__init__(name="bert_tokenizer")
        self.vocab_file = os.fspath(vocab_file)
        self.vocabulary = read_vocabulary(self.vocab_file)
        missing = [token for token in SPECIAL_TOKENS if token not in self.vocabulary]
        if missing:
            raise ValueError(f"Vocabulary file {self.vocab_file} lacks the special token(s) "
                             f"{missing}; a BERT vocabulary has {list(SPECIAL_TOKENS)}.")
        if lowercase is None:
            lowercase = vocabulary_is_uncased(self.vocabulary)
        self.lowercase = bool(lowercase)
        index = {token: i for i, token in enumerate(self.vocabulary)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id = (index[t] for t in SPECIAL_TOKENS)
        # A table over the file, not over Python constants: the file becomes an asset.
        initializer = tf.lookup.TextFileInitializer(
            self.vocab_file, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
        self.vocab_table = tf.lookup.StaticHashTable(initializer, default_value=-1)
        self._wordpiece = tf_text.WordpieceTokenizer(
            self.vocab_table, suffix_indicator="##", unknown_token="[UNK]",
            token_out_type=tf.int64,
            # Byte limit high enough for any word of MAX_CHARS_PER_WORD characters; the
            # character limit itself is applied in `__call__`.
            max_bytes_per_word=4 * MAX_CHARS_PER_WORD)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def token_to_id(self, token):
        return self.vocabulary.index(token)

    def normalize(self, text):
        """Cleaned text (steps 1-3 of the module docstring), string tensor of `text`'s shape."""
        text = tf.strings.regex_replace(text, _WHITESPACE, " ")
        text = tf.strings.regex_replace(text, _DELETED, "")
        text = tf.strings.regex_replace(text, f"([{_CJK}])", r" \1 ")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
            text = tf_text.normalize_utf8(text, "NFD")
            text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        return text

    def words(self, text):
        """The words and punctuation marks of `text` `[batch]`: ragged `[batch, (words)]`."""
        return tf_text.regex_split(self.normalize(text), delim_regex_pattern=f" +|{_PUNCTUATION}",
                                   keep_delim_regex_pattern=_PUNCTUATION)

    # Plain TF and TF Text ops: nothing for autograph to convert (converting them, as
    # `Dataset.map` and `tf.function` do by default, multiplied the time to trace).
    @tf.autograph.experimental.do_not_convert
    def __call__(self, text):
        words = self.words(tf.convert_to_tensor(text, tf.string))
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        words = words.with_flat_values(tf.where(too_long, "[UNK]", words.flat_values))
        ids = self._wordpiece.tokenize(words).merge_dims(-2, -1)
        return tf.cast(ids, tf.int32)
