"""`BertClassifier`: the BERT encoder with a classification or regression head.

The model carries its architecture, as keras-hub's `BertBackbone` does: `BertClassifier` is a
functional `keras.Model` subclass whose constructor builds the layer graph from the
`BertConfig`, `num_labels`, the per-layer `(num_heads, intermediate_size)` `layer_shapes` (0
for a removed block), the structural `gates` and their `gate_config`; `get_config` returns
those constructor arguments, so they survive a `.keras` save and load, and
`bert_structure_of` reads them back. Nothing reads the architecture off layer names or kernel
shapes.

What those numbers do not fix is the kind of each encoder dense layer: a `Dense` in a dense
model, a gated `FactorizedDense` in a pruning model, a `Dense` or an un-gated
`FactorizedDense` of any rank in a compact model. The constructor takes them as
`dense_layers` (name -> layer; a missing name gets a `Dense`), `get_config` serializes each of
them with its build config, and `from_config` rebuilds them before the graph. The graph and
its layer names are then those of the saved model, so the `.keras` weights load by layer path
as for any functional model. (Keras' own functional config is not used: it revives a plain
`Functional`, never a subclass with its own constructor, and would drop the architecture.)

`build_bert_classifier` is the public builder: it makes every encoder dense layer with one
`dense_factory(name, units, activation)`, so the dense model, the factorized pruning model and
the compact model are the same graph built with different factories.

The graph is the forward pass of `keras_flop.models.forward`, run on the symbolic inputs;
`BertClassifier.forward_view()` runs the same pass on the built model's layers, with head and
FFN-unit masks and the tensors in between.
"""

import dataclasses
import numbers

import keras

from keras_flop.models.activations import get_activation
from keras_flop.models.config import BertConfig
from keras_flop.compat import DistributedBuildMixin
from keras_flop.input_checks import CheckedData
# The layer names and gate kinds are the forward pass's; imported here for this module's
# users too.
from keras_flop.models.forward import (ENCODER_DENSE_SUFFIXES, HIDDEN_STATE_SUFFIX,  # noqa: F401
                                       MASK_SUFFIXES, STRUCTURAL_GATES, BertForward,
                                       LayerMaker, forward)

_ATTENTION_SUFFIXES = ENCODER_DENSE_SUFFIXES[:4]

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def encoder_dense_names(num_layers):
    """Names of the encoder's dense layers, e.g. `layer_0_attention_query`."""
    return [f"layer_{i}_{suffix}" for i in range(num_layers) for suffix in ENCODER_DENSE_SUFFIXES]


def hidden_state_layers(model):
    """The layers whose outputs are the encoder's hidden states, one per encoder layer of the
    model's config, in order (a removed block keeps its layer's LayerNorm)."""
    network = bert_network(model)
    return [network.get_layer(f"layer_{i}_{HIDDEN_STATE_SUFFIX}")
            for i in range(network.bert_config.num_hidden_layers)]


def encoder_dense_specs(config, layer_shapes):
    """`(name, units, activation)` of every encoder dense layer of a structure, in graph
    order; a removed block (0 heads or 0 units) has none."""
    hidden = config.hidden_size
    specs = []
    for index, (num_heads, intermediate_size) in enumerate(layer_shapes):
        units = {"attention_query": num_heads * config.head_size,
                 "attention_key": num_heads * config.head_size,
                 "attention_value": num_heads * config.head_size,
                 "attention_output": hidden, "intermediate": intermediate_size,
                 "output": hidden}
        for suffix in ENCODER_DENSE_SUFFIXES:
            kept = num_heads if suffix in _ATTENTION_SUFFIXES else intermediate_size
            if kept:
                activation = get_activation(config.hidden_act) if suffix == "intermediate" \
                    else None
                specs.append((f"layer_{index}_{suffix}", units[suffix], activation))
    return specs


def bert_inputs():
    """The three model inputs, keras-hub's names: `token_ids`, `segment_ids`, `padding_mask`."""
    return {
        "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
        "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
        "padding_mask": keras.Input(shape=(None,), dtype="bool", name="padding_mask"),
    }


