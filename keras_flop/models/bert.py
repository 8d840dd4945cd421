"""The BERT encoder with a classification or regression head, as a functional Keras model.

Every encoder dense layer is made by one `dense_factory(name, units, activation)`: the dense
model, the factorized pruning model and the compact model are the same graph built with
different factories.
"""

import keras
import keras_hub

from keras_flop.activations import get_activation
from keras_flop.config import BertConfig
from keras_flop.layers.attention import ScaledDotProductAttention

# The six dense layers of every encoder layer, in the order of the forward pass.
ENCODER_DENSE_SUFFIXES = ("attention_query", "attention_key", "attention_value",
                          "attention_output", "intermediate", "output")

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def encoder_dense_names(num_layers):
    """Names of the encoder's dense layers, e.g. `layer_0_attention_query`."""
    return [f"layer_{i}_{suffix}" for i in range(num_layers) for suffix in ENCODER_DENSE_SUFFIXES]


def _initializer(config):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def _dense_factory(config):
    def make(name, units, activation):
        return keras.layers.Dense(units, activation=activation, name=name,
                                  kernel_initializer=_initializer(config))
    return make


def bert_inputs():
    """The three model inputs, keras-hub's names: `token_ids`, `segment_ids`, `padding_mask`."""
    return {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="bool", name="padding_mask"),
    }


def _embeddings(config, inputs):
    init = _initializer(config)
    words = keras.layers.Embedding(config.vocab_size, config.hidden_size,
                                   embeddings_initializer=init,
                                   name="word_embeddings")(inputs["token_ids"])
    positions = keras_hub.layers.PositionEmbedding(config.max_position_embeddings,
                                                   initializer=init,
                                                   name="position_embeddings")(words)
    types = keras.layers.Embedding(config.type_vocab_size, config.hidden_size,
                                   embeddings_initializer=init,
                                   name="token_type_embeddings")(inputs["segment_ids"])
    x = keras.layers.Add(name="embeddings_add")([words, positions, types])
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="embeddings_layer_norm")(x)
    return keras.layers.Dropout(config.hidden_dropout_prob, name="embeddings_dropout")(x)


def _encoder_layer(config, index, x, padding_mask, make_dense):
    prefix = f"layer_{index}_"
    hidden = config.hidden_size
    q = make_dense(prefix + "attention_query", hidden, None)(x)
    k = make_dense(prefix + "attention_key", hidden, None)(x)
    v = make_dense(prefix + "attention_value", hidden, None)(x)
    context = ScaledDotProductAttention(
        config.num_attention_heads, config.head_size, config.attention_probs_dropout_prob,
        name=prefix + "attention")(q, k, v, padding_mask)
    attention = make_dense(prefix + "attention_output", hidden, None)(context)
    attention = keras.layers.Dropout(config.hidden_dropout_prob,
                                     name=prefix + "attention_dropout")(attention)
    x = keras.layers.Add(name=prefix + "attention_residual")([x, attention])
    x = keras.layers.LayerNormalization(epsilon=1e-12, name=prefix + "attention_layer_norm")(x)
    ffn = make_dense(prefix + "intermediate", config.intermediate_size,
                     get_activation(config.hidden_act))(x)
    ffn = make_dense(prefix + "output", hidden, None)(ffn)
    ffn = keras.layers.Dropout(config.hidden_dropout_prob, name=prefix + "output_dropout")(ffn)
    x = keras.layers.Add(name=prefix + "output_residual")([x, ffn])
    return keras.layers.LayerNormalization(epsilon=1e-12, name=prefix + "output_layer_norm")(x)


def build_bert_classifier(config, num_labels=2, dense_factory=None, name="bert_classifier"):
    """A BERT encoder with a pooled-[CLS] head: classification, or regression for `num_labels=1`.

    Args:
        config: a `BertConfig`.
        num_labels: number of classes; `1` makes a regressor (STS-B).
        dense_factory: `fn(name, units, activation) -> layer` making each encoder dense layer
            (default: `keras.layers.Dense`). The factorizer and compaction pass their own.
        name: model name.

    Returns:
        A functional `keras.Model` taking `{"token_ids", "segment_ids", "padding_mask"}`
        (`[batch, seq]`) and returning float32 logits `[batch, num_labels]`, also under a
        mixed-precision policy.

    Example:
    >>> import numpy as np
    >>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=32)
    >>> model = build_bert_classifier(config, num_labels=3)
    >>> batch = {"token_ids": np.ones((2, 8), "int32"), "segment_ids": np.zeros((2, 8), "int32"),
    ...          "padding_mask": np.ones((2, 8), bool)}
    >>> model(batch).shape
    (2, 3)
    """
    if not isinstance(config, BertConfig):
        raise ValueError(f"`config` must be a BertConfig; got {type(config).__name__}.")
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"`num_labels` must be a positive integer; got {num_labels!r}.")
    make_dense = dense_factory or _dense_factory(config)
    inputs = bert_inputs()
    x = _embeddings(config, inputs)
    for index in range(config.num_hidden_layers):
        x = _encoder_layer(config, index, x, inputs["padding_mask"], make_dense)
    pooled = keras.layers.Dense(config.hidden_size, activation="tanh", name="pooler",
                                kernel_initializer=_initializer(config))(x[:, 0, :])
    pooled = keras.layers.Dropout(config.hidden_dropout_prob, name="classifier_dropout")(pooled)
    logits = keras.layers.Dense(num_labels, name="classifier", dtype="float32",
                                kernel_initializer=_initializer(config))(pooled)
    return keras.Model(inputs=inputs, outputs=logits, name=name)
