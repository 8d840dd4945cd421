"""load_checkpoint: a TF1 checkpoint, a Hugging Face directory or a keras-hub preset, told
apart by the files present; errors say what was found and what is expected."""

import dataclasses
import json
import os
import shutil

import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_flop

from keras_flop.checkpoints.detect import describe_checkpoint, detect_checkpoint, load_checkpoint
from tf1_bert import (random_weights, reference_logits, tf1_shapes, write_hf_checkpoint,
                      write_tf1_checkpoint)

CONFIG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=32, hidden_act="gelu_new", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=16, type_vocab_size=2,
              initializer_range=0.02)
TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
BATCH = {"token_ids": np.array([[2, 7, 9, 3, 0], [2, 30, 3, 11, 3]], "int32"),
         "segment_ids": np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]], "int32"),
         "padding_mask": np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)}


def _reference(weights):
    return reference_logits(weights, dict(CONFIG, hidden_act="gelu"), BATCH["token_ids"],
                            BATCH["segment_ids"], BATCH["padding_mask"])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    tf1_weights = random_weights(tf1_shapes(CONFIG, num_labels=2))
    write_tf1_checkpoint(root / "tf1", dict(CONFIG, hidden_act="gelu"), tf1_weights)
    hf_weights = random_weights(tf1_shapes(CONFIG, num_labels=3), seed=1)
    write_hf_checkpoint(root / "hf", CONFIG, hf_weights, vocab=TOKENS)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TOKENS), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16)
    backbone.save_to_preset(root / "hub")
    keras_hub.models.BertTokenizer(vocabulary=TOKENS).save_to_preset(root / "hub")
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=TOKENS)
    classifier = keras_hub.models.BertTextClassifier(
        backbone, num_classes=3,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(tokenizer,
                                                                     sequence_length=8))
    classifier.save_to_preset(root / "hub_classifier")
    return root, {"tf1": tf1_weights, "hf": hf_weights, "backbone": backbone,
                  "classifier": classifier}


def test_each_kind_is_told_from_its_files_and_loads(checkpoints):
    root, made = checkpoints
    tf1 = describe_checkpoint(root / "tf1")
    assert (tf1.kind, tf1.fine_tuned, tf1.num_labels) == ("tf1", True, 2)
    model, vocab, fine_tuned = load_checkpoint(root / "tf1")
    np.testing.assert_allclose(model(BATCH), _reference(made["tf1"]), atol=1e-4)
    assert vocab == str(root / "tf1" / "vocab.txt") and fine_tuned
    assert detect_checkpoint(root / "tf1" / "bert_model.ckpt") == \
        ("tf1", str(root / "tf1" / "bert_model.ckpt"))

    hf = describe_checkpoint(root / "hf")
    assert (hf.kind, hf.fine_tuned, hf.config.hidden_act) == ("hugging_face", True, "gelu")
    model, vocab, fine_tuned = load_checkpoint(root / "hf", num_labels=3)
    np.testing.assert_allclose(model(BATCH), _reference(made["hf"]), atol=1e-4)
    assert vocab == str(root / "hf" / "vocab.txt") and fine_tuned

    hub = describe_checkpoint(root / "hub")
    assert (hub.kind, hub.fine_tuned, hub.config.vocab_size) == ("keras_hub", False, 40)
    model, vocab, fine_tuned = load_checkpoint(root / "hub", num_labels=4)
    assert model.num_labels == 4 and not fine_tuned
    assert vocab == str(root / "hub" / "assets" / "tokenizer" / "vocabulary.txt")
    pooled = made["backbone"]({**BATCH, "padding_mask": BATCH["padding_mask"].astype("int32")})
    import keras
    ours = keras.Model(model.inputs, model.get_layer("pooler").output)(BATCH)
    np.testing.assert_allclose(ours, pooled["pooled_output"], atol=1e-5)

    model, _, fine_tuned = load_checkpoint(root / "hub_classifier")
    assert fine_tuned and model.num_labels == 3
    np.testing.assert_allclose(model(BATCH), made["classifier"](
        {**BATCH, "padding_mask": BATCH["padding_mask"].astype("int32")}), atol=1e-5)


def test_a_run_config_may_change_dropout_only(checkpoints):
    root, _ = checkpoints
    checkpoint = describe_checkpoint(root / "hf")
    config = dataclasses.replace(checkpoint.config, hidden_dropout_prob=0.3)
    model, _, _ = checkpoint.load(num_labels=3, config=config)
    assert model.bert_config.hidden_dropout_prob == 0.3
    with pytest.raises(ValueError, match=r"intermediate_size=64 \(the checkpoint has 32\)"):
        checkpoint.load(config=dataclasses.replace(config, intermediate_size=64))


def _copy(root, name, target):
    shutil.copytree(root / name, target)
    return target


