"""`from_keras_hub`: a keras-hub BERT-family model as the library's `BertClassifier`.

A Keras user who fine-tuned (or built) a classifier with keras-hub gets the same network,
weight for weight, as a `BertClassifier` that `factorize`, `compact` and the exports take.
keras-hub keeps each model's architecture in its backbone's config, so nothing is guessed
from shapes; its layers map one to one onto this library's:

| keras-hub (`BertBackbone`, `BertTextClassifier`) | `BertClassifier` |
|---|---|
| `token_embedding`, `position_embedding`, `segment_embedding` | `word_embeddings`, `position_embeddings`, `token_type_embeddings` |
| `embeddings_layer_norm` | `embeddings_layer_norm` |
| `transformer_layer_{i}`: attention query/key/value kernels `[hidden, heads, head_size]`, output `[heads, head_size, hidden]` | `layer_{i}_attention_{query,key,value,output}`, reshaped to 2-D |
| `transformer_layer_{i}`: attention and feed-forward layer norms, FFN dense layers | `layer_{i}_attention_layer_norm`, `layer_{i}_intermediate`, `layer_{i}_output`, `layer_{i}_output_layer_norm` |
| `pooled_dense` (tanh), `logits` | `pooler`, `classifier` |

Supported:
- `keras_hub.models.BertTextClassifier`, or a `BertBackbone` plus `num_labels` (a fresh
  head). keras-hub's BERT uses the tanh GELU and layer-norm epsilon 1e-12, as the original.
- `keras_hub.models.ElectraBackbone` plus `num_labels`, when `embedding_dim == hidden_dim`:
  ELECTRA's discriminator is BERT's encoder (token types, learned absolute positions from 0,
  tanh GELU, epsilon 1e-12, a tanh pooler on `[CLS]`); a smaller embedding needs a projection
  this model does not have. keras-hub has no ELECTRA classifier, hence the fresh head.

Declined, with an error saying why: RoBERTa (layer-norm epsilon 1e-5, which `BertConfig` does
not carry, and no token types), DistilBERT (a ReLU pre-classifier instead of the tanh pooler,
no token types), and any other model.

Tokenization: a keras-hub BERT vocabulary is a WordPiece vocabulary, so
`preprocessor_from_keras_hub` writes it out and builds a `keras_flop.BertPreprocessor` over it
for the data pipelines and the exported text signatures.
"""

import logging
import os

import keras
import keras_hub
import numpy as np

from keras_flop.compat import encoder_sublayers
from keras_flop.models.config import BertConfig
from keras_flop.models.bert import BertClassifier
from keras_flop.text.preprocessor import BertPreprocessor
from keras_flop.text.tokenizer import BertTokenizer

logger = logging.getLogger(__name__)

SUPPORTED = ("keras_hub.models.BertTextClassifier, keras_hub.models.BertBackbone (with "
             "num_labels), keras_hub.models.ElectraBackbone (with num_labels, embedding_dim == "
             "hidden_dim)")

# Families whose layers do not map one to one, and why.
_DECLINED = {
    "RobertaBackbone": "RoBERTa uses layer-norm epsilon 1e-5 and no token types; BertConfig "
                       "implements BERT's 1e-12 only",
    "DistilBertBackbone": "DistilBERT's classifier has a ReLU pre-classifier instead of BERT's "
                          "tanh pooler, and no token types",
}


def _hub_activation(function):
    """The `BertConfig.hidden_act` of a keras-hub FFN activation, or None."""
    from keras_hub.src.utils.keras_utils import gelu_approximate
    if function is gelu_approximate:
        return "gelu"  # BertConfig's "gelu" is the tanh form, as TF1 BERT's
    name = keras.activations.serialize(function)
    name = name if isinstance(name, str) else getattr(function, "__name__", None)
    return {"gelu": "gelu_exact", "relu": "relu", "tanh": "tanh", "silu": "silu",
            "swish": "silu"}.get(name)


