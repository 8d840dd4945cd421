"""Import a Hugging Face `BertModel` / `BertForSequenceClassification` directory
(`config.json` + `model.safetensors`), through the TF1 importer's name mapping."""

import json
import math
import os
import re

import ml_dtypes  # noqa: F401  registers numpy's "bfloat16", which safetensors asks for
import numpy as np
import safetensors

from keras_flop.checkpoints.tf1 import build_from_variables
from keras_flop.models.config import BertConfig, check_fixed_keys

# The safetensors dtypes numpy can hold (BF16 through ml_dtypes), and every dtype's bit width
# (to check a header's offsets against its shapes).
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}
_NUMPY_DTYPES = _FLOAT_DTYPES | {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
_DTYPE_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
               "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
               "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
               "C64": 64, "F64": 64, "I64": 64, "U64": 64}

# Hugging Face `hidden_act` -> BertConfig's: HF's "gelu" is the exact erf form, while
# BertConfig's "gelu" is TF1's tanh approximation.
HF_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_python": "gelu_exact", "gelu_new": "gelu",
                  "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu",
                  "tanh": "tanh", "silu": "silu", "swish": "swish"}

# Hugging Face parameter -> TF1 name (`W` marks a `[out, in]` weight to transpose).
_HF_TO_TF1 = [
    (r"embeddings\.word_embeddings\.weight", "bert/embeddings/word_embeddings", False),
    (r"embeddings\.position_embeddings\.weight", "bert/embeddings/position_embeddings", False),
    (r"embeddings\.token_type_embeddings\.weight", "bert/embeddings/token_type_embeddings",
     False),
    (r"embeddings\.LayerNorm\.(weight|gamma)", "bert/embeddings/LayerNorm/gamma", False),
    (r"embeddings\.LayerNorm\.(bias|beta)", "bert/embeddings/LayerNorm/beta", False),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.weight",
     "bert/encoder/layer_{0}/attention/self/{1}/kernel", True),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.bias",
     "bert/encoder/layer_{0}/attention/self/{1}/bias", False),
    (r"encoder\.layer\.(\d+)\.(attention\.output|intermediate|output)\.dense\.weight",
     "bert/encoder/layer_{0}/{1}/dense/kernel", True),
    (r"encoder\.layer\.(\d+)\.(attention\.output|intermediate|output)\.dense\.bias",
     "bert/encoder/layer_{0}/{1}/dense/bias", False),
    (r"encoder\.layer\.(\d+)\.(attention\.output|output)\.LayerNorm\.(weight|gamma)",
     "bert/encoder/layer_{0}/{1}/LayerNorm/gamma", False),
    (r"encoder\.layer\.(\d+)\.(attention\.output|output)\.LayerNorm\.(bias|beta)",
     "bert/encoder/layer_{0}/{1}/LayerNorm/beta", False),
    (r"pooler\.dense\.weight", "bert/pooler/dense/kernel", True),
    (r"pooler\.dense\.bias", "bert/pooler/dense/bias", False),
    # The classifier is [num_labels, hidden] in both layouts.
    (r"classifier\.weight", "output_weights", False),
    (r"classifier\.bias", "output_bias", False),
]


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


def hf_to_tf1_names(tensors):
    """Renames Hugging Face BERT parameters to TF1 names, transposing dense weights."""
    converted = {}
    for name, value in tensors.items():
        short = re.sub(r"^(bert\.)", "", name)
        for pattern, target, transpose in _HF_TO_TF1:
            match = re.fullmatch(pattern, short)
            if match:
                groups = [g.replace(".", "/") for g in match.groups()]
                tf1_name = target.format(*groups)
                converted[tf1_name] = np.asarray(value, np.float32).T if transpose else value
                break
        else:
            converted[name] = value  # reported as unused by the importer
    return converted


def config_from_hf(values):
    """A `BertConfig` from a Hugging Face `config.json`.

    Hugging Face's `"gelu"` is the exact erf GELU (`"gelu_exact"` here); `"gelu_new"`,
    `"gelu_pytorch_tanh"` and `"gelu_fast"` are the tanh form (`"gelu"` here). Keys that would
    change the computation (`layer_norm_eps`, `position_embedding_type`, `model_type`) must
    have the values this BERT implements.

    Example:
    >>> config_from_hf({"vocab_size": 30522, "hidden_act": "gelu"}).hidden_act
    'gelu_exact'
    """
    if not isinstance(values, dict):
        raise ValueError(f"A config.json must be a JSON object; got {type(values).__name__}.")
    check_fixed_keys(values)
    fields = {f: values[f] for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "intermediate_size",
                                     "hidden_dropout_prob", "attention_probs_dropout_prob",
                                     "max_position_embeddings", "type_vocab_size",
                                     "initializer_range") if f in values}
    act = values.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} is not supported; supported Hugging Face "
                         f"activations: {sorted(HF_ACTIVATIONS)}.")
    fields["hidden_act"] = HF_ACTIVATIONS[act]
    return BertConfig.from_dict(fields)


def read_hf_config(path):
    """The `BertConfig` of the Hugging Face directory `path` (its `config.json`); a
    `ValueError` naming the file when it is missing, unreadable or unsupported."""
    config_path = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"Hugging Face config not found: {config_path}")
    try:
        with open(config_path, encoding="utf-8") as f:
            return config_from_hf(json.load(f))
    except ValueError as e:  # also invalid JSON or UTF-8
        raise ValueError(f"{config_path}: {' '.join(str(e).split())}") from None


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
    """Whether the Hugging Face directory `path` holds a fine-tuned classifier
    (`BertForSequenceClassification`: a `classifier.weight` tensor); reads the file's header
    only."""
    weights_path = hf_weights_file(path)
    try:
        with safetensors.safe_open(weights_path, framework="numpy") as f:
            names = list(f.keys())
    except safetensors.SafetensorError as e:
        problem = _header_problem(weights_path) or " ".join(str(e).split())
        raise ValueError(f"{weights_path}: not a valid safetensors file ({problem}); download "
                         "or convert it again.") from None
    return any(re.sub(r"^bert\.", "", name) == "classifier.weight" for name in names)


def load_hf_checkpoint(path, num_labels=None):
    """A Keras BERT classifier from a Hugging Face BERT directory.

    Args:
        path: a directory with `config.json` and `model.safetensors`.
        num_labels: as in `load_tf1_checkpoint` (a `classifier` head in the file fixes it).

    Returns:
        The dense Keras model of `build_bert_classifier`, whose logits equal the Hugging Face
        model's (its `hidden_act` mapped as `config_from_hf` says).

    Raises:
        ValueError: naming `config.json` for an unsupported setting, the safetensors file and
            tensor for an unreadable or corrupt one, the variable when one is missing or of the
            wrong shape.

    PyTorch `pytorch_model.bin` files need torch to read; convert them to safetensors first.

    Example:
    >>> model = load_hf_checkpoint("bert-base-uncased/")  # doctest: +SKIP
    """
    path = os.fspath(path)
    config = read_hf_config(path)
    weights_path = hf_weights_file(path)
    tensors = hf_to_tf1_names(read_safetensors(weights_path))
    return build_from_variables(config, {k: v.shape for k, v in tensors.items()},
                                tensors.__getitem__, num_labels, f"file {weights_path}")
