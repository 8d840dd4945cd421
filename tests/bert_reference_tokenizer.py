"""A plain-Python statement of google-research/bert's tokenization and packing, character by
character with `unicodedata`, as the reference the TensorFlow tokenizer is tested against.

`tokenization.py`: clean (drop NUL, U+FFFD and category C* except tab/newline/CR; whitespace
and category Zs become spaces), space out CJK ideographs, split on whitespace, then per word
(uncased) `lower()`, NFD and drop category Mn, split off punctuation, and WordPiece (greedy
longest match, `##` continuations, `[UNK]` for a word with no split or over 100 characters).
`run_classifier.py`: `[CLS] a [SEP] (b [SEP])`, a second text without tokens left out, the
longer segment popped first (ties: the second).
"""

import unicodedata

_CJK_BLOCKS = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def _whitespace(char):
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _control(char):
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _punctuation(char):
    code = ord(char)
    return (33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126
            or unicodedata.category(char).startswith("P"))


def _cjk(char):
    return any(low <= ord(char) <= high for low, high in _CJK_BLOCKS)


def basic_tokens(text, lowercase):
    cleaned = "".join(" " if _whitespace(c) else c for c in text
                      if ord(c) not in (0, 0xFFFD) and not _control(c))
    spaced = "".join(f" {c} " if _cjk(c) else c for c in cleaned)
    tokens = []
    for word in spaced.split():
        if lowercase:
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower())
                           if unicodedata.category(c) != "Mn")
        current = ""
        for char in word:
            if _punctuation(char):
                tokens += [current] if current else []
                tokens.append(char)
                current = ""
            else:
                current += char
        tokens += [current] if current else []
    return tokens


def wordpieces(word, vocab):
    if len(word) > 100:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        if end == start:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def tokenize(text, vocab, lowercase):
    return [piece for word in basic_tokens(text, lowercase) for piece in wordpieces(word, vocab)]


def encode(text_a, text_b, vocab, lowercase, max_seq_length):
    """`(token_ids, segment_ids)` of one example, unpadded, as `run_classifier.py` makes them."""
    index = {token: i for i, token in enumerate(vocab)}
    a = tokenize(text_a, index, lowercase)
    b = tokenize(text_b, index, lowercase) if text_b else []
    if b:
        while len(a) + len(b) > max_seq_length - 3:
            (a if len(a) > len(b) else b).pop()
    else:
        a = a[:max_seq_length - 2]
    tokens = ["[CLS]"] + a + ["[SEP]"] + (b + ["[SEP]"] if b else [])
    segments = [0] * (len(a) + 2) + [1] * (len(b) + 1 if b else 0)
    return [index[t] for t in tokens], segments