@pytest.mark.parametrize("case, message", [
    ("empty", "holds no BERT checkpoint (found nothing); expected one of: a TF1 checkpoint "
              "(bert_model.ckpt.index and .data-*, bert_config.json, vocab.txt); a Hugging Face "
              "BERT-family directory (config.json, model.safetensors, vocab.txt or a "
              "RoBERTa/XLM-R tokenizer file); or a keras-hub preset"),
    ("other files", "holds no BERT checkpoint (found notes.txt, weights.bin)"),
    ("missing", "does not exist; expected one of: a TF1 checkpoint"),
    ("hf without vocab", "is a Hugging Face bert checkpoint, whose tokenizer is vocab.txt, "
                         "but it holds no tokenizer file"),
    ("hf without weights", "Weights not found"),
    ("hf with a config file", "applies to TF1 checkpoints only"),
    ("hf head of 3 for 2 labels", "a 3-label head, but num_labels=2 was asked"),
    ("hub without vocabulary", "tokenizer/vocabulary.txt (a keras-hub preset directory keeps"),
    ("hub without weights", "looks like a keras-hub preset but has no model.weights.h5"),
    ("hub classifier of 3 for 2 labels", "a 3-label head, but num_labels=2 was asked"),
])
def test_errors_name_what_was_found_and_what_is_expected(checkpoints, tmp_path, case, message):
    root, _ = checkpoints
    path, kwargs, num_labels = tmp_path / "ckpt", {}, None
    if case == "empty":
        path.mkdir()
    elif case == "other files":
        path.mkdir()
        (path / "notes.txt").write_text("x")
        (path / "weights.bin").write_text("x")
    elif case.startswith("hf"):
        _copy(root, "hf", path)
        if case == "hf without vocab":
            (path / "vocab.txt").unlink()
        elif case == "hf without weights":
            (path / "model.safetensors").unlink()
        elif case == "hf with a config file":
            kwargs["config_file"] = str(path / "config.json")
        else:
            num_labels = 2
    elif case.startswith("hub"):
        _copy(root, "hub_classifier" if "classifier" in case else "hub", path)
        if case == "hub without vocabulary":
            shutil.rmtree(path / "assets")
        elif case == "hub without weights":
            (path / "model.weights.h5").unlink()
        else:
            num_labels = 2
    with pytest.raises(ValueError) as error:
        load_checkpoint(path, num_labels=num_labels, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_a_hugging_face_config_json_is_not_taken_for_a_keras_hub_one(checkpoints, tmp_path):
    root, _ = checkpoints
    path = _copy(root, "hf", tmp_path / "hf")
    (path / "model.safetensors").unlink()
    assert detect_checkpoint(path)[0] == "hugging_face"
    assert json.loads((root / "hub" / "config.json").read_text())["class_name"] == \
        "BertBackbone"
    assert detect_checkpoint(root / "hub")[0] == "keras_hub"


def test_a_roberta_family_preset_reads_its_bpe_tokenizer(tmp_path):
    backbone = keras_hub.models.RobertaBackbone(vocabulary_size=40, num_layers=1, num_heads=2,
                                                hidden_dim=16, intermediate_dim=32,
                                                max_sequence_length=16)
    backbone.save_to_preset(tmp_path / "roberta")
    with pytest.raises(ValueError, match="keeps its tokenizer in assets/tokenizer/vocabulary"
                                         ".json or assets/tokenizer/vocabulary.spm, and this"):
        describe_checkpoint(tmp_path / "roberta")
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "aa"]
    keras_hub.models.RobertaTokenizer(vocabulary={t: i for i, t in enumerate(tokens)},
                                      merges=["a a"]).save_to_preset(tmp_path / "roberta")
    checkpoint = describe_checkpoint(tmp_path / "roberta")
    assert checkpoint.vocab_file.endswith(os.path.join("tokenizer", "vocabulary.json"))
    preprocessor = keras_flop.BertPreprocessor(checkpoint.vocab_file, 8)
    assert preprocessor(tf.constant(["a"]), tf.constant(["aa"]))["token_ids"].numpy().tolist() \
        == [[0, 5, 2, 2, 6, 2, 1, 1]]


def test_an_xlm_r_preset_reads_its_sentencepiece_model(tmp_path):
    from hf_families import train_sentencepiece

    backbone = keras_hub.models.XLMRobertaBackbone(vocabulary_size=62, num_layers=1,
                                                   num_heads=2, hidden_dim=16,
                                                   intermediate_dim=32, max_sequence_length=16)
    backbone.save_to_preset(tmp_path / "xlmr")
    proto = train_sentencepiece(tmp_path / "sp.model", vocab_size=60)
    keras_hub.models.XLMRobertaTokenizer(proto=str(proto)).save_to_preset(tmp_path / "xlmr")
    checkpoint = describe_checkpoint(tmp_path / "xlmr")
    assert checkpoint.vocab_file.endswith(os.path.join("tokenizer", "vocabulary.spm"))
    hub = keras_hub.models.XLMRobertaTextClassifierPreprocessor(
        keras_hub.models.XLMRobertaTokenizer(proto=str(proto)), sequence_length=12)
    ours = keras_flop.BertPreprocessor(checkpoint.vocab_file, 12)
    texts = tf.constant(["the movie", "café 日本語"]), tf.constant(["a film", "jokes"])
    np.testing.assert_array_equal(ours(*texts)["token_ids"].numpy(),
                                  np.asarray(hub(x=texts)["token_ids"]))
