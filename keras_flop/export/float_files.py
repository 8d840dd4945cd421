"""The float32 files: the model's logits on the three id inputs as an ONNX file (tf2onnx) or a
LiteRT flatbuffer (`tf.lite.TFLiteConverter`), each written through a temporary name. The INT8
files are made from these (`keras_flop.export.quantized`), and `keras_flop.export.formats`
verifies both kinds."""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_flop.export.requirements import require


def _signature():
    return [tf.TensorSpec([None, None], tf.int32, name="token_ids"),
            tf.TensorSpec([None, None], tf.int32, name="segment_ids"),
            tf.TensorSpec([None, None], tf.bool, name="padding_mask")]


def _logits_function(model):
    network = getattr(model, "network", model)

    @tf.function(input_signature=_signature())
    def logits(token_ids, segment_ids, padding_mask):
        outputs = network({"token_ids": token_ids, "segment_ids": segment_ids,
                           "padding_mask": padding_mask}, training=False)
        return {"logits": tf.cast(outputs, tf.float32)}

    return network, logits


def export_onnx(model, path):
    """Writes `model` (its logits on the three id inputs) to the ONNX file `path`."""
    require("onnx")
    import tf2onnx

    from keras_flop.compat import tf2onnx_without_pass

    _, logits = _logits_function(model)
    temporary = os.fspath(path) + ".tmp"
    # tf2onnx's reshape optimizer (1.17) rewrites the head split's Reshape with the shape of
    # the flattened [batch*seq, hidden] matmul input, which onnxruntime then rejects: convert
    # without that one pass. Opset 17 is read by every current onnxruntime.
    with tf2onnx_without_pass("reshape_optimizer"):
        tf2onnx.convert.from_function(logits, input_signature=_signature(), opset=17,
                                      output_path=temporary)
    os.replace(temporary, path)
    return os.fspath(path)


def _computes_in_float32(network):
    return all(layer.dtype_policy.compute_dtype == "float32" for layer in network.layers)


def _float32_policies(value):
    """A layer config with every dtype policy that does not compute in float32 made
    `"float32"`."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and \
                str(value.get("config", {}).get("name", "float32")) != "float32":
            return "float32"
        return {key: _float32_policies(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_float32_policies(item) for item in value]
    if isinstance(value, str) and value in ("mixed_float16", "mixed_bfloat16", "float16",
                                            "bfloat16"):
        return "float32"
    return value


def float32_copy(network):
    """`network` itself when every layer computes in float32, else a copy of it (same class
    and weights) whose layers all compute and keep their weights in float32.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> mixed = keras_flop.build_bert_classifier(config, dtype="mixed_float16")
    >>> copy = float32_copy(mixed)
    >>> {layer.dtype_policy.name for layer in copy.layers}
    {'float32'}
    """
    if _computes_in_float32(network):
        return network
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = type(network).from_config(_float32_policies(network.get_config()))
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights([np.asarray(w, np.float32) for w in network.get_weights()])
    return copy


def litert_flatbuffers(network, settings=({},)):
    """The LiteRT flatbuffers of `network`'s logits, one per entry of `settings`, all converted
    from one SavedModel. Each entry is a dict of `tf.lite.TFLiteConverter` attributes set
    before converting: `{}` float32, `{"optimizations": [tf.lite.Optimize.DEFAULT]}`
    dynamic-range INT8, and with a `representative_dataset` as well integer activations
    calibrated on it; `supported_ops` sets `target_spec.supported_ops` (default: the builtin
    float and int8 kernels)."""
    require("litert")
    network, logits = _logits_function(network)
    # Through a SavedModel written by Keras' ExportArchive, as Keras' own
    # `export(format="litert")` does: the converter then initializes the weights.
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serve", logits, input_signature=_signature())
    flatbuffers = []
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        for setting in settings:
            setting = dict(setting)
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            converter.target_spec.supported_ops = setting.pop(
                "supported_ops", [tf.lite.OpsSet.TFLITE_BUILTINS])
            converter.experimental_enable_resource_variables = True
            for name, value in setting.items():
                if not hasattr(converter, name):
                    raise ValueError(f"`TFLiteConverter` has no attribute {name!r}: pass its "
                                     "attributes (optimizations, representative_dataset, "
                                     "...) or supported_ops.")
                setattr(converter, name, value)
            flatbuffers.append(converter.convert())
    return flatbuffers


def write_file(path, data):
    """`data` (bytes) to `path` through a temporary name: never a half-written file there."""
    temporary = os.fspath(path) + ".tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)
    return os.fspath(path)


def export_litert(model, path):
    """Writes `model` (its logits on the three id inputs) to the LiteRT file `path`; a model
    that computes in float16 or bfloat16 through a float32 copy of it (`float32_copy`)."""
    flatbuffer, = litert_flatbuffers(float32_copy(getattr(model, "network", model)))
    return write_file(path, flatbuffer)
