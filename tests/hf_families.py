"""Hugging Face RoBERTa and DistilBERT directories as `save_pretrained` leaves them (random
weights under Hugging Face's names in `model.safetensors`, `config.json`), and a float64 numpy
forward pass of each family as Hugging Face's modeling code computes it. Neither uses
keras_flop."""

import json
import math

import numpy as np

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
# apps.prune at toy sizes from a tiny Hugging Face directory: one fine-tuning epoch, 20
# Lagrangian steps, no final fine-tuning (the family app tests' shared flags).
TOY_PRUNE_FLAGS = ["--task", "sst2", "--method", "lagrangian", "--max_seq_length", "16",
                   "--max_train_examples", "64", "--train_batch_size", "16",
                   "--finetune_epochs", "1", "--pruning_steps", "20", "--final_epochs", "0",
                   "--eval_every_n_steps", "20", "--checkpoint_every_n_steps", "20",
                   "--allow_short"]

DISTILBERT_CONFIG = {
    "architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert",
    "vocab_size": VOCAB, "dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS,
    "hidden_dim": FFN, "activation": "gelu", "dropout": 0.1, "attention_dropout": 0.1,
    "max_position_embeddings": 20, "initializer_range": 0.02, "pad_token_id": 0,
    "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "sinusoidal_pos_embds": False,
    "tie_weights_": True, "torch_dtype": "float32", "transformers_version": "4.44.2",
}


def roberta_names(config, head, prefix="roberta."):
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


def distilbert_names(config, head):
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


def random_hf_weights(shapes, seed=0, std=0.3):
    """Layer-norm weights near 1, other weights and biases visibly non-zero."""
    rng = np.random.RandomState(seed)
    values = {}
    for name, shape in shapes.items():
        norm = "LayerNorm" in name or "layer_norm" in name
        center = 1.0 if norm and name.endswith("weight") else 0.0
        values[name] = (center + rng.normal(0.0, 0.1 if norm or name.endswith("bias")
                                            else std, shape)).astype(np.float32)
    return values


def write_hf_directory(directory, config, tensors):
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


def _encoder_layer(x, mask, w, names, eps, heads):
    """One post-LN encoder layer; `names` = (q, k, v, out, attention norm, ffn in, ffn out,
    output norm) parameter scopes."""
    batch, seq, hidden = x.shape
    size = hidden // heads

    def split(t):
        return t.reshape(batch, seq, heads, size).transpose(0, 2, 1, 3)

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
            "output.dense", "output.LayerNorm")], eps, config["num_attention_heads"])
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
            "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")], 1e-12,
            config["n_heads"])
    pooled = np.maximum(_linear(x[:, 0], w, "pre_classifier"), 0.0)
    return _linear(pooled, w, "classifier")


def write_bpe_vocabulary(directory, size=VOCAB):
    """A byte-level BPE vocabulary with RoBERTa's special tokens, as `save_pretrained` names
    it (`vocab.json`, `merges.txt`)."""
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + [chr(ord("a") + i)
                                                            for i in range(size - 5)]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "merges.txt").write_text("#version: 0.2\n")


def train_sentencepiece(path, vocab_size=60, texts=None):
    """A SentencePiece BPE model at `path`, trained with sentencepiece's trainer on `texts` (by
    default a few sentences), as XLM-R's `sentencepiece.bpe.model` is (ids `<unk>` 0, `<s>` 1,
    `</s>` 2)."""
    import os
    import tempfile

    import sentencepiece as spm

    if texts is None:
        texts = ["the movie was great", "a charming and moving journey", "the plot is thin",
                 "jokes fall flat", "not a bad film at all", "café naïve 日本語"] * 10
    with tempfile.TemporaryDirectory() as directory:
        corpus = os.path.join(directory, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(texts))
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(directory, "sp"),
                                       vocab_size=vocab_size, model_type="bpe",
                                       character_coverage=1.0, minloglevel=2)
        os.replace(os.path.join(directory, "sp.model"), path)
    return path


def fairseq_ids(processor, text):
    """Hugging Face's `XLMRobertaTokenizer`: fairseq puts `<s>` `<pad>` `</s>` `<unk>` at 0-3,
    so SentencePiece's ids move up one and its `<unk>` (0) becomes 3."""
    return [3 if i == 0 else i + 1 for i in processor.encode(text)]
