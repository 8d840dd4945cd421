"""How well the latency table predicts a compact model's time, length by length.

    python benchmarks/table_lengths.py --run RUN [--lengths 16,32,64,128]
    python benchmarks/table_lengths.py --run RUN --data ../shared/data --task mrpc

`--target_speedup` prunes to the speedup a latency table predicts, `fixed + Σ_layers
T_att(heads) + T_ffn(units)`, each block's time measured in a model with that block in every
layer, at one batch size and one length. For each length this measures a table there
(`keras_flop.measure_latency_table`) and times, in turn on every-position-real inputs of that
length (`keras_flop.latency.timing.time_in_turn`), the finished apps.prune run's dense model
(`RUN/finetune`) and compact model (`RUN/finetune_compact`), and three models of random
weights that locate a gap: every block removed (the table's fixed cost), the compact model's
attention blocks alone and its FFN blocks alone. Each row sets the table's prediction beside
the measured time.

With `--task`, the lengths are those the dev set's length-ordered batches are padded to, each
weighted by its share of batches, and two more speedups are set beside the mixed table's:
the same weights applied to the times measured here, and the speedup measured on the dev
batches themselves (as the report's length-bucketed figure). So a gap between the table and
the served speed is split into the table's error at each length and what the dev batches add.
"""

import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import add_data_argument, comma_numbers, eval_data, machine_header  # noqa: E402

MODELS = ("dense", "compact", "fixed", "compact attention", "compact FFN")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--run", required=True,
                        help="A finished apps.prune run (its finetune/ and finetune_compact/).")
    parser.add_argument("--task", default=None,
                        help="A GLUE task whose dev batches weight the lengths (and are timed).")
    parser.add_argument("--lengths", default=None,
                        help="Comma-separated lengths to measure; default the dev batches' "
                             "lengths with --task, else 16,32,64,128.")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8,
                        help="Random batches per round at each length.")
    parser.add_argument("--rounds", type=int, default=5,
                        help="Rounds of the models in turn (and of each table's block pairs).")
    args = parser.parse_args(argv)
    for step in ("finetune", "finetune_compact"):
        if not os.path.exists(os.path.join(args.run, step, "model.keras")):
            parser.error(f"{args.run} has no {step}/model.keras: pass a finished apps.prune "
                         "run directory.")
    if args.lengths is not None:
        args.lengths = sorted(set(comma_numbers(args.lengths, int)))
        if not args.lengths or min(args.lengths) < 1 or max(args.lengths) > args.max_seq_length:
            parser.error(f"--lengths needs integers in 1..{args.max_seq_length} such as "
                         "16,32,64,128.")
    return args


def layer_shapes(config, compact_shapes):
    """`{row: per-layer (heads, units)}` of each timed model."""
    whole = (config.num_attention_heads, config.intermediate_size)
    return {"dense": [whole] * config.num_hidden_layers,
            "compact": [tuple(shape) for shape in compact_shapes],
            "fixed": [(0, 0)] * config.num_hidden_layers,
            "compact attention": [(heads, 0) for heads, _ in compact_shapes],
            "compact FFN": [(0, units) for _, units in compact_shapes]}


def length_rows(length, table, shapes, rounds, batches):
    """The rows of one length: each model's predicted and measured milliseconds per batch
    (median round), and the dense/compact speedup both ways (measured: median and min–max of
    the ratio within each round)."""
    from keras_flop.latency.timing import ratio_spread

    rows = []
    for name in MODELS:
        predicted = table.dense_seconds(shapes[name])
        measured = statistics.median(rounds[name]) / batches
        rows.append({"length": length, "model": name, "predicted_ms": 1e3 * predicted,
                     "measured_ms": 1e3 * measured,
                     "measured_over_predicted": measured / predicted if predicted else None})
    speedup = {"length": length,
               "predicted": table.dense_seconds(shapes["dense"]) /
               table.dense_seconds(shapes["compact"]),
               "measured": ratio_spread(rounds, "dense", "compact")}
    return rows, speedup


def mixed_speedups(rows, weights):
    """`(predicted, measured)` dense/compact speedups of lengths mixed by `weights`
    (`{length: weight}`): the ratio of the weighted sums of per-batch times.

    Example:
    >>> rows = [{"length": 8, "model": "dense", "predicted_ms": 4.0, "measured_ms": 4.0},
    ...         {"length": 8, "model": "compact", "predicted_ms": 2.0, "measured_ms": 3.0},
    ...         {"length": 64, "model": "dense", "predicted_ms": 20.0, "measured_ms": 20.0},
    ...         {"length": 64, "model": "compact", "predicted_ms": 10.0, "measured_ms": 10.0}]
    >>> mixed_speedups(rows, {8: 0.5, 64: 0.5})
    (2.0, 1.8461538461538463)
    """
    def total(model, field):
        return sum(weights[row["length"]] * row[field] for row in rows
                   if row["model"] == model and row["length"] in weights)

    return tuple(total("dense", field) / total("compact", field)
                 for field in ("predicted_ms", "measured_ms"))


