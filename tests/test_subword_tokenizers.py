"""RoBERTa's byte-level BPE and XLM-R's SentencePiece, as the pipelines and exports run them,
against reference tokenizers: Hugging Face's `tokenizers` (BPE and RoBERTa's packing and
truncation) and `sentencepiece` with fairseq's id layout (XLM-R), on vocabularies trained here
on a small corpus of hard strings."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from hf_families import fairseq_ids
from keras_flop import BertConfig, BertPreprocessor
from keras_flop.text.subword import (SubwordTokenizer, check_tokenizer_for, tokenizer_files,
                                     tokenizer_for_file)

CORPUS = [
    "The café served crème brûlée to naïve guests.", "Hello, world! It's 3.14 o'clock?",
    "日本語のテキストと中文文本。", "emoji 😀👍🏽 party 🎉 time", "  leading spaces and\ttabs\nnew",
    "Don't stop; we'll see—they're here...", "Ünïcödé ÀÉÎÕÜ ß straße", "numbers 12345 67890",
    "a film, a movie, a plot: not bad!", "Über-naïve coöperation «quotes» “curly”",
]
# Accents, emoji (with a skin-tone modifier), CJK, leading/trailing/double spaces,
# punctuation runs, non-breaking space, ligature, characters the corpus never had.
HARD = ["Héllo wörld!", " leading space", "two  spaces", "trailing ", "emoji 😀👍🏽!",
        "日本語 中文", "It's O'Neil's café—naïve...", "tab\there\nnewline", "", "ß ẞ ﬁ",
        "a\u00a0b", "x   y  ", "Zebra ψυχή ქართული", "«¿¡!?»", "crème brûlée 🎉🎉"]
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """A byte-level BPE trained with Hugging Face's trainer, RoBERTa's special tokens first;
    the same tokenizer with RoBERTa's post-processor (the reference); and ours, made once
    (tracing keras-hub's BPE takes seconds)."""
    from tokenizers import ByteLevelBPETokenizer, processors

    directory = tmp_path_factory.mktemp("roberta")
    reference = ByteLevelBPETokenizer()
    reference.train_from_iterator(CORPUS * 5, vocab_size=420, min_frequency=1,
                                  special_tokens=SPECIALS)
    reference.save_model(str(directory))
    reference.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return directory / "vocab.json", reference, SubwordTokenizer(directory / "vocab.json")


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    """A SentencePiece BPE model trained with sentencepiece's trainer, as XLM-R's is."""
    import sentencepiece as spm

    directory = tmp_path_factory.mktemp("xlmr")
    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 5), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "sp"),
                                   vocab_size=150, model_type="bpe", character_coverage=1.0,
                                   minloglevel=2)
    path = directory / "sentencepiece.bpe.model"
    os.replace(directory / "sp.model", path)
    return path, spm.SentencePieceProcessor(model_file=str(path))


def test_bpe_ids_match_hugging_face_tokenizers(bpe):
    _, reference, tokenizer = bpe
    ours = tokenizer(tf.constant(HARD)).to_list()
    for text, ids in zip(HARD, ours):
        assert ids == reference.encode(text, add_special_tokens=False).ids, text
    assert (tokenizer.cls_id, tokenizer.pad_id, tokenizer.sep_id) == (0, 1, 2)
    assert tokenizer.vocabulary_size == reference.get_vocab_size()


def test_sentencepiece_ids_match_xlm_r_layout(sentencepiece_model):
    path, processor = sentencepiece_model
    tokenizer = SubwordTokenizer(path)
    ours = tokenizer(tf.constant(HARD)).to_list()
    for text, ids in zip(HARD, ours):
        assert ids == fairseq_ids(processor, text), text
    assert any(3 in ids for ids in ours)  # some character was unknown: <unk> is 3
    assert (tokenizer.cls_id, tokenizer.pad_id, tokenizer.sep_id) == (0, 1, 2)


