"""Model builders of keras-flop."""

from keras_flop.models.bert import (ENCODER_DENSE_SUFFIXES, INPUT_NAMES, STRUCTURAL_GATES,
                                    bert_inputs, bert_structure_of,
                                    build_bert_classifier, encoder_dense_names)

__all__ = ["ENCODER_DENSE_SUFFIXES", "INPUT_NAMES", "STRUCTURAL_GATES", "bert_inputs",
           "bert_structure_of", "build_bert_classifier", "encoder_dense_names"]