def _split(model, num_labels):
    """`(backbone, head or None, num_labels)` of a supported keras-hub model."""
    name = type(model).__name__
    if isinstance(model, keras_hub.models.BertTextClassifier):
        backbone, head = model.backbone, model.output_dense
        if keras.activations.serialize(model.activation) not in ("linear", None):
            raise ValueError(f"{name} has activation={model.activation.__name__!r}: "
                             "BertClassifier returns logits; rebuild it with activation=None.")
        if num_labels is not None and num_labels != head.units:
            raise ValueError(f"{name} has a {head.units}-label head, but num_labels="
                             f"{num_labels} was asked: leave num_labels out.")
        return backbone, head, head.units
    backbone = getattr(model, "backbone", model)
    backbone_name = type(backbone).__name__
    if backbone_name in _DECLINED:
        raise ValueError(f"{name} is not supported ({_DECLINED[backbone_name]}); supported: "
                         f"{SUPPORTED}.")
    if isinstance(model, (keras_hub.models.BertBackbone, keras_hub.models.ElectraBackbone)):
        if isinstance(model, keras_hub.models.ElectraBackbone) and \
                model.embedding_dim != model.hidden_dim:
            raise ValueError(f"ElectraBackbone has embedding_dim={model.embedding_dim} != "
                             f"hidden_dim={model.hidden_dim}: its embedding projection has no "
                             "place in BertClassifier; supported is embedding_dim == hidden_dim.")
        if num_labels is None:
            num_labels = 2
            logger.warning("%s has no classifier head: initialized a fresh 2-label head "
                           "(pass num_labels).", name)
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ValueError(f"`num_labels` must be a positive integer; got {num_labels!r}.")
        return model, None, num_labels
    raise ValueError(f"{name} is not supported by from_keras_hub; supported: {SUPPORTED}.")


def config_from_keras_hub(backbone):
    """The `BertConfig` of a keras-hub `BertBackbone` or `ElectraBackbone`; an error naming
    the setting this BERT does not implement.

    Example:
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1, num_heads=2,
    ...     hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    >>> config = config_from_keras_hub(backbone)
    >>> config.vocab_size, config.hidden_act, config.max_position_embeddings
    (30, 'gelu', 16)
    """
    layers = backbone.transformer_layers
    first = layers[0]
    for layer in layers:
        if layer.normalize_first:
            raise ValueError(f"{layer.name} normalizes first (pre-LN); BERT is post-LN.")
        if not np.isclose(layer.layer_norm_epsilon, 1e-12, rtol=1e-6):
            raise ValueError(f"{layer.name} has layer_norm_epsilon={layer.layer_norm_epsilon};"
                             " BertConfig implements BERT's 1e-12 only.")
    act = _hub_activation(first.activation)
    if act is None:
        raise ValueError(f"{first.name} has an activation ({first.activation}) BertConfig does "
                         "not name; supported: tanh GELU, exact GELU, relu, tanh, silu.")
    return BertConfig(
        vocab_size=backbone.token_embedding.input_dim,
        hidden_size=backbone.hidden_dim,
        num_hidden_layers=backbone.num_layers,
        num_attention_heads=backbone.num_heads,
        intermediate_size=backbone.intermediate_dim,
        hidden_act=act,
        hidden_dropout_prob=float(backbone.dropout),
        attention_probs_dropout_prob=float(backbone.dropout),
        max_position_embeddings=backbone.max_sequence_length,
        type_vocab_size=backbone.num_segments)


def _assign(variable, value):
    value = np.asarray(keras.ops.convert_to_numpy(value), np.float32)
    variable.assign(value.reshape(tuple(variable.shape)))


