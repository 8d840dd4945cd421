"""The forward pass of `BertClassifier`, written once.

The functions here say what the model computes, in order: the embeddings; per encoder layer
the attention block (query, key and value projections, `ScaledDotProductAttention`, the
optional head gate, the output projection, the optional block gate, dropout, residual sum,
LayerNorm) and the FFN block (the same with the intermediate layer and unit gate); the
classifier head on the first token. What differs between the families (token types, the
first position id, the layer-norm epsilon, the head) is read from the `BertConfig`, never
from layer names. They take every layer from a layer source and run on whatever tensors they
are given:

- `BertClassifier`'s constructor runs them once on its symbolic inputs with a `LayerMaker`,
  which makes each layer when the pass first asks for it: that is the functional graph.
- `BertForward` (`BertClassifier.forward_view()`) runs them on a built model's own layers, in
  inference mode, with optional multiplicative masks on each head's context and each FFN
  unit, whole or block by block, and gives the tensors in between (hidden states, attention
  contexts, intermediate activations, the residual sums before each LayerNorm):
  retraining-free pruning (`keras_flop.fisher`) scores and tunes its masks on them.

So a change to the forward pass, and every layer name, is made here only.
"""

import collections
import functools
import numbers

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_flop.layers.attention import ScaledDotProductAttention
from keras_flop.layers.hard_concrete_mask import HardConcreteMask
from keras_flop.layers.pruned_sublayer import PrunedSublayer

# The six dense layers of every encoder layer, in the order of the forward pass.
ENCODER_DENSE_SUFFIXES = ("attention_query", "attention_key", "attention_value",
                          "attention_output", "intermediate", "output")

# The LayerNorm that ends every encoder layer: its output is the layer's hidden state.
HIDDEN_STATE_SUFFIX = "output_layer_norm"

# Structural gates an encoder layer can carry, and the names of their `HardConcreteMask`s:
# "heads" scales each head's context before the output projection, "ffn" each intermediate
# unit, "layers" the whole attention block and the whole FFN block.
STRUCTURAL_GATES = ("heads", "ffn", "layers")
MASK_SUFFIXES = {"head": "head_mask", "intermediate": "intermediate_mask",
                 "attention": "attention_mask", "ffn": "ffn_mask"}

Block = collections.namedtuple("Block", ["residual", "output"])
Block.__doc__ = """What an attention or FFN block gives: `residual`, the input plus the
block's output (the sum the LayerNorm takes), and `output`, after the LayerNorm."""


class LayerMaker:
    """The layer source of the constructor: makes each layer the pass asks for.

    Layers are made in the order the pass asks for them, so the initializers draw their seeds
    in that order and a seeded build gives the same weights.

    Args:
        config, num_labels, layer_shapes, gates, gate_config: the model's (checked).
        policy: the dtype policy of the layers.
        dense_specs: `{name: (units, activation)}` of the encoder dense layers.
        dense_layers: `{name: layer}` of those given ready-made (the others are `Dense`).
    """

    def __init__(self, config, num_labels, layer_shapes, gates, gate_config, policy,
                 dense_specs, dense_layers):
        self.config, self.num_labels, self.shapes, self.gates = \
            config, num_labels, layer_shapes, gates
        self.policy = policy
        self._gate_config, self._specs, self._given = gate_config, dense_specs, dense_layers

    def initializer(self):
        """A new kernel initializer of the config: each draws its own seed."""
        return keras.initializers.TruncatedNormal(stddev=self.config.initializer_range)

    def get(self, name, make):
        return make(name)

    def dense(self, name):
        if name in self._given:
            return self._given[name]
        units, activation = self._specs[name]
        return keras.layers.Dense(units, activation=activation, name=name,
                                  kernel_initializer=self.initializer(), dtype=self.policy)

    def mask(self, name, size, unit_size):
        return HardConcreteMask(size, unit_size=unit_size, name=name, **self._gate_config)

    def attention(self, name, num_heads):
        return ScaledDotProductAttention(num_heads, self.config.head_size,
                                         self.config.attention_probs_dropout_prob, name=name,
                                         dtype=self.policy)

    def pruned(self, name):
        return PrunedSublayer(self.config.hidden_size, name=name, dtype=self.policy)

    def dropout(self, name):
        return keras.layers.Dropout(self.config.hidden_dropout_prob, name=name,
                                    dtype=self.policy)

    def add(self, name):
        return keras.layers.Add(name=name, dtype=self.policy)

    def layer_norm(self, name):
        return keras.layers.LayerNormalization(epsilon=self.config.layer_norm_epsilon, name=name,
                                               dtype=self.policy)


