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
    """`(rank_gates, structural_gates)` of a `structure` name; an error naming the choices."""
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
    """`(input_dim, units)` of a `Dense` or `FactorizedDense`."""
    if isinstance(layer, FactorizedDense):
        return layer.input_dim, layer.units
    return int(layer.kernel.shape[0]), int(layer.kernel.shape[1])


def encoder_layer_parts(network):
    """One `EncoderLayerParts` per encoder layer of `network` (a `BertClassifier` or a pruning
    model of one), in order; the layer count and head size are those the model carries."""
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
    """Every `HardConcreteMask` of `network`: the rank gates and the structural masks."""
    ranks = [layer.gate for layer in network.layers
             if isinstance(layer, FactorizedDense) and layer.gate is not None]
    return ranks + structural_masks(network)


def kept_units(mask, threshold=0.0):
    """Indices of the units of `mask` whose inference value exceeds `threshold`."""
    return np.flatnonzero(np.asarray(mask.mask(training=False)) > threshold)


def mask_values(mask):
    """The inference values of `mask`, `[size]` numpy float32."""
    return np.asarray(mask.mask(training=False), dtype="float32")
