"""Import a Hugging Face BERT, RoBERTa, XLM-RoBERTa or DistilBERT directory (`config.json` +
`model.safetensors`, as `save_pretrained` writes it), through the TF1 importer's name mapping;
`keras_flop.checkpoints.hugging_face_families` says how each family's names and config map."""

import json
import math
import os

import ml_dtypes  # noqa: F401  registers numpy's "bfloat16", which safetensors asks for
import numpy as np
import safetensors

from keras_flop.checkpoints.hugging_face_families import (  # noqa: F401 (re-exported)
    HF_ACTIVATIONS, config_from_hf, family_of, has_head, hf_to_tf1_names)
from keras_flop.checkpoints.tf1 import build_from_variables

# The safetensors dtypes numpy can hold (BF16 through ml_dtypes), and every dtype's bit width
# (to check a header's offsets against its shapes).
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_NUMPY_DTYPES = _FLOAT_DTYPES | {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
               "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
               "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
               "C64": 64, "F64": 64, "I64": 64, "U64": 64}


def read_safetensors(path):
    """`{name: array}` from a `.safetensors` file; floating tensors come back as float32.

    Raises `ValueError` naming the file, and the tensor when one is at fault: a dtype numpy
    cannot hold (e.g. float8), or a header whose offsets or shapes disagree with the file.

    Example:
    >>> tensors = read_safetensors("bert-base-uncased/model.safetensors")  # doctest: +SKIP
    >>> tensors["bert.pooler.dense.weight"].shape  # doctest: +SKIP
    (768, 768)
    """
    path = os.fspath(path)
    tensors = {}
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            for name in f.keys():
                dtype = f.get_slice(name).get_dtype()
                if dtype not in _NUMPY_DTYPES:
                    raise ValueError(
                        f"{path}: tensor {name} has dtype {dtype}, which numpy cannot hold; "
                        "convert the file to F32, F16 or BF16.")
                value = f.get_tensor(name)
                tensors[name] = np.asarray(value, np.float32) if dtype in _FLOAT_DTYPES else value
    except safetensors.SafetensorError as e:
        problem = _header_problem(path) or " ".join(str(e).split())
        raise ValueError(f"{path}: not a valid safetensors file ({problem}); download or "
                         "convert it again.") from None
    return tensors


def _header_problem(path):
    """Names the first tensor whose header entry disagrees with the file, or None.

    The package reports a corrupt header without naming the tensor: this rereads the header
    to say which one.
    """
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        data_size = os.path.getsize(path) - 8 - size
        entries = sorted((entry["data_offsets"], name, entry)
                         for name, entry in header.items() if name != "__metadata__")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # no header to read: the package's message says why
    position = 0
    for offsets, name, entry in entries:
        try:
            start, end = (int(x) for x in offsets)
            dtype, shape = entry["dtype"], [int(n) for n in entry["shape"]]
        except (ValueError, TypeError, KeyError):
            return f"tensor {name}: malformed header entry {entry}"
        if dtype not in _DTYPE_BITS:
            return f"tensor {name}: unknown dtype {dtype!r}"
        if start != position:
            return (f"tensor {name}: data_offsets {offsets} start at byte {start}, but the "
                    f"previous tensor ends at byte {position}")
        if end > data_size:
            return (f"tensor {name}: data_offsets {offsets} run past the {data_size} bytes "
                    "of data (truncated file?)")
        needed = math.prod(shape) * _DTYPE_BITS[dtype] // 8
        if end - start != needed:
            return (f"tensor {name}: shape {shape} of {dtype} needs {needed} bytes, but "
                    f"data_offsets {offsets} hold {end - start}")
        position = end
    if position != data_size:
        return f"{data_size - position} bytes after the last tensor"
    return None


