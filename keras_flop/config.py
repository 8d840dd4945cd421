"""`BertConfig`: the architecture of a BERT encoder, as in `bert_config.json`."""

import dataclasses
import json
import os

from keras_flop.activations import ACTIVATIONS


@dataclasses.dataclass
class BertConfig:
    """Hyper-parameters of a BERT encoder, named as google-research/bert names them.

    `hidden_act="gelu"` is the tanh approximation, as the original TF1 `modeling.py`
    defines it; `"gelu_exact"` is the erf form (what Hugging Face calls `"gelu"`).

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

    def __post_init__(self):
        self.validate()

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    def validate(self):
        """Raises `ValueError` naming the first field that is out of range."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"BertConfig.{name} must be a positive integer; got {value!r}.")
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
        """Builds a config from a `bert_config.json`-style dict; unknown keys are an error."""
        if not isinstance(values, dict):
            raise ValueError(f"A BERT config must be a JSON object; got {type(values).__name__}.")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(
                f"Unknown BertConfig field(s) {unknown}; expected a subset of {sorted(fields)}.")
        if "vocab_size" not in values:
            raise ValueError("BertConfig field 'vocab_size' is missing.")
        return cls(**values)

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
