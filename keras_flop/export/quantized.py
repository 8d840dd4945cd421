"""The INT8 formats of `export_formats`: `onnx_int8` and `litert_int8`, and the agreement they
are verified by.

Both quantize dynamically: the weights are stored as int8, and each call quantizes the
activations entering an integer matmul from their range in that call, so no calibration data
is needed, and the file takes the same id inputs and returns float32 logits as its float
counterpart.

- `onnx_int8` (`model_int8.onnx`): the float ONNX file through onnxruntime's
  `quantize_dynamic`, MatMul only. The weight of every MatMul with a constant weight (the
  encoder's dense layers and the pooler) is stored int8, and the MatMul runs as
  `DynamicQuantizeLinear` (uint8 activations) → `MatMulInteger`. What stays float32: the
  word, position and token-type embedding tables and their lookups (Gather), the attention's
  two products of activations (scores and context), LayerNorm, GELU, softmax, every bias, and
  the classifier's MatMul: its weight is a small share of the file, and its error reaches the
  prediction directly, with no later layer to average it out. Each weight column has its own
  scale (`per_channel=True`, the default): on SST-2 it raised the share of dev answers equal
  to the float model's from 97.1 % to 98.3 % (dense MiniLM-L6) and from 98.4 % to 99.7 % (its
  2× compact model) at the same speed (`benchmarks/int8_sensitivity.py`); `per_channel=False`
  gives one scale per matrix.
- `litert_int8` (`model_int8.tflite`): TensorFlow's `TFLiteConverter` in its dynamic-range mode
  (`optimizations=[tf.lite.Optimize.DEFAULT]`, no representative dataset), from a float32 copy
  of a mixed-precision model. Every constant weight of at least 1024 elements is stored int8:
  the dense kernels (per output channel, run by hybrid int8 FULLY_CONNECTED kernels), and also
  the word and token-type tables (one scale per table, dequantized after the lookup) and the
  classifier when it has 1024 weights or more (BERT-base's 768 × 2 has). The converter offers
  no public way to keep one layer in float. The position table (read by a Slice), smaller
  weights, biases and LayerNorm stay float32.

INT8 cannot meet the float formats' 1e-4 logit check, so an INT8 file is verified at the task
level instead: `agreement` is the share of examples on which the file, run in its own runtime,
predicts what the float Keras model predicts. `export_formats` reports it with the largest
logit difference and the sizes of the INT8 file and of its float counterpart.
"""

import os

import numpy as np
import tensorflow as tf

from keras_flop.export.float_files import (export_onnx, float32_copy, litert_flatbuffers,
                                           write_file)

INT8_FORMATS = ("onnx_int8", "litert_int8")
# A one-output model (a regressor, STS-B) agrees on an example when its output is within this
# share of the largest float output on the batch: 0.25 on STS-B's 0 to 5 scale.
REGRESSION_TOLERANCE = 0.05
AGREEMENT_EXAMPLES = 64


def agreement(expected, got):
    """The share of examples on which the logits `got` predict what `expected` predicts.

    Several outputs: the same argmax. One output (a regressor): `got` within
    `REGRESSION_TOLERANCE` times the largest `|expected|` on the batch.

    Example:
    >>> expected = np.array([[2.0, 1.0], [0.0, 1.0], [1.0, 3.0]])
    >>> agreement(expected, np.array([[2.0, 1.5], [1.0, 0.0], [0.0, 2.0]]))
    0.6666666666666666
    >>> agreement(np.array([[4.0], [1.0]]), np.array([[4.1], [1.5]]))  # tolerance 0.2
    0.5
    """
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    if expected.shape != got.shape or expected.ndim != 2 or not len(expected):
        raise ValueError(f"Logits of shapes {expected.shape} and {got.shape} cannot be "
                         "compared: both must be [examples, outputs], the same shape.")
    if expected.shape[1] == 1:
        tolerance = REGRESSION_TOLERANCE * np.max(np.abs(expected))
        return float(np.mean(np.abs(got - expected)[:, 0] <= tolerance))
    return float(np.mean(np.argmax(got, -1) == np.argmax(expected, -1)))


