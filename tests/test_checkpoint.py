"""load_tf1_checkpoint against an independent TF1 BERT, and factorize parity."""

import json
import logging
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import tensorflow as tf

import keras_flop
from conftest import shared_data_dir
from keras_flop.checkpoints.tf1 import check_vocabulary
from keras_flop.checkpoints.hugging_face import config_from_hf, read_safetensors
from tf1_bert import (erf_gelu, random_weights, reference_logits, tf1_shapes,
                      write_hf_checkpoint, write_tf1_checkpoint)

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=32, type_vocab_size=2,
              initializer_range=0.02)


def _batch(vocab=64, batch=3, seq=16, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([seq, seq // 2, 5])[:batch]
    mask = np.arange(seq)[None, :] < lengths[:, None]
    return {"token_ids": (rng.integers(5, vocab, (batch, seq)) * mask).astype("int32"),
            "segment_ids": ((np.arange(seq)[None, :] >= lengths[:, None] // 2) * mask)
            .astype("int32"),
            "padding_mask": mask}


def _reference(weights, config, batch):
    return reference_logits(weights, config, batch["token_ids"], batch["segment_ids"],
                            batch["padding_mask"])


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    directory = tmp_path_factory.mktemp("finetuned")
    weights = random_weights(tf1_shapes(CONFIG, num_labels=3))
    write_tf1_checkpoint(directory, CONFIG, weights)
    return directory, weights


def test_imported_logits_equal_the_tf1_model(finetuned):
    directory, weights = finetuned
    names = {name for name, _ in tf.train.list_variables(str(directory / "bert_model.ckpt"))}
    assert "global_step" in names and "bert/pooler/dense/kernel/adam_m" in names
    model = keras_flop.load_tf1_checkpoint(directory)
    batch = _batch()
    logits = np.asarray(model.predict(batch, verbose=0))
    assert logits.shape == (3, 3)
    assert np.max(np.abs(logits - _reference(weights, CONFIG, batch))) <= 1e-4
    # The checkpoint prefix works as well as the directory.
    again = keras_flop.load_tf1_checkpoint(directory / "bert_model.ckpt")
    np.testing.assert_array_equal(np.asarray(again.predict(batch, verbose=0)), logits)


def test_factorized_model_with_open_gates_equals_the_imported_model(finetuned):
    directory, weights = finetuned
    model = keras_flop.load_tf1_checkpoint(directory)
    pruning_model = keras_flop.factorize(model)
    batch = _batch()
    expected = _reference(weights, CONFIG, batch)
    assert np.max(np.abs(np.asarray(pruning_model.predict(batch, verbose=0)) - expected)) <= 1e-4


def test_pretrained_checkpoint_gets_a_fresh_head(tmp_path, caplog):
    weights = random_weights(tf1_shapes(CONFIG, pretraining_heads=True))
    write_tf1_checkpoint(tmp_path, CONFIG, weights)
    with caplog.at_level(logging.WARNING, logger="keras_flop"):
        model = keras_flop.load_tf1_checkpoint(tmp_path, num_labels=1)
    assert "no classifier head" in caplog.text and "fresh 1-label head" in caplog.text
    assert "cls/" not in caplog.text  # pre-training heads are ignored silently
    weights["output_weights"] = np.asarray(model.get_layer("classifier").kernel).T
    weights["output_bias"] = np.asarray(model.get_layer("classifier").bias)
    batch = _batch()
    np.testing.assert_allclose(np.asarray(model.predict(batch, verbose=0)),
                               _reference(weights, CONFIG, batch), atol=1e-4)


def _drop(name):
    def change(directory, weights, config):
        del weights[name]
    return change


def _reshape(name, shape):
    def change(directory, weights, config):
        weights[name] = np.zeros(shape, np.float32)
    return change


def _config(**values):
    def change(directory, weights, config):
        config.update(values)
    return change


def _after_writing(action):
    def change(directory, weights, config):
        return action
    return change


def _truncate_data(directory):
    shard = next(p for p in Path(directory).iterdir() if ".data-" in p.name)
    shard.write_bytes(shard.read_bytes()[:100])


def _remove(pattern):
    def action(directory):
        for p in Path(directory).glob(pattern):
            p.unlink()
    return action


BAD_CHECKPOINTS = [
    ("missing variable", _drop("bert/encoder/layer_1/output/dense/bias"),
     "Variable bert/encoder/layer_1/output/dense/bias is missing"),
    ("wrong shape", _reshape("bert/encoder/layer_0/intermediate/dense/kernel", (32, 60)),
     "Variable bert/encoder/layer_0/intermediate/dense/kernel has shape [32, 60]"),
    ("vocab size differs", _config(vocab_size=70),
     "Variable bert/embeddings/word_embeddings has shape [64, 32]"),
    ("fewer layers in config", _config(num_hidden_layers=1), "has 2 encoder layers"),
    ("missing output_bias", _drop("output_bias"), "Variable output_bias is missing"),
    ("bad config value", _config(num_attention_heads=5), "must divide hidden_size"),
    ("truncated data shard", _after_writing(_truncate_data), "Cannot read"),
    ("missing index", _after_writing(_remove("*.index")), "expected one TF1 checkpoint"),
    ("missing config", _after_writing(_remove("bert_config.json")),
     "BERT config file not found"),
]


@pytest.mark.parametrize("change, message", [case[1:] for case in BAD_CHECKPOINTS],
                         ids=[case[0] for case in BAD_CHECKPOINTS])
def test_bad_checkpoints_give_one_line_errors(tmp_path, change, message):
    config = dict(CONFIG)
    weights = random_weights(tf1_shapes(CONFIG, num_labels=2))
    action = change(tmp_path, weights, config)
    write_tf1_checkpoint(tmp_path, config, weights)
    if action:
        action(tmp_path)
    with pytest.raises(ValueError) as error:
        keras_flop.load_tf1_checkpoint(tmp_path)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_num_labels_must_match_a_finetuned_head(finetuned):
    with pytest.raises(ValueError, match="a 3-label head, but num_labels=2"):
        keras_flop.load_tf1_checkpoint(finetuned[0], num_labels=2)


@pytest.mark.data
def test_real_minilm_checkpoint_imports_and_factorizes():
    directory = shared_data_dir() / "minilm-l6-h384-uncased-tf1"
    if not (directory / "bert_model.ckpt.index").exists():
        pytest.skip(f"no MiniLM checkpoint in {directory}")
    model = keras_flop.load_tf1_checkpoint(directory)
    config = keras_flop.BertConfig.from_json_file(directory / "bert_config.json").to_dict()
    reader = tf.train.load_checkpoint(str(directory / "bert_model.ckpt"))
    weights = {name: reader.get_tensor(name) for name in tf1_shapes(config)}
    weights["output_weights"] = np.asarray(model.get_layer("classifier").kernel).T
    weights["output_bias"] = np.asarray(model.get_layer("classifier").bias)
    batch = _batch(vocab=config["vocab_size"], seq=32)
    expected = _reference(weights, config, batch)
    logits = np.asarray(model.predict(batch, verbose=0))
    assert np.max(np.abs(logits - expected)) <= 1e-4
    pruning_model = keras_flop.factorize(model)
    assert np.max(np.abs(np.asarray(pruning_model.predict(batch, verbose=0)) - expected)) <= 1e-4


def _write_raw_safetensors(path, header, data):
    """A safetensors file with exactly this header and data (to build corrupt ones)."""
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)


def _hf_directory(directory, config, weights):
    return write_hf_checkpoint(directory, config, weights)


def test_hugging_face_import_shares_the_mapping(tmp_path):
    config = dict(CONFIG, hidden_act="relu")
    weights = random_weights(tf1_shapes(config, num_labels=3))
    model = keras_flop.load_hf_checkpoint(_hf_directory(tmp_path, config, weights))
    batch = _batch()
    np.testing.assert_allclose(np.asarray(model.predict(batch, verbose=0)),
                               _reference(weights, config, batch), atol=1e-4)


def test_hugging_face_gelu_is_the_exact_erf(tmp_path):
    # HF's "gelu" is x * Phi(x) with the exact erf, unlike TF1's "gelu" (tanh form).
    weights = random_weights(tf1_shapes(CONFIG, num_labels=3), std=0.5)
    model = keras_flop.load_hf_checkpoint(_hf_directory(tmp_path, CONFIG, weights))
    batch = _batch()
    logits = np.asarray(model.predict(batch, verbose=0))
    args = (weights, CONFIG, batch["token_ids"], batch["segment_ids"], batch["padding_mask"])
    exact, tanh_form = reference_logits(*args, activation=erf_gelu), reference_logits(*args)
    # The forms differ by more than 1e-3; float32 rounding over logits of size ~5 stays
    # ten times below that, whatever order the CPU's kernels sum in.
    assert np.max(np.abs(exact - tanh_form)) > 1e-3
    np.testing.assert_allclose(logits, exact, atol=1e-4)


@pytest.mark.parametrize("hf_act, ours", [
    ("gelu", "gelu_exact"), ("gelu_python", "gelu_exact"), ("gelu_new", "gelu"),
    ("gelu_pytorch_tanh", "gelu"), ("gelu_fast", "gelu"), ("relu", "relu")])
def test_hugging_face_activation_names(hf_act, ours):
    assert config_from_hf(dict(CONFIG, hidden_act=hf_act)).hidden_act == ours


@pytest.mark.parametrize("change, message", [
    ({"hidden_act": "quick_gelu"}, "config.json: hidden_act='quick_gelu' is not supported"),
    ({"hidden_act": "gelu_tanh"}, "config.json: hidden_act='gelu_tanh' is not supported"),
    ({"layer_norm_eps": 1e-5}, "config.json: layer_norm_eps=1e-05 is not supported"),
    ({"position_embedding_type": "relative_key"},
     "config.json: position_embedding_type='relative_key' is not supported"),
], ids=["quick_gelu", "not an HF name", "layer_norm_eps", "relative positions"])
def test_hugging_face_config_that_changes_the_model_is_refused(tmp_path, change, message):
    weights = random_weights(tf1_shapes(CONFIG, num_labels=3))
    directory = _hf_directory(tmp_path, CONFIG, weights)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError) as error:
        keras_flop.load_hf_checkpoint(directory)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_safetensors_dtypes(tmp_path):
    values = np.array([[1.5, -2.25, 3.0e-3], [7.0, 0.0, -1.0e4]], np.float32)
    bf16 = values.astype(ml_dtypes.bfloat16)
    safetensors.numpy.save_file({"w": bf16, "h": values.astype(np.float16)},
                                tmp_path / "ok.safetensors")
    tensors = read_safetensors(tmp_path / "ok.safetensors")
    assert tensors["w"].dtype == np.float32 and tensors["h"].dtype == np.float32
    np.testing.assert_array_equal(tensors["w"], bf16.astype(np.float32))
    np.testing.assert_array_equal(tensors["h"], values.astype(np.float16).astype(np.float32))

    path = tmp_path / "f8.safetensors"
    _write_raw_safetensors(path, {"b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                  "w": {"dtype": "F8_E4M3", "shape": [2, 3],
                                        "data_offsets": [4, 10]}}, bytes(10))
    with pytest.raises(ValueError) as error:
        read_safetensors(path)
    assert str(error.value) == (f"{path}: tensor w has dtype F8_E4M3, which numpy cannot hold; "
                                "convert the file to F32, F16 or BF16.")


F32_2x3 = np.arange(6, dtype=np.float32).reshape(2, 3).tobytes()


def _entry(shape, offsets, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


CORRUPT_SAFETENSORS = [
    ("unknown dtype", {"w": _entry([2, 3], [0, 24], "Q7")}, F32_2x3,
     "tensor w: unknown dtype 'Q7'"),
    ("shape disagrees with offsets", {"w": _entry([2, 4], [0, 24])}, F32_2x3,
     "tensor w: shape [2, 4] of F32 needs 32 bytes, but data_offsets [0, 24] hold 24"),
    ("offsets past the end", {"w": _entry([2, 3], [0, 24]), "b": _entry([3], [24, 36])},
     F32_2x3, "tensor b: data_offsets [24, 36] run past the 24 bytes of data (truncated"),
    ("overlapping offsets", {"w": _entry([2, 3], [0, 24]), "b": _entry([1], [20, 24])},
     F32_2x3, "tensor b: data_offsets [20, 24] start at byte 20, but the previous tensor "
     "ends at byte 24"),
    ("gap before a tensor", {"w": _entry([2, 3], [4, 28])}, F32_2x3 + bytes(4),
     "tensor w: data_offsets [4, 28] start at byte 4, but the previous tensor ends at byte 0"),
    ("bytes after the last tensor", {"w": _entry([2, 3], [0, 24])}, F32_2x3 + bytes(8),
     "8 bytes after the last tensor"),
    ("malformed offsets", {"w": _entry([2, 3], [0, 24, 48])}, F32_2x3, "tensor w:"),
]


@pytest.mark.parametrize("header, data, message", [c[1:] for c in CORRUPT_SAFETENSORS],
                         ids=[c[0] for c in CORRUPT_SAFETENSORS])
def test_corrupt_safetensors_name_the_file_and_tensor(tmp_path, header, data, message):
    path = tmp_path / "model.safetensors"
    _write_raw_safetensors(path, header, data)
    with pytest.raises(ValueError) as error:
        read_safetensors(path)
    text = str(error.value)
    assert text.startswith(f"{path}: not a valid safetensors file (") and message in text, text
    assert "\n" not in text


@pytest.mark.parametrize("raw, message", [
    (b"\x00", "header too small"),
    ((9).to_bytes(8, "little") + b"{not json", "invalid JSON in header"),
], ids=["too short", "header not JSON"])
def test_unreadable_safetensors_header(tmp_path, raw, message):
    weights = random_weights(tf1_shapes(CONFIG, num_labels=3))
    directory = _hf_directory(tmp_path, CONFIG, weights)
    (directory / "model.safetensors").write_bytes(raw)
    with pytest.raises(ValueError) as error:
        keras_flop.load_hf_checkpoint(directory)
    text = str(error.value)
    assert text.startswith(f"{directory / 'model.safetensors'}: not a valid safetensors file")
    assert message in text and "\n" not in text


# The bert_config.json of Google's multi_cased_L-12_H-768_A-12 release, key for key (the
# Chinese release has the same keys, with vocab_size 21128).
MULTILINGUAL_CONFIG = {
    "attention_probs_dropout_prob": 0.1, "directionality": "bidi", "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "max_position_embeddings": 512, "num_attention_heads": 12,
    "num_hidden_layers": 12, "pooler_fc_size": 768, "pooler_num_attention_heads": 12,
    "pooler_num_fc_layers": 3, "pooler_size_per_head": 128,
    "pooler_type": "first_token_transform", "type_vocab_size": 2, "vocab_size": 119547,
}
POOLER_KEYS = ["directionality", "pooler_fc_size", "pooler_num_attention_heads",
               "pooler_num_fc_layers", "pooler_size_per_head", "pooler_type"]


def test_google_multilingual_config_is_read(tmp_path, caplog):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(MULTILINGUAL_CONFIG, indent=2))
    with caplog.at_level(logging.INFO, logger="keras_flop"):
        config = keras_flop.BertConfig.from_json_file(path)
    assert config == keras_flop.BertConfig(
        **{k: v for k, v in MULTILINGUAL_CONFIG.items() if k not in POOLER_KEYS})
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert len(ignored) == 1 and ignored[0].levelno == logging.INFO
    assert all(key in ignored[0].getMessage() for key in POOLER_KEYS)


def test_checkpoint_with_a_multilingual_style_config_imports(tmp_path):
    config = dict(CONFIG, **{k: MULTILINGUAL_CONFIG[k] for k in POOLER_KEYS})
    weights = random_weights(tf1_shapes(CONFIG, num_labels=3))
    write_tf1_checkpoint(tmp_path, config, weights)
    model = keras_flop.load_tf1_checkpoint(tmp_path)
    batch = _batch()
    np.testing.assert_allclose(np.asarray(model.predict(batch, verbose=0)),
                               _reference(weights, CONFIG, batch), atol=1e-4)


@pytest.mark.parametrize("change, message", [
    ({"pooler_typo": 3}, "Unknown BertConfig field(s) ['pooler_typo']: remove them"),
    ({"layer_norm_eps": 1e-6}, "layer_norm_eps=1e-06 is not supported"),
    ({"position_embedding_type": "relative_key_query"},
     "position_embedding_type='relative_key_query' is not supported"),
    ({"model_type": "roberta"}, "model_type='roberta' is not supported"),
])
def test_config_keys_that_change_the_model_are_refused(tmp_path, change, message):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**MULTILINGUAL_CONFIG, **change}))
    with pytest.raises(ValueError) as error:
        keras_flop.BertConfig.from_json_file(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)
    # At the value this model implements, the same keys are accepted.
    accepted = {"layer_norm_eps": 1e-12, "position_embedding_type": "absolute",
                "model_type": "bert"}
    assert keras_flop.BertConfig.from_dict({**MULTILINGUAL_CONFIG, **accepted}).hidden_size == 768


def test_vocabulary_may_be_shorter_than_the_embedding_table(tmp_path):
    config = keras_flop.BertConfig(**CONFIG)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(f"t{i}\n" for i in range(60)))
    assert check_vocabulary(vocab, config) == 60
    vocab.write_text("".join(f"t{i}\n" for i in range(65)))
    with pytest.raises(ValueError) as error:
        check_vocabulary(vocab, config)
    assert str(error.value).startswith(f"{vocab} has 65 tokens but the BERT config says "
                                       "vocab_size=64")
    assert "\n" not in str(error.value)