class _ModelLayers:
    """The layer source of `BertForward`: a built model's own layers, by the names the pass
    gives them; the layers that take `training` are called in inference mode."""

    policy = None  # nothing is made

    def __init__(self, network):
        self.config, self.shapes, self.gates = \
            network.bert_config, network.layer_shapes, network.gates
        self._by_name = {layer.name: layer for layer in network.layers}

    def initializer(self):
        return None  # (and no seed drawn from the global random state)

    def get(self, name, *how_to_make):
        return self._by_name[name]

    dense = pruned = add = layer_norm = get

    def in_inference(self, name, *how_to_make):
        return functools.partial(self._by_name[name], training=False)

    mask = attention = dropout = in_inference


def scale_units(x, mask, unit_size):
    """`x` (`[batch, seq, units·unit_size]`) times `mask` (`[units]`, or `[batch, units]` per
    example), each value covering `unit_size` consecutive features; `x` for no mask."""
    if mask is None:
        return x
    mask = ops.cast(mask, x.dtype)
    if unit_size > 1:
        mask = ops.repeat(mask, unit_size, axis=-1)
    return x * ops.reshape(mask, (-1, 1, ops.shape(mask)[-1]))


def embed(layers, inputs):
    """The hidden state entering the first encoder layer."""
    config, policy = layers.config, layers.policy
    init = layers.initializer()  # one, shared by the three tables: seeded weights rely on it

    def embedding(rows):
        return lambda name: keras.layers.Embedding(rows, config.hidden_size,
                                                   embeddings_initializer=init, name=name,
                                                   dtype=policy)

    words = layers.get("word_embeddings", embedding(config.vocab_size))(inputs["token_ids"])
    position_layer = layers.get("position_embeddings", lambda name: (
        keras_hub.layers.PositionEmbedding(config.max_position_embeddings, initializer=init,
                                           name=name, dtype=policy)))
    # RoBERTa's positions start past the padding index; BERT's graph stays as it was.
    positions = position_layer(words, start_index=config.position_offset) \
        if config.position_offset else position_layer(words)
    summed = [words, positions]
    if config.type_vocab_size:  # a family without token types ignores `segment_ids`
        summed.append(layers.get("token_type_embeddings",
                                 embedding(config.type_vocab_size))(inputs["segment_ids"]))
    x = layers.add("embeddings_add")(summed)
    x = layers.layer_norm("embeddings_layer_norm")(x)
    return layers.dropout("embeddings_dropout")(x)


def attention_context(layers, index, x, padding_mask):
    """Every head's attention context in layer `index`, `[batch, seq, heads·head_size]`,
    before the head gate and the output projection."""
    prefix = f"layer_{index}_"
    q, k, v = (layers.dense(prefix + suffix)(x) for suffix in ENCODER_DENSE_SUFFIXES[:3])
    attention = layers.attention(prefix + "attention", layers.shapes[index][0])
    return attention(q, k, v, padding_mask)


def intermediate(layers, index, x):
    """The FFN intermediate activations of layer `index`, `[batch, seq, units]`, before the
    unit gate."""
    return layers.dense(f"layer_{index}_intermediate")(x)


def attention_block(layers, index, x, padding_mask, head_mask=None):
    """The attention block of layer `index` on `x`, each head's context times `head_mask`
    (see `scale_units`; None for none), as a `Block`."""
    config, prefix = layers.config, f"layer_{index}_"
    num_heads = layers.shapes[index][0]
    if num_heads:
        context = attention_context(layers, index, x, padding_mask)
        if "heads" in layers.gates:
            context = layers.mask(prefix + MASK_SUFFIXES["head"], num_heads,
                                  config.head_size)(context)
        context = scale_units(context, head_mask, config.head_size)
        attention = layers.dense(prefix + "attention_output")(context)
        if "layers" in layers.gates:
            attention = layers.mask(prefix + MASK_SUFFIXES["attention"], 1,
                                    config.hidden_size)(attention)
    else:
        attention = layers.pruned(prefix + "attention_pruned")(x)
    attention = layers.dropout(prefix + "attention_dropout")(attention)
    residual = layers.add(prefix + "attention_residual")([x, attention])
    return Block(residual, layers.layer_norm(prefix + "attention_layer_norm")(residual))


