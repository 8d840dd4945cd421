"""Prune to a requested speedup on this device: requested, predicted and measured speedup.

    python benchmarks/target_speedup.py --data /path/to/shared/data [--speedups 1.5,2,3]
        [--dense_model /tmp/dense_sst2.keras] [--latency_table /tmp/latency_b8_s128.json]
        [--family] [--output_dir /tmp/speedup]

The real MiniLM encoder is fine-tuned on SST-2 (2 epochs, lr 5e-5, `--max_train_examples`
examples) or `--dense_model` is loaded. A latency table is measured on this device at
`--batch_size` and sequence 128 (`keras_flop.measure_latency_table`; its time is printed) or
`--latency_table` is loaded. Then for each requested speedup S: `keras_flop.factorize` with
`cost="latency", target_speedup=S` and the app's defaults (model frozen, `--epochs` pruning
epochs, schedules sized to the run, `|ŝ - t|` constraint), the inference mask calibrated to
the latency target, `keras_flop.compact`, and the compact model timed against the dense one
in turn (`apps.measure.time_in_turn`, median of rounds, min–max of the ratio over rounds) over
dev examples padded to 128 tokens at batch `--batch_size` and at batch 1. Printed per row: the
request, the table's prediction for the compact model, the measured speedups, the error of the
measured speedup against the request at the table's batch size (the promise: within 10 %),
parameters, dev accuracy without fine-tuning, and the pruning wall time.

With `--family`, one more run prunes every requested speedup at once (`target_speedups=`, for
`apps.prune.FAMILY_LENGTH` times a single run's steps); each snapshotted member is calibrated,
compacted and measured the same way, the family's wall time is set against the mean single
run's, and `--output_dir`/frontier.png plots dev accuracy against the measured speedup for
both. Rows already in `--output_dir`/results.json are kept, not redone.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import keras_flop  # noqa: E402
from apps import common  # noqa: E402
from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from apps.plots import metric_against_speedup  # noqa: E402
from apps.prune.parser import FAMILY_LENGTH  # noqa: E402
from support import (add_data_argument, fine_tuned_dense, machine_header,  # noqa: E402
                     measured_speedups)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--speedups", default="1.5,2,3")
    parser.add_argument("--structure", default="heads+ffn+layers",
                        help="heads+ffn or heads+ffn+layers (rank gates have no latency cost).")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="Batch size of the latency table and of the main timing.")
    parser.add_argument("--max_train_examples", type=int, default=1067)
    parser.add_argument("--epochs", type=int, default=3, help="Pruning epochs (app default 3).")
    parser.add_argument("--timed_examples", type=int, default=400,
                        help="Dev examples timed at --batch_size (half of them at batch 1).")
    parser.add_argument("--dense_model", default=None,
                        help="A fine-tuned SST-2 .keras model to load, or where to save one.")
    parser.add_argument("--latency_table", default=None,
                        help="A latency table JSON to load, or where to save the measured one.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="store_true",
                        help="Also prune every --speedups value in one family run and compare.")
    parser.add_argument("--output_dir", default=None,
                        help="Writes results.json (and frontier.png with --family) there; rows "
                             "it already holds are not redone.")
    return parser.parse_args()


def latency_table(args, dense):
    if args.latency_table and os.path.exists(args.latency_table):
        table = keras_flop.LatencyTable.load(args.latency_table)
        print(f"latency table loaded from {args.latency_table}", flush=True)
    else:
        table = keras_flop.measure_latency_table(dense.bert_config, batch_size=args.batch_size,
                                                 seq_length=128, verbose=True)
        print(f"latency table measured in {table.info['measurement_seconds']:.0f} s", flush=True)
        if args.latency_table:
            table.save(args.latency_table)
    return table


def compact_row(pruning_model, requested, dense, data, args, table, **extra):
    """Calibrates the inference mask to `requested`, compacts, and measures the compact model:
    the row of one requested speedup."""
    expected = 1.0 / (1.0 - float(pruning_model.expected_sparsity()))
    keras_flop.calibrate_mask(pruning_model, 1.0 - 1.0 / requested)
    predicted = keras_flop.predicted_speedup(pruning_model, table)
    compact = keras_flop.compact(pruning_model)
    measured = measured_speedups(dense, compact, data, args.timed_examples,
                                 (args.batch_size, 1))
    return {"requested": requested, "expected": expected, "predicted": predicted,
            "measured": measured[args.batch_size], "measured_b1": measured[1],
            "params": compact.count_params(), "dense_params": dense.count_params(),
            "accuracy": evaluation.evaluate(compact, data, 32)["dev"]["eval_accuracy"],
            **extra}


def prune(dense, data, args, table, steps, **targets):
    """A frozen-model pruning run of `steps` steps under the latency cost; its wall and CPU
    seconds (the CPU time of this process: what other jobs on the machine do not inflate)."""
    keras.utils.set_random_seed(args.seed)
    pruning_model = keras_flop.factorize(
        dense, structure=args.structure, gate_config={"eval_mask": "topk"},
        cost="latency", latency_table=table, pruning_steps=steps, **targets)
    pruning_model.compile(optimizer=None, loss=training_data.task_loss(data.task))
    start, cpu = time.perf_counter(), time.process_time()
    pruning_model.fit(data.training_stream(32, args.seed, steps, 0), epochs=1,
                      steps_per_epoch=steps, shuffle=False, verbose=2)  # the stream shuffles
    return pruning_model, time.perf_counter() - start, time.process_time() - cpu


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    data = training_data.load_task_data(os.path.join(args.data, "glue"), "sst2",
                                        os.path.join(checkpoint, "vocab.txt"), 128,
                                        args.max_train_examples, seed=args.seed)
    dense, _ = fine_tuned_dense(args.dense_model, data, checkpoint, args.seed)
    dense_accuracy = evaluation.evaluate(dense, data, 32)["dev"]["eval_accuracy"]
    print(f"dense: dev accuracy {dense_accuracy:.4f}", flush=True)
    table = latency_table(args, dense)
    steps = args.epochs * -(-len(data.train) // 32)
    saved = load_results(args)
    rows, family = saved.get("rows", []), saved.get("family")
    speedups = [float(s) for s in args.speedups.split(",")]
    for requested in speedups:
        if any(r["requested"] == requested for r in rows):
            print(f"{requested}x: kept from {args.output_dir}/results.json", flush=True)
            continue
        pruning_model, seconds, cpu = prune(dense, data, args, table, steps,
                                            target_speedup=requested)
        rows.append(compact_row(pruning_model, requested, dense, data, args, table,
                                dense_accuracy=dense_accuracy, seconds=seconds,
                                cpu_seconds=cpu, steps=steps))
        print(json.dumps(rows[-1]), flush=True)
        save_results(args, table, rows, family)
    rows.sort(key=lambda r: r["requested"])
    print_table(args, table, rows)
    if args.family and family is None:
        family = prune_family(dense, data, args, table, steps, speedups)
        save_results(args, table, rows, family)
    if family is not None:
        print_family(args, rows, family)
        plot_frontier(args, dense_accuracy, rows, family)


def prune_family(dense, data, args, table, steps, speedups):
    """One run for every requested speedup (`FAMILY_LENGTH` times a single run's steps), each
    snapshotted member compacted and measured like a single run's model."""
    family_steps = int(round(steps * FAMILY_LENGTH))
    pruning_model, seconds, cpu = prune(dense, data, args, table, family_steps,
                                        target_speedups=tuple(speedups))
    members = []
    for i, member in enumerate(pruning_model.family.status()):
        if member["snapshot_step"] is None:
            members.append({"requested": member["speedup"], "snapshot_step": None})
            continue
        pruning_model.family.load(i)
        members.append(compact_row(pruning_model, member["speedup"], dense, data, args, table,
                                   snapshot_step=member["snapshot_step"]))
        print(json.dumps(members[-1]), flush=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "steps": family_steps, "members": members}


def print_family(args, rows, family):
    single, single_cpu = (sum(r[k] for r in rows) / len(rows) for k in ("seconds", "cpu_seconds"))
    print(f"\nFamily: one run of {family['steps']} steps for speedups {args.speedups} "
          f"({FAMILY_LENGTH}x a single run's {rows[0]['steps']}): {family['seconds']:.0f} s "
          f"({family['cpu_seconds']:.0f} CPU s), {family['seconds'] / single:.2f}x the mean "
          f"single-target run's {single:.0f} s ({family['cpu_seconds'] / single_cpu:.2f}x its "
          f"{single_cpu:.0f} CPU s).\n")
    print(f"| requested | snapshot step | predicted (compact) | measured b{args.batch_size} | "
          f"measured / requested − 1 | measured b1 | parameters | dev acc. |")
    print("|---|---|---|---|---|---|---|---|")
    for m in family["members"]:
        if m["snapshot_step"] is None:
            print(f"| {m['requested']:.2f}x | never | – | – | – | – | – | – |")
            continue
        print(f"| {m['requested']:.2f}x | {m['snapshot_step']} | {measured_cells(m)} |",
              flush=True)


def measured_cells(row):
    """The cells a single run's and a family member's rows share: predicted, measured at the
    table's batch size (min–max), its error against the request, at batch 1, parameters and
    dev accuracy."""
    b, b1 = row["measured"], row["measured_b1"]
    return (f"{row['predicted']:.2f}x | {b[0]:.2f}x ({b[1]:.2f}–{b[2]:.2f}) | "
            f"{b[0] / row['requested'] - 1:+.1%} | {b1[0]:.2f}x ({b1[1]:.2f}–{b1[2]:.2f}) | "
            f"{row['params']:,} ({row['params'] / row['dense_params']:.2f}) | "
            f"{row['accuracy']:.4f}")


def plot_frontier(args, dense_accuracy, rows, family):
    """`--output_dir`/frontier.png: dev accuracy against the measured speedup at the table's
    batch size, for the single-target runs, the family's members and the dense model."""
    if not args.output_dir:
        return
    points = [{"speedup": 1.0, "metric": dense_accuracy, "label": "dense", "method": "dense"}]
    points += [{"speedup": r["measured"][0], "metric": r["accuracy"],
                "label": f"{r['requested']:g}x", "method": "one run per target"} for r in rows]
    points += [{"speedup": m["measured"][0], "metric": m["accuracy"],
                "label": f"{m['requested']:g}x", "method": "family (one run)"}
               for m in family["members"] if m["snapshot_step"] is not None]
    path = metric_against_speedup(
        points, os.path.join(args.output_dir, "frontier.png"), "accuracy",
        title=f"SST-2, MiniLM-L6, {args.structure}, no fine-tuning after pruning")
    if path:
        print(f"frontier plot: {path}")


def load_results(args):
    """What an earlier run with the same `--output_dir` measured (rows are not redone)."""
    path = args.output_dir and os.path.join(args.output_dir, "results.json")
    return common.read_json(path) if path and os.path.exists(path) else {}


def save_results(args, table, rows, family):
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        common.write_json(os.path.join(args.output_dir, "results.json"),
                          {"table": table.to_dict(), "rows": rows, "family": family})


def print_table(args, table, rows):
    print(f"\n{machine_header()}")
    print(f"MiniLM-L6-H384 on SST-2, structure {args.structure}, model frozen, "
          f"{rows[0]['steps']} pruning steps, no fine-tuning after. Latency table at batch "
          f"{table.batch_size}, sequence {table.seq_length} (dense "
          f"{table.dense_seconds() * 1e3:.1f} ms per batch as the table predicts it, "
          f"{table.info.get('measured_dense_seconds', float('nan')) * 1e3:.1f} ms measured). "
          f"Measured: dense over compact time on {args.timed_examples} dev examples padded to "
          f"128 (batch {args.batch_size}) and {args.timed_examples // 2} at batch 1, median of "
          f"rounds run in turn (min–max over rounds).\n")
    print(f"| requested | expected at the end of training | predicted (compact) | "
          f"measured b{args.batch_size} | measured / requested − 1 | measured b1 | parameters | "
          f"dev acc. (dense {rows[0]['dense_accuracy']:.4f}) | pruning s (CPU s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['requested']:.2f}x | {r['expected']:.2f}x | {measured_cells(r)} | "
              f"{r['seconds']:.0f} ({r['cpu_seconds']:.0f}) |", flush=True)
    within = sum(abs(r["measured"][0] / r["requested"] - 1) <= 0.10 for r in rows)
    print(f"\n{within} of {len(rows)} measured within 10 % of the requested speedup at batch "
          f"{args.batch_size}.")


if __name__ == "__main__":
    main()