def measure_length(length, config, models, shapes, args):
    """A table measured at `length` and the models timed in turn there."""
    import numpy as np

    import keras_flop
    from keras_flop.latency.timing import time_in_turn

    table = keras_flop.measure_latency_table(config, batch_size=args.batch_size,
                                             seq_length=length, rounds=args.rounds)
    rng = np.random.default_rng(length)
    batches = [{"token_ids": rng.integers(1, config.vocab_size, (args.batch_size, length))
                .astype("int32"),
                "segment_ids": np.zeros((args.batch_size, length), "int32"),
                "padding_mask": np.ones((args.batch_size, length), bool)}
               for _ in range(args.batches)]
    rounds = time_in_turn(models, batches, repeats=args.rounds)
    return length_rows(length, table, shapes, rounds, len(batches))


def dev_lengths(args, dense, compact):
    """`({length: share of batches}, measured speedup)` of the dev set's length-ordered
    batches (the report's length-bucketed timing); `(None, None)` without --task."""
    if args.task is None:
        return None, None
    from keras_flop import glue
    from keras_flop.latency.timing import speedup_in_turn

    data = eval_data(os.path.join(args.data, "glue"), args.task,
                     os.path.join(args.run, "finetune", "vocab.txt"), args.max_seq_length)
    split = next(iter(data.evals))
    tokenized = glue.tokenize_examples(data.evals[split], args.task, data.preprocessor)
    batches = [x for x, _ in glue.make_dataset(tokenized, args.task, None, args.batch_size)]
    weights = tokenized.length_shares(args.batch_size)
    return weights, speedup_in_turn(dense, compact, batches, repeats=args.rounds)


def spread(ratio):
    median, low, high = ratio
    return f"{median:.2f}x ({low:.2f}–{high:.2f})"


def table_lines(rows, speedups, weights=None, dev_measured=None):
    lines = ["| length | model | table's prediction (ms per batch) | measured (ms per batch) "
             "| measured / predicted |", "|---|---|---|---|---|"]
    for row in rows:
        ratio = row["measured_over_predicted"]
        lines.append(f"| {row['length']} | {row['model']} | {row['predicted_ms']:.2f} | "
                     f"{row['measured_ms']:.2f} | {'' if ratio is None else f'{ratio:.3f}'} |")
    lines += ["", "| length | weight (dev batches) | speedup, table | speedup, measured |",
              "|---|---|---|---|"]
    for speedup in speedups:
        weight = "" if weights is None else f"{weights.get(speedup['length'], 0.0):.3f}"
        lines.append(f"| {speedup['length']} | {weight} | {speedup['predicted']:.2f}x | "
                     f"{spread(speedup['measured'])} |")
    if weights is not None:
        predicted, measured = mixed_speedups(rows, weights)
        lines += ["", "| dev batches' lengths mixed | speedup |", "|---|---|",
                  f"| the tables' prediction | {predicted:.2f}x |",
                  f"| the times measured here | {measured:.2f}x |",
                  f"| the dev batches, timed | {spread(dev_measured)} |"]
    return lines


def main(argv=None):
    args = parse_args(argv)
    import keras

    import keras_flop
    from keras_flop.models.bert import build_bert_classifier

    dense, compact = (keras.saving.load_model(os.path.join(args.run, step, "model.keras"),
                                              compile=False)
                      for step in ("finetune", "finetune_compact"))
    config = dense.bert_config
    shapes = layer_shapes(config, compact.layer_shapes)
    models = {"dense": dense, "compact": compact}
    for name in MODELS[2:]:
        models[name] = build_bert_classifier(config, layer_shapes=shapes[name],
                                             name=name.replace(" ", "_"))
    weights, dev_measured = dev_lengths(args, dense, compact)
    lengths = args.lengths or (sorted(weights) if weights else [16, 32, 64, 128])
    if weights is not None and not set(weights) <= set(lengths):
        print(f"note: --lengths leaves out dev lengths {sorted(set(weights) - set(lengths))}: "
              "no mixed speedups", flush=True)
        weights = None
    rows, speedups = [], []
    for index, length in enumerate(lengths):
        print(f"[{index + 1}/{len(lengths)}] length {length}: the latency table, then the "
              "models in turn", flush=True)
        length_table, speedup = measure_length(length, config, models, shapes, args)
        rows += length_table
        speedups.append(speedup)
    print(machine_header())
    print(f"{args.run}: compact layer shapes {shapes['compact']}; batch {args.batch_size}, "
          f"{args.batches} random batches per round, {args.rounds} rounds; "
          f"keras_flop {keras_flop.__version__}.")
    print("\n".join(table_lines(rows, speedups, weights, dev_measured)))


if __name__ == "__main__":
    main()
