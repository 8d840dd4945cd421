"""The BERT encoder with a classification or regression head, as a functional Keras model.

Every encoder dense layer is made by one `dense_factory(name, units, activation)`: the dense
model, the factorized pruning model and the compact model are the same graph built with
different factories. The same builder inserts the structural gates of a pruning model
(`gates`) and builds compact models whose layers keep different numbers of heads and FFN units
(`layer_shapes`).
"""

import keras
import keras_hub

from keras_flop.activations import get_activation
from keras_flop.config import BertConfig
from keras_flop.layers.attention import ScaledDotProductAttention
from keras_flop.layers.hard_concrete_mask import HardConcreteMask
from keras_flop.layers.pruned_sublayer import PrunedSublayer

# The six dense layers of every encoder layer, in the order of the forward pass.
ENCODER_DENSE_SUFFIXES = ("attention_query", "attention_key", "attention_value",
                          "attention_output", "intermediate", "output")

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")

# Structural gates an encoder layer can carry, and the names of their `HardConcreteMask`s:
# "heads" scales each head's context before the output projection, "ffn" each intermediate
# unit, "layers" the whole attention block and the whole FFN block.
STRUCTURAL_GATES = ("heads", "ffn", "layers")
MASK_SUFFIXES = {"head": "head_mask", "intermediate": "intermediate_mask",
                 "attention": "attention_mask", "ffn": "ffn_mask"}


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


def _encoder_layer(config, index, x, padding_mask, make_dense, make_mask, gates, shape):
    prefix = f"layer_{index}_"
    hidden = config.hidden_size
    num_heads, intermediate_size = shape
    if num_heads:
        width = num_heads * config.head_size
        q = make_dense(prefix + "attention_query", width, None)(x)
        k = make_dense(prefix + "attention_key", width, None)(x)
        v = make_dense(prefix + "attention_value", width, None)(x)
        context = ScaledDotProductAttention(
            num_heads, config.head_size, config.attention_probs_dropout_prob,
            name=prefix + "attention")(q, k, v, padding_mask)
        if "heads" in gates:
            context = make_mask(prefix + MASK_SUFFIXES["head"], num_heads,
                                config.head_size)(context)
        attention = make_dense(prefix + "attention_output", hidden, None)(context)
        if "layers" in gates:
            attention = make_mask(prefix + MASK_SUFFIXES["attention"], 1, hidden)(attention)
    else:
        attention = PrunedSublayer(hidden, name=prefix + "attention_pruned")(x)
    attention = keras.layers.Dropout(config.hidden_dropout_prob,
                                     name=prefix + "attention_dropout")(attention)
    x = keras.layers.Add(name=prefix + "attention_residual")([x, attention])
    x = keras.layers.LayerNormalization(epsilon=1e-12, name=prefix + "attention_layer_norm")(x)
    if intermediate_size:
        ffn = make_dense(prefix + "intermediate", intermediate_size,
                         get_activation(config.hidden_act))(x)
        if "ffn" in gates:
            ffn = make_mask(prefix + MASK_SUFFIXES["intermediate"], intermediate_size, 1)(ffn)
        ffn = make_dense(prefix + "output", hidden, None)(ffn)
        if "layers" in gates:
            ffn = make_mask(prefix + MASK_SUFFIXES["ffn"], 1, hidden)(ffn)
    else:
        ffn = PrunedSublayer(hidden, name=prefix + "output_pruned")(x)
    ffn = keras.layers.Dropout(config.hidden_dropout_prob, name=prefix + "output_dropout")(ffn)
    x = keras.layers.Add(name=prefix + "output_residual")([x, ffn])
    return keras.layers.LayerNormalization(epsilon=1e-12, name=prefix + "output_layer_norm")(x)


def _check_structure(config, gates, layer_shapes):
    unknown = sorted(set(gates) - set(STRUCTURAL_GATES))
    if unknown:
        raise ValueError(f"`gates` must be drawn from {STRUCTURAL_GATES}; got {unknown}.")
    if layer_shapes is None:
        return [(config.num_attention_heads, config.intermediate_size)] * \
            config.num_hidden_layers
    layer_shapes = [tuple(shape) for shape in layer_shapes]
    if len(layer_shapes) != config.num_hidden_layers:
        raise ValueError(f"`layer_shapes` needs one (num_heads, intermediate_size) pair per "
                         f"layer ({config.num_hidden_layers}); got {len(layer_shapes)}.")
    for index, (heads, units) in enumerate(layer_shapes):
        if not (0 <= heads <= config.num_attention_heads and
                0 <= units <= config.intermediate_size):
            raise ValueError(
                f"`layer_shapes[{index}]` = ({heads}, {units}) is out of range: heads in "
                f"[0, {config.num_attention_heads}], units in [0, {config.intermediate_size}].")
    return layer_shapes