@pytest.mark.parametrize("max_seq_length", [7, 10, 64])
def test_roberta_packing_and_truncation_match_hugging_face(bpe, max_seq_length):
    _, reference, tokenizer = bpe
    preprocessor = BertPreprocessor(tokenizer, max_seq_length)
    firsts = HARD[:-1] + ["The café served crème brûlée."]
    seconds = HARD[1:] + [""]
    pair = preprocessor(tf.constant(firsts), tf.constant(seconds), pad_to_max_length=False)
    single = preprocessor(tf.constant(firsts), pad_to_max_length=False)
    assert not pair["segment_ids"].numpy().any()  # RoBERTa has no token types
    reference.enable_truncation(max_seq_length, strategy="longest_first")
    try:
        for row, (a, b) in enumerate(zip(firsts, seconds)):
            # A second text with no tokens is left out, as for BERT.
            expected = reference.encode(a, b).ids if b else reference.encode(a).ids
            mask = pair["padding_mask"][row].numpy()
            assert pair["token_ids"][row].numpy()[mask].tolist() == expected, (a, b)
            assert (pair["token_ids"][row].numpy()[~mask] == 1).all()  # padded with <pad>
            assert single["token_ids"][row].numpy()[single["padding_mask"][row].numpy()
                                                    ].tolist() == reference.encode(a).ids
    finally:
        reference.no_truncation()


def test_xlm_r_packing(sentencepiece_model):
    path, processor = sentencepiece_model
    preprocessor = BertPreprocessor(str(path), 32)
    inputs = preprocessor(tf.constant(["Héllo wörld!"]), tf.constant(["日本語"]))
    a, b = fairseq_ids(processor, "Héllo wörld!"), fairseq_ids(processor, "日本語")
    expected = [0] + a + [2, 2] + b + [2]
    assert inputs["token_ids"].numpy()[0].tolist() == expected + [1] * (32 - len(expected))
    assert inputs["padding_mask"].numpy()[0].sum() == len(expected)


def test_glue_pipeline_feeds_the_family_ids(bpe):
    from keras_flop.glue import Example, make_dataset

    _, reference, tokenizer = bpe
    examples = [Example(str(i), a, b, "entailment") for i, (a, b) in
                enumerate(zip(HARD[:6], HARD[6:12]))]
    preprocessor = BertPreprocessor(tokenizer, 32)
    seen = []
    for features, _ in make_dataset(examples, "rte", preprocessor, batch_size=4):
        for ids, mask in zip(features["token_ids"].numpy(), features["padding_mask"].numpy()):
            assert (ids[~mask] == 1).all()
            seen.append(ids[mask].tolist())
    expected = [reference.encode(e.text_a, e.text_b).ids if e.text_b
                else reference.encode(e.text_a).ids for e in examples]
    assert sorted(seen) == sorted(expected)


