"""The keras-hub encoder families `from_keras_hub` converts, and what each one's config is.

Each family is a keras-hub backbone class, its text classifier class (None where keras-hub has
none), and the `BertConfig` fields that tell it from BERT. keras-hub keeps the rest of the
architecture in the backbone's config and layers (epsilon, activation), so that is read, not
assumed:

| family | token types | positions | head (on the first token) |
|---|---|---|---|
| BERT, ELECTRA | yes | from 0 | tanh pooler, dropout, classifier |
| RoBERTa, XLM-RoBERTa | none | from 0* | dropout, tanh dense, dropout, classifier |
| DistilBERT | none | from 0 | ReLU pre-classifier, dropout, classifier |

*Hugging Face's RoBERTa counts positions from `padding_idx + 1`; keras-hub's converted
presets drop those two table rows and count from 0, so `position_offset` is 0 here.
"""

import keras
import keras_hub
import numpy as np

from keras_flop.compat import keras_hub_gelu_approximate
from keras_flop.models.config import BertConfig

SUPPORTED = ("keras_hub.models.BertTextClassifier, RobertaTextClassifier, "
             "XLMRobertaTextClassifier, DistilBertTextClassifier, or their backbones with "
             "num_labels (BertBackbone, RobertaBackbone, XLMRobertaBackbone, DistilBertBackbone, "
             "ElectraBackbone with embedding_dim == hidden_dim)")

_models = keras_hub.models
# (backbone class, classifier class or None, BertConfig fields of the family). Subclasses
# match their parent's row: XLMRobertaBackbone is a RobertaBackbone.
FAMILIES = (
    (_models.BertBackbone, _models.BertTextClassifier, {"classifier_head": "bert"}),
    (_models.ElectraBackbone, None, {"classifier_head": "bert"}),
    (_models.RobertaBackbone, (_models.RobertaTextClassifier, _models.XLMRobertaTextClassifier),
     {"classifier_head": "roberta", "type_vocab_size": 0}),
    (_models.DistilBertBackbone, _models.DistilBertTextClassifier,
     {"classifier_head": "distilbert", "type_vocab_size": 0}),
)

# Families whose layers do not map one to one, and why.
DECLINED = {
    "AlbertBackbone": "ALBERT shares one encoder layer's weights across all layers and "
                      "projects a smaller embedding, so its layers cannot be pruned one by one",
    "DebertaV3Backbone": "DeBERTa's disentangled relative attention is not BERT's attention",
}


def family_of(backbone):
    """The `FAMILIES` row of a keras-hub backbone, or None."""
    return next((row for row in FAMILIES if isinstance(backbone, row[0])), None)


def hub_activation(function):
    """The `BertConfig.hidden_act` of a keras-hub FFN activation, or None."""
    if function is keras_hub_gelu_approximate():
        return "gelu"  # BertConfig's "gelu" is the tanh form, as TF1 BERT's
    name = keras.activations.serialize(function)
    name = name if isinstance(name, str) else getattr(function, "__name__", None)
    return {"gelu": "gelu_exact", "relu": "relu", "tanh": "tanh", "silu": "silu",
            "swish": "silu"}.get(name)


def split(model, num_labels):
    """`(backbone, classifier or None, num_labels)` of a supported keras-hub model; a
    one-line error naming what is supported for any other."""
    name = type(model).__name__
    backbone = getattr(model, "backbone", model)
    row = family_of(backbone)
    if row is None:
        why = DECLINED.get(type(backbone).__name__)
        raise ValueError(f"{name} is not supported by from_keras_hub"
                         f"{f' ({why})' if why else ''}; supported: {SUPPORTED}.")
    classifiers = row[1]
    if backbone is not model:
        if classifiers is None or not isinstance(model, classifiers):
            raise ValueError(f"{name} is not supported by from_keras_hub; supported: "
                             f"{SUPPORTED}.")
        _check_classifier(model, num_labels)
        return backbone, model, model.output_dense.units
    if isinstance(model, _models.ElectraBackbone) and model.embedding_dim != model.hidden_dim:
        raise ValueError(f"ElectraBackbone has embedding_dim={model.embedding_dim} != "
                         f"hidden_dim={model.hidden_dim}: its embedding projection has no "
                         "place in BertClassifier; supported is embedding_dim == hidden_dim.")
    if num_labels is None:
        num_labels = 2
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"`num_labels` must be a positive integer; got {num_labels!r}.")
    return model, None, num_labels


