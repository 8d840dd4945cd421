"""Import a Hugging Face `BertModel` / `BertForSequenceClassification` directory
(`config.json` + `model.safetensors`), through the TF1 importer's name mapping."""

import json
import os
import re

import numpy as np

from keras_flop.checkpoint import build_from_variables
from keras_flop.config import BertConfig

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
                       "BF16": None, "I64": np.int64, "I32": np.int32}

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
    """`{name: array}` from a `.safetensors` file (the format is a JSON header + raw bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short).")
    size = int.from_bytes(raw[:8], "little")
    try:
        header = json.loads(raw[8:8 + size])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a safetensors file (bad header).") from None
    data = raw[8 + size:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
        start, end = entry["data_offsets"]
        if end > len(data):
            raise ValueError(f"{path}: tensor {name} is truncated.")
        if dtype is None:  # bfloat16: the upper half of a float32
            bits = np.frombuffer(data[start:end], np.uint16).astype(np.uint32) << 16
            tensors[name] = bits.view(np.float32).reshape(entry["shape"])
        else:
            tensors[name] = np.frombuffer(data[start:end], dtype).reshape(entry["shape"])
    return tensors


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
    """A `BertConfig` from a Hugging Face `config.json` (`"gelu"` there is the exact erf)."""
    fields = {f: values[f] for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "intermediate_size",
                                     "hidden_dropout_prob", "attention_probs_dropout_prob",
                                     "max_position_embeddings", "type_vocab_size",
                                     "initializer_range") if f in values}
    act = values.get("hidden_act", "gelu")
    fields["hidden_act"] = {"gelu": "gelu_exact", "gelu_new": "gelu",
                            "gelu_pytorch_tanh": "gelu"}.get(act, act)
    return BertConfig.from_dict(fields)


def load_hf_checkpoint(path, num_labels=None):
    """A Keras BERT classifier from a Hugging Face BERT directory.

    Args:
        path: a directory with `config.json` and `model.safetensors`.
        num_labels: as in `load_tf1_checkpoint` (a `classifier` head in the file fixes it).

    PyTorch `pytorch_model.bin` files need torch to read; convert them to safetensors first.
    """
    path = os.fspath(path)
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise ValueError(f"Hugging Face config not found: {config_path}")
    with open(config_path, encoding="utf-8") as f:
        config = config_from_hf(json.load(f))
    weights_path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(weights_path):
        extra = " (pytorch_model.bin found: convert it to safetensors)" if os.path.isfile(
            os.path.join(path, "pytorch_model.bin")) else ""
        raise ValueError(f"Weights not found: {weights_path}{extra}.")
    tensors = hf_to_tf1_names(read_safetensors(weights_path))
    return build_from_variables(config, {k: v.shape for k, v in tensors.items()},
                                tensors.__getitem__, num_labels, f"file {weights_path}")
