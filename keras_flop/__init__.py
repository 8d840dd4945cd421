"""keras-flop: structured pruning of BERT-family encoders for Keras 3 (FLOP).

The public API, re-exported here: `BertConfig`, `build_bert_classifier`, and the layers in
`keras_flop.layers` (`FactorizedDense`, `HardConcreteMask`).
"""

from keras_flop import layers
from keras_flop.config import BertConfig
from keras_flop.models import build_bert_classifier

__version__ = "0.1.0"

__all__ = ["BertConfig", "build_bert_classifier", "layers"]
