"""One tokenizer from training to serving: the `tf.data` pipeline, the exported signatures and
google-research/bert's rules give the same ids on hard text."""

import random

import numpy as np
import pytest
import tensorflow as tf

import bert_reference_tokenizer as reference
import keras_flop
from keras_flop import (BertConfig, BertPreprocessor, BertTokenizer, build_bert_classifier,
                        glue)
from keras_flop.glue import batching
from keras_flop.glue.readers import Example

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "movie", "was", "great", "a", "film", "good", "bad", "plot", "fun", "is"]
random.seed(0)
LONG_TEXT = " ".join(random.choice(WORDS + ["Naïve", "CAFÉ", "!"]) for _ in range(2000))
HARD = [  # (text_a, text_b)
    ("Café naïve is good.", None),
    ("Straße and STRASSE, ΣΑΣ ΟΔΟΣ; İstanbul", None),
    ("日本語のテキスト 中文abc 한국어", None),
    ("emoji 😀👍🏽 fun ❤️", None),
    ("tab\there\x07bell\x00and\ufffdnul\u200bzero-width\xa0nbsp\u2028line", None),
    ("x" * 101 + " " + "y" * 100, None),
    ("‘curly’ “quotes” — dash… ¿qué? «ok»", None),
    (LONG_TEXT, None),
    ("", None),
    ("   \t\n ", None),
    ("The movie was GREAT!", ""),
    ("a good film", "\x07"),
    ("Ünïcödé", "résumé façade"),
    (LONG_TEXT, "Crème brûlée was fun"),
]


def _vocabulary(lowercase):
    """Words of the hard strings, some whole, some as a first piece plus a `##` piece, some
    absent, so that normalization, WordPiece and `[UNK]` are all exercised."""
    words = sorted({w for a, b in HARD for text in (a, b or "")
                    for w in reference.basic_tokens(text, lowercase)})
    vocab = SPECIAL + WORDS
    for i, word in enumerate(words):
        if i % 3 == 0 or len(word) == 1:
            vocab.append(word)
        elif i % 3 == 1 and len(word) > 2:
            vocab += [word[:2], "##" + word[2:]]
    return list(dict.fromkeys(vocab))


@pytest.fixture(params=[True, False], ids=["uncased", "cased"])
def vocab(request, tmp_path):
    lowercase = request.param
    tokens = _vocabulary(lowercase)
    if not lowercase:
        tokens.append("Cased")  # an upper-case token marks a cased vocabulary
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path, tokens, lowercase


def _reference_ids(tokens, lowercase, length):
    return [reference.encode(a, b, tokens, lowercase, length) for a, b in HARD]


def _pipeline_ids(preprocessor, pairs):
    """The ids the training pipeline feeds the model, one example a row, padding removed
    (single texts and pairs in datasets of their own, as GLUE tasks have them)."""
    singles = [(a, b) for a, b in pairs if b is None]
    if 0 < len(singles) < len(pairs):
        return _pipeline_ids(preprocessor, singles) + \
            _pipeline_ids(preprocessor, [(a, b) for a, b in pairs if b is not None])
    examples = [Example(str(i), a, b, "1") for i, (a, b) in enumerate(pairs)]
    tokenized = glue.tokenize_examples(examples, "sst2", preprocessor)
    rows = []  # batches in the examples' order; training batches are drawn from the same
    for features, _ in tokenized.dataset(batching.ordered_plan(tokenized.lengths, 4, False)):
        for ids, segments, mask in zip(features["token_ids"].numpy(),
                                       features["segment_ids"].numpy(),
                                       features["padding_mask"].numpy()):
            rows.append((ids[mask].tolist(), segments[mask].tolist()))
    return rows


def test_tokenizer_follows_the_original_rules(vocab):
    path, tokens, lowercase = vocab
    tokenizer = BertTokenizer(path)
    assert tokenizer.lowercase == lowercase
    texts = [a for a, _ in HARD]
    ids = tokenizer(tf.constant(texts)).to_list()
    index = {t: i for i, t in enumerate(tokens)}
    for text, row in zip(texts, ids):
        assert row == [index[t] for t in reference.tokenize(text, index, lowercase)], text


