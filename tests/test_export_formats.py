"""export_formats: ONNX and LiteRT files, each checked in its own runtime (when installed)."""

import os
import sys

import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.export.formats import RUNNERS, check_formats, export_formats, sample_batch

TINY = dict(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)
PACKAGES = {"onnx": "onnxruntime", "litert": "ai_edge_litert"}


@pytest.fixture(scope="module")
def compact_model():
    pruning_model = keras_flop.factorize(build_bert_classifier(BertConfig(**TINY)),
                                         structure="heads+ffn")
    # Close one head of layer 0 and half of layer 1's FFN: a compact model of uneven layers.
    pruning_model.network.get_layer("layer_0_head_mask").log_alpha.assign([-10.0, 10, 10, 10])
    pruning_model.network.get_layer("layer_1_intermediate_mask").log_alpha.assign(
        np.where(np.arange(64) % 2, 10.0, -10.0))
    return keras_flop.compact(pruning_model)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_each_format_runs_in_its_runtime_with_the_keras_logits(fmt, compact_model, tmp_path):
    pytest.importorskip(PACKAGES[fmt])
    paths = export_formats(compact_model, tmp_path, [fmt])
    assert list(paths) == [fmt] and paths[fmt].startswith(str(tmp_path))
    runner = RUNNERS[fmt](paths[fmt])
    # Other batch and sequence sizes than the verification batch: both dimensions are dynamic.
    for batch_size, length in ((3, 5), (1, 12)):
        batch = sample_batch(TINY["vocab_size"], batch_size, length, seed=batch_size)
        np.testing.assert_allclose(runner(batch), compact_model(batch), atol=1e-4)


def test_a_missing_runtime_is_a_one_line_error(compact_model, tmp_path, monkeypatch):
    for package in ("tf2onnx", "onnxruntime", "ai_edge_litert"):
        monkeypatch.setitem(sys.modules, package, None)  # importing it raises ImportError
    for fmt, extra in (("onnx", r"keras-flop\[onnx\]"), ("litert", r"keras-flop\[litert\]")):
        with pytest.raises(ImportError, match=extra) as error:
            export_formats(compact_model, tmp_path, fmt)
        assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_format_names_are_checked():
    assert check_formats("saved_model, onnx,onnx") == ("saved_model", "onnx")
    with pytest.raises(ValueError, match="drawn from saved_model, onnx, litert; got \\['tflite'\\]"):
        check_formats("onnx,tflite")


def _fake_format(monkeypatch, model, fmt, fail=False):
    """`fmt` written and run by stand-ins (a few bytes, the Keras logits): the file handling
    of export_formats without a converter."""
    import keras_flop.export.formats as formats

    def write(source, path):
        with open(path + ".tmp", "wb") as f:
            f.write(b"half a file" if fail else b"a converted model")
        if fail:
            raise ValueError("conversion failed")
        os.replace(path + ".tmp", path)

    monkeypatch.setitem(formats._WRITERS, fmt, write)
    monkeypatch.setitem(formats.RUNNERS, fmt, lambda path: lambda batch: model(batch))
    monkeypatch.setattr(formats, "require", lambda name: None)


def test_an_earlier_export_is_replaced_only_with_overwrite(compact_model, tmp_path,
                                                           monkeypatch):
    _fake_format(monkeypatch, compact_model, "onnx")
    (tmp_path / "model.onnx").write_bytes(b"an earlier export")
    with pytest.raises(ValueError) as error:
        export_formats(compact_model, tmp_path, ["onnx"])
    assert "model.onnx exists already: pass overwrite=True" in str(error.value)
    assert (tmp_path / "model.onnx").read_bytes() == b"an earlier export"
    export_formats(compact_model, tmp_path, ["onnx"], overwrite=True)
    assert (tmp_path / "model.onnx").read_bytes() == b"a converted model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_a_failed_format_leaves_nothing_behind(compact_model, tmp_path, monkeypatch):
    _fake_format(monkeypatch, compact_model, "onnx")
    _fake_format(monkeypatch, compact_model, "litert", fail=True)
    with pytest.raises(ValueError, match="conversion failed"):
        export_formats(compact_model, tmp_path / "out", ["onnx", "litert"])
    assert not (tmp_path / "out").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "model.onnx").write_bytes(b"an earlier export")
    with pytest.raises(ValueError, match="conversion failed"):
        export_formats(compact_model, tmp_path / "kept", ["onnx", "litert"], overwrite=True)
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["model.onnx"]
    assert (tmp_path / "kept" / "model.onnx").read_bytes() == b"an earlier export"


def test_litert_of_a_mixed_precision_model_is_converted_in_float32(tmp_path):
    pytest.importorskip("ai_edge_litert")
    mixed = build_bert_classifier(BertConfig(**dict(TINY, num_hidden_layers=1)),
                                  dtype="mixed_float16")
    paths = export_formats(mixed, tmp_path / "out", ["litert"])
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.tflite"]
    batch = sample_batch(TINY["vocab_size"], 3, 5)
    np.testing.assert_allclose(RUNNERS["litert"](paths["litert"])(batch), mixed(batch),
                               atol=1e-2)  # the Keras model's float16 round-off
