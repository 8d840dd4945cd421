"""Keras layers of keras-flop, and the SVD factors (`svd`) a `FactorizedDense` starts from."""

from keras_flop.layers.attention import ScaledDotProductAttention
from keras_flop.layers.factorized_dense import FactorizedDense
from keras_flop.layers.hard_concrete_mask import HardConcreteMask
from keras_flop.layers.pruned_sublayer import PrunedSublayer

__all__ = ["FactorizedDense", "HardConcreteMask", "PrunedSublayer", "ScaledDotProductAttention"]
