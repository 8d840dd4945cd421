"""The Hugging Face model types `load_hf_checkpoint` reads, each one's config and parameter
names, told by `config.json`'s `model_type`.

- `bert`: `bert.encoder.layer.*`; token types; positions from 0; the head is `bert.pooler`
  (tanh) and `classifier`.
- `roberta`, `xlm-roberta`: `roberta.encoder.layer.*` (BERT's names); one token-type row
  (see below); positions from `pad_token_id + 1`; the head is `classifier.dense` (tanh) and
  `classifier.out_proj`.
- `distilbert`: `distilbert.transformer.layer.*` (`attention.q_lin`, `sa_layer_norm`,
  `ffn.lin1`, ...); no token types; positions from 0; epsilon 1e-12; the head is
  `pre_classifier` (ReLU) and `classifier`.

All heads read the first token. RoBERTa's tokenizers give every token type 0, so its one
token-type row is added to every position row (the sum each token sees is unchanged) and the
model has no token types.

Every family is renamed to the TF1 names the TF1 importer maps; pre-training heads (`lm_head`,
`vocab_projector`, ...), a RoBERTa pooler (its classification head does not use it) and
`position_ids` buffers are left out.
"""

import re

import numpy as np

from keras_flop.models.config import BertConfig, check_fixed_keys

# Hugging Face `hidden_act` -> BertConfig's: HF's "gelu" is the exact erf form, while
# BertConfig's "gelu" is TF1's tanh approximation.
HF_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_python": "gelu_exact", "gelu_new": "gelu",
                  "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "relu": "relu",
                  "tanh": "tanh", "silu": "silu", "swish": "swish"}

SUPPORTED_TYPES = ("bert", "roberta", "xlm-roberta", "distilbert")
# model_type -> why its layers do not map onto BertClassifier's.
DECLINED_TYPES = {
    "albert": "ALBERT shares one encoder layer's weights across all layers and projects a "
              "smaller embedding, so its layers cannot be pruned one by one",
    "deberta": "DeBERTa's disentangled relative attention is not BERT's attention",
    "deberta-v2": "DeBERTa's disentangled relative attention is not BERT's attention",
    "electra": "ELECTRA's classification head (a GELU dense layer) and embedding projection "
               "are not BERT's",
}

_LAYER = r"(?:encoder|transformer)\.layer\.(\d+)\."
_BERT_ENCODER = [
    (r"embeddings\.word_embeddings\.weight", "bert/embeddings/word_embeddings", False),
    (r"embeddings\.position_embeddings\.weight", "bert/embeddings/position_embeddings", False),
    (r"embeddings\.token_type_embeddings\.weight", "bert/embeddings/token_type_embeddings",
     False),
    (r"embeddings\.LayerNorm\.(weight|gamma)", "bert/embeddings/LayerNorm/gamma", False),
    (r"embeddings\.LayerNorm\.(bias|beta)", "bert/embeddings/LayerNorm/beta", False),
    (_LAYER + r"attention\.self\.(query|key|value)\.weight",
     "bert/encoder/layer_{0}/attention/self/{1}/kernel", True),
    (_LAYER + r"attention\.self\.(query|key|value)\.bias",
     "bert/encoder/layer_{0}/attention/self/{1}/bias", False),
    (_LAYER + r"(attention\.output|intermediate|output)\.dense\.weight",
     "bert/encoder/layer_{0}/{1}/dense/kernel", True),
    (_LAYER + r"(attention\.output|intermediate|output)\.dense\.bias",
     "bert/encoder/layer_{0}/{1}/dense/bias", False),
    (_LAYER + r"(attention\.output|output)\.LayerNorm\.(weight|gamma)",
     "bert/encoder/layer_{0}/{1}/LayerNorm/gamma", False),
    (_LAYER + r"(attention\.output|output)\.LayerNorm\.(bias|beta)",
     "bert/encoder/layer_{0}/{1}/LayerNorm/beta", False),
]
# DistilBERT's sublayer names -> BERT's TF1 scopes.
_DISTILBERT_SCOPES = {"attention.q_lin": "attention/self/query",
                      "attention.k_lin": "attention/self/key",
                      "attention.v_lin": "attention/self/value",
                      "attention.out_lin": "attention/output/dense",
                      "ffn.lin1": "intermediate/dense", "ffn.lin2": "output/dense",
                      "sa_layer_norm": "attention/output/LayerNorm",
                      "output_layer_norm": "output/LayerNorm"}

