"""A classifier run in the runtime it is served with, as one callable on feature batches:
`KerasRunner` (the Keras model as a graph), `OnnxRunner` (onnxruntime) and `LiteRTRunner`
(the LiteRT interpreter) take the same batches and return the same logits, so that a caller
computes a dev metric and times latencies in every runtime alike (`predict`, and
`keras_flop.latency.timing.calls_in_turn`).

A feature batch is a dict of `token_ids`, `segment_ids` (int32) and `padding_mask` (bool),
each `[batch, seq]`: what the batches of `keras_flop.glue.make_dataset` hold (`feature_batch`
converts them once, so that no runtime pays for the conversion while it is timed). A runner
returns the logits `[batch, num_labels]` as float32 numpy. `threads` sets a runtime's
intra-op threads; `tf_threads()` is the number TensorFlow uses in this process, to give
every runtime the same.
"""

import os

import numpy as np

from keras_flop.export.requirements import require

INPUTS = ("token_ids", "segment_ids", "padding_mask")


def feature_batch(batch):
    """`batch` (a dict of arrays or tensors, the padding mask bool or 0/1) as the numpy arrays
    every runner takes: int32 ids, a bool mask. Other keys are dropped.

    Example:
    >>> batch = feature_batch({"token_ids": [[2, 7, 0]], "segment_ids": [[0, 0, 0]],
    ...                        "padding_mask": [[1, 1, 0]]})
    >>> batch["token_ids"].dtype, batch["padding_mask"].tolist()
    (dtype('int32'), [[True, True, False]])
    """
    missing = [key for key in INPUTS if not isinstance(batch, dict) or key not in batch]
    if missing:
        raise ValueError(f"A feature batch is a dict of {', '.join(INPUTS)} ([batch, seq] "
                         f"each, e.g. the features of a dev batch); missing {missing}.")
    return {key: np.asarray(batch[key], bool if key == "padding_mask" else np.int32)
            for key in INPUTS}


def tf_threads():
    """The intra-op threads TensorFlow runs an op on in this process: its setting, or, left
    at 0 (the default), every CPU this process may run on, as TensorFlow then uses.

    Example:
    >>> tf_threads() >= 1
    True
    """
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads()
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_threads(threads):
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"`threads` must be a whole number of threads, at least 1 (e.g. "
                         f"tf_threads()), or None for the runtime's default; got {threads!r}.")


class KerasRunner:
    """A Keras classifier's inference pass as one graph (`keras_flop.latency.timing.
    compiled_forward`, no retracing per batch size): `runner(batch)` -> logits (numpy).

    TensorFlow's threads are the process' (`tf_threads()`): they are set before TensorFlow
    starts, not per model.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=32)
    >>> runner = KerasRunner(keras_flop.build_bert_classifier(config))
    >>> from keras_flop.export.formats import sample_batch
    >>> logits = runner(sample_batch(30, batch_size=3, seq_length=5))
    >>> logits.shape, logits.dtype
    ((3, 2), dtype('float32'))
    """

    def __init__(self, model):
        from keras_flop.latency.timing import compiled_forward

        self.forward = compiled_forward(model)

    def __call__(self, batch):
        return np.asarray(self.forward(batch), np.float32)


class OnnxRunner:
    """Runs a `model.onnx` in onnxruntime (CPU): `runner(batch)` -> logits (numpy).

    `threads`: the session's intra-op threads (its operators run one after another, so no
    inter-op pool); None leaves onnxruntime's default (one per physical core).
    """

    def __init__(self, path, threads=None):
        _check_threads(threads)
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
            key = next(k for k in INPUTS if name.startswith(k))
            feed[name] = np.asarray(batch[key], bool if key == "padding_mask" else np.int32)
        return self.session.run(None, feed)[0]


class LiteRTRunner:
    """Runs a `model.tflite` in ai-edge-litert: `runner(batch)` -> logits (numpy).

    The inputs are resized to each batch's shape when it changes (LiteRT's dynamic shapes).
    `threads`: the interpreter's `num_threads`; None leaves LiteRT's default.
    """

    def __init__(self, path, threads=None):
        _check_threads(threads)
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
            key = next(k for k in INPUTS if k in detail["name"])
            interpreter.set_tensor(detail["index"], np.asarray(batch[key], detail["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# The runner of each file format of `keras_flop.export.requirements`.
RUNNERS = {"onnx": OnnxRunner, "litert": LiteRTRunner, "onnx_int8": OnnxRunner,
           "litert_int8": LiteRTRunner}


def runner(fmt, path, threads=None):
    """The runner of the `fmt` file at `path` (`RUNNERS`), on `threads` intra-op threads.

    Example:
    >>> runner("pb", "model.pb")
    Traceback (most recent call last):
    ...
    ValueError: No runtime runs the format 'pb': pass one of onnx, litert, onnx_int8, ...
    """
    if fmt not in RUNNERS:
        raise ValueError(f"No runtime runs the format {fmt!r}: pass one of "
                         f"{', '.join(RUNNERS)} (a Keras model runs in KerasRunner).")
    return RUNNERS[fmt](path, threads=threads)


def predict(run, batches):
    """The logits of every batch through the runner `run`, concatenated in order.

    Example:
    >>> predict(lambda batch: batch["token_ids"][:, :2] * 1.0,
    ...         [{"token_ids": np.ones((2, 3))}, {"token_ids": np.zeros((1, 3))}]).shape
    (3, 2)
    """
    if not batches:
        raise ValueError("`predict` needs at least one batch; got none.")
    return np.concatenate([np.asarray(run(batch), np.float32) for batch in batches])