def _check_gates(gates):
    """The structural gates as a tuple in `STRUCTURAL_GATES` order; an error naming the
    choices."""
    if isinstance(gates, str):
        gates = (gates,)
    unknown = sorted(set(gates) - set(STRUCTURAL_GATES))
    if unknown:
        raise ValueError(f"`gates` must be drawn from {STRUCTURAL_GATES}; got {unknown}.")
    return tuple(gate for gate in STRUCTURAL_GATES if gate in gates)


def _check_structure(config, layer_shapes):
    """The per-layer `(num_heads, intermediate_size)` tuples; errors say what is allowed."""
    if layer_shapes is None:
        return ((config.num_attention_heads, config.intermediate_size),) * \
            config.num_hidden_layers
    layer_shapes = [tuple(shape) for shape in layer_shapes]
    if len(layer_shapes) != config.num_hidden_layers:
        raise ValueError(f"`layer_shapes` needs one (num_heads, intermediate_size) pair per "
                         f"layer ({config.num_hidden_layers}); got {len(layer_shapes)}.")
    checked = []
    for index, shape in enumerate(layer_shapes):
        if len(shape) != 2 or not all(isinstance(n, numbers.Integral) and
                                      not isinstance(n, bool) for n in shape):
            raise ValueError(f"`layer_shapes[{index}]` must be a pair of integers "
                             f"(num_heads, intermediate_size); got {shape!r}.")
        heads, units = int(shape[0]), int(shape[1])
        if not (0 <= heads <= config.num_attention_heads and
                0 <= units <= config.intermediate_size):
            raise ValueError(
                f"`layer_shapes[{index}]` = ({heads}, {units}) is out of range: heads in "
                f"[0, {config.num_attention_heads}], units in [0, {config.intermediate_size}].")
        checked.append((heads, units))
    return tuple(checked)