def build_bert_classifier(config, num_labels=2, dense_factory=None, name="bert_classifier",
                          gates=(), gate_config=None, layer_shapes=None):
    """A BERT encoder with a pooled-[CLS] head: classification, or regression for `num_labels=1`.

    Args:
        config: a `BertConfig`.
        num_labels: number of classes; `1` makes a regressor (STS-B).
        dense_factory: `fn(name, units, activation) -> layer` making each encoder dense layer
            (default: `keras.layers.Dense`). The factorizer and compaction pass their own.
        name: model name.
        gates: structural gates to insert, drawn from `STRUCTURAL_GATES` (`"heads"`, `"ffn"`,
            `"layers"`); each is a `HardConcreteMask` named `layer_{i}_{head_mask|
            intermediate_mask|attention_mask|ffn_mask}`, all open at the default init.
        gate_config: keyword arguments of those masks (e.g. `eval_mask`).
        layer_shapes: per encoder layer `(num_heads, intermediate_size)`; default the config's
            for every layer. 0 heads (0 units) replaces the attention (FFN) block by a
            `PrunedSublayer`.

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
    shapes = _check_structure(config, gates, layer_shapes)
    make_dense = dense_factory or _dense_factory(config)

    def make_mask(mask_name, size, unit_size):
        return HardConcreteMask(size, unit_size=unit_size, name=mask_name, **(gate_config or {}))

    inputs = bert_inputs()
    x = _embeddings(config, inputs)
    for index in range(config.num_hidden_layers):
        x = _encoder_layer(config, index, x, inputs["padding_mask"], make_dense, make_mask,
                           tuple(gates), shapes[index])
    pooled = keras.layers.Dense(config.hidden_size, activation="tanh", name="pooler",
                                kernel_initializer=_initializer(config))(x[:, 0, :])
    pooled = keras.layers.Dropout(config.hidden_dropout_prob, name="classifier_dropout")(pooled)
    logits = keras.layers.Dense(num_labels, name="classifier", dtype="float32",
                                kernel_initializer=_initializer(config))(pooled)
    return keras.Model(inputs=inputs, outputs=logits, name=name)


def bert_structure_of(model):
    """`(config, num_labels, layer_shapes)` of a model built by `build_bert_classifier`.

    Read from the layers themselves, so it also describes imported and compacted models; the
    config's head and FFN sizes are the largest of any layer.
    """
    def layer(name):
        try:
            return model.get_layer(name)
        except ValueError:
            return None

    words = layer("word_embeddings")
    if words is None or layer("classifier") is None:
        raise ValueError(f"Model {model.name!r} is not a keras-flop BERT classifier (no "
                         "'word_embeddings' or 'classifier' layer).")
    hidden = words.output_dim
    num_layers = 0
    while layer(f"layer_{num_layers}_output_layer_norm") is not None:
        num_layers += 1
    head_size = next((lay.head_size for lay in model.layers
                      if isinstance(lay, ScaledDotProductAttention)), 64)
    shapes = []
    for index in range(num_layers):
        attention = layer(f"layer_{index}_attention")
        intermediate = layer(f"layer_{index}_intermediate")
        shapes.append((attention.num_heads if attention is not None else 0,
                       intermediate.units if intermediate is not None else 0))
    attention_dropout = next((lay.dropout for lay in model.layers
                              if isinstance(lay, ScaledDotProductAttention)), 0.0)
    config = BertConfig(
        vocab_size=words.input_dim, hidden_size=hidden, num_hidden_layers=num_layers,
        num_attention_heads=hidden // head_size,
        intermediate_size=max([units for _, units in shapes] + [1]),
        hidden_dropout_prob=layer("embeddings_dropout").rate,
        attention_probs_dropout_prob=attention_dropout,
        max_position_embeddings=layer("position_embeddings").sequence_length,
        type_vocab_size=layer("token_type_embeddings").input_dim)
    return config, layer("classifier").units, shapes
