"""ONNX Runtime with and without its transformer fusions, float32 and INT8, against Keras.

    python benchmarks/onnx_fusion.py [--model RUN/finetune/model.keras ...] [--threads 2]

The ONNX file `keras_flop.export_formats` writes (tf2onnx) runs every LayerNorm, GELU and
attention product as separate operators. onnxruntime's transformer optimizer
(`onnxruntime.transformers.optimizer.optimize_model(model_type="bert")`) rewrites BERT graphs
into fused operators (Attention, SkipLayerNormalization, BiasGelu/FastGelu,
EmbedLayerNormalization) where it recognizes their pattern. For each model this measures:
which fusions it found in the exported graph, whether the fused file gives the same logits
(largest absolute difference from Keras), and the latency of Keras (graph), ONNX Runtime
fp32, fused fp32, INT8 (`keras_flop.export.quantized.quantize_onnx`) and fused INT8, timed in
turn in one process (`keras_flop.latency.timing.calls_in_turn`, median round and min–max of
the speedup over Keras) at batch 8 and 1, every position real at `--seq_length`.

Without `--model`, a random model of MiniLM-L6's shape (or of `--config`'s) is timed: latency
does not depend on the weights. Needs the `onnx` extra and `sympy` (onnxruntime's fuser infers
shapes with it).
"""

import argparse
import collections
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import CHECKPOINT, add_data_argument, machine_header, ms_and_speedup  # noqa: E402

FORMS = ("keras", "onnx", "onnx fused", "onnx int8", "onnx fused int8")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--model", action="append", default=[],
                        help="A .keras model (dense or compact); repeat for several. Default: "
                             "a random model of --config's shape.")
    parser.add_argument("--config", default=None,
                        help="bert_config.json of the random model (default: MiniLM-L6's in "
                             "--data).")
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2,
                        help="ONNX Runtime's intra-op threads (Keras uses TensorFlow's).")
    parser.add_argument("--batches", type=int, default=8,
                        help="Batches per round at each batch size.")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def op_counts(path):
    """`Counter` of the operator types of the ONNX graph at `path`."""
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(path).graph.node)


def fuse(path, fused_path, config):
    """Writes onnxruntime's BERT-fused graph of `path` to `fused_path`; returns the fused
    operators it reports (`{name: count}`, the nonzero ones)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(path, model_type="bert",
                               num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    optimized.save_model_to_file(fused_path)
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def files(model, directory, config):
    """`({form: path}, fusions)`: the model's ONNX file, fused, and both in INT8."""
    import keras_flop
    from keras_flop.export.quantized import quantize_onnx

    exported = keras_flop.export_formats(model, directory, ["onnx"])
    paths = {"onnx": exported["onnx"], "onnx fused": os.path.join(directory, "fused.onnx")}
    fusions = fuse(paths["onnx"], paths["onnx fused"], config)
    paths["onnx int8"] = quantize_onnx(paths["onnx"], os.path.join(directory, "int8.onnx"))
    paths["onnx fused int8"] = quantize_onnx(paths["onnx fused"],
                                             os.path.join(directory, "fused_int8.onnx"))
    return paths, fusions


def measure(model, name, args):
    """The table rows of one model: each form's operators, logits and latencies."""
    import numpy as np

    from keras_flop.export import runtimes
    from keras_flop.latency.timing import calls_in_turn, compiled_forward

    config = model.bert_config
    rng = np.random.default_rng(0)

    def batch(size):
        return {"token_ids": rng.integers(1, config.vocab_size, (size, args.seq_length))
                .astype("int32"),
                "segment_ids": np.zeros((size, args.seq_length), "int32"),
                "padding_mask": np.ones((size, args.seq_length), bool)}

    with tempfile.TemporaryDirectory() as directory:
        paths, fusions = files(model, directory, config)
        forward = compiled_forward(model)
        calls = {"keras": lambda x: np.asarray(forward(x))}
        calls.update({form: runtimes.OnnxRunner(path, threads=args.threads)
                      for form, path in paths.items()})
        check = batch(8)
        reference = calls["keras"](check)
        rows = {form: {"model": name, "form": form,
                       "max_abs_logit": float(np.max(np.abs(calls[form](check) - reference))),
                       "nodes": sum(op_counts(paths[form]).values()) if form in paths
                       else None,
                       "megabytes": os.path.getsize(paths[form]) / 1e6 if form in paths
                       else None}
                for form in FORMS}
        for size in (8, 1):
            batches = [batch(size) for _ in range(args.batches)]
            rounds = calls_in_turn(calls, batches, repeats=args.rounds)
            for form in FORMS:
                rows[form][f"b{size}_ms"], rows[form][f"b{size}_speedup"] = ms_and_speedup(
                    rounds, form, len(batches))
    return list(rows.values()), fusions


def random_model(args):
    import keras_flop

    path = args.config or os.path.join(args.data, CHECKPOINT, "bert_config.json")
    config = keras_flop.BertConfig.from_json_file(path)
    return keras_flop.build_bert_classifier(config, num_labels=2), \
        f"random {os.path.basename(os.path.dirname(path))}"


def main(argv=None):
    args = parse_args(argv)
    try:
        import sympy  # noqa: F401 -- onnxruntime's symbolic shape inference, for the fuser
    except ImportError:
        raise SystemExit("onnx_fusion.py needs sympy for onnxruntime's transformer optimizer "
                         "(its shape inference): pip install sympy") from None
    import keras

    import keras_flop  # noqa: F401 -- registers the saved models' classes

    models = [(keras.saving.load_model(path, compile=False), path) for path in args.model] \
        or [random_model(args)]
    table, found = [], {}
    for model, name in models:
        print(f"== {name}", flush=True)
        rows, fusions = measure(model, name, args)
        table += rows
        found[name] = fusions
    print(f"\n{machine_header()}")
    print(f"ONNX Runtime on {args.threads} threads; batch 8 and 1 at length {args.seq_length}, "
          f"{args.batches} batches per round, median of {args.rounds} rounds; speedup against "
          "Keras in the same rounds (min–max).\n")
    for name, fusions in found.items():
        print(f"{name}: fused operators {fusions or 'none'}")
    print("\n| model | form | nodes | MB | max |Δ logit| vs Keras | batch 8 ms | speedup | "
          "batch 1 ms | speedup |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        b8, b1 = r["b8_speedup"], r["b1_speedup"]
        nodes = "–" if r["nodes"] is None else r["nodes"]
        size = "–" if r["megabytes"] is None else f"{r['megabytes']:.1f}"
        print(f"| {os.path.basename(str(r['model']))} | {r['form']} | {nodes} | {size} | "
              f"{r['max_abs_logit']:.2e} | {r['b8_ms']:.2f} | {b8[0]:.2f}x "
              f"({b8[1]:.2f}–{b8[2]:.2f}) | {r['b1_ms']:.2f} | {b1[0]:.2f}x "
              f"({b1[1]:.2f}–{b1[2]:.2f}) |")
    return table, found


if __name__ == "__main__":
    main()
