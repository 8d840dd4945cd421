"""`BertConfig`: the architecture of a BERT-family encoder, as in `bert_config.json`.

Besides BERT's own hyper-parameters the config records what differs between the families
this library prunes (BERT and ELECTRA, RoBERTa and XLM-RoBERTa, DistilBERT): the layer-norm
epsilon, whether there are token types, where position ids start, and the classifier head.
Their defaults are BERT's, so a config without them (an older `.keras` file, a
`bert_config.json`) is BERT's.
"""

import dataclasses
import json
import logging
import math
import os

from keras_flop.models.activations import ACTIVATIONS

logger = logging.getLogger(__name__)

# Keys some released configs carry that google-research/bert's `modeling.py` never reads
# (Google's multilingual and Chinese releases, Hugging Face bookkeeping): whatever their value,
# the checkpoint's weights were trained without them, so they are ignored.
IGNORED_KEYS = frozenset({
    "directionality", "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers",
    "pooler_size_per_head", "pooler_type",
    "architectures", "transformers_version", "torch_dtype", "_name_or_path", "pad_token_id",
    "use_cache", "gradient_checkpointing", "classifier_dropout", "id2label", "label2id",
})

# Keys that would change the computation: accepted only at the value this model implements.
FIXED_KEYS = {"model_type": "bert", "layer_norm_eps": 1e-12, "position_embedding_type": "absolute"}

# The classifier heads, all on the first token's ([CLS] or `<s>`) last hidden state:
# - "bert": the tanh pooler, dropout, the classifier (BERT, ELECTRA);
# - "roberta": dropout, a tanh dense layer, dropout, the classifier (keras-hub's
#   `RobertaTextClassifier` and `XLMRobertaTextClassifier`, Hugging Face's
#   `RobertaClassificationHead`);
# - "distilbert": a ReLU pre-classifier, dropout, the classifier.
CLASSIFIER_HEADS = ("bert", "roberta", "distilbert")


def check_fixed_keys(values):
    """Raises `ValueError` when `values` asks for an architecture other than this BERT's.

    Example:
    >>> check_fixed_keys({"layer_norm_eps": 1e-12, "model_type": "bert"})
    >>> check_fixed_keys({"position_embedding_type": "relative_key"})
    Traceback (most recent call last):
    ...
    ValueError: position_embedding_type='relative_key' is not supported: this BERT implements position_embedding_type='absolute' only.
    """
    for key, supported in FIXED_KEYS.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(supported, float):
            same = (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isclose(value, supported, rel_tol=1e-6))
        else:
            same = value == supported
        if not same:
            raise ValueError(f"{key}={value!r} is not supported: this BERT implements "
                             f"{key}={supported!r} only.")


@dataclasses.dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder, named as google-research/bert names them.

    `hidden_act="gelu"` is the tanh approximation, as the original TF1 `modeling.py`
    defines it; `"gelu_exact"` is the erf form (what Hugging Face calls `"gelu"`).

    The last four fields say which family the encoder is; their defaults are BERT's:

    - `type_vocab_size`: rows of the token-type (segment) embedding; 0 for a family without
      token types (RoBERTa, XLM-RoBERTa, DistilBERT), whose model ignores `segment_ids`.
    - `layer_norm_epsilon`: 1e-12 for BERT and DistilBERT, 1e-5 for RoBERTa and XLM-R.
    - `position_offset`: the position id of the first token. Hugging Face's RoBERTa and
      XLM-R count from `padding_idx + 1` = 2 (their tables have 2 more rows); keras-hub's
      count from 0 in a table without those rows.
    - `classifier_head`: one of `CLASSIFIER_HEADS` ("bert", "roberta", "distilbert").

    Example:
    >>> config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
    ...                     num_attention_heads=4, intermediate_size=64)
    >>> config.head_size
    8
    >>> BertConfig.from_dict(config.to_dict()) == config
    True
    """

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_epsilon: float = 1e-12
    position_offset: int = 0
    classifier_head: str = "bert"

    def __post_init__(self):
        self.validate()

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    @property
    def max_sequence_length(self):
        """The longest input the position table covers: `max_position_embeddings` less the
        `position_offset` rows before the first position."""
        return self.max_position_embeddings - self.position_offset

    def validate(self):
        """Raises `ValueError` naming the first field that is out of range."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"BertConfig.{name} must be a positive integer; got {value!r}.")
        for name in ("type_vocab_size", "position_offset"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"BertConfig.{name} must be a non-negative integer (0 for "
                                 f"none); got {value!r}.")
        if self.position_offset >= self.max_position_embeddings:
            raise ValueError(
                f"BertConfig.position_offset ({self.position_offset}) must be below "
                f"max_position_embeddings ({self.max_position_embeddings}): the position "
                "table holds the offset rows too.")
        value = self.layer_norm_epsilon
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"BertConfig.layer_norm_epsilon must be a positive number (1e-12 "
                             f"for BERT, 1e-5 for RoBERTa); got {value!r}.")
        if self.classifier_head not in CLASSIFIER_HEADS:
            raise ValueError(f"BertConfig.classifier_head must be one of {CLASSIFIER_HEADS}; "
                             f"got {self.classifier_head!r}.")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0.0 <= value < 1.0:
                raise ValueError(
                    f"BertConfig.{name} must be a number in [0, 1); got {value!r}.")
        value = self.initializer_range
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(
                f"BertConfig.initializer_range must be a positive number; got {value!r}.")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(
                f"BertConfig.hidden_act must be one of {sorted(ACTIVATIONS)}; "
                f"got {self.hidden_act!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig.num_attention_heads ({self.num_attention_heads}) must divide "
                f"hidden_size ({self.hidden_size}).")

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a `bert_config.json`-style dict.

        Keys that do not change the model (`IGNORED_KEYS`: the `pooler_*` and `directionality`
        keys of Google's multilingual and Chinese releases, Hugging Face bookkeeping) are
        ignored and logged at info level; `FIXED_KEYS` are accepted at the one value this model
        implements; any other unknown key is an error.

        Example:
        >>> config = BertConfig.from_dict({"vocab_size": 119547, "directionality": "bidi",
        ...                                "pooler_type": "first_token_transform"})
        >>> config.vocab_size
        119547
        """
        if not isinstance(values, dict):
            raise ValueError(f"A BERT config must be a JSON object; got {type(values).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields - IGNORED_KEYS - set(FIXED_KEYS))
        if unknown:
            raise ValueError(
                f"Unknown BertConfig field(s) {unknown}: remove them if they do not change the "
                f"model; accepted are {sorted(fields)}, plus {sorted(IGNORED_KEYS)} (ignored) "
                f"and {', '.join(f'{k}={v!r}' for k, v in FIXED_KEYS.items())}.")
        check_fixed_keys(values)
        if "vocab_size" not in values:
            raise ValueError("BertConfig field 'vocab_size' is missing.")
        ignored = sorted(set(values) - fields)
        if ignored:
            logger.info("BERT config: ignored %s (they do not change the model).",
                        ", ".join(ignored))
        return cls(**{k: v for k, v in values.items() if k in fields})

    @classmethod
    def from_json_file(cls, path):
        """Reads a `bert_config.json`; errors name the file."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ValueError(f"BERT config file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON file ({e}).") from None
        try:
            return cls.from_dict(values)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json_string(self):
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json_string())