# Per family: (parameter prefix, [(pattern, TF1 name, transpose)], dropped parameters). A
# `[out, in]` PyTorch weight is transposed to TF1's `[in, out]` kernel; the classifier is
# `[num_labels, hidden]` in both.
_NAMES = {
    "bert": ("bert.", _BERT_ENCODER + [
        (r"pooler\.dense\.weight", "bert/pooler/dense/kernel", True),
        (r"pooler\.dense\.bias", "bert/pooler/dense/bias", False),
        (r"classifier\.weight", "output_weights", False),
        (r"classifier\.bias", "output_bias", False),
    ], r"cls\..*|.*position_ids"),
    "roberta": ("roberta.", _BERT_ENCODER + [
        (r"classifier\.dense\.weight", "bert/pooler/dense/kernel", True),
        (r"classifier\.dense\.bias", "bert/pooler/dense/bias", False),
        (r"classifier\.out_proj\.weight", "output_weights", False),
        (r"classifier\.out_proj\.bias", "output_bias", False),
    ], r"pooler\..*|lm_head\..*|.*position_ids"),
    "distilbert": ("distilbert.", _BERT_ENCODER[:2] + _BERT_ENCODER[3:5] + [
        (_LAYER + r"(attention\.[qkv]_lin|attention\.out_lin|ffn\.lin[12])\.weight",
         "bert/encoder/layer_{0}/{1}/kernel", True),
        (_LAYER + r"(attention\.[qkv]_lin|attention\.out_lin|ffn\.lin[12])\.bias",
         "bert/encoder/layer_{0}/{1}/bias", False),
        (_LAYER + r"(sa_layer_norm|output_layer_norm)\.(weight|gamma)",
         "bert/encoder/layer_{0}/{1}/gamma", False),
        (_LAYER + r"(sa_layer_norm|output_layer_norm)\.(bias|beta)",
         "bert/encoder/layer_{0}/{1}/beta", False),
        (r"pre_classifier\.weight", "bert/pooler/dense/kernel", True),
        (r"pre_classifier\.bias", "bert/pooler/dense/bias", False),
        (r"classifier\.weight", "output_weights", False),
        (r"classifier\.bias", "output_bias", False),
    ], r"vocab_(transform|layer_norm|projector)\..*|.*position_ids"),
}


def family_of(values):
    """The `_NAMES` key of a Hugging Face config dict (`xlm-roberta` is `roberta`); a one-line
    error for a model type this library does not read."""
    model_type = values.get("model_type", "bert")
    if model_type in SUPPORTED_TYPES:
        return "roberta" if model_type == "xlm-roberta" else model_type
    why = DECLINED_TYPES.get(model_type)
    raise ValueError(f"model_type={model_type!r} is not supported"
                     f"{f' ({why})' if why else ''}; supported: {', '.join(SUPPORTED_TYPES)}.")


def _activation(act):
    if act not in HF_ACTIVATIONS:
        raise ValueError(f"hidden_act={act!r} is not supported; supported Hugging Face "
                         f"activations: {sorted(HF_ACTIVATIONS)}.")
    return HF_ACTIVATIONS[act]


def _epsilon(values, default):
    value = values.get("layer_norm_eps", default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"layer_norm_eps must be a positive number; got {value!r}.")
    return float(value)