@keras.saving.register_keras_serializable(package="keras_flop")
class BertClassifier(DistributedBuildMixin, CheckedData, keras.Model):
    """A BERT-family encoder with a classifier head that knows its own architecture.

    Classification, or regression for `num_labels=1`. The model exposes what it was built
    from (`bert_config`, `num_labels`, `layer_shapes`, `gates`, `gate_config`) and keeps it
    through `get_config`/`from_config` and `.keras` files. Build one with
    `build_bert_classifier` (or `load_tf1_checkpoint`, `factorize`, `compact`).

    Args:
        bert_config: a `BertConfig` (or its dict). Its family fields (token types, position
            offset, layer-norm epsilon, `classifier_head`) choose BERT's, RoBERTa's or
            DistilBERT's embeddings and head. A compact model keeps its original config; its
            smaller layers are in `layer_shapes`.
        num_labels: number of classes; `1` makes a regressor (STS-B).
        layer_shapes: per encoder layer `(num_heads, intermediate_size)`; default the config's
            for every layer. 0 heads (0 units) replaces the attention (FFN) block by a
            `PrunedSublayer` that adds the block's output bias.
        gates: structural gates to insert, drawn from `STRUCTURAL_GATES` (`"heads"`, `"ffn"`,
            `"layers"`); each is a `HardConcreteMask` named `layer_{i}_{head_mask|
            intermediate_mask|attention_mask|ffn_mask}`, all open at the default init.
        gate_config: keyword arguments of those masks (e.g. `eval_mask`).
        dense_layers: `{name: layer}` for encoder dense layers (`layer_{i}_{suffix}`, suffix in
            `ENCODER_DENSE_SUFFIXES`) that are not a plain `Dense`, e.g. `FactorizedDense`; each
            must have the `units` the structure gives it. The others get a `Dense`.
        dtype: dtype policy of the model's layers (default the global policy); the logits are
            float32 in any case.
        name, trainable: as for any Keras model.

    Call it on `{"token_ids", "segment_ids", "padding_mask"}` (`[batch, seq]`); it returns
    float32 logits `[batch, num_labels]`.

    Example:
    >>> import numpy as np
    >>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
    ...                     num_attention_heads=2, intermediate_size=32, hidden_act="relu")
    >>> model = BertClassifier(config, num_labels=3, layer_shapes=[(2, 32), (1, 0)])
    >>> model.layer_shapes, model.bert_config.hidden_act
    (((2, 32), (1, 0)), 'relu')
    >>> BertClassifier.from_config(model.get_config()).layer_shapes
    ((2, 32), (1, 0))
    >>> batch = {"token_ids": np.ones((2, 8), "int32"), "segment_ids": np.zeros((2, 8), "int32"),
    ...          "padding_mask": np.ones((2, 8), bool)}
    >>> tuple(model(batch).shape)
    (2, 3)
    """

    def __init__(self, bert_config, num_labels=2, layer_shapes=None, gates=(),
                 gate_config=None, dense_layers=None, dtype=None, name="bert_classifier",
                 **kwargs):
        if isinstance(bert_config, dict):
            bert_config = BertConfig.from_dict(bert_config)
        if not isinstance(bert_config, BertConfig):
            raise ValueError("`bert_config` must be a BertConfig (e.g. "
                             "BertConfig.from_json_file('bert_config.json')); got "
                             f"{type(bert_config).__name__}.")
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive integer; got {num_labels!r}.")
        gates = _check_gates(gates)
        shapes = _check_structure(bert_config, layer_shapes)
        if gate_config is not None and not isinstance(gate_config, dict):
            raise ValueError("`gate_config` must be a dict of HardConcreteMask arguments or "
                             f"None; got {type(gate_config).__name__}.")
        specs = {spec_name: (units, activation) for spec_name, units, activation
                 in encoder_dense_specs(bert_config, shapes)}
        dense_layers = dict(dense_layers or {})
        for layer_name, layer in dense_layers.items():
            if layer_name not in specs:
                raise ValueError(
                    f"`dense_layers` has {layer_name!r}, which is not an encoder dense layer "
                    f"of this structure; the names are {sorted(specs)}.")
            if not isinstance(layer, keras.layers.Layer):
                raise ValueError(f"`dense_layers[{layer_name!r}]` must be a Keras layer; got "
                                 f"{type(layer).__name__}.")
            if layer.name != layer_name:
                raise ValueError(f"`dense_layers[{layer_name!r}]` is named {layer.name!r}: "
                                 f"name it {layer_name!r}.")
            if getattr(layer, "units", None) != specs[layer_name][0]:
                raise ValueError(
                    f"`dense_layers[{layer_name!r}]` has {getattr(layer, 'units', None)} units; "
                    f"the structure needs {specs[layer_name][0]}.")
        policy = keras.dtype_policies.get(dtype)
        inputs = bert_inputs()
        logits, _ = forward(LayerMaker(bert_config, num_labels, shapes, gates, gate_config or {},
                                       policy, specs, dense_layers), inputs)
        super().__init__(inputs=inputs, outputs=logits, name=name, **kwargs)
        # The functional constructor ignores `dtype`: set the model's own policy, which
        # `get_config` saves.
        self.dtype_policy = policy
        # Plain values, kept out of Keras' and TensorFlow's attribute tracking (which would
        # wrap the tuples and dict).
        self.__dict__["_architecture"] = (dataclasses.replace(bert_config), num_labels,
                                          shapes, gates, dict(gate_config or {}))
        self.__dict__["_dense_names"] = tuple(specs)

    @property
    def bert_config(self):
        """The `BertConfig` the model was built from (a copy)."""
        return dataclasses.replace(self._architecture[0])

    @property
    def num_labels(self):
        """Number of outputs: classes, or 1 for a regressor."""
        return self._architecture[1]

    @property
    def layer_shapes(self):
        """Per encoder layer `(num_heads, intermediate_size)`; 0 for a removed block."""
        return self._architecture[2]

    @property
    def gates(self):
        """The structural gates the model carries (a tuple drawn from `STRUCTURAL_GATES`)."""
        return self._architecture[3]

    @property
    def gate_config(self):
        """Keyword arguments of the structural `HardConcreteMask`s (a copy)."""
        return dict(self._architecture[4])

    def encoder_dense_layers(self):
        """The encoder dense layers (`Dense` or `FactorizedDense`), in graph order."""
        return [self.get_layer(name) for name in self._dense_names]

    def forward_view(self):
        """A `BertForward` of this model: its inference pass on its own layers, whole or
        block by block, with optional head and FFN-unit masks, giving the hidden states,
        attention contexts and intermediate activations in between."""
        return BertForward(self)

    def is_dense(self):
        """Whether this is a plain dense model: no gates, every encoder dense layer a `Dense`
        (not factorized), as fine-tuning leaves it and `factorize` takes it."""
        return not self.gates and all(isinstance(layer, keras.layers.Dense)
                                      for layer in self.encoder_dense_layers())

    def get_config(self):
        # Not the functional config (a nested layer graph): the constructor's arguments.
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "bert_config": self._architecture[0].to_dict(),
            "num_labels": self.num_labels,
            "layer_shapes": [list(shape) for shape in self.layer_shapes],
            "gates": list(self.gates),
            "gate_config": self.gate_config,
            "dense_layers": {layer.name: keras.saving.serialize_keras_object(layer)
                             for layer in self.encoder_dense_layers()},
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["bert_config"] = BertConfig.from_dict(config["bert_config"])
        config["dense_layers"] = {
            name: keras.saving.deserialize_keras_object(layer, custom_objects=custom_objects)
            for name, layer in (config.get("dense_layers") or {}).items()}
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


