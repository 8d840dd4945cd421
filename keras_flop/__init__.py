"""keras-flop: structured pruning of BERT-family encoders for Keras 3 (FLOP).

Public API: `BertConfig`, `BertClassifier` (built by `build_bert_classifier`), `BertTokenizer`,
`BertPreprocessor`,
`load_tf1_checkpoint`, `load_hf_checkpoint`, `from_keras_hub`, `preprocessor_from_keras_hub`,
`factorize`, `factorize_model`, `PruningModel`, `Distiller` (fine-tuning with distillation),
`expected_sparsity`, `kept_parameters`,
`LatencyTable`, `measure_latency_table`, `expected_latency`, `predicted_speedup`, `compact`, `prune_post_training` (retraining-free pruning), `parameter_report`,
`export_saved_model`, `export_formats`, and the modules `layers` (`FactorizedDense`,
`HardConcreteMask`), `optimizers`, `cost` (what each gate controls) and `latency`.
"""

from keras_flop import (callbacks, cost, device, distillation, family, glue, latency, layers,
                        optimizers)
from keras_flop.checkpoint import load_tf1_checkpoint
from keras_flop.compaction import compact
from keras_flop.config import BertConfig
from keras_flop.distillation import Distiller
from keras_flop.export import export_saved_model
from keras_flop.export_formats import export_formats
from keras_flop.factorization import factorize, factorize_model
from keras_flop.hf_checkpoint import load_hf_checkpoint
from keras_flop.keras_hub_import import from_keras_hub, preprocessor_from_keras_hub
from keras_flop.latency import (LatencyTable, expected_latency, measure_latency_table,
                                predicted_speedup)
from keras_flop.models import BertClassifier, build_bert_classifier
from keras_flop.post_training import post_training_masks, prune_post_training
from keras_flop.preprocessor import BertPreprocessor
from keras_flop.pruning_model import PruningModel
from keras_flop.report import parameter_report, write_parameter_report
from keras_flop.sparsity import (calibrate_mask, expected_sparsity, kept_parameters,
                                 realized_sparsity)
from keras_flop.tokenizer import BertTokenizer

__version__ = "0.1.0"

__all__ = [
    "BertClassifier", "BertConfig", "BertPreprocessor", "BertTokenizer",
    "build_bert_classifier", "calibrate_mask", "callbacks", "compact", "cost", "device",
    "distillation", "Distiller", "expected_latency", "expected_sparsity", "export_formats",
    "export_saved_model", "factorize", "factorize_model", "family", "from_keras_hub", "glue",
    "kept_parameters", "latency", "LatencyTable", "layers", "load_hf_checkpoint",
    "load_tf1_checkpoint", "measure_latency_table", "optimizers", "parameter_report",
    "post_training_masks", "predicted_speedup", "preprocessor_from_keras_hub",
    "prune_post_training", "PruningModel", "realized_sparsity", "write_parameter_report",
]
