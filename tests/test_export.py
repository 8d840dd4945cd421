"""export_saved_model: TF Serving layout, both signatures, loading without keras_flop."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from conftest import WORDS
from keras_flop.export.saved_model import export_saved_model

TINY = dict(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=32)


def _export(tmp_path, vocab_file, num_labels):
    model = keras_flop.compact(keras_flop.factorize(
        build_bert_classifier(BertConfig(**TINY), num_labels=num_labels)))
    path = export_saved_model(model, tmp_path / "export", vocab_file, max_seq_length=12,
                              label_names=["negative", "positive"][:num_labels])
    return model, path


LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # registers the tokenizer ops of the text signatures
assert "keras_flop" not in sys.modules
loaded = tf.saved_model.load(sys.argv[1])
batch = dict(np.load(sys.argv[2]))
ids = loaded.signatures["serving_default"](
    token_ids=tf.constant(batch["token_ids"]), segment_ids=tf.constant(batch["segment_ids"]),
    padding_mask=tf.constant(batch["padding_mask"]))
text = loaded.signatures["predict_text"](text=tf.constant(["the movie was great"]))
pair = loaded.signatures["predict_text_pair"](text_a=tf.constant(["good plot"]),
                                              text_b=tf.constant(["bad film"]))
print(json.dumps({"ids": {k: v.numpy().tolist() for k, v in ids.items()},
                  "text": {k: v.numpy().tolist() for k, v in text.items()},
                  "pair": {k: v.numpy().tolist() for k, v in pair.items()},
                  "keras_flop_loaded": "keras_flop" in sys.modules}))
"""


@pytest.mark.process  # a new Python process per model: the second tier
@pytest.mark.parametrize("num_labels", [2, 1])
def test_saved_model_loads_in_a_process_without_keras_flop(tmp_path, vocab_file, num_labels):
    model, path = _export(tmp_path, vocab_file, num_labels)
    assert path.endswith(os.sep + "1") and os.path.exists(os.path.join(path, "saved_model.pb"))
    assert os.path.exists(os.path.join(path, "assets", "vocab.txt"))
    encoder = keras_flop.BertPreprocessor(vocab_file, 12)
    batch = {k: v.numpy() for k, v in encoder(tf.constant(["the movie was great"])).items()}
    other = {k: v.numpy() for k, v in encoder(tf.constant(["good plot"]),
                                              tf.constant(["bad film"])).items()}
    np.savez(tmp_path / "batch.npz", **batch)
    result = subprocess.run([sys.executable, "-c", LOADER, path, str(tmp_path / "batch.npz")],
                            capture_output=True, text=True, check=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert not served["keras_flop_loaded"]
    logits = np.asarray(model(batch))
    pair_logits = np.asarray(model(other))
    if num_labels == 1:
        np.testing.assert_allclose(served["ids"]["score"], logits[:, 0], atol=1e-5)
        np.testing.assert_allclose(served["text"]["score"], logits[:, 0], atol=1e-5)
        np.testing.assert_allclose(served["pair"]["score"], pair_logits[:, 0], atol=1e-5)
    else:
        np.testing.assert_allclose(served["ids"]["logits"], logits, atol=1e-5)
        np.testing.assert_allclose(served["text"]["logits"], logits, atol=1e-5)
        np.testing.assert_allclose(served["pair"]["logits"], pair_logits, atol=1e-5)
        np.testing.assert_allclose(np.sum(served["ids"]["probabilities"], -1), 1.0, atol=1e-6)


@pytest.mark.process  # the saved_model_cli process: the second tier
def test_saved_model_cli_lists_both_signatures(tmp_path, vocab_file):
    model, path = _export(tmp_path, vocab_file, 2)
    # Every weight is stored once. The vocabulary table is an asset (assets/vocab.txt), not a
    # variable, so the values are exactly the model's weights.
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    stored = sum(int(np.prod(shape)) for name, shape in
                 reader.get_variable_to_shape_map().items()
                 if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and "save_counter" not in name)
    assert stored == model.count_params()
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed beside this Python")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True,
                           text=True, check=True).stdout
    for name in ("serving_default", "predict_text", "predict_text_pair", "token_ids",
                 "padding_mask", "probabilities"):
        assert name in shown, name
    # A second export goes to the next version folder; TF Serving serves the highest.
    again = export_saved_model(_export(tmp_path / "b", vocab_file, 2)[0], tmp_path / "export",
                               vocab_file, 12)
    assert again.endswith(os.sep + "2")
    meta = json.loads(open(os.path.join(path, "assets.extra", "keras_flop_export.json")).read())
    assert meta["label_names"] == ["negative", "positive"] and meta["max_seq_length"] == 12


def test_export_errors(tmp_path, vocab_file):
    model = build_bert_classifier(BertConfig(**TINY))
    with pytest.raises(ValueError, match="Vocabulary file not found"):
        export_saved_model(model, tmp_path / "e", tmp_path / "missing.txt", 12)
    (tmp_path / "bad.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[PAD\]'"):
        export_saved_model(model, tmp_path / "e", tmp_path / "bad.txt", 12)
    with pytest.raises(ValueError, match="Pass `preprocessor`"):
        export_saved_model(model, tmp_path / "e")
    with pytest.raises(ValueError, match="pass either it or"):
        export_saved_model(model, tmp_path / "e", vocab_file, 12,
                           preprocessor=keras_flop.BertPreprocessor(vocab_file, 12))


def test_export_refuses_ids_the_model_has_no_embedding_for(tmp_path, vocab_file):
    model = build_bert_classifier(BertConfig(**TINY))
    longer = tmp_path / "longer.txt"
    longer.write_text(vocab_file.read_text() + "".join(f"extra{i}\n" for i in range(5)))
    with pytest.raises(ValueError) as error:
        export_saved_model(model, tmp_path / "e", longer, 12)
    assert f"has {len(WORDS) + 5} tokens but the model has vocab_size={len(WORDS)}" in \
        str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ValueError) as error:
        export_saved_model(keras_flop.factorize(model), tmp_path / "e", vocab_file, 64)
    assert "max_seq_length 64 exceeds the model's max_position_embeddings 32" in \
        str(error.value)
    assert not (tmp_path / "e").exists()  # refused before anything was written
