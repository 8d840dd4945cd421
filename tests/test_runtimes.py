"""keras_flop.export.runtimes: the Keras model, its ONNX file and its LiteRT file run as
callables on the same feature batches, with the thread count asked for."""

import numpy as np
import pytest

import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.export import runtimes
from keras_flop.export.formats import export_formats, sample_batch
from keras_flop.latency.timing import calls_in_turn

TINY = dict(vocab_size=30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=16)


@pytest.fixture(scope="module")
def compact_model():
    pruning_model = keras_flop.factorize(build_bert_classifier(BertConfig(**TINY)),
                                         structure="heads+ffn")
    pruning_model.network.get_layer("layer_1_head_mask").log_alpha.assign([10.0, -10, 10, 10])
    return keras_flop.compact(pruning_model)


def feature_batches():
    """Batches of three shapes, the mask as 0/1 as a strategy's dataset gives it."""
    return [runtimes.feature_batch({**batch, "padding_mask": batch["padding_mask"]
                                    .astype("int32")})
            for batch in (sample_batch(30, size, length, seed=size)
                          for size, length in ((8, 16), (1, 16), (3, 7)))]


@pytest.mark.parametrize("fmt, package", [("onnx", "onnxruntime"),
                                          ("litert", "ai_edge_litert")])
def test_a_float_file_predicts_what_keras_predicts_on_the_same_batches(fmt, package,
                                                                       compact_model, tmp_path):
    pytest.importorskip(package)
    path = export_formats(compact_model, tmp_path, [fmt])[fmt]
    batches = feature_batches()
    keras_runner = runtimes.KerasRunner(compact_model)
    file_runner = runtimes.runner(fmt, path, threads=2)
    expected = runtimes.predict(keras_runner, batches)
    assert expected.shape == (12, 2) and expected.dtype == np.float32
    np.testing.assert_allclose(expected, np.concatenate(
        [np.asarray(compact_model(b, training=False)) for b in batches]), atol=1e-6)
    np.testing.assert_allclose(runtimes.predict(file_runner, batches), expected, atol=1e-4)
    # Both time under the one protocol.
    rounds = calls_in_turn({"keras": keras_runner, fmt: file_runner}, batches, repeats=2)
    assert list(rounds) == ["keras", fmt] and all(len(r) == 2 for r in rounds.values())
    if fmt == "onnx":  # the threads asked for (LiteRT's interpreter does not report its own)
        options = file_runner.session.get_session_options()
        assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_bad_arguments_say_what_to_pass(tmp_path):
    with pytest.raises(ValueError, match=r"`threads` must be a whole number of threads, at "
                                         r"least 1 \(e.g. tf_threads\(\)\), or None.*got 0"):
        runtimes.OnnxRunner(tmp_path / "model.onnx", threads=0)
    with pytest.raises(ValueError, match="got True"):
        runtimes.LiteRTRunner(tmp_path / "model.tflite", threads=True)
    with pytest.raises(ValueError, match=r"No runtime runs the format 'saved_model': pass one "
                                         r"of onnx, litert, onnx_int8, litert_int8"):
        runtimes.runner("saved_model", tmp_path)
    with pytest.raises(ValueError, match=r"missing \['padding_mask'\]"):
        runtimes.feature_batch({"token_ids": [[1]], "segment_ids": [[0]]})
    with pytest.raises(ValueError, match="at least one batch"):
        runtimes.predict(lambda batch: batch, [])
    with pytest.raises(ValueError, match="`repeats` must be a whole number of rounds"):
        calls_in_turn({"a": lambda batch: batch}, [np.ones(2)], repeats=0)


def test_tf_threads_is_tensorflow_s_setting_or_the_cpus_it_may_use(monkeypatch):
    import os

    import tensorflow as tf

    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: 0)
    assert runtimes.tf_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: 5)
    assert runtimes.tf_threads() == 5
