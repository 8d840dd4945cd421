"""The private framework APIs of keras_flop.compat exist in the installed versions, and a
missing one is reported by name."""

import os
import subprocess
import sys

import keras
import pytest

from keras_flop import compat


def test_installed_versions_have_every_hook():
    assert compat.missing_hooks() == []
    compat.check_hooks()


def test_a_missing_hook_is_named(monkeypatch):
    for base in keras.Model.__mro__:  # the method lives on a backend trainer base class
        if "_maybe_symbolic_build" in vars(base):
            monkeypatch.delattr(base, "_maybe_symbolic_build")
    missing = compat.missing_hooks()
    assert len(missing) == 1 and missing[0].startswith("keras.Model._maybe_symbolic_build ")
    with pytest.raises(RuntimeError, match="_maybe_symbolic_build"):
        compat.check_hooks()


def test_a_missing_optimizer_hook_is_named(monkeypatch):
    monkeypatch.setattr(keras.optimizers, "Adam", lambda: object())  # no `_learning_rate`
    missing = compat.missing_hooks()
    assert len(missing) == 1
    assert missing[0].startswith("keras.optimizers.Optimizer._learning_rate (learning_rate_of;")


def test_a_missing_tensorflow_hook_is_named(monkeypatch):
    from tensorflow.python.framework import config

    monkeypatch.delattr(config, "is_op_determinism_enabled")
    missing = compat.missing_hooks()
    assert len(missing) == 1
    assert missing[0].startswith("tensorflow.python.framework.config.is_op_determinism_enabled "
                                 "(op_determinism_enabled;")


@pytest.mark.process  # enabling determinism cannot be undone in this process
def test_op_determinism_is_read_as_set():
    script = ("import tensorflow as tf\n"
              "from keras_flop.compat import op_determinism_enabled\n"
              "before = op_determinism_enabled()\n"
              "tf.config.experimental.enable_op_determinism()\n"
              "print(before, op_determinism_enabled())\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["False", "True"]


def test_tf2onnx_pass_is_restored():
    optimizer = pytest.importorskip("tf2onnx.optimizer")
    before = dict(optimizer._optimizers)
    assert "reshape_optimizer" in before
    with compat.tf2onnx_without_pass("reshape_optimizer"):
        assert "reshape_optimizer" not in optimizer._optimizers
    assert optimizer._optimizers == before


def test_encoder_sublayers_are_the_layers_weights():
    keras_hub = pytest.importorskip("keras_hub")
    layer = keras_hub.layers.TransformerEncoder(intermediate_dim=8, num_heads=2)
    layer.build((1, 3, 4))
    found = compat.encoder_sublayers(layer)
    assert sorted(found) == ["attention_key", "attention_layer_norm", "attention_output",
                             "attention_query", "attention_value", "intermediate", "output",
                             "output_layer_norm"]
    owned = {id(w) for w in layer.weights}
    assert all(id(w) in owned for sub in found.values() for w in sub.weights)
    assert sum(len(sub.weights) for sub in found.values()) == len(layer.weights)