def test_tokenizer_files_and_mismatches(bpe, tmp_path):
    vocab_file = bpe[0]
    roberta = BertConfig(vocab_size=420, classifier_head="roberta", type_vocab_size=0)
    check_tokenizer_for(roberta, vocab_file)
    with pytest.raises(ValueError) as error:
        check_tokenizer_for(roberta, tmp_path / "vocab.txt")
    assert "\n" not in str(error.value) and "vocab.json with merges.txt" in str(error.value)
    with pytest.raises(ValueError, match="distilbert-family model was trained on text "
                                         "tokenized with a WordPiece vocab.txt"):
        check_tokenizer_for(BertConfig(vocab_size=10, classifier_head="distilbert"), vocab_file)
    assert tokenizer_files(vocab_file)[1] == str(vocab_file.parent / "merges.txt")
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0}))
    with pytest.raises(ValueError, match="Tokenizer file not found: .*merges.txt"):
        tokenizer_for_file(tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(ValueError, match="not a usable a byte-level BPE"):
        tokenizer_for_file(tmp_path / "vocab.json")  # no RoBERTa special tokens
    with pytest.raises(ValueError, match="keeps case as it was trained"):
        tokenizer_for_file(vocab_file, lowercase=True)


@pytest.mark.process  # writing keras-hub's BPE graph into a SavedModel takes 20 to 40 s
@pytest.mark.parametrize("kind", ["bpe", "sentencepiece_model"])
def test_exported_text_signatures_use_the_family_tokenizer(request, tmp_path, kind):
    import keras_flop

    if kind == "bpe":
        vocab_file, reference, _ = request.getfixturevalue("bpe")
        size = reference.get_vocab_size()

        def expected(text):
            return reference.encode(text).ids
    else:
        vocab_file, processor = request.getfixturevalue("sentencepiece_model")
        size = processor.get_piece_size() + 2  # fairseq's offset and <mask>

        def expected(text):
            return [0] + fairseq_ids(processor, text) + [2]
    config = BertConfig(vocab_size=size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, type_vocab_size=0,
                        max_position_embeddings=40, position_offset=2,
                        layer_norm_epsilon=1e-5, classifier_head="roberta")
    model = keras_flop.build_bert_classifier(config, num_labels=2)
    path = keras_flop.export_saved_model(model, tmp_path / "export", vocab_file, 24)
    loaded = tf.saved_model.load(path)
    texts = ["emoji 😀👍🏽!", " It's café—naïve..."]
    tokens = loaded.signatures["tokenize_text"](text=tf.constant(texts))
    for row, text in enumerate(texts):
        mask = tokens["padding_mask"][row].numpy()
        assert tokens["token_ids"][row].numpy()[mask].tolist() == expected(text)
    logits = loaded.signatures["predict_text"](text=tf.constant(texts))["logits"].numpy()
    np.testing.assert_allclose(logits, np.asarray(model(tokens)), atol=1e-5)
    with open(os.path.join(path, "assets.extra", "keras_flop_export.json")) as f:
        assert json.load(f)["packing"] == "roberta"


@pytest.mark.parametrize("kind", ["bpe", "sentencepiece_model"])
def test_a_keras_hub_roberta_family_preprocessor_becomes_ours(request, tmp_path, kind):
    """`preprocessor_from_keras_hub` writes a keras-hub RoBERTa or XLM-R tokenizer's files out
    (the apps' `--keras_hub_model`), and packs as keras-hub's own preprocessor does."""
    import keras_hub

    from keras_flop.checkpoints.keras_hub import preprocessor_from_keras_hub

    path = request.getfixturevalue(kind)[0]
    if kind == "bpe":
        tokenizer = keras_hub.models.RobertaTokenizer(
            vocabulary=str(path), merges=str(path.parent / "merges.txt"))
        hub = keras_hub.models.RobertaTextClassifierPreprocessor(tokenizer, sequence_length=40)
    else:
        tokenizer = keras_hub.models.XLMRobertaTokenizer(proto=str(path))
        hub = keras_hub.models.XLMRobertaTextClassifierPreprocessor(
            tokenizer, sequence_length=40)
    ours = preprocessor_from_keras_hub(hub, tmp_path / "out" / "vocab.txt")
    written = {"bpe": ["merges.txt", "vocab.json"],
               "sentencepiece_model": ["sentencepiece.bpe.model"]}[kind]
    assert sorted(os.listdir(tmp_path / "out")) == written
    assert ours.tokenizer.vocab_file == str(tmp_path / "out" / written[-1])
    a, b = tf.constant(HARD[:4]), tf.constant(HARD[4:8])
    for texts in ((a,), (a, b)):
        expected = hub(x=texts)
        got = ours(*texts)
        for key in ("token_ids", "padding_mask"):
            np.testing.assert_array_equal(np.asarray(got[key]).astype("int32"),
                                          np.asarray(expected[key]).astype("int32"), key)
