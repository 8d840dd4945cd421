"""Hugging Face RoBERTa, XLM-RoBERTa and DistilBERT directories: tiny `save_pretrained`-style
checkpoints written here (random weights under Hugging Face's names), loaded, and their logits
checked against a float64 numpy forward pass of each family as Hugging Face computes it."""

import logging

import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop.checkpoints.detect import describe_checkpoint
from hf_families import (DISTILBERT_CONFIG, FFN, HIDDEN, LAYERS, ROBERTA_CONFIG, VOCAB,
                         distilbert_names, distilbert_reference, random_hf_weights,
                         roberta_names, roberta_reference, train_sentencepiece,
                         write_bpe_vocabulary, write_hf_directory)


def _ids(pad, lengths=(9, 5, 3), seq=9, seed=3):
    """Right-padded token ids with no padding id inside the texts."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (len(lengths), seq))
    mask = np.arange(seq)[None] < np.array(lengths)[:, None]
    return np.where(mask, ids, pad).astype("int32"), mask


def _inputs(ids, mask):
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_roberta_classifier_logits_match_hugging_face(tmp_path, model_type):
    config = dict(ROBERTA_CONFIG, model_type=model_type)
    tensors = random_hf_weights(roberta_names(config, head=3))
    model = keras_flop.load_hf_checkpoint(write_hf_directory(tmp_path / "hf", config, tensors))
    loaded = model.bert_config
    assert (loaded.classifier_head, loaded.type_vocab_size, loaded.position_offset,
            loaded.layer_norm_epsilon, loaded.hidden_act, model.num_labels) == \
        ("roberta", 0, 2, 1e-5, "gelu_exact", 3)
    ids, mask = _ids(pad=1)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, config, ids), atol=1e-5)


def test_roberta_model_gets_a_fresh_head_and_keeps_its_encoder(tmp_path, caplog):
    config = dict(ROBERTA_CONFIG, architectures=["RobertaModel"])
    # `RobertaModel.save_pretrained` writes names without the prefix, and its pooler;
    # `RobertaForMaskedLM` adds an lm_head: neither is used by the classifier.
    tensors = random_hf_weights(roberta_names(config, head=None, prefix=""))
    tensors.update({"pooler.dense.weight": np.ones((HIDDEN, HIDDEN), np.float32),
                    "pooler.dense.bias": np.ones(HIDDEN, np.float32),
                    "lm_head.bias": np.ones(VOCAB, np.float32)})
    with caplog.at_level(logging.WARNING):
        model = keras_flop.load_hf_checkpoint(write_hf_directory(tmp_path / "hf", config, tensors),
                                              num_labels=4)
    assert "has no classifier head: initialized a fresh 4-label head (roberta's dense " \
        "layer and classifier)" in caplog.text
    assert "Ignored" not in caplog.text  # the pooler and lm_head are left out knowingly
    # The fresh head, put into the reference, gives the model's logits: the encoder is the
    # checkpoint's.
    pooler, classifier = model.get_layer("pooler"), model.get_layer("classifier")
    tensors.update({"classifier.dense.weight": np.asarray(pooler.kernel).T,
                    "classifier.dense.bias": np.asarray(pooler.bias),
                    "classifier.out_proj.weight": np.asarray(classifier.kernel).T,
                    "classifier.out_proj.bias": np.asarray(classifier.bias)})
    ids, mask = _ids(pad=1)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, config, ids, prefix=""), atol=1e-5)


def test_distilbert_classifier_logits_match_hugging_face(tmp_path):
    tensors = random_hf_weights(distilbert_names(DISTILBERT_CONFIG, head=2), seed=1)
    directory = write_hf_directory(tmp_path / "hf", DISTILBERT_CONFIG, tensors)
    model = keras_flop.load_hf_checkpoint(directory)
    loaded = model.bert_config
    assert (loaded.classifier_head, loaded.type_vocab_size, loaded.position_offset,
            loaded.layer_norm_epsilon, loaded.hidden_size, loaded.intermediate_size,
            loaded.hidden_dropout_prob) == ("distilbert", 0, 0, 1e-12, HIDDEN, FFN, 0.1)
    ids, mask = _ids(pad=0)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               distilbert_reference(tensors, DISTILBERT_CONFIG, ids, mask),
                               atol=1e-5)
    # The apps' loader reads it too: DistilBERT's vocab.txt is WordPiece.
    (directory / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(VOCAB - 4)]) + "\n")
    checkpoint = describe_checkpoint(directory)
    assert (checkpoint.kind, checkpoint.fine_tuned) == ("hugging_face", True)


def test_distilbert_model_gets_a_fresh_head(tmp_path, caplog):
    config = dict(DISTILBERT_CONFIG, architectures=["DistilBertModel"])
    tensors = random_hf_weights(distilbert_names(config, head=None), seed=2)
    tensors["distilbert.vocab_projector.bias"] = np.ones(VOCAB, np.float32)
    with caplog.at_level(logging.WARNING):
        model = keras_flop.load_hf_checkpoint(write_hf_directory(tmp_path / "hf", config, tensors))
    assert "fresh 2-label head (distilbert's dense layer and classifier)" in caplog.text
    assert "Ignored" not in caplog.text
    pooler, classifier = model.get_layer("pooler"), model.get_layer("classifier")
    tensors.update({"pre_classifier.weight": np.asarray(pooler.kernel).T,
                    "pre_classifier.bias": np.asarray(pooler.bias),
                    "classifier.weight": np.asarray(classifier.kernel).T,
                    "classifier.bias": np.asarray(classifier.bias)})
    ids, mask = _ids(pad=0, lengths=(4, 9, 6))
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               distilbert_reference(tensors, config, ids, mask), atol=1e-5)


def test_a_mapping_mistake_is_caught(tmp_path):
    """The reference is sensitive to the mapping: swapped key and query weights differ."""
    tensors = random_hf_weights(distilbert_names(DISTILBERT_CONFIG, head=2), seed=1)
    swapped = dict(tensors)
    for n in range(LAYERS):
        p = f"distilbert.transformer.layer.{n}.attention."
        swapped[p + "q_lin.weight"], swapped[p + "k_lin.weight"] = \
            tensors[p + "k_lin.weight"], tensors[p + "q_lin.weight"]
    model = keras_flop.load_hf_checkpoint(write_hf_directory(tmp_path / "hf", DISTILBERT_CONFIG,
                                                             swapped))
    ids, mask = _ids(pad=0)
    difference = np.abs(np.asarray(model(_inputs(ids, mask)))
                        - distilbert_reference(tensors, DISTILBERT_CONFIG, ids, mask)).max()
    assert difference > 1e-3


@pytest.mark.parametrize("model_type, why", [
    ("albert", "ALBERT shares one encoder layer's weights"),
    ("deberta-v2", "disentangled relative attention"),
    ("gpt2", None),
])
def test_unsupported_model_types_say_what_is(tmp_path, model_type, why):
    config = dict(ROBERTA_CONFIG, model_type=model_type)
    directory = write_hf_directory(tmp_path / "hf", config,
                                   random_hf_weights(roberta_names(config, head=2)))
    with pytest.raises(ValueError) as error:
        keras_flop.load_hf_checkpoint(directory)
    message = str(error.value)
    assert "\n" not in message and f"model_type={model_type!r} is not supported" in message
    assert "supported: bert, roberta, xlm-roberta, distilbert." in message
    assert why is None or why in message


def test_roberta_position_embedding_type_other_than_absolute_is_refused(tmp_path):
    config = dict(ROBERTA_CONFIG, position_embedding_type="relative_key")
    directory = write_hf_directory(tmp_path / "hf", config,
                                   random_hf_weights(roberta_names(config, head=2)))
    with pytest.raises(ValueError, match="position_embedding_type='relative_key' is not"):
        keras_flop.load_hf_checkpoint(directory)


def test_a_roberta_directory_is_described_with_its_bpe_tokenizer(tmp_path):
    tensors = random_hf_weights(roberta_names(ROBERTA_CONFIG, head=2))
    directory = write_hf_directory(tmp_path / "hf", ROBERTA_CONFIG, tensors)
    write_bpe_vocabulary(directory)
    checkpoint = describe_checkpoint(directory)
    assert (checkpoint.kind, checkpoint.fine_tuned, checkpoint.config.classifier_head) == \
        ("hugging_face", True, "roberta")
    assert checkpoint.vocab_file == str(directory / "vocab.json")
    model, vocab_file, _ = checkpoint.load()
    ids, mask = _ids(pad=1)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, ROBERTA_CONFIG, ids), atol=1e-5)


@pytest.mark.parametrize("model_type, present, vocab_file, message", [
    ("roberta", "vocab.txt", None, "is a Hugging Face roberta checkpoint, whose tokenizer is "
     "vocab.json, but it holds vocab.txt only: pass the tokenizer file"),
    ("xlm-roberta", "vocab.json", None, "is a Hugging Face xlm-roberta checkpoint, whose "
     "tokenizer is sentencepiece.bpe.model, but it holds vocab.json only"),
    ("roberta", "vocab.json", "vocab.txt", "is a WordPiece vocab.txt, but a roberta-family "
     "model was trained on text tokenized with a byte-level BPE vocab.json"),
    ("distilbert", "vocab.txt", "vocab.json", "is a byte-level BPE vocab.json with merges.txt "
     "beside it, but a distilbert-family model was trained on text tokenized with a WordPiece"),
])
def test_a_tokenizer_of_another_family_is_refused(tmp_path, model_type, present, vocab_file,
                                                  message):
    config = DISTILBERT_CONFIG if model_type == "distilbert" else \
        dict(ROBERTA_CONFIG, model_type=model_type)
    names = distilbert_names(config, 2) if model_type == "distilbert" else \
        roberta_names(config, 2)
    directory = write_hf_directory(tmp_path / "hf", config, random_hf_weights(names))
    write_bpe_vocabulary(directory)
    (directory / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n")
    for name in {"vocab.json", "vocab.txt"} - {present, vocab_file}:
        (directory / name).unlink()
    with pytest.raises(ValueError) as error:
        describe_checkpoint(directory, vocab_file=vocab_file and directory / vocab_file)
    assert "\n" not in str(error.value) and message in str(error.value)


def test_an_xlm_r_directory_is_described_with_its_sentencepiece_model(tmp_path):
    config = dict(ROBERTA_CONFIG, model_type="xlm-roberta", vocab_size=62)
    tensors = random_hf_weights(roberta_names(config, head=2))
    directory = write_hf_directory(tmp_path / "hf", config, tensors)
    train_sentencepiece(directory / "sentencepiece.bpe.model", vocab_size=60)
    checkpoint = describe_checkpoint(directory)
    assert checkpoint.vocab_file == str(directory / "sentencepiece.bpe.model")
    inputs = keras_flop.BertPreprocessor(checkpoint.vocab_file, 16)(
        tf.constant(["the movie", "jokes"]), tf.constant(["a film", "fall flat"]))
    ids, mask = inputs["token_ids"].numpy(), inputs["padding_mask"].numpy()
    assert ids[0, 0] == 0 and (ids[0] == 2).sum() == 3  # <s> a </s></s> b </s>
    assert (ids[~mask] == 1).all()  # padded with <pad>, as the reference's mask assumes
    model, _, _ = checkpoint.load()
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, config, ids), atol=1e-5)
    # 62 embedding rows for 60 pieces: fairseq's offset and <mask> make 62 ids; fewer rows
    # would leave ids without an embedding.
    small = dict(config, vocab_size=61)
    write_hf_directory(tmp_path / "small", small, random_hf_weights(roberta_names(small, 2)))
    train_sentencepiece(tmp_path / "small" / "sentencepiece.bpe.model", vocab_size=60)
    with pytest.raises(ValueError, match="has 62 tokens but the BERT config says vocab_size=61"):
        describe_checkpoint(tmp_path / "small")
