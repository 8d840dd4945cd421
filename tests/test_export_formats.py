"""export_formats: ONNX and LiteRT files, float32 and INT8, each checked in its own runtime
(when installed)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.export import quantized
from keras_flop.export.formats import export_formats, sample_batch
from keras_flop.export.requirements import check_formats
from keras_flop.export.runtimes import RUNNERS

TINY = dict(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)
PACKAGES = {"onnx": "onnxruntime", "litert": "ai_edge_litert", "onnx_int8": "onnxruntime",
            "litert_int8": "ai_edge_litert"}


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
    for fmt, extra in (("onnx", r"keras-flop\[onnx\]"), ("litert", r"keras-flop\[litert\]"),
                       ("onnx_int8", r"needs tf2onnx: pip install \"keras-flop\[onnx\]\""),
                       ("litert_int8", r"needs ai_edge_litert: pip install "
                                       r"\"keras-flop\[litert\]\"")):
        with pytest.raises(ImportError, match=extra) as error:
            export_formats(compact_model, tmp_path, fmt)
        assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_format_names_are_checked():
    assert check_formats("saved_model, onnx,onnx") == ("saved_model", "onnx")
    assert check_formats("onnx_int8,litert_int8") == ("onnx_int8", "litert_int8")
    with pytest.raises(ValueError, match="drawn from saved_model, onnx, litert, onnx_int8, "
                                         "litert_int8; got \\['tflite', 'int8'\\]"):
        check_formats("onnx,tflite,int8")


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


def test_litert_converter_settings_give_calibrated_int8_activations_and_name_a_bad_one():
    pytest.importorskip("ai_edge_litert")
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_flop.export.float_files import litert_flatbuffers

    model = build_bert_classifier(BertConfig(**dict(TINY, num_hidden_layers=1)))
    batches = [sample_batch(TINY["vocab_size"], 1, 8, seed=seed) for seed in range(4)]
    dynamic, calibrated = litert_flatbuffers(model, [
        {"optimizations": [tf.lite.Optimize.DEFAULT]},
        {"optimizations": [tf.lite.Optimize.DEFAULT],
         "representative_dataset": lambda: iter(batches)}])

    def int8_activations(flatbuffer):  # int8 tensors that are not constant weights
        interpreter = Interpreter(model_content=flatbuffer)
        return [t["name"] for t in interpreter.get_tensor_details()
                if t["dtype"] == np.int8 and len(t["shape"]) and t["shape"][0] == 1]

    assert not int8_activations(dynamic) and int8_activations(calibrated)
    runner = Interpreter(model_content=calibrated).get_signature_runner()
    logits = runner(**{k: np.asarray(v, np.bool_ if k == "padding_mask" else np.int32)
                       for k, v in batches[0].items()})["logits"]
    assert np.abs(logits - np.asarray(model(batches[0]))).max() < 0.5
    with pytest.raises(ValueError, match="no attribute 'representative_data'"):
        litert_flatbuffers(model, [{"representative_data": lambda: iter(batches)}])


# INT8: a tiny model whose dense layers (64 × 64 and up) dominate its files, so that int8
# weights shrink them.
INT8_TINY = dict(TINY, hidden_size=64, intermediate_size=128)
# A client's script: loads a file in its runtime with neither keras_flop nor TensorFlow.
SERVE_ALONE = r"""
import json, sys
sys.modules["keras_flop"] = sys.modules["tensorflow"] = None
import numpy as np
runtime, path, inputs = sys.argv[1:]
batch = dict(np.load(inputs))
if runtime == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], batch)[0]
else:
    from ai_edge_litert.interpreter import Interpreter
    logits = Interpreter(model_path=path).get_signature_runner()(**batch)["logits"]
print(json.dumps(logits.tolist()))
"""


@pytest.fixture(scope="module")
def decisive_model():
    """A tiny model, and an agreement batch on which its float predictions split between the
    two classes with a margin: the classifier's bias puts the decision threshold in the widest
    gap between the examples' logit margins (a quarter of them at least on each side). INT8
    round-off then has no tie to flip by chance, and a disagreement is the file's."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_bert_classifier(BertConfig(**INT8_TINY))
    batch = quantized.agreement_batch(TINY["vocab_size"], seq_length=16)
    logits = np.asarray(model(batch))
    margins = np.sort(logits[:, 0] - logits[:, 1])
    quarter = len(margins) // 4
    i = quarter + int(np.argmax(np.diff(margins)[quarter:-quarter]))
    shift = (margins[i] + margins[i + 1]) / 2
    bias = model.get_layer("classifier").bias
    bias.assign(bias.numpy() + np.array([-shift / 2, shift / 2], np.float32))
    return model, batch