def read_hf_config(path, with_family=False):
    """The `BertConfig` of the Hugging Face directory `path` (its `config.json`), and with
    `with_family` its family (`"bert"`, `"roberta"` or `"distilbert"`); a `ValueError` naming
    the file when it is missing, unreadable or unsupported.

    Example:
    >>> import json, os, tempfile
    >>> directory = tempfile.mkdtemp()
    >>> with open(os.path.join(directory, "config.json"), "w") as f:
    ...     json.dump({"model_type": "distilbert", "vocab_size": 30522, "dim": 768}, f)
    >>> config, family = read_hf_config(directory, with_family=True)
    >>> family, config.classifier_head, config.type_vocab_size
    ('distilbert', 'distilbert', 0)
    >>> with open(os.path.join(directory, "config.json"), "w") as f:
    ...     json.dump({"model_type": "albert", "vocab_size": 30000}, f)
    >>> read_hf_config(directory)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: .../config.json: model_type='albert' is not supported (ALBERT ...
    """
    config_path = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"Hugging Face config not found: {config_path}")
    try:
        with open(config_path, encoding="utf-8") as f:
            values = json.load(f)
        config = config_from_hf(values)
    except ValueError as e:  # also invalid JSON or UTF-8
        raise ValueError(f"{config_path}: {' '.join(str(e).split())}") from None
    return (config, family_of(values)) if with_family else config


def hf_weights_file(path):
    """`model.safetensors` of the Hugging Face directory `path`; a `ValueError` when it is
    missing (saying so when a PyTorch `pytorch_model.bin` is there instead)."""
    weights_path = os.path.join(os.fspath(path), "model.safetensors")
    if not os.path.isfile(weights_path):
        extra = " (pytorch_model.bin found: convert it to safetensors)" if os.path.isfile(
            os.path.join(os.fspath(path), "pytorch_model.bin")) else ""
        raise ValueError(f"Weights not found: {weights_path}{extra}.")
    return weights_path


def hf_has_classifier_head(path):
    """Whether the Hugging Face directory `path` holds a fine-tuned classifier (a
    `...ForSequenceClassification`: BERT's and DistilBERT's `classifier.weight`, RoBERTa's
    `classifier.out_proj.weight`); reads the file's header only."""
    _, family = read_hf_config(path, with_family=True)
    weights_path = hf_weights_file(path)
    try:
        with safetensors.safe_open(weights_path, framework="numpy") as f:
            names = list(f.keys())
    except safetensors.SafetensorError as e:
        problem = _header_problem(weights_path) or " ".join(str(e).split())
        raise ValueError(f"{weights_path}: not a valid safetensors file ({problem}); download "
                         "or convert it again.") from None
    return has_head(names, family)


def load_hf_checkpoint(path, num_labels=None):
    """A Keras classifier from a Hugging Face BERT-family directory.

    Args:
        path: a directory with `config.json` and `model.safetensors` of a `BertModel`,
            `RobertaModel`, `XLMRobertaModel`, `DistilBertModel` or their
            `...ForSequenceClassification`.
        num_labels: as in `load_tf1_checkpoint` (a classifier head in the file fixes it); a
            model without one gets a fresh head (RoBERTa's and DistilBERT's dense layer
            included), with a log line saying so.

    Returns:
        The dense Keras model of `build_bert_classifier`, of the checkpoint's family, whose
        logits equal the Hugging Face model's (its `hidden_act` mapped as `config_from_hf`
        says).

    Raises:
        ValueError: naming `config.json` for an unsupported model type or setting (which are
            supported, and why ALBERT and DeBERTa are not), the safetensors file and
            tensor for an unreadable or corrupt one, the variable when one is missing or of the
            wrong shape.

    PyTorch `pytorch_model.bin` files need torch to read; convert them to safetensors first.

    Example:
    >>> model = load_hf_checkpoint("bert-base-uncased/")  # doctest: +SKIP
    """
    path = os.fspath(path)
    config, family = read_hf_config(path, with_family=True)
    weights_path = hf_weights_file(path)
    tensors = hf_to_tf1_names(read_safetensors(weights_path), family, config)
    return build_from_variables(config, {k: v.shape for k, v in tensors.items()},
                                tensors.__getitem__, num_labels, f"file {weights_path}")
