"""from_keras_hub: keras-hub BERT, ELECTRA, RoBERTa, XLM-RoBERTa and DistilBERT models become
BertClassifiers, logit for logit."""

import os
import shutil
import zipfile

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from conftest import WORDS, shared_data_dir
from keras_flop.checkpoints.keras_hub import preprocessor_from_keras_hub

SMALL = dict(num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
             max_sequence_length=16)


def _randomize(model, seed=0):
    """Random values in every weight: biases, layer norms and all, so a wrong mapping shows."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        weight.assign(rng.normal(0.0, 0.2, weight.shape).astype("float32"))
    return model


def _batch(vocab, batch=3, seq=8, seed=1):
    rng = np.random.default_rng(seed)
    mask = np.arange(seq)[None, :] < np.array([seq, 5, 3])[:batch, None]
    return {"token_ids": (rng.integers(1, vocab, (batch, seq)) * mask).astype("int32"),
            "segment_ids": ((np.arange(seq)[None, :] >= 3) * mask).astype("int32"),
            "padding_mask": mask}


def _hub_outputs(model, batch):
    return model({**batch, "padding_mask": batch["padding_mask"].astype("int32")})


def _pooled(model, batch):
    """A BertClassifier's pooled [CLS] output (what a keras-hub backbone returns)."""
    return keras.Model(model.inputs, model.get_layer("pooler").output)(batch)


def _bert_classifier(num_classes=2):
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(WORDS), **SMALL)
    return _randomize(keras_hub.models.BertTextClassifier(backbone, num_classes=num_classes,
                                                          preprocessor=None))


def test_bert_text_classifier_logits_are_equal():
    hub = _bert_classifier(num_classes=3)
    model = keras_flop.from_keras_hub(hub)
    batch = _batch(len(WORDS))
    assert isinstance(model, keras_flop.BertClassifier) and model.num_labels == 3
    config = model.bert_config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size, config.hidden_act, config.max_position_embeddings) == \
        (32, 2, 2, 64, "gelu", 16)
    np.testing.assert_allclose(model(batch), _hub_outputs(hub, batch), atol=1e-5)
    # The converted model prunes like any other: factorized with open gates, then compacted.
    pruning_model = keras_flop.factorize(model, structure="heads+ffn")
    np.testing.assert_allclose(pruning_model(batch, training=False), model(batch), atol=1e-4)
    compact = keras_flop.compact(pruning_model)
    np.testing.assert_allclose(compact(batch), model(batch), atol=1e-4)


def test_saved_keras_hub_classifier_loads_from_its_path(tmp_path):
    hub = _bert_classifier()
    path = tmp_path / "hub.keras"
    hub.save(path)
    model = keras_flop.from_keras_hub(str(path))
    batch = _batch(len(WORDS))
    np.testing.assert_allclose(model(batch), _hub_outputs(hub, batch), atol=1e-5)


def test_backbones_get_a_fresh_head_on_an_equal_encoder():
    bert = _randomize(keras_hub.models.BertBackbone(vocabulary_size=len(WORDS), **SMALL))
    electra = _randomize(keras_hub.models.ElectraBackbone(vocab_size=len(WORDS),
                                                          embedding_dim=32, **SMALL))
    batch = _batch(len(WORDS))
    for backbone in (bert, electra):
        model = keras_flop.from_keras_hub(backbone, num_labels=1)
        assert model.num_labels == 1
        np.testing.assert_allclose(_pooled(model, batch),
                                   _hub_outputs(backbone, batch)["pooled_output"], atol=1e-5)


