"""Hugging Face RoBERTa, XLM-RoBERTa and DistilBERT directories: tiny `save_pretrained`-style
checkpoints written here (random weights under Hugging Face's names), loaded, and their logits
checked against a float64 numpy forward pass of each family as Hugging Face computes it."""

import json
import logging
import math

import numpy as np
import pytest

import keras_flop
from keras_flop.checkpoints.detect import describe_checkpoint
from tf1_bert import erf_gelu

HIDDEN, HEADS, FFN, LAYERS, VOCAB = 16, 2, 32, 2, 40
ROBERTA_CONFIG = {
    "architectures": ["RobertaForSequenceClassification"], "model_type": "roberta",
    "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS, "intermediate_size": FFN, "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 22, "type_vocab_size": 1, "initializer_range": 0.02,
    "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
    "position_embedding_type": "absolute", "use_cache": True, "classifier_dropout": None,
    "torch_dtype": "float32", "transformers_version": "4.44.2",
}
DISTILBERT_CONFIG = {
    "architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert",
    "vocab_size": VOCAB, "dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS,
    "hidden_dim": FFN, "activation": "gelu", "dropout": 0.1, "attention_dropout": 0.1,
    "max_position_embeddings": 20, "initializer_range": 0.02, "pad_token_id": 0,
    "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "sinusoidal_pos_embds": False,
    "tie_weights_": True, "torch_dtype": "float32", "transformers_version": "4.44.2",
}