@pytest.fixture(scope="module")
def int8_files(decisive_model, tmp_path_factory):
    """Each runtime's float and INT8 files of the decisive model, from one export."""
    model, batch = decisive_model
    formats = [fmt for fmt, package in PACKAGES.items()
               if __import__("importlib").util.find_spec(package)]
    if not formats:
        pytest.skip("neither onnxruntime nor ai_edge_litert is installed")
    return export_formats(model, tmp_path_factory.mktemp("int8"), formats,
                          agreement_batch=batch)


@pytest.mark.process  # quantizes and converts twice: the second tier
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_an_int8_file_is_smaller_and_agrees_with_the_float_model(fmt, decisive_model,
                                                                 int8_files):
    pytest.importorskip(PACKAGES[fmt])
    model, batch = decisive_model
    int8 = fmt + "_int8"
    check = int8_files.checks[int8]
    size, float_size = os.path.getsize(int8_files[int8]), os.path.getsize(int8_files[fmt])
    assert os.path.basename(int8_files[int8]) == {"onnx": "model_int8.onnx",
                                                  "litert": "model_int8.tflite"}[fmt]
    assert check["bytes"] == size and int8_files.checks[fmt]["bytes"] == float_size
    # The float file it was quantized from is the float format's (tf2onnx's names may differ
    # by a few bytes), and int8 weights make the file much smaller (0.56 and 0.40 measured).
    assert check["float_bytes"] == pytest.approx(float_size, rel=0.01)
    assert size < 0.7 * float_size
    expected = np.asarray(model(batch))
    predictions = np.argmax(expected, -1)
    assert 0.25 <= predictions.mean() <= 0.75  # both classes: agreement is not a constant
    got = RUNNERS[int8](int8_files[int8])(batch)
    assert check["examples"] == len(expected) == quantized.AGREEMENT_EXAMPLES
    assert check["agreement"] == np.mean(np.argmax(got, -1) == predictions)
    assert check["agreement"] >= 0.95
    assert check["max_abs_diff"] == pytest.approx(np.max(np.abs(got - expected)), rel=1e-5)
    # Rounded (not the float file under another name), and little next to the logits' scale.
    assert 1e-6 < check["max_abs_diff"] < 0.05 * np.max(np.abs(expected))


