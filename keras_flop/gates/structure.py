"""Where the gates of a factorized or gated BERT are.

An encoder layer has six dense layers and up to five kinds of gate: the rank gate inside each
`FactorizedDense`, and the structural masks of `build_bert_classifier(gates=...)` (per head,
per FFN unit, per attention block, per FFN block). `encoder_layer_parts` finds them;
`keras_flop.gates.cost.StructureAccount` states what each of them controls.
"""

import dataclasses

import keras
import numpy as np

from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.layers.hard_concrete_mask import HardConcreteMask
from keras_flop.models.bert import ENCODER_DENSE_SUFFIXES, MASK_SUFFIXES, bert_structure_of

_STRUCTURES = {"rank": (True, ()), "heads+ffn": (False, ("heads", "ffn")),
               "heads+ffn+layers": (False, ("heads", "ffn", "layers")),
               "all": (True, ("heads", "ffn", "layers"))}
STRUCTURES = tuple(_STRUCTURES)


def parse_structure(structure):
    """`(rank_gates, structural_gates)` of a `structure` name; an error naming the choices.

    Example:
    >>> from keras_flop.gates.structure import parse_structure
    >>> parse_structure("rank")
    (True, ())
    >>> parse_structure("heads+ffn+layers")
    (False, ('heads', 'ffn', 'layers'))
    """
    if structure not in _STRUCTURES:
        raise ValueError(f"`structure` must be one of {STRUCTURES}; got {structure!r}.")
    return _STRUCTURES[structure]


@dataclasses.dataclass
class EncoderLayerParts:
    """The dense layers and gates of encoder layer `index` (absent ones are missing/None)."""

    index: int
    dense: dict
    masks: dict
    head_size: int


def dense_dims(layer):
    """`(input_dim, units)` of a `Dense` or `FactorizedDense`.

    Example:
    >>> from keras_flop.gates.structure import dense_dims
    >>> from keras_flop.layers import FactorizedDense
    >>> layer = FactorizedDense(16, rank=4)
    >>> layer.build((None, 8))
    >>> dense_dims(layer)  # the kernel it stands for, whatever its rank
    (8, 16)
    """
    if isinstance(layer, FactorizedDense):
        return layer.input_dim, layer.units
    return int(layer.kernel.shape[0]), int(layer.kernel.shape[1])


def encoder_layer_parts(network):
    """One `EncoderLayerParts` per encoder layer of `network` (a `BertClassifier` or a pruning
    model of one), in order; the layer count and head size are those the model carries.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> dense = keras_flop.build_bert_classifier(config)
    >>> network = keras_flop.factorize_model(dense, structure="heads+ffn")
    >>> from keras_flop.gates.structure import encoder_layer_parts
    >>> [part] = encoder_layer_parts(network)
    >>> list(part.dense)
    ['attention_query', 'attention_key', 'attention_value', 'attention_output',
     'intermediate', 'output']
    >>> {kind: mask.size for kind, mask in part.masks.items() if mask is not None}
    {'head': 2, 'intermediate': 16}
    >>> part.head_size
    4
    """
    config, _, _ = bert_structure_of(network)
    by_name = {layer.name: layer for layer in getattr(network, "network", network).layers}
    parts = []
    for index in range(config.num_hidden_layers):
        prefix = f"layer_{index}_"
        dense = {suffix: by_name[prefix + suffix] for suffix in ENCODER_DENSE_SUFFIXES
                 if isinstance(by_name.get(prefix + suffix),
                               (keras.layers.Dense, FactorizedDense))}
        masks = {kind: by_name.get(prefix + suffix) for kind, suffix in MASK_SUFFIXES.items()}
        masks = {kind: mask if isinstance(mask, HardConcreteMask) else None
                 for kind, mask in masks.items()}
        parts.append(EncoderLayerParts(index, dense, masks, config.head_size))
    return parts


def structural_masks(network):
    """The structural `HardConcreteMask`s of `network` (heads, FFN units, blocks)."""
    return [mask for part in encoder_layer_parts(network) for mask in part.masks.values()
            if mask is not None]


def all_gates(network):
    """Every `HardConcreteMask` of `network`: the rank gates and the structural masks.

    Example:
    >>> import keras_flop
    >>> config = keras_flop.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
    ...                                num_attention_heads=2, intermediate_size=16,
    ...                                max_position_embeddings=16)
    >>> network = keras_flop.factorize_model(keras_flop.build_bert_classifier(config),
    ...                                      structure="all")
    >>> from keras_flop.gates.structure import all_gates, structural_masks
    >>> [gate.size for gate in all_gates(network)]  # six rank gates, then the structural ones
    [8, 8, 8, 8, 8, 8, 2, 16, 1, 1]
    >>> [mask.name for mask in structural_masks(network)]
    ['layer_0_head_mask', 'layer_0_intermediate_mask', 'layer_0_attention_mask',
     'layer_0_ffn_mask']
    """
    ranks = [layer.gate for layer in network.layers
             if isinstance(layer, FactorizedDense) and layer.gate is not None]
    return ranks + structural_masks(network)


def kept_units(mask, threshold=0.0):
    """Indices of the units of `mask` whose inference value exceeds `threshold`.

    Example:
    >>> from keras_flop.gates.structure import kept_units
    >>> from keras_flop.layers import HardConcreteMask
    >>> gate = HardConcreteMask(4)
    >>> gate.build()
    >>> _ = gate.log_alpha.assign([5.0, -5.0, 0.5, -1.0])
    >>> kept_units(gate)
    array([0, 2, 3])
    >>> kept_units(gate, threshold=0.5)
    array([0, 2])
    """
    return np.flatnonzero(np.asarray(mask.mask(training=False)) > threshold)


def mask_values(mask):
    """The inference values of `mask`, `[size]` numpy float32.

    Example:
    >>> from keras_flop.gates.structure import mask_values
    >>> from keras_flop.layers import HardConcreteMask
    >>> gate = HardConcreteMask(4)
    >>> gate.build()
    >>> _ = gate.log_alpha.assign([5.0, -5.0, 0.5, -1.0])
    >>> mask_values(gate).round(2)  # clip(1.2 σ(log α) - 0.1, 0, 1)
    array([1.  , 0.  , 0.65, 0.22], dtype=float32)
    """
    return np.asarray(mask.mask(training=False), dtype="float32")
