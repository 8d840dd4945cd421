"""`export_formats`: the model for runtimes other than TF Serving: ONNX and LiteRT, in float32
and in INT8.

Each file takes the id inputs of the SavedModel's `serving_default` (`token_ids`,
`segment_ids` int32, `padding_mask` bool, `[batch, seq]` with both dimensions dynamic) and
returns `logits` `[batch, num_labels]` (float32); text is tokenized by the client (the
SavedModel's `tokenize_text` signature, or `keras_flop.BertPreprocessor`, gives the ids).
Every file is verified after writing: loaded in its own runtime and fed id batches. A float
file's logits must match the Keras model's to `atol`; an INT8 file's predictions must agree
with the float Keras model's on at least `min_agreement` of the examples (INT8 cannot meet
the 1e-4 logit check). What each check measured, and the files' sizes, come back with the
paths (`ExportedFiles.checks`).

The converters and runtimes are optional extras, never needed by the core install:
- `onnx` (`pip install "keras-flop[onnx]"`: tf2onnx, onnxruntime): `model.onnx`, converted
  from the model's `tf.function` by tf2onnx, the converter Keras' own
  `Model.export(format="onnx")` uses on TensorFlow.
- `litert` (`pip install "keras-flop[litert]"`: ai-edge-litert): `model.tflite`, converted by
  TensorFlow's `tf.lite.TFLiteConverter` (builtin ops only: float32, no quantization) and
  run by ai-edge-litert's interpreter, LiteRT's maintained runtime. A model computing in
  float16 or bfloat16 (a `mixed_float16` policy) is converted from a float32 copy of it.
- `onnx_int8` (`model_int8.onnx`, the `onnx` extra) and `litert_int8` (`model_int8.tflite`,
  the `litert` extra): the same files with int8 weights, quantized dynamically (no
  calibration data). The ONNX file keeps the embedding tables and the classifier in float;
  LiteRT's converter cannot keep one layer in float, and quantizes every weight of 1024
  elements or more. `keras_flop.export.quantized` says what each quantizes.

The files appear together or not at all: each is written and verified under a temporary name,
and only when every format has passed are they moved into place. An existing file is replaced
only with `overwrite=True`.
"""

import functools
import os

import numpy as np

from keras_flop.export import quantized
from keras_flop.export.float_files import export_litert, export_onnx, float32_copy
from keras_flop.export.requirements import FILE_NAMES, check_formats, require
from keras_flop.export.runtimes import RUNNERS


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


# A float writer returns the path; an INT8 writer the size of the float file it quantized.
_WRITERS = {"onnx": export_onnx, "litert": export_litert, **quantized.WRITERS}


class ExportedFiles(dict):
    """`{format: path}` of the files `export_formats` wrote, with what verifying each measured
    in `checks`: `{format: {"bytes", "examples", "max_abs_diff"}}` (the file's size, the
    examples it was run on, its largest logit difference from the Keras model), and for an
    INT8 format also `"agreement"` (the share of those examples on which it predicts what
    the float model predicts, `quantized.agreement`) and `"float_bytes"` (the size of the
    float file it was quantized from)."""

    def __init__(self, paths, checks):
        super().__init__(paths)
        self.checks = checks


def _vocabulary_and_length(network):
    """The network's vocabulary size and longest sequence (its embedding tables' rows)."""
    layers = {layer.name: layer for layer in network.layers}
    vocab = layers["word_embeddings"].input_dim if "word_embeddings" in layers else 2
    return vocab, getattr(layers.get("position_embeddings"), "sequence_length", 8)


def _verify(fmt, expected, got, atol, min_agreement):
    """What checking the logits `got` of a `fmt` file against the Keras model's measured; a
    `ValueError` when they fail the format's check."""
    same_shape = got.shape == expected.shape
    gap = float(np.max(np.abs(got - expected))) if same_shape else np.inf
    check = {"examples": len(expected), "max_abs_diff": gap}
    if fmt not in quantized.INT8_FORMATS:
        if not gap <= atol:
            raise ValueError(f"{fmt} export: logits in its runtime differ from the Keras "
                             f"model's by {gap:.2e} (> {atol}); no file was written.")
        return check
    check["agreement"] = quantized.agreement(expected, got) \
        if same_shape and np.isfinite(gap) else 0.0
    if not check["agreement"] >= min_agreement:
        raise ValueError(f"{fmt} export: its predictions in its runtime agree with the float "
                         f"model's on {check['agreement']:.1%} of {len(expected)} examples "
                         f"(< min_agreement={min_agreement}); no file was written. Measure it "
                         "on real examples (agreement_batch=), accept less (min_agreement=), "
                         "or export the float format.")
    return check


