"""Where INT8 costs accuracy: one fine-tuned model's ONNX INT8 file with each part kept float.

    python benchmarks/int8_sensitivity.py --model RUN/finetune_compact/model.keras \\
        --task sst2 [--data ../shared/data] [--keep 2]

The model (its vocab.txt beside it or in the run's `finetune/`) is exported to ONNX, then quantized
by `keras_flop.export.quantized.quantize_onnx` several ways: every MatMul weight int8 (the
`onnx_int8` export), per-channel scales, and with the MatMuls of one part kept float: each
encoder layer, every attention projection, every FFN, the pooler. Each file computes the
whole dev set in ONNX Runtime: its dev metric and its agreement with the Keras model's
predictions. Then the `--keep` encoder layers whose INT8 weights change the most answers
(agreement with Keras) are kept float together, and Keras, the float file, the INT8 files
(per-matrix and per-channel scales) and that one are timed in turn at batch 8 on
length-bucketed dev batches (`keras_flop.latency.timing.calls_in_turn`).

Every `quantize_onnx` file quantizes the activations of each MatMul at run time (uint8, one
range per tensor), so a part whose inputs carry a few large values loses the most: the table
prints each part's input range as the largest |activation| over its standard deviation on
the first dev batches (from the Keras model), which is what a per-tensor uint8 range spends
its 256 levels on.
"""

import argparse
import collections
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (add_model_arguments, feature_batches, machine_header,  # noqa: E402
                     model_vocabulary, ms_and_speedup)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    parser.add_argument("--keep", type=int, default=2,
                        help="How many of the most sensitive parts the last file keeps float.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timed_batches", type=int, default=32)
    args = parser.parse_args(argv)
    model_vocabulary(parser, args)
    return args


def parts(onnx_path):
    """`{part: [Keras layer names]}`: each encoder layer, all attention projections, all FFNs
    and the pooler, from the MatMuls with a constant weight in the graph (not the
    classifier's, which every file keeps float)."""
    import onnx

    from keras_flop.export.quantized import classifier_matmul

    graph = onnx.load(onnx_path)
    constants = {i.name for i in graph.graph.initializer}
    classifier = classifier_matmul(graph)
    layers = []
    for node in graph.graph.node:
        if node.op_type != "MatMul" or node.name == classifier or \
                not any(name in constants for name in node.input):
            continue
        segments = node.name.split("/")
        name = re.sub(r"_\d+$", "", segments[1] if len(segments) > 1 else segments[0])
        if name not in layers:
            layers.append(name)
    groups = collections.OrderedDict()
    for name in layers:
        match = re.match(r"layer_(\d+)_", name)
        if match:
            groups.setdefault(f"layer {match.group(1)}", []).append(name)
    groups["attention (all layers)"] = [n for n in layers if "_attention_" in n]
    groups["FFN (all layers)"] = [n for n in layers if n.endswith(("_intermediate", "_output"))
                                  and "_attention_" not in n]
    groups["pooler"] = [n for n in layers if n == "pooler"]
    return {part: names for part, names in groups.items() if names}