FAMILIES = {
    "roberta": (lambda: keras_hub.models.RobertaBackbone(vocabulary_size=len(WORDS), **SMALL),
                keras_hub.models.RobertaTextClassifier),
    "xlm_roberta": (
        lambda: keras_hub.models.XLMRobertaBackbone(vocabulary_size=len(WORDS), **SMALL),
        keras_hub.models.XLMRobertaTextClassifier),
    "distilbert": (
        lambda: keras_hub.models.DistilBertBackbone(vocabulary_size=len(WORDS), **SMALL),
        keras_hub.models.DistilBertTextClassifier),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_text_classifier_logits_are_equal(family, tmp_path):
    make_backbone, classifier = FAMILIES[family]
    hub = _randomize(classifier(make_backbone(), num_classes=3, preprocessor=None))
    model = keras_flop.from_keras_hub(hub)
    batch = _batch(len(WORDS))
    config = model.bert_config
    assert config.classifier_head == family.replace("xlm_", "")
    assert (config.type_vocab_size, config.hidden_act, config.position_offset) == \
        (0, "gelu_exact", 0)
    assert config.layer_norm_epsilon == (1e-12 if family == "distilbert" else 1e-5)
    hub_logits = _hub_outputs(hub, {k: v for k, v in batch.items() if k != "segment_ids"})
    np.testing.assert_allclose(model(batch), hub_logits, atol=1e-5)
    # It prunes and saves like any other: factorized with open gates, compacted, reloaded.
    pruning_model = keras_flop.factorize(model, structure="heads+ffn")
    np.testing.assert_allclose(pruning_model(batch, training=False), model(batch), atol=1e-4)
    compact = keras_flop.compact(pruning_model)
    compact.save(tmp_path / "compact.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "compact.keras")(batch),
                               hub_logits, atol=1e-4)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_backbone_gets_a_fresh_head_on_an_equal_encoder(family, caplog):
    backbone = _randomize(FAMILIES[family][0]())
    with caplog.at_level("INFO", logger="keras_flop.checkpoints.keras_hub"):
        model = keras_flop.from_keras_hub(backbone, num_labels=4)
    assert model.num_labels == 4
    assert "has no classifier head: initialized a fresh 4-label" in caplog.text
    assert "pooler and classifier" in caplog.text
    batch = _batch(len(WORDS))
    last = model.get_layer(f"layer_{SMALL['num_layers'] - 1}_output_layer_norm").output
    sequence = keras.Model(model.inputs, last)(batch)
    hub = _hub_outputs(backbone, {k: v for k, v in batch.items() if k != "segment_ids"})
    mask = batch["padding_mask"]
    np.testing.assert_allclose(np.asarray(sequence)[mask], np.asarray(hub)[mask], atol=1e-5)


def test_unsupported_models_are_one_line_errors():
    roberta = keras_hub.models.RobertaBackbone(vocabulary_size=len(WORDS), **SMALL)
    cases = [
        (keras_hub.models.AlbertBackbone(vocabulary_size=len(WORDS), embedding_dim=16,
                                         num_groups=1, num_inner_repetitions=1, **SMALL),
         "ALBERT shares one encoder layer's weights"),
        (keras_hub.models.RobertaTextClassifier(roberta, 2, preprocessor=None, hidden_dim=8),
         "hidden_dim=8 != the backbone's 32"),
        (keras_hub.models.ElectraBackbone(vocab_size=len(WORDS), embedding_dim=16, **SMALL),
         "embedding_dim=16 != hidden_dim=32"),
        (keras_hub.models.BertTextClassifier(
            keras_hub.models.BertBackbone(vocabulary_size=len(WORDS), **SMALL), 2,
            preprocessor=None, activation="softmax"), "activation=None"),
        (keras.Sequential([keras.layers.Dense(2)]), "supported: keras_hub.models.BertText"),
    ]
    for model, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            keras_flop.from_keras_hub(model)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="2-label head, but num_labels=3"):
        keras_flop.from_keras_hub(_bert_classifier(), num_labels=3)


def test_keras_hub_preprocessor_becomes_a_bert_preprocessor(tmp_path):
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=WORDS, lowercase=True)
    hub = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=10)
    ours = preprocessor_from_keras_hub(hub, tmp_path / "vocab.txt")
    assert ours.max_seq_length == 10 and ours.tokenizer.lowercase
    a, b = tf.constant(["The movie was great!", "not a film"]), tf.constant(["bad plot", "fun"])
    for texts in ((a,), (a, b)):
        expected = hub(x=texts)  # a positional tuple would be read as (x, y)
        got = ours(*texts)
        for key in ("token_ids", "segment_ids", "padding_mask"):
            np.testing.assert_array_equal(np.asarray(got[key]).astype("int32"),
                                          np.asarray(expected[key]).astype("int32"), key)
    with pytest.raises(ValueError, match="Pass --vocab_file"):
        preprocessor_from_keras_hub(keras.layers.Dense(2), tmp_path / "v.txt")


@pytest.mark.data
def test_real_minilm_through_keras_hub_equals_the_tf1_import(tmp_path):
    """keras-hub's own Hugging Face loader reads the all-MiniLM-L6-v2 files offline."""
    package = pytest.importorskip("all_minilm_l6_v2")
    tf1_dir = shared_data_dir() / "minilm-l6-h384-uncased-tf1"
    if not (tf1_dir / "bert_model.ckpt.index").exists():
        pytest.skip(f"no MiniLM checkpoint in {tf1_dir}")
    with zipfile.ZipFile(os.path.join(os.path.dirname(package.__file__), "model.zip")) as z:
        z.extractall(tmp_path)
    # The package ships tokenizer.json only; keras-hub's BertTokenizer reads vocab.txt.
    shutil.copy(tf1_dir / "vocab.txt", tmp_path / "vocab.txt")
    backbone = keras_hub.models.BertBackbone.from_preset(str(tmp_path))
    reference = keras_flop.load_tf1_checkpoint(tf1_dir)
    hub = keras_hub.models.BertTextClassifier(backbone, num_classes=2, preprocessor=None)
    hub.output_dense.set_weights(reference.get_layer("classifier").get_weights())
    model = keras_flop.from_keras_hub(hub)
    batch = _batch(30522, seq=32)
    np.testing.assert_allclose(model(batch), reference(batch), atol=1e-5)
    np.testing.assert_allclose(model(batch), _hub_outputs(hub, batch), atol=1e-5)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(str(tmp_path))
    assert list(tokenizer.get_vocabulary()) == \
        list(keras_flop.BertTokenizer(tf1_dir / "vocab.txt").vocabulary)
