"""Model builders of keras-flop."""

from keras_flop.models.bert import (ENCODER_DENSE_SUFFIXES, INPUT_NAMES, STRUCTURAL_GATES,
                                    BertClassifier, bert_inputs, bert_network,
                                    bert_structure_of, build_bert_classifier,
                                    encoder_dense_names, encoder_dense_specs)
from keras_flop.models.forward import BertForward

__all__ = ["ENCODER_DENSE_SUFFIXES", "INPUT_NAMES", "STRUCTURAL_GATES", "BertClassifier",
           "BertForward", "bert_inputs", "bert_network", "bert_structure_of",
           "build_bert_classifier", "encoder_dense_names", "encoder_dense_specs"]