def input_ranges(model, batches, layer_names):
    """`{layer: max |input| / std(input)}` of each Dense layer's input on `batches`."""
    import keras
    import numpy as np

    layers = [model.get_layer(name) for name in layer_names]
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    seen = {name: [] for name in layer_names}
    for batch in batches:
        outputs = probe(batch, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, value in zip(layer_names, outputs):
            seen[name].append(np.asarray(value, "float32").ravel())
    ranges = {}
    for name, values in seen.items():
        values = np.concatenate(values)
        ranges[name] = float(np.max(np.abs(values)) / (np.std(values) + 1e-12))
    return ranges


def main(argv=None):
    args = parse_args(argv)
    import keras
    import numpy as np

    import keras_flop
    from keras_flop import glue
    from keras_flop.export import quantized, runtimes
    from keras_flop.export.quantized import quantize_onnx
    from keras_flop.latency.timing import calls_in_turn, compiled_forward
    from keras_flop.training import data as training_data

    model = keras.saving.load_model(args.model, compile=False)
    data = training_data.load_task_data(os.path.join(args.data, "glue"), args.task, args.vocab,
                                        128, need_train=False)
    split = next(iter(data.evals))
    batches, labels = feature_batches(data.eval_dataset(split, 8))
    task = glue.get_task(data.task)
    metric = f"eval_{task.main_metric}"
    forward = compiled_forward(model)
    keras_logits = np.concatenate([np.asarray(forward(x)) for x in batches])

    def scored(path):
        logits = runtimes.predict(runtimes.OnnxRunner(path, threads=args.threads), batches)
        return (glue.compute_metrics(task, logits, labels)[metric],
                quantized.agreement(keras_logits, logits), os.path.getsize(path) / 1e6)

    rows, paths = [], {}
    with tempfile.TemporaryDirectory() as directory:
        paths["fp32"] = keras_flop.export_formats(model, directory, ["onnx"])["onnx"]
        groups = parts(paths["fp32"])
        encoder = [n for names in groups.values() for n in names if n != "pooler"]
        ranges = input_ranges(model, batches[:4], list(dict.fromkeys(encoder)))

        def variant(name, **kwargs):
            path = os.path.join(directory, f"{len(paths)}.onnx")
            paths[name] = quantize_onnx(paths["fp32"], path, **kwargs)
            rows.append((name, *scored(path), kwargs.get("float_layers", ())))
            print(f"   {name}: {metric[5:]} {rows[-1][1]:.4f}, agrees {rows[-1][2]:.1%}",
                  flush=True)

        rows.append(("fp32", *scored(paths["fp32"]), ()))
        variant("int8")
        variant("int8 per-channel", per_channel=True)
        for part, names in groups.items():
            variant(f"int8, {part} float", float_layers=names)
        base = rows[1][1]
        # Chosen by agreement with the float model: on a dev set of hundreds of examples an
        # accuracy moves by whole examples either way, the share of changed answers less so.
        single = [(row[2] - rows[1][2], row[0], row[4]) for row in rows[3:]
                  if row[0].startswith("int8, layer ")]
        chosen = sorted(single, reverse=True)[:args.keep]
        kept = [n for _, _, names in chosen for n in names]
        best = f"int8, {' + '.join(name[6:-6] for _, name, _ in chosen)} float"
        variant(best, float_layers=kept)
        timed = {"keras": lambda x: np.asarray(forward(x))}
        for name in ("fp32", "int8", "int8 per-channel", best):
            timed[name] = runtimes.OnnxRunner(paths[name], threads=args.threads)
        rounds = calls_in_turn(timed, batches[:args.timed_batches])
    print(f"\n{machine_header()}")
    print(f"{args.model}: {task.name} dev ({len(labels)} examples) in ONNX Runtime on "
          f"{args.threads} threads; Keras {metric[5:]} "
          f"{glue.compute_metrics(task, keras_logits, labels)[metric]:.4f}.\n")
    print(f"| file | dev {metric[5:]} | vs full INT8 (points) | agrees with Keras | MB | "
          "widest input kept float (max/std) |")
    print("|---|---|---|---|---|---|")
    for name, value, agreement, megabytes, names in rows:
        known = [n for n in names if n in ranges]
        widest = max(known, key=ranges.get) if known else None
        spread = f"{widest} {ranges[widest]:.0f}" if widest else ""
        print(f"| {name} | {value:.4f} | {100 * (value - base):+.2f} | {agreement:.1%} | "
              f"{megabytes:.1f} | {spread or '–'} |")
    print(f"\nBatch 8, {min(args.timed_batches, len(batches))} length-bucketed dev batches, "
          "timed in turn (median round, speedup against Keras, min–max):\n")
    print("| file | ms per batch | speedup |")
    print("|---|---|---|")
    for name in timed:
        ms, low = ms_and_speedup(rounds, name, min(args.timed_batches, len(batches)))
        print(f"| {name} | {ms:.2f} | {low[0]:.2f}x ({low[1]:.2f}–{low[2]:.2f}) |")
    return rows


if __name__ == "__main__":
    main()
