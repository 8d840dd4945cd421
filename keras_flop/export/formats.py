"""`export_formats`: the model for runtimes other than TF Serving: ONNX and LiteRT.

Each file takes the id inputs of the SavedModel's `serving_default` (`token_ids`,
`segment_ids` int32, `padding_mask` bool, `[batch, seq]` with both dimensions dynamic) and
returns `logits` `[batch, num_labels]`; text is tokenized by the client (the SavedModel's
`tokenize_text` signature, or `keras_flop.BertPreprocessor`, gives the ids). Every file is
verified after writing: loaded in its own runtime, fed one id batch, its logits compared with
the Keras model's.

The converters and runtimes are optional extras, never needed by the core install:
- `onnx` (`pip install "keras-flop[onnx]"`: tf2onnx, onnxruntime): `model.onnx`, converted
  from the model's `tf.function` by tf2onnx, the converter Keras' own
  `Model.export(format="onnx")` uses on TensorFlow.
- `litert` (`pip install "keras-flop[litert]"`: ai-edge-litert): `model.tflite`, converted by
  TensorFlow's `tf.lite.TFLiteConverter` (builtin ops only: float32, no quantization) and
  run by ai-edge-litert's interpreter, LiteRT's maintained runtime.
"""

import importlib
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

FORMATS = ("saved_model", "onnx", "litert")
FILE_NAMES = {"onnx": "model.onnx", "litert": "model.tflite"}
# The packages each format needs, and the extra that installs them.
_REQUIREMENTS = {"onnx": ("tf2onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}
_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def check_formats(formats):
    """The formats as a tuple in `FORMATS`; an error naming the choices.

    Example:
    >>> check_formats("saved_model,onnx")
    ('saved_model', 'onnx')
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Export formats must be drawn from {', '.join(FORMATS)}; got "
                         f"{unknown or 'none'}.")
    return formats


def require(fmt):
    """Imports the packages of `fmt`; a one-line error naming the extra to install."""
    for package in _REQUIREMENTS[fmt]:
        try:
            importlib.import_module(package)
        except ImportError:
            raise ImportError(f"Export format {fmt!r} needs {package}: pip install "
                              f"\"keras-flop[{fmt}]\" (or pip install "
                              f"{' '.join(p.replace('_', '-') for p in _REQUIREMENTS[fmt])})."
                              ) from None


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


def sample_batch(vocab_size, batch_size=2, seq_length=8, seed=0):
    """Random ids with padding, to check an exported file against the Keras model.

    Example:
    >>> batch = sample_batch(30, batch_size=2, seq_length=4)
    >>> sorted(batch), batch["token_ids"].shape, batch["padding_mask"].dtype
    (['padding_mask', 'segment_ids', 'token_ids'], (2, 4), dtype('bool'))
    """
    rng = np.random.default_rng(seed)
    lengths = np.maximum(seq_length - np.arange(batch_size) * (seq_length // 2), 1)
    mask = np.arange(seq_length)[None, :] < lengths[:, None]
    return {"token_ids": (rng.integers(1, vocab_size, (batch_size, seq_length)) * mask)
            .astype(np.int32),
            "segment_ids": ((np.arange(seq_length)[None, :] >= lengths[:, None] // 2) * mask)
            .astype(np.int32),
            "padding_mask": mask}


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


def export_litert(model, path):
    """Writes `model` (its logits on the three id inputs) to the LiteRT file `path`."""
    require("litert")
    network, logits = _logits_function(model)
    # Through a SavedModel written by Keras' ExportArchive, as Keras' own
    # `export(format="litert")` does: the converter then initializes the weights.
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint("serve", logits, input_signature=_signature())
    with tempfile.TemporaryDirectory() as saved:
        archive.write_out(saved, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        flatbuffer = converter.convert()
    temporary = os.fspath(path) + ".tmp"
    with open(temporary, "wb") as f:
        f.write(flatbuffer)
    os.replace(temporary, path)
    return os.fspath(path)


class OnnxRunner:
    """Runs a `model.onnx` in onnxruntime: `runner(batch)` -> logits (numpy)."""

    def __init__(self, path, threads=None):
        require("onnx")
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(os.fspath(path), options,
                                                    providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch):
        feed = {}
        for name in self.names:
            key = next(k for k in _INPUTS if name.startswith(k))
            feed[name] = np.asarray(batch[key], bool if key == "padding_mask" else np.int32)
        return self.session.run(None, feed)[0]


class LiteRTRunner:
    """Runs a `model.tflite` in ai-edge-litert: `runner(batch)` -> logits (numpy).

    The inputs are resized to each batch's shape when it changes (LiteRT's dynamic shapes).
    """

    def __init__(self, path, threads=None):
        require("litert")
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=os.fspath(path), num_threads=threads)
        self.shape = None

    def __call__(self, batch):
        interpreter = self.interpreter
        details = interpreter.get_input_details()
        shape = tuple(np.shape(batch["token_ids"]))
        if shape != self.shape:
            for detail in details:
                interpreter.resize_tensor_input(detail["index"], shape, strict=False)
            interpreter.allocate_tensors()
            details = interpreter.get_input_details()
            self.shape = shape
        for detail in details:
            key = next(k for k in _INPUTS if k in detail["name"])
            interpreter.set_tensor(detail["index"], np.asarray(batch[key], detail["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


RUNNERS = {"onnx": OnnxRunner, "litert": LiteRTRunner}
_WRITERS = {"onnx": export_onnx, "litert": export_litert}


def export_formats(model, export_dir, formats=("onnx", "litert"), batch=None, atol=1e-4):
    """Exports `model` to ONNX and/or LiteRT in `export_dir`, verifying each file.

    Args:
        model: a dense, pruning (its deterministic network) or compact model.
        export_dir: folder for `model.onnx` and `model.tflite` (created).
        formats: drawn from `"onnx"`, `"litert"` (a comma-separated string works too);
            `"saved_model"` is `export_saved_model`'s and is skipped here.
        batch: the id batch to verify with; default `sample_batch` over the vocabulary.
        atol: largest absolute logit difference accepted.

    Returns:
        `{format: path}`.

    Raises:
        ImportError: naming the extra to install when a format's packages are missing.
        ValueError: when a file's logits in its runtime differ from the Keras model's by more
            than `atol` (the file is then removed).

    Example:
    >>> export_formats(compact_model, "export/runtimes", ["onnx", "litert"])  # doctest: +SKIP
    {'onnx': 'export/runtimes/model.onnx', 'litert': 'export/runtimes/model.tflite'}
    """
    formats = [f for f in check_formats(formats) if f != "saved_model"]
    for fmt in formats:
        require(fmt)  # all missing packages are reported before any work is done
    network = getattr(model, "network", model)
    if batch is None:
        vocab = network.get_layer("word_embeddings").input_dim \
            if any(layer.name == "word_embeddings" for layer in network.layers) else 2
        batch = sample_batch(vocab)
    expected = np.asarray(network(batch, training=False), np.float32)
    os.makedirs(export_dir, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = os.path.join(os.fspath(export_dir), FILE_NAMES[fmt])
        _WRITERS[fmt](model, path)
        got = np.asarray(RUNNERS[fmt](path)(batch), np.float32)
        gap = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else np.inf
        if not gap <= atol:
            os.remove(path)
            raise ValueError(f"{fmt} export: logits in its runtime differ from the Keras "
                             f"model's by {gap:.2e} (> {atol}); the file was removed.")
        paths[fmt] = path
    return paths