def _check_classifier(model, num_labels):
    name, head = type(model).__name__, model.output_dense
    if keras.activations.serialize(model.activation) not in ("linear", None):
        raise ValueError(f"{name} has activation={model.activation.__name__!r}: "
                         "BertClassifier returns logits; rebuild it with activation=None.")
    if num_labels is not None and num_labels != head.units:
        raise ValueError(f"{name} has a {head.units}-label head, but num_labels={num_labels} "
                         "was asked: leave num_labels out.")
    hidden = getattr(model, "hidden_dim", None)
    if hidden is not None and hidden != model.backbone.hidden_dim:
        raise ValueError(f"{name} has hidden_dim={hidden} != the backbone's "
                         f"{model.backbone.hidden_dim}: BertClassifier's head keeps the "
                         "hidden size; rebuild the classifier with hidden_dim=None.")
    # The head reads the first token, as keras-hub's do (`start_token_index`,
    # `cls_token_index`); any other index would read another vector.
    index = getattr(model.backbone, "start_token_index",
                    getattr(model.backbone, "cls_token_index", 0))
    if index != 0:
        raise ValueError(f"{name} reads token {index}; BertClassifier's head reads token 0.")


def config_from_keras_hub(backbone):
    """The `BertConfig` of a keras-hub backbone of a supported family; an error naming the
    setting this model does not implement.

    Example:
    >>> backbone = keras_hub.models.RobertaBackbone(vocabulary_size=30, num_layers=1,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16, max_sequence_length=16)
    >>> config = config_from_keras_hub(backbone)
    >>> config.classifier_head, config.type_vocab_size, config.layer_norm_epsilon
    ('roberta', 0, 1e-05)
    """
    row = family_of(backbone)
    if row is None:
        split(backbone, None)  # raises, naming what is supported
    layers = backbone.transformer_layers
    first = layers[0]
    epsilon = float(first.layer_norm_epsilon)
    for layer in layers:
        if layer.normalize_first:
            raise ValueError(f"{layer.name} normalizes first (pre-LN); BERT-family encoders "
                             "are post-LN.")
    norms = [(layer.name, layer.layer_norm_epsilon) for layer in layers] + \
        [("embeddings_layer_norm", backbone.embeddings_layer_norm.epsilon)]
    for name, value in norms:
        if not np.isclose(value, epsilon, rtol=1e-6):
            raise ValueError(f"{name} has layer-norm epsilon {value}, other layers "
                             f"{epsilon}: BertConfig has one epsilon for all.")
    act = hub_activation(first.activation)
    if act is None:
        raise ValueError(f"{first.name} has an activation ({first.activation}) BertConfig does "
                         "not name; supported: tanh GELU, exact GELU, relu, tanh, silu.")
    family = dict(row[2])
    family.setdefault("type_vocab_size", getattr(backbone, "num_segments", 0))
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
        layer_norm_epsilon=epsilon,
        **family)


def embedding_tables(backbone):
    """`(word, position, token type or None)` embedding layers of a keras-hub backbone."""
    # BERT and ELECTRA expose the three; RoBERTa and DistilBERT keep words and positions in
    # one public `TokenAndPositionEmbedding`.
    positions = getattr(backbone, "position_embedding", None)
    if positions is None:
        positions = backbone.embeddings.position_embedding
    return backbone.token_embedding, positions, getattr(backbone, "segment_embedding", None)
