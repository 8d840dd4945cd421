"""Inference latency of a dense and a compact classifier in four runtimes.

    python benchmarks/runtimes.py [--checkpoint MINILM_TF1_DIR | --dense D.keras --compact C.keras]

Runtimes: Keras (`keras_flop.latency.timing.compiled_forward`, graph mode), the exported
SavedModel (`serving_default`, loaded with `tf.saved_model.load`), ONNX Runtime and LiteRT (the
files of `keras_flop.export.formats`; each needs its extra). Batch 1 and 8 at sequence 128 (no
padding), 2 threads everywhere; median of `--repeats` calls after `--warmup`
(`keras_flop.latency.timing.call_seconds`).

Without `--compact`, the compact model is made quickly from the dense one: factorized with
head, FFN and block gates, the gates of the smaller half of each layer's heads (norm of their
rows of the attention output kernel) and FFN units (norm of their intermediate kernel column)
closed, then compacted. Timing does not depend on the weights: without `--dense` or a
checkpoint, a random MiniLM-size model (L=6, H=384, A=12, FF=1536) is used.
"""

import argparse
import os
import statistics
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "shared", "data", "minilm-l6-h384-uncased-tf1")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="TF1 checkpoint directory of the dense model (if present).")
    parser.add_argument("--dense", default=None, help="A dense model's .keras file.")
    parser.add_argument("--compact", default=None, help="A compact model's .keras file.")
    parser.add_argument("--keep", type=float, default=0.5,
                        help="Fraction of heads and FFN units the quick compact model keeps.")
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runtimes", default="keras,saved_model,onnx,litert")
    return parser.parse_args()


def dense_model(args):
    import keras
    import keras_flop
    if args.dense:
        return keras.saving.load_model(args.dense, compile=False)
    if os.path.exists(os.path.join(args.checkpoint, "bert_model.ckpt.index")):
        return keras_flop.load_tf1_checkpoint(args.checkpoint)
    config = keras_flop.BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                   num_attention_heads=12, intermediate_size=1536)
    return keras_flop.build_bert_classifier(config)


def quick_compact(dense, keep):
    """Half the heads and FFN units of each layer, chosen by weight magnitude, removed."""
    import keras_flop
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn+layers")
    network = pruning_model.network
    config = dense.bert_config
    for i in range(config.num_hidden_layers):
        out = np.asarray(dense.get_layer(f"layer_{i}_attention_output").kernel)
        heads = np.linalg.norm(out.reshape(config.num_attention_heads, -1), axis=1)
        units = np.linalg.norm(np.asarray(dense.get_layer(f"layer_{i}_intermediate").kernel),
                               axis=0)
        for name, score in ((f"layer_{i}_head_mask", heads),
                            (f"layer_{i}_intermediate_mask", units)):
            kept = np.argsort(-score)[:max(1, round(keep * len(score)))]
            log_alpha = np.full(len(score), -10.0, np.float32)
            log_alpha[kept] = 10.0
            network.get_layer(name).log_alpha.assign(log_alpha)
    return keras_flop.compact(pruning_model)


def batch_of(vocab_size, batch_size, seq_length):
    rng = np.random.default_rng(batch_size)
    return {"token_ids": rng.integers(1000, vocab_size, (batch_size, seq_length)).astype("int32"),
            "segment_ids": np.zeros((batch_size, seq_length), "int32"),
            "padding_mask": np.ones((batch_size, seq_length), bool)}


def runners(model, directory, names, threads):
    """`{runtime: fn(batch) -> logits}` for one model."""
    import keras_flop
    from keras_flop.export.formats import export_formats
    from keras_flop.export.runtimes import RUNNERS
    from keras_flop.latency.timing import compiled_forward

    result = {}
    if "keras" in names:
        result["keras"] = compiled_forward(model)
    if "saved_model" in names:
        os.makedirs(directory, exist_ok=True)
        vocab = os.path.join(directory, "vocab.txt")
        size = model.bert_config.vocab_size
        with open(vocab, "w") as f:  # only the serving_default (id) signature is timed
            f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] +
                              [f"w{i}" for i in range(size - 4)]) + "\n")
        path = keras_flop.export_saved_model(model, os.path.join(directory, "saved_model"),
                                             vocab, 128)
        serving = tf.saved_model.load(path).signatures["serving_default"]
        result["saved_model"] = lambda b: serving(
            **{k: tf.constant(v) for k, v in b.items()})["logits"].numpy()
    others = [n for n in ("onnx", "litert") if n in names]
    files = export_formats(model, directory, others) if others else {}
    for fmt, path in files.items():
        result[fmt] = RUNNERS[fmt](path, threads=threads)
    return result


def median_ms(fn, batch, warmup, repeats):
    """Median milliseconds of `fn(batch)` (`keras_flop.latency.timing.call_seconds`)."""
    from keras_flop.latency.timing import call_seconds

    return 1000 * statistics.median(call_seconds(fn, batch, repeats, warmup))


def main():
    args = parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import keras_flop  # noqa: F401

    names = [n.strip() for n in args.runtimes.split(",") if n.strip()]
    dense = dense_model(args)
    compact = keras.saving.load_model(args.compact, compile=False) if args.compact \
        else quick_compact(dense, args.keep)
    shapes = [s for s in compact.layer_shapes]
    print(f"dense: {dense.count_params():,} parameters; compact: {compact.count_params():,} "
          f"(per layer heads, FFN units: {shapes})", flush=True)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    vocab = dense.bert_config.vocab_size
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = {label: runners(model, os.path.join(tmp, label), names, args.threads)
                 for label, model in (("dense", dense), ("compact", compact))}
        for name in names:
            for size in sizes:
                batch = batch_of(vocab, size, args.seq_length)
                ms = {label: median_ms(built[label][name], batch, args.warmup, args.repeats)
                      for label in ("dense", "compact")}
                rows.append((name, size, ms["dense"], ms["compact"]))
                print(f"{name} batch {size}: dense {ms['dense']:.1f} ms, compact "
                      f"{ms['compact']:.1f} ms", flush=True)
    print(f"\nseq {args.seq_length}, {args.threads} threads, median of {args.repeats}; "
          f"TF {tf.__version__}, Keras {keras.__version__}\n")
    print("| runtime | batch | dense ms | compact ms | compact / dense |")
    print("|---|---|---|---|---|")
    for name, size, d, c in rows:
        print(f"| {name} | {size} | {d:.1f} | {c:.1f} | {c / d:.2f} |")


if __name__ == "__main__":
    main()