def test_hand_worked_normalization(vocab):
    path, _, lowercase = vocab
    words = BertTokenizer(path).words(tf.constant([
        "tab\there\x07bell", "Straße Café ΟΔΟΣ", "中文abc", "naïve!?"])).to_list()
    words = [[w.decode() for w in row] for row in words]
    # Tab is a space; a control character is deleted, not a word break (as the original).
    assert words[0] == ["tab", "herebell"]
    if lowercase:  # no case folding (ß stays), accents stripped, final sigma kept
        assert words[1] == ["straße", "cafe", "οδος"]
        assert words[3] == ["naive", "!", "?"]
    else:  # cased: case and accents kept
        assert words[1] == ["Straße", "Café", "ΟΔΟΣ"]
        assert words[3] == ["naïve", "!", "?"]
    assert words[2] == ["中", "文", "abc"]


def test_training_pipeline_packs_as_the_original(vocab):
    path, tokens, lowercase = vocab
    preprocessor = BertPreprocessor(path, max_seq_length=24)
    assert _pipeline_ids(preprocessor, HARD) == _reference_ids(tokens, lowercase, 24)


def test_export_tokenizes_as_the_training_pipeline(vocab, tmp_path):
    path, tokens, lowercase = vocab
    if not lowercase:
        pytest.skip("the export embeds the training preprocessor: one casing suffices")
    preprocessor = BertPreprocessor(path, max_seq_length=24)
    model = build_bert_classifier(BertConfig(
        vocab_size=len(tokens), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32))
    export = keras_flop.export_saved_model(model, tmp_path / "export",
                                           preprocessor=preprocessor)
    loaded = tf.saved_model.load(export)
    singles = [(a, None) for a, b in HARD if b is None]
    pairs = [(a, b) for a, b in HARD if b is not None]
    served = []
    for signature, rows, inputs in (
            ("tokenize_text", singles, {"text": tf.constant([a for a, _ in singles])}),
            ("tokenize_text_pair", pairs, {"text_a": tf.constant([a for a, _ in pairs]),
                                           "text_b": tf.constant([b for _, b in pairs])})):
        features = loaded.signatures[signature](**inputs)
        mask = features["padding_mask"].numpy()
        served += [(i[m].tolist(), s[m].tolist()) for i, s, m in
                   zip(features["token_ids"].numpy(), features["segment_ids"].numpy(), mask)]
        # The raw-text signature answers as the id signature does on those very ids.
        text_signature = "predict_text" if signature == "tokenize_text" else "predict_text_pair"
        np.testing.assert_allclose(loaded.signatures[text_signature](**inputs)["logits"],
                                   loaded.signatures["serving_default"](**features)["logits"],
                                   atol=1e-5)
    assert served == _pipeline_ids(preprocessor, singles + pairs)
    assert served == _reference_ids(tokens, lowercase, 24)[:len(singles)] + \
        [reference.encode(a, b, tokens, lowercase, 24) for a, b in pairs]


def test_agrees_with_hugging_face_bert_wordpiece(vocab):
    """Hugging Face's BERT tokenizer, configured like the original, splits the same way
    (but for final sigma: it lowercases `Σ` to `σ` everywhere, the original to `ς` at a
    word's end)."""
    tokenizers = pytest.importorskip("tokenizers")
    path, _, lowercase = vocab
    hf = tokenizers.BertWordPieceTokenizer(str(path), lowercase=lowercase,
                                           strip_accents=lowercase, clean_text=True,
                                           handle_chinese_chars=True)
    texts = [a for a, _ in HARD if "Σ" not in a]
    ours = BertTokenizer(path)(tf.constant(texts)).to_list()
    assert ours == [hf.encode(text, add_special_tokens=False).ids for text in texts]


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="Vocabulary file not found"):
        BertTokenizer(tmp_path / "missing.txt")
    (tmp_path / "bad.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[PAD\]'"):
        BertTokenizer(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        BertTokenizer(tmp_path / "empty.txt")
    (tmp_path / "ok.txt").write_text("\n".join(SPECIAL) + "\n")
    with pytest.raises(ValueError, match="max_seq_length` must be an integer >= 3"):
        BertPreprocessor(tmp_path / "ok.txt", 2)