def export_formats(model, export_dir, formats=("onnx", "litert"), batch=None, atol=1e-4,
                   overwrite=False, agreement_batch=None, min_agreement=0.9,
                   per_channel=True):
    """Exports `model` to ONNX and/or LiteRT, in float32 or INT8, in `export_dir`, verifying
    each file in its own runtime.

    Args:
        model: a dense, pruning (its deterministic network) or compact model.
        export_dir: folder for `model.onnx`, `model.tflite`, `model_int8.onnx` and
            `model_int8.tflite` (created).
        formats: drawn from `"onnx"`, `"litert"`, `"onnx_int8"`, `"litert_int8"` (a
            comma-separated string works too); `"saved_model"` is `export_saved_model`'s and
            is skipped here.
        batch: the id batch the float files are verified with; default `sample_batch` over
            the vocabulary.
        atol: largest absolute logit difference accepted from a float file.
        overwrite: replace files of an earlier export in `export_dir` (default: refuse).
        agreement_batch: the id batch (a dict of `[examples, seq]` arrays) the INT8 files'
            agreement is measured on; real examples (the features of dev batches) make it a
            task-level figure. Default: `batch` if given, else 64 random examples
            (`quantized.agreement_batch`).
        min_agreement: the smallest share of those examples on which an INT8 file must
            predict what the float Keras model predicts (the same argmax; for a one-output
            regressor, an output within 5% of the largest float output).
        per_channel: `onnx_int8` only: one scale per weight column (default), or one per matrix
            (False)
            (LiteRT's dynamic-range weights are per channel already).

    The INT8 files keep some layers in float: `onnx_int8` the word, position and token-type
    embeddings (their Gather lookups) and the classifier's MatMul; `litert_int8` only what its
    converter leaves in float (see `keras_flop.export.quantized`).

    Returns:
        `ExportedFiles`: `{format: path}`, and in `.checks` what verifying each file measured
        (its size, the examples, the largest logit difference; for an INT8 file also the
        agreement and the size of the float file it was quantized from).

    Raises:
        ImportError: naming the extra to install when a format's packages are missing.
        ValueError: when a file to write exists already and `overwrite` is False (before any
            work); when a float file's logits in its runtime differ from the Keras model's by
            more than `atol`, or an INT8 file agrees with the float model on fewer than
            `min_agreement` of the examples. A failure leaves `export_dir` as it was: no file
            of this call is left in it, and no earlier file is replaced.

    Example:
    >>> files = export_formats(compact_model, "export/runtimes",
    ...                        ["onnx", "onnx_int8"])  # doctest: +SKIP
    >>> files  # doctest: +SKIP
    {'onnx': 'export/runtimes/model.onnx', 'onnx_int8': 'export/runtimes/model_int8.onnx'}
    >>> files.checks["onnx_int8"]  # doctest: +SKIP
    {'examples': 64, 'max_abs_diff': 0.0213, 'agreement': 1.0, 'bytes': 6612412,
     'float_bytes': 18274309}
    """
    formats = [f for f in check_formats(formats) if f != "saved_model"]
    if isinstance(min_agreement, bool) or not isinstance(min_agreement, (int, float)) or \
            not 0 <= min_agreement <= 1:
        raise ValueError("`min_agreement` must be a share between 0 and 1 (e.g. 0.9 for 90% "
                         f"of the examples); got {min_agreement!r}.")
    for fmt in formats:
        require(fmt)  # all missing packages are reported before any work is done
    export_dir = os.fspath(export_dir)
    paths = {fmt: os.path.join(export_dir, FILE_NAMES[fmt]) for fmt in formats}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(existing)} exists already: pass overwrite=True to "
                         "replace it, or another export_dir.")
    network = getattr(model, "network", model)
    vocab, max_length = _vocabulary_and_length(network)
    if any(fmt in quantized.INT8_FORMATS for fmt in formats):
        agreement_batch = quantized.check_agreement_batch(
            agreement_batch if agreement_batch is not None else batch if batch is not None
            else quantized.agreement_batch(vocab, min(32, max_length)))
    if batch is None:
        batch = sample_batch(vocab)
    # Each file is compared with the model it was made from: all but the float ONNX file are
    # made from the float32 copy of a mixed-precision model.
    float_network = float32_copy(network) if formats != ["onnx"] else network
    created = not os.path.isdir(export_dir)
    os.makedirs(export_dir, exist_ok=True)
    partial = {fmt: "{0}.partial{1}".format(*os.path.splitext(path))
               for fmt, path in paths.items()}
    checks = {}
    try:
        for fmt in formats:
            source = network if fmt == "onnx" else float_network
            int8 = fmt in quantized.INT8_FORMATS
            inputs = agreement_batch if int8 else batch
            expected = np.asarray(source(inputs, training=False), np.float32)
            writer = _WRITERS[fmt]
            if fmt == "onnx_int8":
                writer = functools.partial(writer, per_channel=per_channel)
            written = writer(source, partial[fmt])
            got = np.asarray(RUNNERS[fmt](partial[fmt])(inputs), np.float32)
            checks[fmt] = _verify(fmt, expected, got, atol, min_agreement)
            checks[fmt]["bytes"] = os.path.getsize(partial[fmt])
            if int8:
                checks[fmt]["float_bytes"] = written
        for fmt in formats:
            os.replace(partial[fmt], paths[fmt])
    finally:
        for path in partial.values():
            for leftover in (path, path + ".tmp"):  # a writer's own temporary too
                if os.path.exists(leftover):
                    os.remove(leftover)
        if created and not os.listdir(export_dir):
            os.rmdir(export_dir)
    return ExportedFiles(paths, checks)