def ffn_block(layers, index, x, unit_mask=None):
    """The FFN block of layer `index` on `x`, each intermediate unit times `unit_mask`, as a
    `Block`."""
    config, prefix = layers.config, f"layer_{index}_"
    intermediate_size = layers.shapes[index][1]
    if intermediate_size:
        ffn = intermediate(layers, index, x)
        if "ffn" in layers.gates:
            ffn = layers.mask(prefix + MASK_SUFFIXES["intermediate"], intermediate_size, 1)(ffn)
        ffn = layers.dense(prefix + "output")(scale_units(ffn, unit_mask, 1))
        if "layers" in layers.gates:
            ffn = layers.mask(prefix + MASK_SUFFIXES["ffn"], 1, config.hidden_size)(ffn)
    else:
        ffn = layers.pruned(prefix + "output_pruned")(x)
    ffn = layers.dropout(prefix + "output_dropout")(ffn)
    residual = layers.add(prefix + "output_residual")([x, ffn])
    return Block(residual, layers.layer_norm(prefix + HIDDEN_STATE_SUFFIX)(residual))


def classify(layers, x):
    """The logits (float32) of the last hidden state `x`: its first token's ([CLS] or `<s>`)
    vector through the config's `classifier_head` (see `CLASSIFIER_HEADS`)."""
    config, policy = layers.config, layers.policy
    head = config.classifier_head
    activation = "relu" if head == "distilbert" else "tanh"
    first = x[:, 0, :]
    if head == "roberta":  # RoBERTa drops out before its dense layer too
        first = layers.dropout("pooler_dropout")(first)
    pooled = layers.get("pooler", lambda name: keras.layers.Dense(
        config.hidden_size, activation=activation, name=name,
        kernel_initializer=layers.initializer(), dtype=policy))(first)
    pooled = layers.dropout("classifier_dropout")(pooled)
    return layers.get("classifier", lambda name: keras.layers.Dense(
        layers.num_labels, name=name, dtype="float32",
        kernel_initializer=layers.initializer()))(pooled)


def forward(layers, inputs, head_masks=None, unit_masks=None):
    """`(logits, hidden_states)`: the whole pass on `inputs`, with optional per-layer masks;
    `hidden_states` are the embeddings' output and each encoder layer's."""
    num_layers = layers.config.num_hidden_layers
    head_masks = [None] * num_layers if head_masks is None else head_masks
    unit_masks = [None] * num_layers if unit_masks is None else unit_masks
    states = [embed(layers, inputs)]
    for index in range(num_layers):
        x = attention_block(layers, index, states[-1], inputs["padding_mask"],
                            head_masks[index]).output
        states.append(ffn_block(layers, index, x, unit_masks[index]).output)
    return classify(layers, states[-1]), states