@pytest.mark.process  # quantizes and converts twice: the second tier
@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_an_int8_file_is_served_without_keras_flop(fmt, decisive_model, int8_files, tmp_path):
    pytest.importorskip(PACKAGES[fmt])
    model, _ = decisive_model
    batch = sample_batch(TINY["vocab_size"], batch_size=3, seq_length=12, seed=3)
    np.savez(tmp_path / "batch.npz", **batch)
    served = subprocess.run([sys.executable, "-c", SERVE_ALONE, fmt,
                             int8_files[fmt + "_int8"], str(tmp_path / "batch.npz")],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 0, served.stderr
    logits = np.array(json.loads(served.stdout.splitlines()[-1]))
    np.testing.assert_allclose(logits, RUNNERS[fmt + "_int8"](int8_files[fmt + "_int8"])(batch),
                               atol=1e-6)
    np.testing.assert_allclose(logits, model(batch), atol=0.05 * np.max(np.abs(model(batch))))


@pytest.mark.process  # quantizes and converts twice: the second tier
def test_onnx_int8_keeps_the_embeddings_and_the_classifier_in_float(int8_files, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    from onnx import numpy_helper

    def int8_arrays(path):
        return [a for a in map(numpy_helper.to_array, onnx.load(path).graph.initializer)
                if a.dtype == np.int8]

    hidden, units = INT8_TINY["hidden_size"], INT8_TINY["intermediate_size"]
    # Int8 weights: the encoder's dense kernels and the pooler's; not the tables (30, 2 and 16
    # rows) nor the classifier (64 × 2).
    assert {a.shape for a in int8_arrays(int8_files["onnx_int8"]) if a.ndim == 2} == {
        (hidden, hidden), (hidden, units), (units, hidden)}
    graph = onnx.load(int8_files["onnx_int8"]).graph
    float_matmuls = [node.name for node in graph.node if node.op_type == "MatMul"]
    classifier = quantized.classifier_matmul(onnx.load(int8_files["onnx"]))
    assert "classifier" in classifier and classifier in float_matmuls
    # Beside it, only the attention's two products of activations per layer.
    assert len(float_matmuls) == 1 + 2 * INT8_TINY["num_hidden_layers"]
    # One scale (and zero point) per weight column by default; per matrix without per_channel.
    assert {a.shape for a in int8_arrays(int8_files["onnx_int8"]) if a.ndim == 1} == {
        (hidden,), (units,)}
    quantized.quantize_onnx(int8_files["onnx"], tmp_path / "per_matrix.onnx", per_channel=False)
    assert not [a for a in int8_arrays(tmp_path / "per_matrix.onnx") if a.ndim == 1]


def test_an_int8_file_that_disagrees_is_refused_and_leaves_nothing(compact_model, tmp_path,
                                                                   monkeypatch):
    import keras_flop.export.formats as formats

    _fake_format(monkeypatch, compact_model, "onnx")
    _fake_format(monkeypatch, compact_model, "onnx_int8")
    options = []

    def write_int8(source, path, **kwargs):
        options.append(kwargs)
        with open(path, "wb") as f:
            f.write(b"int8")
        return len(b"a converted model")

    monkeypatch.setitem(formats._WRITERS, "onnx_int8", write_int8)
    # The file's logits swapped: every prediction the other class.
    monkeypatch.setitem(formats.RUNNERS, "onnx_int8",
                        lambda path: lambda batch: np.asarray(compact_model(batch))[:, ::-1])
    batch = quantized.agreement_batch(TINY["vocab_size"], 16, examples=8, seed=1)
    logits = np.asarray(compact_model(batch))
    share = np.mean(np.argmax(logits, -1) == np.argmax(logits[:, ::-1], -1))
    with pytest.raises(ValueError, match=f"onnx_int8 export: its predictions in its runtime "
                                         f"agree with the float model's on {share:.1%} of 8 "
                                         r"examples \(< min_agreement=0.9\); no file"):
        export_formats(compact_model, tmp_path / "out", ["onnx", "onnx_int8"],
                       agreement_batch=batch, per_channel=False)
    assert not (tmp_path / "out").exists() and options == [{"per_channel": False}]
    # Accepting less writes both; the agreement batch is `batch` when only that is given.
    files = export_formats(compact_model, tmp_path / "out", ["onnx", "onnx_int8"], batch=batch,
                           min_agreement=0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx",
                                                                    "model_int8.onnx"]
    assert files.checks["onnx_int8"]["agreement"] == share
    assert files.checks["onnx_int8"]["examples"] == files.checks["onnx"]["examples"] == 8


@pytest.mark.parametrize("value, message", [
    (90, "`min_agreement` must be a share between 0 and 1 (e.g. 0.9 for 90% of the examples); "
         "got 90."),
    ("0.9", "got '0.9'")])
def test_min_agreement_is_checked(compact_model, tmp_path, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_formats(compact_model, tmp_path, ["onnx_int8"], min_agreement=value)
    assert not list(tmp_path.iterdir())


def test_an_agreement_batch_is_checked(compact_model, tmp_path, monkeypatch):
    _fake_format(monkeypatch, compact_model, "onnx_int8")
    with pytest.raises(ValueError, match="`agreement_batch` must be a dict of id arrays with "
                                         "the keys token_ids, segment_ids, padding_mask"):
        export_formats(compact_model, tmp_path, ["onnx_int8"],
                       agreement_batch={"token_ids": np.ones((2, 4), "int32")})


def test_agreement_of_classes_and_of_a_regressor():
    expected = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 1.0], [0.2, 0.1, 0.3]])
    assert quantized.agreement(expected, expected + [[0, 0.9, 0], [0, 0, 0], [0, 0, 0]]) == 1
    assert quantized.agreement(expected, expected + [[0, 1.1, 0], [0, 0, 0], [0.2, 0, 0]]) == \
        pytest.approx(1 / 3)
    # A regressor: within 5% of its largest output (here 0.25).
    scores = np.array([[5.0], [0.0], [2.5]])
    assert quantized.agreement(scores, scores + [[0.2], [-0.25], [0.3]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"shapes \(3, 1\) and \(3, 2\) cannot be compared"):
        quantized.agreement(scores, np.zeros((3, 2)))