def agreement_batch(vocab_size, seq_length=32, examples=AGREEMENT_EXAMPLES, seed=0):
    """Random ids of random lengths (2 to `seq_length`, two segments), the default inputs an
    INT8 file's agreement is measured on when the caller gives none. Real examples (the app
    passes dev examples) make the agreement a task-level figure; random ones still catch a
    broken file.

    Example:
    >>> batch = agreement_batch(30, seq_length=16, examples=5)
    >>> batch["token_ids"].shape, int(batch["padding_mask"].sum(1).min()) >= 2
    ((5, 16), True)
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, seq_length + 1, examples)
    splits = rng.integers(1, lengths)  # the second segment starts there
    positions = np.arange(seq_length)[None, :]
    mask = positions < lengths[:, None]
    return {"token_ids": (rng.integers(1, vocab_size, (examples, seq_length)) * mask)
            .astype(np.int32),
            "segment_ids": ((positions >= splits[:, None]) * mask).astype(np.int32),
            "padding_mask": mask}


def check_agreement_batch(batch):
    """`batch` as numpy arrays; a one-line error saying what an agreement batch is."""
    keys = ("token_ids", "segment_ids", "padding_mask")
    if not isinstance(batch, dict) or set(keys) - set(batch):
        got = f"keys {', '.join(map(str, batch))}" if isinstance(batch, dict) else \
            type(batch).__name__
        raise ValueError("`agreement_batch` must be a dict of id arrays with the keys "
                         f"{', '.join(keys)} ([examples, seq] each), e.g. the features of a "
                         f"dev batch; got {got}.")
    batch = {key: np.asarray(batch[key]) for key in keys}
    if batch["token_ids"].ndim != 2 or not len(batch["token_ids"]):
        raise ValueError("`agreement_batch`'s token_ids must be [examples, seq] with at least "
                         f"one example; got shape {batch['token_ids'].shape}.")
    return batch


def classifier_matmul(onnx_model):
    """The name of the MatMul nearest the logits that has a constant weight: the classifier's.

    Found from the graph's output back, so it does not depend on how the converter named
    the nodes.
    """
    graph = onnx_model.graph
    producers = {output: node for node in graph.node for output in node.output}
    constants = {i.name for i in graph.initializer} | {
        output for node in graph.node if node.op_type == "Constant" for output in node.output}
    frontier, seen = [output.name for output in graph.output], set()
    while frontier:  # breadth first: the nearest MatMul is met first
        node = producers.get(frontier.pop(0))
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "MatMul" and any(name in constants for name in node.input):
            return node.name
        frontier.extend(node.input)
    raise ValueError("No MatMul with a constant weight feeds the ONNX graph's logits: the "
                     "classifier cannot be kept in float.")


def layer_matmuls(onnx_model, layer_names):
    """The names of the MatMuls of the Keras layers `layer_names` (e.g. `"layer_3_output"`,
    `"pooler"`) in an ONNX graph tf2onnx converted: a node belongs to a layer when a `/`-part
    of its name is the layer's name, with the `_N` suffix TensorFlow's name scopes add. Raises
    a `ValueError` naming a layer that owns no MatMul (a misspelt name, or another converter's
    naming).

    >>> import onnx
    >>> node = onnx.helper.make_node("MatMul", ["x", "w"], ["y"],
    ...                              name="bert_classifier_1/layer_0_output_1/Tensordot/MatMul")
    >>> graph = onnx.helper.make_graph([node], "g", [], [])
    >>> layer_matmuls(onnx.helper.make_model(graph), ["layer_0_output"])
    ['bert_classifier_1/layer_0_output_1/Tensordot/MatMul']
    """
    import re

    matmuls = [node.name for node in onnx_model.graph.node if node.op_type == "MatMul"]
    found = []
    for layer in layer_names:
        pattern = re.compile(rf"(^|/){re.escape(layer)}(_\d+)?/")
        names = [name for name in matmuls if pattern.search(name)]
        if not names:
            raise ValueError(f"No MatMul of the layer {layer!r} in the ONNX graph; its MatMuls "
                             f"are {matmuls[:6]}{' ...' if len(matmuls) > 6 else ''}.")
        found += names
    return found


def quantize_onnx(float_path, path, per_channel=True, float_layers=()):
    """Writes to `path` the ONNX file `float_path` with its MatMul weights in int8 (onnxruntime's
    `quantize_dynamic`), the classifier's MatMul and everything but MatMuls left in float, and
    the MatMuls of the Keras layers `float_layers` too (`layer_matmuls`: the layers whose
    quantization costs the most accuracy, kept float)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(os.fspath(float_path))
    classifier = classifier_matmul(graph)
    kept_float = [classifier] + layer_matmuls(graph, float_layers)
    temporary = os.fspath(path) + ".tmp"
    # QInt8 weights: symmetric int8 around a zero point of 0 suits weights centred on 0 and
    # gives uint8 × int8 (U8S8) matmuls, the kernels onnxruntime makes fastest on x86
    # (VNNI); quantize_dynamic always takes the activations as uint8. Only MatMul: Gather
    # would store the embedding tables in int8. quantize_dynamic's default MatMulConstBOnly
    # keeps the attention's activation × activation products in float.
    # DefaultTensorType: the graph is float32 throughout; shape inference cannot type the
    # outputs of onnxruntime's fused operators (a graph from its transformer optimizer).
    quantize_dynamic(os.fspath(float_path), temporary, op_types_to_quantize=["MatMul"],
                     per_channel=per_channel, weight_type=QuantType.QInt8,
                     nodes_to_exclude=kept_float,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    os.replace(temporary, path)
    return os.fspath(path)


def export_onnx_int8(model, path, per_channel=True):
    """Writes `model` to the ONNX file `path` with int8 weights (`quantize_onnx` of the float
    file `export_onnx` writes). Returns the float file's size in bytes."""
    float_path = os.fspath(path) + ".float"
    try:
        export_onnx(model, float_path)
        float_bytes = os.path.getsize(float_path)
        quantize_onnx(float_path, path, per_channel=per_channel)
    finally:
        for leftover in (float_path, float_path + ".tmp", os.fspath(path) + ".tmp"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return float_bytes


def export_litert_int8(model, path):
    """Writes `model` to the LiteRT file `path` in the converter's dynamic-range mode (int8
    weights). Returns the size in bytes of the float file converted from the same SavedModel."""
    network = float32_copy(getattr(model, "network", model))
    float_file, int8_file = litert_flatbuffers(
        network, [{}, {"optimizations": [tf.lite.Optimize.DEFAULT]}])
    write_file(path, int8_file)
    return len(float_file)


WRITERS = {"onnx_int8": export_onnx_int8, "litert_int8": export_litert_int8}