def from_keras_hub(model, num_labels=None):
    """A `BertClassifier` with the weights of a keras-hub BERT-family model.

    Args:
        model: a `keras_hub.models.BertTextClassifier`, a `BertBackbone` or an
            `ElectraBackbone` (`embedding_dim == hidden_dim`), or the path of a `.keras` file
            holding one.
        num_labels: size of a fresh head for a backbone (default 2); a classifier's head fixes
            it.

    Returns:
        A dense `BertClassifier` whose inference logits equal the keras-hub model's (a
        backbone's pooled output gets a fresh, randomly initialized head).

    Raises:
        ValueError: naming what is supported, for any other model or a setting (pre-LN, an
            epsilon other than 1e-12, a final activation) that BERT does not have.

    Example:
    >>> import numpy as np
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=30, num_layers=1,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    >>> hub = keras_hub.models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)
    >>> model = from_keras_hub(hub)
    >>> batch = {"token_ids": np.ones((2, 5), "int32"), "segment_ids": np.zeros((2, 5), "int32"),
    ...          "padding_mask": np.ones((2, 5), bool)}
    >>> bool(np.allclose(model(batch), hub(batch), atol=1e-5)), model.num_labels
    (True, 3)
    """
    if isinstance(model, (str, os.PathLike)):
        from keras_flop.checkpoints.keras_file import load_keras_file

        model = load_keras_file(model, "keras-hub model file")
    backbone, head, num_labels = _split(model, num_labels)
    config = config_from_keras_hub(backbone)
    converted = BertClassifier(config, num_labels=num_labels)
    get = converted.get_layer
    _assign(get("word_embeddings").embeddings, backbone.token_embedding.embeddings)
    _assign(get("position_embeddings").position_embeddings,
            backbone.position_embedding.position_embeddings)
    _assign(get("token_type_embeddings").embeddings, backbone.segment_embedding.embeddings)
    _copy_norm(get("embeddings_layer_norm"), backbone.embeddings_layer_norm)
    for index, layer in enumerate(backbone.transformer_layers):
        prefix = f"layer_{index}_"
        for name, theirs in encoder_sublayers(layer).items():
            copy = _copy_norm if name.endswith("layer_norm") else _copy_dense
            copy(get(prefix + name), theirs)
    _copy_dense(get("pooler"), backbone.pooled_dense)
    if head is not None:
        _copy_dense(get("classifier"), head)
    return converted


def _copy_dense(ours, theirs):
    # keras-hub's attention projections are EinsumDense with 3-D kernels and 2-D biases: the
    # same numbers in the same (row-major) order as the 2-D Dense kernel.
    _assign(ours.kernel, theirs.kernel)
    _assign(ours.bias, theirs.bias)


def _copy_norm(ours, theirs):
    _assign(ours.gamma, theirs.gamma)
    _assign(ours.beta, theirs.beta)


def preprocessor_from_keras_hub(preprocessor, vocab_file, max_seq_length=None):
    """A `keras_flop.BertPreprocessor` over a keras-hub BERT tokenizer's WordPiece vocabulary.

    Args:
        preprocessor: a keras-hub `BertTextClassifierPreprocessor` (its `tokenizer` and
            `sequence_length` are used), a `BertTokenizer`, or a classifier carrying either.
        vocab_file: where to write the vocabulary (`vocab.txt`, one token a line); it becomes
            an asset of exported SavedModels.
        max_seq_length: default the preprocessor's `sequence_length`.

    Casing follows the keras-hub tokenizer's `lowercase`. One difference remains: with
    `lowercase=True` this preprocessor also strips accents, as google-research/bert's
    tokenizer (and the checkpoints' pre-training) did, while keras-hub's keeps them unless
    built with `strip_accents=True`; texts without accents get the same ids.

    Example:
    >>> import tempfile
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "film"]
    >>> tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> pre = preprocessor_from_keras_hub(tokenizer, path, max_seq_length=6)
    >>> pre(["Good film"])["token_ids"].numpy().tolist()
    [[2, 5, 6, 3, 0, 0]]
    """
    if isinstance(getattr(preprocessor, "preprocessor", None), keras.layers.Layer):
        preprocessor = preprocessor.preprocessor
    tokenizer = getattr(preprocessor, "tokenizer", preprocessor)
    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise ValueError(f"Expected a keras-hub BERT preprocessor or WordPiece tokenizer; got "
                         f"{type(tokenizer).__name__}. Pass --vocab_file (a vocab.txt) "
                         "instead.")
    if max_seq_length is None:
        max_seq_length = getattr(preprocessor, "sequence_length", None)
        if max_seq_length is None:
            raise ValueError("A keras-hub tokenizer has no sequence length: pass "
                             "`max_seq_length`.")
    vocabulary = tokenizer.get_vocabulary()
    directory = os.path.dirname(os.fspath(vocab_file))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")
    return BertPreprocessor(BertTokenizer(vocab_file, lowercase=tokenizer.lowercase),
                            int(max_seq_length))