def _roberta_names(config, head, prefix="roberta."):
    h, f = config["hidden_size"], config["intermediate_size"]
    shapes = {"embeddings.word_embeddings.weight": (config["vocab_size"], h),
              "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
              "embeddings.token_type_embeddings.weight": (config["type_vocab_size"], h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (h, h), (h,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = \
            (f, h), (f,)
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (h, f), (h,)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + norm + ".weight"], shapes[p + norm + ".bias"] = (h,), (h,)
    shapes = {prefix + name: shape for name, shape in shapes.items()}
    if head:
        shapes.update({"classifier.dense.weight": (h, h), "classifier.dense.bias": (h,),
                       "classifier.out_proj.weight": (head, h), "classifier.out_proj.bias":
                       (head,)})
    return shapes


def _distilbert_names(config, head):
    h, f = config["dim"], config["hidden_dim"]
    shapes = {"embeddings.word_embeddings.weight": (config["vocab_size"], h),
              "embeddings.position_embeddings.weight": (config["max_position_embeddings"], h),
              "embeddings.LayerNorm.weight": (h,), "embeddings.LayerNorm.bias": (h,)}
    for n in range(config["n_layers"]):
        p = f"transformer.layer.{n}."
        for name in ("attention.q_lin", "attention.k_lin", "attention.v_lin",
                     "attention.out_lin"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (h, h), (h,)
        shapes[p + "ffn.lin1.weight"], shapes[p + "ffn.lin1.bias"] = (f, h), (f,)
        shapes[p + "ffn.lin2.weight"], shapes[p + "ffn.lin2.bias"] = (h, f), (h,)
        for norm in ("sa_layer_norm", "output_layer_norm"):
            shapes[p + norm + ".weight"], shapes[p + norm + ".bias"] = (h,), (h,)
    shapes = {"distilbert." + name: shape for name, shape in shapes.items()}
    if head:
        shapes.update({"pre_classifier.weight": (h, h), "pre_classifier.bias": (h,),
                       "classifier.weight": (head, h), "classifier.bias": (head,)})
    return shapes


def _random(shapes, seed=0):
    """Layer-norm weights near 1, other weights and biases visibly non-zero."""
    rng = np.random.RandomState(seed)
    values = {}
    for name, shape in shapes.items():
        norm = "LayerNorm" in name or "layer_norm" in name
        center = 1.0 if norm and name.endswith("weight") else 0.0
        values[name] = (center + rng.normal(0.0, 0.1 if norm or name.endswith("bias")
                                            else 0.3, shape)).astype(np.float32)
    return values


def _write(directory, config, tensors):
    import safetensors.numpy

    directory.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(tensors, str(directory / "model.safetensors"),
                                metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def _layer_norm(x, w, name, eps):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * w[name + ".weight"] + w[name + ".bias"]


def _linear(x, w, name):
    return x @ w[name + ".weight"].T + w[name + ".bias"]


def _encoder_layer(x, mask, w, names, eps):
    """One post-LN encoder layer; `names` = (q, k, v, out, attention norm, ffn in, ffn out,
    output norm) parameter scopes."""
    batch, seq, hidden = x.shape
    size = hidden // HEADS

    def split(t):
        return t.reshape(batch, seq, HEADS, size).transpose(0, 2, 1, 3)

    q, k, v = (split(_linear(x, w, name)) for name in names[:3])
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size)
    scores = np.where(mask[:, None, None, :], scores, -1e30)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    context = (scores / scores.sum(-1, keepdims=True)) @ v
    context = context.transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    x = _layer_norm(_linear(context, w, names[3]) + x, w, names[4], eps)
    ffn = _linear(erf_gelu(_linear(x, w, names[5])), w, names[6])
    return _layer_norm(ffn + x, w, names[7], eps)


def roberta_reference(tensors, config, token_ids, prefix="roberta."):
    """`RobertaForSequenceClassification` logits (inference): positions counted from
    `pad_token_id + 1` over the non-padding tokens, token type 0, mask from the padding id."""
    w = {k[len(prefix):] if k.startswith(prefix) else k: np.asarray(v, np.float64)
         for k, v in tensors.items()}
    pad, eps = config["pad_token_id"], config["layer_norm_eps"]
    mask = token_ids != pad
    positions = np.cumsum(mask, axis=1) * mask + pad
    x = (w["embeddings.word_embeddings.weight"][token_ids]
         + w["embeddings.position_embeddings.weight"][positions]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, w, "embeddings.LayerNorm", eps)
    for n in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{n}."
        x = _encoder_layer(x, mask, w, [p + s for s in (
            "attention.self.query", "attention.self.key", "attention.self.value",
            "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
            "output.dense", "output.LayerNorm")], eps)
    pooled = np.tanh(_linear(x[:, 0], w, "classifier.dense"))
    return _linear(pooled, w, "classifier.out_proj")


def distilbert_reference(tensors, config, token_ids, mask):
    """`DistilBertForSequenceClassification` logits (inference): positions from 0, no token
    types, epsilon 1e-12, a ReLU pre-classifier on the first token."""
    w = {k.removeprefix("distilbert."): np.asarray(v, np.float64) for k, v in tensors.items()}
    seq = token_ids.shape[1]
    x = (w["embeddings.word_embeddings.weight"][token_ids]
         + w["embeddings.position_embeddings.weight"][:seq][None])
    x = _layer_norm(x, w, "embeddings.LayerNorm", 1e-12)
    for n in range(config["n_layers"]):
        p = f"transformer.layer.{n}."
        x = _encoder_layer(x, mask, w, [p + s for s in (
            "attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
            "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")], 1e-12)
    pooled = np.maximum(_linear(x[:, 0], w, "pre_classifier"), 0.0)
    return _linear(pooled, w, "classifier")


def _ids(pad, lengths=(9, 5, 3), seq=9, seed=3):
    """Right-padded token ids with no padding id inside the texts."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, (len(lengths), seq))
    mask = np.arange(seq)[None] < np.array(lengths)[:, None]
    return np.where(mask, ids, pad).astype("int32"), mask


def _inputs(ids, mask):
    return {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": mask}


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta"])
def test_roberta_classifier_logits_match_hugging_face(tmp_path, model_type):
    config = dict(ROBERTA_CONFIG, model_type=model_type)
    tensors = _random(_roberta_names(config, head=3))
    model = keras_flop.load_hf_checkpoint(_write(tmp_path / "hf", config, tensors))
    loaded = model.bert_config
    assert (loaded.classifier_head, loaded.type_vocab_size, loaded.position_offset,
            loaded.layer_norm_epsilon, loaded.hidden_act, model.num_labels) == \
        ("roberta", 0, 2, 1e-5, "gelu_exact", 3)
    ids, mask = _ids(pad=1)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, config, ids), atol=1e-5)


def test_roberta_model_gets_a_fresh_head_and_keeps_its_encoder(tmp_path, caplog):
    config = dict(ROBERTA_CONFIG, architectures=["RobertaModel"])
    # `RobertaModel.save_pretrained` writes names without the prefix, and its pooler;
    # `RobertaForMaskedLM` adds an lm_head: neither is used by the classifier.
    tensors = _random(_roberta_names(config, head=None, prefix=""))
    tensors.update({"pooler.dense.weight": np.ones((HIDDEN, HIDDEN), np.float32),
                    "pooler.dense.bias": np.ones(HIDDEN, np.float32),
                    "lm_head.bias": np.ones(VOCAB, np.float32)})
    with caplog.at_level(logging.WARNING):
        model = keras_flop.load_hf_checkpoint(_write(tmp_path / "hf", config, tensors),
                                              num_labels=4)
    assert "has no classifier head: initialized a fresh 4-label head (roberta's dense " \
        "layer and classifier)" in caplog.text
    assert "Ignored" not in caplog.text  # the pooler and lm_head are left out knowingly
    # The fresh head, put into the reference, gives the model's logits: the encoder is the
    # checkpoint's.
    pooler, classifier = model.get_layer("pooler"), model.get_layer("classifier")
    tensors.update({"classifier.dense.weight": np.asarray(pooler.kernel).T,
                    "classifier.dense.bias": np.asarray(pooler.bias),
                    "classifier.out_proj.weight": np.asarray(classifier.kernel).T,
                    "classifier.out_proj.bias": np.asarray(classifier.bias)})
    ids, mask = _ids(pad=1)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               roberta_reference(tensors, config, ids, prefix=""), atol=1e-5)


def test_distilbert_classifier_logits_match_hugging_face(tmp_path):
    tensors = _random(_distilbert_names(DISTILBERT_CONFIG, head=2), seed=1)
    directory = _write(tmp_path / "hf", DISTILBERT_CONFIG, tensors)
    model = keras_flop.load_hf_checkpoint(directory)
    loaded = model.bert_config
    assert (loaded.classifier_head, loaded.type_vocab_size, loaded.position_offset,
            loaded.layer_norm_epsilon, loaded.hidden_size, loaded.intermediate_size,
            loaded.hidden_dropout_prob) == ("distilbert", 0, 0, 1e-12, HIDDEN, FFN, 0.1)
    ids, mask = _ids(pad=0)
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               distilbert_reference(tensors, DISTILBERT_CONFIG, ids, mask),
                               atol=1e-5)
    # The apps' loader reads it too: DistilBERT's vocab.txt is WordPiece.
    (directory / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + [f"w{i}" for i in range(VOCAB - 4)]) + "\n")
    checkpoint = describe_checkpoint(directory)
    assert (checkpoint.kind, checkpoint.fine_tuned) == ("hugging_face", True)


def test_distilbert_model_gets_a_fresh_head(tmp_path, caplog):
    config = dict(DISTILBERT_CONFIG, architectures=["DistilBertModel"])
    tensors = _random(_distilbert_names(config, head=None), seed=2)
    tensors["distilbert.vocab_projector.bias"] = np.ones(VOCAB, np.float32)
    with caplog.at_level(logging.WARNING):
        model = keras_flop.load_hf_checkpoint(_write(tmp_path / "hf", config, tensors))
    assert "fresh 2-label head (distilbert's dense layer and classifier)" in caplog.text
    assert "Ignored" not in caplog.text
    pooler, classifier = model.get_layer("pooler"), model.get_layer("classifier")
    tensors.update({"pre_classifier.weight": np.asarray(pooler.kernel).T,
                    "pre_classifier.bias": np.asarray(pooler.bias),
                    "classifier.weight": np.asarray(classifier.kernel).T,
                    "classifier.bias": np.asarray(classifier.bias)})
    ids, mask = _ids(pad=0, lengths=(4, 9, 6))
    np.testing.assert_allclose(np.asarray(model(_inputs(ids, mask))),
                               distilbert_reference(tensors, config, ids, mask), atol=1e-5)


def test_a_mapping_mistake_is_caught(tmp_path):
    """The reference is sensitive to the mapping: swapped key and query weights differ."""
    tensors = _random(_distilbert_names(DISTILBERT_CONFIG, head=2), seed=1)
    swapped = dict(tensors)
    for n in range(LAYERS):
        p = f"distilbert.transformer.layer.{n}.attention."
        swapped[p + "q_lin.weight"], swapped[p + "k_lin.weight"] = \
            tensors[p + "k_lin.weight"], tensors[p + "q_lin.weight"]
    model = keras_flop.load_hf_checkpoint(_write(tmp_path / "hf", DISTILBERT_CONFIG, swapped))
    ids, mask = _ids(pad=0)
    difference = np.abs(np.asarray(model(_inputs(ids, mask)))
                        - distilbert_reference(tensors, DISTILBERT_CONFIG, ids, mask)).max()
    assert difference > 1e-3


@pytest.mark.parametrize("model_type, why", [
    ("albert", "ALBERT shares one encoder layer's weights"),
    ("deberta-v2", "disentangled relative attention"),
    ("gpt2", None),
])
def test_unsupported_model_types_say_what_is(tmp_path, model_type, why):
    config = dict(ROBERTA_CONFIG, model_type=model_type)
    directory = _write(tmp_path / "hf", config, _random(_roberta_names(config, head=2)))
    with pytest.raises(ValueError) as error:
        keras_flop.load_hf_checkpoint(directory)
    message = str(error.value)
    assert "\n" not in message and f"model_type={model_type!r} is not supported" in message
    assert "supported: bert, roberta, xlm-roberta, distilbert." in message
    assert why is None or why in message


def test_roberta_position_embedding_type_other_than_absolute_is_refused(tmp_path):
    config = dict(ROBERTA_CONFIG, position_embedding_type="relative_key")
    directory = _write(tmp_path / "hf", config, _random(_roberta_names(config, head=2)))
    with pytest.raises(ValueError, match="position_embedding_type='relative_key' is not"):
        keras_flop.load_hf_checkpoint(directory)