def build_bert_classifier(config, num_labels=2, dense_factory=None, name="bert_classifier",
                          gates=(), gate_config=None, layer_shapes=None, dtype=None):
    """A `BertClassifier`: BERT encoder with a pooled-[CLS] head, every encoder dense layer
    made by `dense_factory`.

    Args:
        config: a `BertConfig`.
        num_labels: number of classes; `1` makes a regressor (STS-B).
        dense_factory: `fn(name, units, activation) -> layer` making each encoder dense layer
            (default: `keras.layers.Dense`). The factorizer and compaction pass their own.
        name: model name.
        gates, gate_config, layer_shapes, dtype: as for `BertClassifier`.

    Returns:
        A `BertClassifier` taking `{"token_ids", "segment_ids", "padding_mask"}`
        (`[batch, seq]`) and returning float32 logits `[batch, num_labels]`, also under a
        mixed-precision policy.

    Example:
    >>> import numpy as np
    >>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=32)
    >>> model = build_bert_classifier(config, num_labels=3)
    >>> batch = {"token_ids": np.ones((2, 8), "int32"), "segment_ids": np.zeros((2, 8), "int32"),
    ...          "padding_mask": np.ones((2, 8), bool)}
    >>> tuple(model(batch).shape)
    (2, 3)
    >>> model.bert_config == config, model.num_labels, model.layer_shapes
    (True, 3, ((2, 32),))
    """
    if not isinstance(config, BertConfig):
        raise ValueError(f"`config` must be a BertConfig; got {type(config).__name__}.")
    dense_layers = None
    if dense_factory is not None:
        shapes = _check_structure(config, layer_shapes)
        dense_layers = {layer_name: dense_factory(layer_name, units, activation)
                        for layer_name, units, activation in encoder_dense_specs(config, shapes)}
    return BertClassifier(config, num_labels, layer_shapes=layer_shapes, gates=gates,
                          gate_config=gate_config, dense_layers=dense_layers, dtype=dtype,
                          name=name)


def bert_network(model):
    """The `BertClassifier` of `model` (itself, or a pruning model's `network`); an error
    saying how to get one for any other model."""
    network = getattr(model, "network", model)
    if not isinstance(network, BertClassifier):
        raise ValueError(
            f"Model {getattr(model, 'name', model)!r} ({type(network).__name__}) is not a "
            "keras-flop BERT model: build it with keras_flop.build_bert_classifier, "
            "load_tf1_checkpoint or load_hf_checkpoint. A `.keras` file saved as a plain "
            "functional model does not carry the architecture: rebuild the model and load "
            "its weights.")
    return network


def bert_structure_of(model):
    """`(config, num_labels, layer_shapes)` of a `BertClassifier` (or a pruning model of one).

    Read from what the model carries (`BertClassifier.bert_config`, `.num_labels`,
    `.layer_shapes`), never from its layers: a compact model keeps its original config and
    gives each layer's `(num_heads, intermediate_size)`, 0 for a removed block.
    """
    network = bert_network(model)
    return network.bert_config, network.num_labels, list(network.layer_shapes)
