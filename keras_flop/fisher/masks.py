"""The masks retraining-free pruning finds, and the models made from them.

`PostTrainingMasks` holds what the search found per encoder layer; `masked_model` turns it
into a `heads+ffn` gated model that `keras_flop.compact` cuts to the plain compact model;
`init_gates_from_masks` starts a Lagrangian pruning model's gates from it instead.

Example: layer 0 keeps its first head and FFN units, layer 1 nothing.
>>> import keras_flop, numpy as np
>>> model = keras_flop.build_bert_classifier(keras_flop.BertConfig(
...     vocab_size=30, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
...     intermediate_size=16))
>>> masks = PostTrainingMasks([np.array([1.0, 0.0]), np.zeros(2)],
...                           [np.r_[np.ones(8), np.zeros(8)], np.zeros(16)], None, None, 0, 0)
>>> keras_flop.compact(masked_model(model, masks)).layer_shapes
((1, 8), (0, 0))
>>> pruning_model = init_gates_from_masks(keras_flop.factorize(model, structure="heads+ffn"),
...                                       masks)
>>> pruning_model.network.get_layer("layer_0_head_mask").log_alpha.numpy().tolist()
[5.0, -5.0]
"""

import dataclasses

import numpy as np

from keras_flop.fisher.inputs import dense_network
from keras_flop.gates.structure import encoder_layer_parts
from keras_flop.lagrangian.factorization import factorize_model

# log α that makes a hard-concrete gate exactly 1 (or 0) at inference.
_OPEN, _CLOSED = 10.0, -10.0


@dataclasses.dataclass
class PostTrainingMasks:
    """What the post-training search found, per encoder layer.

    Attributes:
        head_scales, unit_scales: per layer, one float per head / FFN unit: 0 for a pruned
            unit, the tuned scale (1 before tuning) for a kept one.
        head_fisher, unit_fisher: per layer, the diagonal Fisher score of each head / unit.
        kept_params, total_params: encoder kernel parameters kept, and of the dense model.
        seconds: wall time of each phase (`fisher`, `search`, `rearrange`, `tune`).

    Example:
    >>> import numpy as np
    >>> masks = PostTrainingMasks([np.array([1.0, 0.0])], [np.array([0.0, 1.2, 1.0])],
    ...                           [np.array([0.5, 0.1])], [np.array([0.0, 0.3, 0.2])], 3, 6)
    >>> masks.kept_heads, masks.kept_units
    ([1], [2])
    """

    head_scales: list
    unit_scales: list
    head_fisher: list
    unit_fisher: list
    kept_params: int
    total_params: int
    seconds: dict = dataclasses.field(default_factory=dict)

    @property
    def kept_heads(self):
        return [int(np.count_nonzero(s)) for s in self.head_scales]

    @property
    def kept_units(self):
        return [int(np.count_nonzero(s)) for s in self.unit_scales]


def masked_model(model, masks):
    """A `heads+ffn` gated copy of the dense `model` computing the pruned, tuned model: the
    gates are exactly open (kept) or closed, the tuned scales folded into the rows of the
    attention output and FFN output kernels. `keras_flop.compact` turns it into the plain
    compact model."""
    network = dense_network(model)
    gated = factorize_model(network, structure="heads+ffn")
    head_size = network.bert_config.head_size
    for part, heads, units in zip(encoder_layer_parts(gated), masks.head_scales,
                                  masks.unit_scales):
        for kind, scales, consumer, unit in (("head", heads, "attention_output", head_size),
                                             ("intermediate", units, "output", 1)):
            if part.masks[kind] is None:
                continue
            part.masks[kind].log_alpha.assign(np.where(scales != 0, _OPEN, _CLOSED)
                                              .astype("float32"))
            layer = part.dense[consumer]
            rows = np.repeat(np.where(scales != 0, scales, 1.0), unit)[:, None]
            layer.kernel.assign(np.asarray(layer.kernel) * rows.astype("float32"))
    return gated


def init_gates_from_masks(pruning_model, masks, log_alpha=5.0):
    """Starts the head and FFN-unit gates of a pruning model from a post-training mask:
    `log α = +log_alpha` for kept units (open, `ẑ = 1`), `-log_alpha` for pruned ones
    (`ẑ = 0`); the gates stay trainable.

    `pruning_model` must gate heads and FFN units (`structure` `heads+ffn`,
    `heads+ffn+layers` or `all`) and have the encoder `masks` were computed on.
    """
    parts = encoder_layer_parts(getattr(pruning_model, "network", pruning_model))
    if len(parts) != len(masks.head_scales):
        raise ValueError(f"The masks are for {len(masks.head_scales)} encoder layers; the "
                         f"model has {len(parts)}.")
    for part, heads, units in zip(parts, masks.head_scales, masks.unit_scales):
        for kind, scales in (("head", heads), ("intermediate", units)):
            gate = part.masks[kind]
            if gate is None:
                raise ValueError("A Fisher initial mask needs head and FFN-unit gates: build "
                                 "the pruning model with structure='heads+ffn', "
                                 "'heads+ffn+layers' or 'all'.")
            if gate.size != len(scales):
                raise ValueError(f"{gate.name} has {gate.size} units, the mask "
                                 f"{len(scales)}.")
            gate.log_alpha.assign(np.where(np.asarray(scales) != 0, log_alpha, -log_alpha)
                                  .astype("float32"))
    return pruning_model
