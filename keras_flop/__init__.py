"""keras-flop: structured pruning of BERT-family encoders for Keras 3 (FLOP).

Public API: `BertConfig`, `BertClassifier` (built by `build_bert_classifier`), `BertTokenizer`,
`BertPreprocessor`, `load_checkpoint` (any of the three below, told apart by their files),
`describe_checkpoint`, `load_tf1_checkpoint`, `load_hf_checkpoint`, `from_keras_hub`,
`preprocessor_from_keras_hub`, `factorize`, `factorize_model`, `PruningModel`, `Distiller`
(fine-tuning with distillation), `expected_sparsity`, `kept_parameters`, `LatencyTable`,
`measure_latency_table`, `expected_latency`, `predicted_speedup`, `compact`, `drop_layers`,
`prune_post_training` (retraining-free pruning), `parameter_report`, `export_saved_model`,
`export_formats`, and the modules `layers` (`FactorizedDense`, `HardConcreteMask`),
`optimizers`, `cost` (what each gate controls) and `latency`.

The subpackages, one concept each:
- `models`: the BERT classifier, its config and activations;
- `layers`: the Keras layers (factorized dense, L0 gate, attention, pruned block);
- `checkpoints`: models in (TF1 checkpoints, Hugging Face directories, keras-hub);
- `text`: the tokenizer and preprocessor; `export`: SavedModel, ONNX, LiteRT (float, INT8);
- `gates`: where the gates are, what each controls (the cost account), sparsity, calibration,
  compaction and the parameter report;
- `lagrangian`: SVD factorization, the `PruningModel` and its families of targets;
- `fisher`: retraining-free pruning; `latency`: the one timer, latency tables, the device;
- `training`: optimizers, callbacks, distillation, fine-tuning and its data;
- `glue`: the nine tasks, readers, metrics, batching.
"""

from keras_flop import glue, latency, layers
from keras_flop.checkpoints.detect import describe_checkpoint, load_checkpoint
from keras_flop.checkpoints.hugging_face import load_hf_checkpoint
from keras_flop.checkpoints.keras_hub import from_keras_hub, preprocessor_from_keras_hub
from keras_flop.checkpoints.tf1 import load_tf1_checkpoint
from keras_flop.export.formats import export_formats
from keras_flop.export.saved_model import export_saved_model
from keras_flop.fisher.post_training import post_training_masks, prune_post_training
from keras_flop.gates import cost
from keras_flop.gates.compaction import compact, drop_layers
from keras_flop.gates.report import parameter_report, write_parameter_report
from keras_flop.gates.sparsity import (calibrate_mask, expected_sparsity, kept_parameters,
                                       realized_sparsity)
from keras_flop.lagrangian import family
from keras_flop.lagrangian.factorization import factorize, factorize_model
from keras_flop.lagrangian.pruning_model import PruningModel
from keras_flop.latency import device
from keras_flop.latency.table import (LatencyTable, expected_latency, measure_latency_table,
                                      predicted_speedup)
from keras_flop.models import BertClassifier, build_bert_classifier
from keras_flop.models.config import BertConfig
from keras_flop.text.preprocessor import BertPreprocessor
from keras_flop.text.tokenizer import BertTokenizer
from keras_flop.training import callbacks, distillation, optimizers
from keras_flop.training.distillation import Distiller

__version__ = "0.1.0"

__all__ = [
    "BertClassifier", "BertConfig", "BertPreprocessor", "BertTokenizer",
    "build_bert_classifier", "calibrate_mask", "callbacks", "compact", "cost",
    "describe_checkpoint", "device",
    "distillation", "Distiller", "drop_layers", "expected_latency", "expected_sparsity",
    "export_formats",
    "export_saved_model", "factorize", "factorize_model", "family", "from_keras_hub", "glue",
    "kept_parameters", "latency", "LatencyTable", "layers", "load_checkpoint",
    "load_hf_checkpoint",
    "load_tf1_checkpoint", "measure_latency_table", "optimizers", "parameter_report",
    "post_training_masks", "predicted_speedup", "preprocessor_from_keras_hub",
    "prune_post_training", "PruningModel", "realized_sparsity", "write_parameter_report",
]