class BertForward:
    """The inference pass of a built `BertClassifier` on its own layers, whole or block by
    block, with optional masks and the tensors in between.

    A head mask multiplies each head's attention context before the output projection, a
    unit mask each FFN intermediate activation, after any structural gate of the model; each
    is `[units]`, or `[batch, units]` for one mask per example (differentiable, so gradients
    with respect to the masks are scores of the units). Dropout is off; the pass works eagerly
    and inside a `tf.function`.

    Args:
        model: a `BertClassifier` (`model.forward_view()` makes this view).

    Example:
    >>> import numpy as np
    >>> from keras_flop import BertConfig, build_bert_classifier
    >>> model = build_bert_classifier(BertConfig(vocab_size=30, hidden_size=8,
    ...     num_hidden_layers=2, num_attention_heads=2, intermediate_size=16))
    >>> x = {"token_ids": np.ones((3, 5), "int32"), "segment_ids": np.zeros((3, 5), "int32"),
    ...      "padding_mask": np.ones((3, 5), bool)}
    >>> view = model.forward_view()
    >>> logits, states = view(x, head_masks=[np.ones(2), np.array([1.0, 0.0])],
    ...                       hidden_states=True)
    >>> tuple(logits.shape), len(states)
    ((3, 2), 3)
    >>> bool(np.allclose(view(x), model(x), atol=1e-6))
    True
    """

    def __init__(self, model):
        if not hasattr(model, "layer_shapes") or not hasattr(model, "bert_config"):
            raise ValueError(f"BertForward takes a keras-flop BertClassifier (a pruning "
                             f"model's `.network`); got {type(model).__name__}.")
        self._layers = _ModelLayers(model)
        self.layer_shapes = model.layer_shapes

    def __call__(self, inputs, head_masks=None, unit_masks=None, hidden_states=False):
        """The logits of `inputs` (`{"token_ids", "segment_ids", "padding_mask"}`), with
        `head_masks` / `unit_masks` (one mask or None per encoder layer; None for none), and
        with `hidden_states=True` `(logits, [embeddings output, each layer's output])`."""
        num_layers = len(self.layer_shapes)
        masks = []
        for which, given, kind in (("head_masks", head_masks, 0),
                                   ("unit_masks", unit_masks, 1)):
            if given is None:
                masks.append(None)
                continue
            given = list(given)
            if len(given) != num_layers:
                raise ValueError(f"`{which}` needs one mask (or None) per encoder layer "
                                 f"({num_layers}); got {len(given)}.")
            masks.append([self._check_mask(i, m, kind) for i, m in enumerate(given)])
        # As the functional model does with its bool input.
        inputs = dict(inputs, padding_mask=ops.cast(inputs["padding_mask"], "bool"))
        logits, states = forward(self._layers, inputs, *masks)
        return (logits, states) if hidden_states else logits

    def _check_index(self, index, kind=None):
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or \
                not 0 <= index < len(self.layer_shapes):
            raise ValueError(f"`index` must be an encoder layer index in "
                             f"[0, {len(self.layer_shapes)}); got {index!r}.")
        if kind is not None and not self.layer_shapes[index][kind]:
            what = ("attention heads", "FFN units")[kind]
            raise ValueError(f"Encoder layer {index} has no {what} (its block was removed): "
                             "it has no such tensor.")

    def _check_mask(self, index, mask, kind):
        """`mask` for `index`'s heads (`kind` 0) or FFN units (1); None for a removed block."""
        if mask is None:
            return None
        size = self.layer_shapes[index][kind]
        shape = tuple(mask.shape) if hasattr(mask, "shape") else np.shape(mask)
        what = ("head", "unit")[kind]
        if not size and shape[-1:] in ((0,), ()):
            return None
        if len(shape) not in (1, 2) or shape[-1] not in (size, None):
            raise ValueError(f"The {what} mask of encoder layer {index} has shape {shape}: "
                             f"pass [{size}] or [batch, {size}] values, one per {what} of "
                             f"the layer, or None.")
        return mask

    def embed(self, inputs):
        """The hidden state entering the first encoder layer, `[batch, seq, hidden]`."""
        return embed(self._layers, inputs)

    def attention_context(self, index, x, padding_mask):
        """Every head's context in layer `index` on `x`, before the output projection."""
        self._check_index(index, 0)
        return attention_context(self._layers, index, x, padding_mask)

    def intermediate(self, index, x):
        """The FFN intermediate activations of layer `index` on `x`."""
        self._check_index(index, 1)
        return intermediate(self._layers, index, x)

    def attention(self, index, x, padding_mask, head_mask=None):
        """Layer `index`'s attention block on `x` as a `Block` (`residual`, `output`)."""
        self._check_index(index)
        return attention_block(self._layers, index, x, padding_mask,
                               self._check_mask(index, head_mask, 0))

    def ffn(self, index, x, unit_mask=None):
        """Layer `index`'s FFN block on `x` as a `Block`; its `output` is the layer's hidden
        state."""
        self._check_index(index)
        return ffn_block(self._layers, index, x, self._check_mask(index, unit_mask, 1))

    def classify(self, x):
        """The float32 logits of the last hidden state `x`."""
        return classify(self._layers, x)
