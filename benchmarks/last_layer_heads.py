"""The Fisher mask with and without heads kept in the last encoder layer, retraining-free.

    python benchmarks/last_layer_heads.py --teacher TEACHER.keras --task sst2 \
        --latency_table latency_table.json [--target_speedups 2,3] [--heads 0,1,2]

The mask search (`keras_flop.fisher.search`) prices each head by its own Fisher score, as if
every other head stayed. A classifier that pools the first token reads the sentence through
the last layer's attention: with all of those heads pruned, the pooled vector may no longer
depend on the input. For each target speedup and each `last_layer_heads` value this runs
`keras_flop.fisher.post_training_masks` on the teacher (latency budget under
`--latency_table`; `--num_samples` training examples; `--tune` off and on), compacts the
masked model and prints its dev score and eval loss, the kept heads per layer, the speedup the
table predicts, and the spread of the logits over the first 256 dev examples (their standard
deviation across examples, averaged over classes: 0 when every sentence gets the same
answer). Nothing is trained.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import add_data_argument, comma_numbers, machine_header  # noqa: E402


def numbers(text, kind, name):
    values = comma_numbers(text, kind)
    if not values:
        raise argparse.ArgumentTypeError(f"{name} needs comma-separated numbers; got {text!r}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--teacher", required=True,
                        help="The fine-tuned dense model (.keras with vocab.txt beside it).")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--latency_table", required=True,
                        help="The latency table the masks are searched under (JSON).")
    parser.add_argument("--target_speedups", default="2,3",
                        type=lambda t: numbers(t, float, "--target_speedups"))
    parser.add_argument("--heads", default="0,1,2",
                        type=lambda t: numbers(t, int, "--heads"),
                        help="last_layer_heads values to compare.")
    parser.add_argument("--tune", default="off,on",
                        help="Mask tuning (least-squares scales): off, on or both.")
    parser.add_argument("--num_samples", type=int, default=2048)
    args = parser.parse_args(argv)
    modes = args.tune.split(",")
    if not modes or any(mode not in ("off", "on") for mode in modes):
        parser.error(f"--tune takes off, on or off,on; got {args.tune!r}.")
    args.tune = [mode == "on" for mode in modes]
    vocab = os.path.join(os.path.dirname(os.path.abspath(args.teacher)), "vocab.txt")
    for path in (args.teacher, vocab, args.latency_table):
        if not os.path.exists(path):
            parser.error(f"{path} does not exist.")
    args.vocab = vocab
    return args


def logit_spread(model, features):
    """The logits' standard deviation across examples, averaged over the outputs."""
    import numpy as np

    return float(np.asarray(model(features, training=False)).std(axis=0).mean())


def row(dense, data, split, features, table, speedup, heads, tune, args):
    """One mask: its kept heads, predicted speedup, results on the eval `split` and the
    logit spread on `features` (that split's first batch)."""
    import keras

    import keras_flop
    from keras_flop.fisher.post_training import masked_model, post_training_masks
    from keras_flop.training.evaluation import evaluate

    masks = post_training_masks(dense, data.train_dataset(32, 0), target_speedup=speedup,
                                latency_table=table, num_samples=args.num_samples, tune=tune,
                                last_layer_heads=heads)
    gated = masked_model(dense, masks)
    compact = keras_flop.compact(gated)
    compact.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                    if compact.num_labels > 1 else "mse")
    results = evaluate(compact, data, 64)[split]
    return {"target": speedup, "last_layer_heads": heads, "tune": tune,
            "kept_heads": masks.kept_heads,
            "predicted": float(keras_flop.predicted_speedup(gated, table)),
            "score": results["eval_score"], "loss": results["eval_loss"],
            "spread": logit_spread(compact, features)}


def main(argv=None):
    args = parse_args(argv)
    import keras

    import keras_flop
    from keras_flop.training.data import load_task_data

    dense = keras.saving.load_model(args.teacher, compile=False)
    table = keras_flop.LatencyTable.load(args.latency_table)
    data = load_task_data(os.path.join(args.data, "glue"), args.task, args.vocab, 128)
    split = next(iter(data.evals))  # the task's first eval split (dev, or dev_matched)
    features = next(iter(data.eval_dataset(split, 256)))[0]
    spread = logit_spread(dense, features)
    rows = []
    cells = [(s, h, t) for s in args.target_speedups for t in args.tune for h in args.heads]
    for index, (speedup, heads, tune) in enumerate(cells, 1):
        print(f"[{index}/{len(cells)}] target {speedup:g}x, last_layer_heads {heads}, tuning "
              f"{'on' if tune else 'off'}", flush=True)
        rows.append(row(dense, data, split, features, table, speedup, heads, tune, args))
    print(machine_header())
    print(f"{args.teacher}: {args.task} dev, the teacher's logit spread {spread:.4f}; "
          f"{args.num_samples} training examples for the Fisher scores; "
          f"table {args.latency_table}.")
    print("| target | last-layer heads kept by rule | tuning | kept heads per layer | "
          "predicted speedup | dev score | dev loss | logit spread |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['target']:g}x | {r['last_layer_heads']} | {'on' if r['tune'] else 'off'} | "
              f"{r['kept_heads']} | {r['predicted']:.2f}x | {r['score']:.4f} | "
              f"{r['loss']:.4f} | {r['spread']:.4f} |")


if __name__ == "__main__":
    main()
