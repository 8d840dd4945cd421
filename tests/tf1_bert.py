"""An independent stand-in for google-research/bert: TF1 checkpoints (and the same weights as a
Hugging Face directory) and a numpy forward pass.

`write_tf1_checkpoint` writes a checkpoint the way `run_classifier.py` leaves one (graph mode,
`tf.compat.v1.train.Saver`, Adam slots, `global_step`); `reference_logits` recomputes the
original `modeling.py` in float64 numpy. Neither uses keras_flop.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf


def tf1_shapes(config, num_labels=None, pretraining_heads=False):
    """`{TF1 variable name: shape}` of a BERT checkpoint."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    shapes = {
        "bert/embeddings/word_embeddings": (v, h),
        "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], h),
        "bert/embeddings/position_embeddings": (config["max_position_embeddings"], h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
    }
    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"
        for name in ("attention/self/query", "attention/self/key", "attention/self/value",
                     "attention/output/dense"):
            shapes[p + name + "/kernel"], shapes[p + name + "/bias"] = (h, h), (h,)
        shapes[p + "intermediate/dense/kernel"], shapes[p + "intermediate/dense/bias"] = \
            (h, i), (i,)
        shapes[p + "output/dense/kernel"], shapes[p + "output/dense/bias"] = (i, h), (h,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[p + norm + "/gamma"], shapes[p + norm + "/beta"] = (h,), (h,)
    if num_labels:
        shapes["output_weights"], shapes["output_bias"] = (num_labels, h), (num_labels,)
    if pretraining_heads:
        shapes.update({
            "cls/predictions/transform/dense/kernel": (h, h),
            "cls/predictions/transform/dense/bias": (h,),
            "cls/predictions/transform/LayerNorm/gamma": (h,),
            "cls/predictions/transform/LayerNorm/beta": (h,),
            "cls/predictions/output_bias": (v,),
            "cls/seq_relationship/output_weights": (2, h),
            "cls/seq_relationship/output_bias": (2,),
        })
    return shapes


def tiny_config(vocab_size, **overrides):
    """A `bert_config.json` dict of a tiny model (one layer, hidden 16, two heads)."""
    config = dict(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=32, hidden_act="gelu",
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  max_position_embeddings=32, type_vocab_size=2, initializer_range=0.02)
    return {**config, **overrides}


def random_weights(shapes, std=0.2, seed=0):
    """Weights that make mapping mistakes visible: gammas near 1, non-zero betas and biases."""
    rng = np.random.RandomState(seed)
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("gamma"):
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        elif name.endswith(("beta", "bias")):
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.normal(0.0, std, shape)
        weights[name] = value.astype(np.float32)
    return weights


def _write_vocab(directory, config, vocab):
    """`vocab.txt`: the tokens `vocab` (a list), or for `True` special tokens and `word{i}`
    up to the config's `vocab_size`."""
    if vocab is True:
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab += [f"word{i}" for i in range(config["vocab_size"] - len(vocab))]
    if vocab:
        with open(os.path.join(directory, "vocab.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")


def write_tf1_checkpoint(directory, config, weights, adam_slots=True, vocab=True):
    """Writes `bert_config.json`, `vocab.txt` (see `_write_vocab`) and `bert_model.ckpt` as
    TF1 BERT does."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(config, f)
    _write_vocab(directory, config, vocab)
    graph = tf.Graph()
    with graph.as_default():
        variables = []
        for name, value in weights.items():
            variables.append(tf.compat.v1.get_variable(name, initializer=tf.constant(value)))
            if adam_slots:
                for slot in ("adam_m", "adam_v"):
                    variables.append(tf.compat.v1.get_variable(
                        f"{name}/{slot}", initializer=tf.constant(np.abs(value) * 0.01)))
        variables.append(tf.compat.v1.train.get_or_create_global_step())
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, os.path.join(directory, "bert_model.ckpt"),
                              write_meta_graph=False)


def to_hf(weights):
    """TF1 names -> Hugging Face BertForSequenceClassification names, [out, in] weights."""
    hf = {}
    for name, value in weights.items():
        if name == "output_weights":
            hf["classifier.weight"] = value
            continue
        if name == "output_bias":
            hf["classifier.bias"] = value
            continue
        new = name.replace("bert/encoder/layer_", "bert.encoder.layer.").replace("/", ".")
        new = new.replace(".gamma", ".weight").replace(".beta", ".bias")
        if new.endswith(".kernel"):
            new, value = new[:-len(".kernel")] + ".weight", value.T
        elif "embeddings" in new and not new.startswith("bert.embeddings.LayerNorm"):
            new += ".weight"
        hf[new] = np.ascontiguousarray(value)
    return hf


# What `BertForSequenceClassification.save_pretrained` writes besides the architecture.
HF_CONFIG_EXTRAS = {
    "architectures": ["BertForSequenceClassification"], "model_type": "bert",
    "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "pad_token_id": 0,
    "use_cache": True, "classifier_dropout": None, "torch_dtype": "float32",
    "transformers_version": "4.44.2", "id2label": {"0": "a", "1": "b", "2": "c"},
    "label2id": {"a": 0, "b": 1, "c": 2}, "gradient_checkpointing": False,
}


def write_hf_checkpoint(directory, config, weights, vocab=False):
    """A Hugging Face BERT directory: `model.safetensors` (the TF1-named `weights` renamed),
    `config.json`, and with `vocab` a `vocab.txt` (see `_write_vocab`)."""
    import safetensors.numpy

    os.makedirs(directory, exist_ok=True)
    safetensors.numpy.save_file(to_hf(weights), os.path.join(directory, "model.safetensors"),
                                metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({**config, **HF_CONFIG_EXTRAS}, f)
    _write_vocab(directory, config, vocab)
    return directory


def _layer_norm(x, gamma, beta):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def tanh_gelu(x):
    """`modeling.gelu` of google-research/bert: the tanh approximation."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def erf_gelu(x):
    """The exact GELU, `x * Phi(x)` (PyTorch's and Hugging Face's `"gelu"`)."""
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def relu(x):
    return np.maximum(x, 0.0)


def reference_logits(weights, config, token_ids, segment_ids, input_mask, activation=None):
    """`modeling.BertModel` + `run_classifier.create_model` logits, inference, float64.

    `activation` is the FFN nonlinearity; by default `config["hidden_act"]` read as TF1 reads
    it (`"gelu"` is the tanh form).
    """
    if activation is None:
        activation = {"gelu": tanh_gelu, "relu": relu}[config["hidden_act"]]
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    batch, seq = token_ids.shape
    heads = config["num_attention_heads"]
    size = config["hidden_size"] // heads
    x = (w["bert/embeddings/word_embeddings"][token_ids]
         + w["bert/embeddings/token_type_embeddings"][segment_ids]
         + w["bert/embeddings/position_embeddings"][:seq][None])
    x = _layer_norm(x, w["bert/embeddings/LayerNorm/gamma"], w["bert/embeddings/LayerNorm/beta"])
    adder = (1.0 - np.asarray(input_mask, np.float64))[:, None, None, :] * -10000.0

    def dense(t, scope):
        return t @ w[scope + "/kernel"] + w[scope + "/bias"]

    def split(t):
        return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

    for n in range(config["num_hidden_layers"]):
        p = f"bert/encoder/layer_{n}/"
        q, k, v = (split(dense(x, p + "attention/self/" + name))
                   for name in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + adder
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, heads * size)
        attention = dense(context, p + "attention/output/dense")
        x = _layer_norm(attention + x, w[p + "attention/output/LayerNorm/gamma"],
                        w[p + "attention/output/LayerNorm/beta"])
        ffn = dense(activation(dense(x, p + "intermediate/dense")), p + "output/dense")
        x = _layer_norm(ffn + x, w[p + "output/LayerNorm/gamma"], w[p + "output/LayerNorm/beta"])
    pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
    return pooled @ w["output_weights"].T + w["output_bias"]