def config_from_hf(values):
    """A `BertConfig` from a Hugging Face `config.json` dict of a supported `model_type`.

    Hugging Face's `"gelu"` is the exact erf GELU (`"gelu_exact"` here); `"gelu_new"`,
    `"gelu_pytorch_tanh"` and `"gelu_fast"` are the tanh form (`"gelu"` here). BERT's keys that
    would change the computation (`layer_norm_eps`, `position_embedding_type`) must have the
    values BERT has; RoBERTa's epsilon and position offset (`pad_token_id + 1`) are read.

    Example:
    >>> config_from_hf({"vocab_size": 30522, "hidden_act": "gelu"}).hidden_act
    'gelu_exact'
    >>> config = config_from_hf({"model_type": "roberta", "vocab_size": 50265,
    ...                          "max_position_embeddings": 514, "layer_norm_eps": 1e-5,
    ...                          "pad_token_id": 1, "type_vocab_size": 1})
    >>> config.position_offset, config.max_sequence_length, config.type_vocab_size
    (2, 512, 0)
    """
    if not isinstance(values, dict):
        raise ValueError(f"A config.json must be a JSON object; got {type(values).__name__}.")
    family = family_of(values)
    if family == "distilbert":
        fields = {ours: values[theirs] for theirs, ours in (
            ("vocab_size", "vocab_size"), ("dim", "hidden_size"), ("n_layers",
                                                                   "num_hidden_layers"),
            ("n_heads", "num_attention_heads"), ("hidden_dim", "intermediate_size"),
            ("dropout", "hidden_dropout_prob"), ("attention_dropout",
                                                 "attention_probs_dropout_prob"),
            ("max_position_embeddings", "max_position_embeddings"),
            ("initializer_range", "initializer_range")) if theirs in values}
        # DistilBERT's layer norms are built with epsilon 1e-12, whatever the config says.
        return BertConfig.from_dict(dict(fields, hidden_act=_activation(
            values.get("activation", "gelu")), type_vocab_size=0,
            classifier_head="distilbert"))
    fields = {f: values[f] for f in ("vocab_size", "hidden_size", "num_hidden_layers",
                                     "num_attention_heads", "intermediate_size",
                                     "hidden_dropout_prob", "attention_probs_dropout_prob",
                                     "max_position_embeddings", "type_vocab_size",
                                     "initializer_range") if f in values}
    fields["hidden_act"] = _activation(values.get("hidden_act", "gelu"))
    if family == "bert":
        check_fixed_keys(values)
        return BertConfig.from_dict(fields)
    check_fixed_keys({k: v for k, v in values.items() if k == "position_embedding_type"})
    pad = values.get("pad_token_id", 1)
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad_token_id must be a non-negative integer (RoBERTa's positions "
                         f"start past it); got {pad!r}.")
    return BertConfig.from_dict(dict(
        fields, type_vocab_size=0, layer_norm_epsilon=_epsilon(values, 1e-5),
        position_offset=pad + 1, classifier_head="roberta"))


def rename(name, family):
    """`(TF1 name, transpose)` of a Hugging Face parameter of `family`; `(None, False)` for one
    the classifier does not use; the name itself for one no rule knows (then the importer
    reports it as unused)."""
    prefix, rules, dropped = _NAMES[family]
    short = name[len(prefix):] if name.startswith(prefix) else name
    if re.fullmatch(dropped, short):
        return None, False
    for pattern, target, transpose in rules:
        match = re.fullmatch(pattern, short)
        if match:
            groups = [_DISTILBERT_SCOPES.get(g, g.replace(".", "/")) for g in match.groups()]
            return target.format(*groups), transpose
    return name, False


def hf_to_tf1_names(tensors, family="bert", config=None):
    """Hugging Face parameters of `family` under TF1 names, dense weights transposed.

    A RoBERTa-family `config` (no token types) gets the token-type row folded into the
    position table.
    """
    converted = {}
    for name, value in tensors.items():
        target, transpose = rename(name, family)
        if target is not None:
            converted[target] = np.asarray(value, np.float32).T if transpose else value
    types = converted.pop("bert/embeddings/token_type_embeddings", None) \
        if config is not None and not config.type_vocab_size else None
    positions = converted.get("bert/embeddings/position_embeddings")
    if types is not None and positions is not None:
        # Every token of a RoBERTa tokenizer has token type 0: that row is part of the sum.
        converted["bert/embeddings/position_embeddings"] = \
            np.asarray(positions, np.float32) + np.asarray(types, np.float32)[0]
    return converted


def has_head(names, family):
    """Whether parameter `names` of `family` include a classifier (its output layer)."""
    return any(rename(name, family)[0] == "output_weights" for name in names)
