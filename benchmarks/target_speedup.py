"""Prune to a requested speedup on this device: requested, predicted and measured speedup.

    python benchmarks/target_speedup.py --data /path/to/shared/data [--speedups 1.5,2,3]
        [--dense_model /tmp/dense_sst2.keras] [--latency_table /tmp/latency_b8_s128.json]
        [--family] [--output_dir /tmp/speedup]
    python benchmarks/target_speedup.py --smoke --output_dir /tmp/speedup_smoke   # minutes

The dense model is fine-tuned on SST-2 by `apps.glue_finetune` (2 epochs, lr 5e-5,
`--max_train_examples` examples, into `<output_dir>/teacher`; copied to `--dense_model` if
that is given) or `--dense_model` is loaded. Then every requested speedup S is one command a
user can run, `python -m apps.prune --dense_model TEACHER --target_speedup S --final_epochs 0
...` with the app's defaults otherwise (model frozen, `--epochs` pruning epochs, schedules
sized to the run, `|ŝ - t|` constraint, gates started as `--init_mask` says, the inference
mask calibrated when the training reached its target), printed with the table, its output
kept in `<output_dir>/speedup_<S>.log`. The latency table (batch `--batch_size`, the app's
`--eval_batch_size`; sequence `--max_seq_length`) is `--latency_table`, or measured by the
first row's factorize step and passed to the others (and saved to `--latency_table` if that is
given). Each row's figures are read from its run directory: the expected speedup at the end of
training and the pruning wall time (`prune/eval_results.json`), the table's prediction for the
compact model and its parameters (`compact/info.json`), dev accuracy without fine-tuning and
the speedup measured at batch `--batch_size` over the whole dev set padded to
`--max_seq_length` (`report.json`: the app's report times dense and compact in turn). The
speedup at batch 1 is timed here on `--timed_examples` / 2 dev examples
(`support.run_speedups`, `keras_flop.latency.timing`). Printed per row: the request, the
expected and predicted speedups, the measured ones, the error of the measured speedup against
the request at the table's batch size (the promise: within 10 %), parameters, dev accuracy and
the pruning wall time.

With `--family`, one more command prunes every requested speedup at once (`--target_speedups`,
for `apps.prune.parser.FAMILY_LENGTH` times a single run's steps, `--pruning_steps`); each
snapshotted member, calibrated, compacted and evaluated by the app (`prune/family.json`,
`compact/<member>/info.json`, `finetune_compact/<member>/eval_results.json`), is timed here
against the dense model at `--batch_size` (`--timed_examples` dev examples) and at batch 1
(the family's report writes no report.json); the family's pruning wall time is set against
the mean single run's, and `--output_dir`/frontier.png plots dev accuracy against the measured
speedup for both. Rows already in `--output_dir`/results.json are kept, not redone.

What changed from the earlier version, which factorized, trained, calibrated and compacted in
this process: the rows are the app's runs, so the gates start as the app starts them under a
speedup target (from the Fisher mask unless `--init_mask none`), and the inference mask is
calibrated only when the training reached its target within 0.02 (the earlier version
always calibrated it to `1 - 1/S`); a single row's speedup at `--batch_size` is the app's
report's, over the whole dev set (400 examples before); the CPU seconds of pruning are no
longer given (the app records the wall time).
"""

import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps.prune.parser import FAMILY_LENGTH  # noqa: E402
from support import (add_data_argument, add_smoke_argument, app_command,  # noqa: E402
                     command_lines, dense_model_flags, eval_data, fine_tuned_teacher,
                     machine_header, parse_with_smoke, run, run_json, run_speedups, shown,
                     smoke_fixture, smoke_flags)

PROMISE = 0.10  # measured within this fraction of the request at the table's batch size
SMOKE = dict(speedups="1.5", max_train_examples=64, epochs=1, timed_examples=16,
             max_seq_length=32)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--speedups", default="1.5,2,3")
    parser.add_argument("--structure", default="heads+ffn+layers",
                        help="heads+ffn or heads+ffn+layers (rank gates have no latency cost).")
    parser.add_argument("--init_mask", choices=("auto", "none", "fisher"), default="auto",
                        help="apps.prune's --init_mask: auto (the app's default) starts the "
                             "gates from the Fisher mask under a speedup target.")
    parser.add_argument("--batch_size", type=int, default=8,
                        help="Batch size of the latency table and of the main timing.")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="Sequence length of training, the latency table and the timing.")
    parser.add_argument("--max_train_examples", type=int, default=1067)
    parser.add_argument("--epochs", type=int, default=3, help="Pruning epochs (app default 3).")
    parser.add_argument("--timed_examples", type=int, default=400,
                        help="Dev examples a family member is timed on at --batch_size (half "
                             "of them at batch 1, also for a single row).")
    parser.add_argument("--dense_model", default=None,
                        help="A fine-tuned SST-2 .keras model to load, or where to save one.")
    parser.add_argument("--latency_table", default=None,
                        help="A latency table JSON to load, or where to save the measured one.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="store_true",
                        help="Also prune every --speedups value in one family run and compare.")
    parser.add_argument("--output_dir", default=os.path.join("runs", "benchmarks",
                                                             "target_speedup"),
                        help="The runs, their logs, results.json (and frontier.png with "
                             "--family); rows results.json already holds are not redone.")
    add_smoke_argument(parser)
    return parse_with_smoke(parser, argv, SMOKE)


def teacher_model(args):
    """The dense model: `--dense_model` if it exists; else fine-tuned by apps.glue_finetune
    (and copied, with its vocabulary, to `--dense_model` if one is given)."""
    if args.dense_model and os.path.exists(args.dense_model):
        return args.dense_model
    teacher = fine_tuned_teacher(args.data, "sst2", os.path.join(args.output_dir, "teacher"),
                                 args.seed, "5e-5",
                                 ["--num_train_epochs", "2", "--max_train_examples",
                                  str(args.max_train_examples), "--max_seq_length",
                                  str(args.max_seq_length)])
    if args.dense_model:
        for source, target in ((teacher, args.dense_model),
                               (os.path.join(os.path.dirname(teacher), "vocab.txt"),
                                os.path.join(os.path.dirname(os.path.abspath(args.dense_model)),
                                             "vocab.txt"))):
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            shutil.copyfile(source, target)
    return teacher


def prune_command(args, glue_dir, teacher, directory, table, *target):
    """The apps.prune command of one row (`target`: its target flags), no fine-tuning after."""
    return app_command(
        "apps.prune", "--task", "sst2", "--data_dir", glue_dir,
        *dense_model_flags(teacher, args.data), "--output_dir", directory, "--structure",
        args.structure, "--init_mask", args.init_mask, *target, "--max_train_examples",
        args.max_train_examples, "--max_seq_length", args.max_seq_length, "--eval_batch_size",
        args.batch_size, "--seed", args.seed, "--final_epochs", 0, "--allow_short",
        *(["--latency_table", table] if table else []), *smoke_flags(args))


def row_directory(args, requested):
    """The run directory of the single-target row of speedup `requested`."""
    return os.path.join(args.output_dir, f"speedup_{requested:g}")


def measured_table(directory):
    """The latency table a run's factorize step measured or was given."""
    return os.path.join(directory, "factorize", "latency_table.json")


def row_figures(directory, requested, batch1):
    """A single-target row from the finished apps.prune run in `directory`; `batch1` is its
    speedup at batch 1, `(speedup, low, high)`."""
    report = run_json(directory, "report.json")
    pruned = run_json(directory, "prune", "eval_results.json")
    info = run_json(directory, "compact", "info.json")
    return {"requested": requested, "expected": 1.0 / (1.0 - pruned["expected_sparsity"]),
            "predicted": info["predicted_speedup"], "measured": report["speedup_fixed"],
            "measured_b1": list(batch1), "params": info["pruned_total_params"],
            "dense_params": info["total_params"],
            "accuracy": report["compact"]["results"]["eval_accuracy"],
            "dense_accuracy": report["dense"]["results"]["eval_accuracy"],
            "seconds": pruned["train_time"], "steps": int(pruned["global_step"])}


def member_figures(directory, member, measured):
    """A family member's row from the finished family run in `directory`: `member` as
    `prune/family.json` lists it, `measured` its `{batch: (speedup, low, high)}` at the
    table's batch size and at batch 1 (None for a member never snapshotted)."""
    if member["snapshot_step"] is None:
        return {"requested": member["speedup"], "snapshot_step": None}
    info = run_json(directory, "compact", str(member["member"]), "info.json")
    results = run_json(directory, "finetune_compact", str(member["member"]),
                       "eval_results.json")
    batch, other = sorted(measured, key=lambda b: b == 1)
    return {"requested": member["speedup"], "snapshot_step": member["snapshot_step"],
            "predicted": info["predicted_speedup"], "measured": list(measured[batch]),
            "measured_b1": list(measured[other]), "params": info["pruned_total_params"],
            "dense_params": info["total_params"], "accuracy": results["eval_accuracy"]}


def run_family(args, glue_dir, teacher, table, speedups, rows, data):
    """The family run of `speedups`, `FAMILY_LENGTH` times a single run's steps; its members
    measured."""
    directory = os.path.join(args.output_dir, "family")
    steps = int(round(rows[0]["steps"] * FAMILY_LENGTH))
    command = prune_command(args, glue_dir, teacher, directory, table, "--target_speedups",
                            ",".join(f"{s:g}" for s in speedups), "--pruning_steps", steps)
    print("\n== family", flush=True)
    run(command, f"{directory}.log")
    pruned = run_json(directory, "prune", "eval_results.json")
    members = []
    for member in run_json(directory, "prune", "family.json"):
        measured = None if member["snapshot_step"] is None else run_speedups(
            directory, data, args.timed_examples, (args.batch_size, 1),
            compact=os.path.join("finetune_compact", str(member["member"])))
        members.append(member_figures(directory, member, measured))
    return {"seconds": pruned["train_time"], "steps": int(pruned["global_step"]),
            "members": members, "command": shown(command)}


def measured_cells(row):
    """The cells a single run's and a family member's rows share: predicted, measured at the
    table's batch size (min–max), its error against the request, at batch 1, parameters and
    dev accuracy."""
    b, b1 = row["measured"], row["measured_b1"]
    return (f"{row['predicted']:.2f}x | {b[0]:.2f}x ({b[1]:.2f}–{b[2]:.2f}) | "
            f"{b[0] / row['requested'] - 1:+.1%} | {b1[0]:.2f}x ({b1[1]:.2f}–{b1[2]:.2f}) | "
            f"{row['params']:,} ({row['params'] / row['dense_params']:.2f}) | "
            f"{row['accuracy']:.4f}")


def table_lines(args, table, rows):
    """The single rows' table, `table` the latency table's dict (`LatencyTable.to_dict`)."""
    from keras_flop import LatencyTable

    table = LatencyTable.from_dict(table)
    measured = table.info.get("measured_dense_seconds", float("nan"))
    lines = [
        f"MiniLM-L6-H384 on SST-2, structure {args.structure}, model frozen, gates from "
        f"--init_mask {args.init_mask}, {rows[0]['steps']} pruning steps, no fine-tuning after. "
        f"Latency table at batch {table.batch_size}, sequence {table.seq_length} (dense "
        f"{table.dense_seconds() * 1e3:.1f} ms per batch as the table predicts it, "
        f"{measured * 1e3:.1f} ms measured). Measured: dense over compact time, median of "
        f"rounds run in turn (min–max over rounds): the app's report over the dev set padded "
        f"to {args.max_seq_length} (batch {args.batch_size}), and {args.timed_examples // 2} "
        f"dev examples at batch 1.", "",
        f"| requested | expected at the end of training | predicted (compact) | "
        f"measured b{args.batch_size} | measured / requested − 1 | measured b1 | parameters | "
        f"dev acc. (dense {rows[0]['dense_accuracy']:.4f}) | pruning s |",
        "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['requested']:.2f}x | {r['expected']:.2f}x | {measured_cells(r)} | "
              f"{r['seconds']:.0f} |" for r in rows]
    within = sum(abs(r["measured"][0] / r["requested"] - 1) <= PROMISE for r in rows)
    lines += ["", f"{within} of {len(rows)} measured within {PROMISE:.0%} of the requested "
                  f"speedup at batch {args.batch_size}."]
    return lines + command_lines(rows)


def family_lines(args, rows, family):
    """The family's table: its wall time against the mean single run's, one line a member."""
    single = sum(r["seconds"] for r in rows) / len(rows)
    speedups = ",".join(f"{m['requested']:g}" for m in family["members"])
    lines = [
        f"Family: one run of {family['steps']} steps for speedups {speedups} ({FAMILY_LENGTH}x a "
        f"single run's {rows[0]['steps']}): {family['seconds']:.0f} s, "
        f"{family['seconds'] / single:.2f}x the mean single-target run's {single:.0f} s. "
        f"Members timed here on {args.timed_examples} dev examples at batch {args.batch_size} "
        f"and {args.timed_examples // 2} at batch 1.", "",
        f"| requested | snapshot step | predicted (compact) | measured b{args.batch_size} | "
        f"measured / requested − 1 | measured b1 | parameters | dev acc. |",
        "|---|---|---|---|---|---|---|---|"]
    for m in family["members"]:
        if m["snapshot_step"] is None:
            lines.append(f"| {m['requested']:.2f}x | never | – | – | – | – | – | – |")
        else:
            lines.append(f"| {m['requested']:.2f}x | {m['snapshot_step']} | "
                         f"{measured_cells(m)} |")
    return lines + ["", "Command: " + family.get("command", "(not recorded)")]


def plot_frontier(args, rows, family):
    """`--output_dir`/frontier.png: dev accuracy against the measured speedup at the table's
    batch size, for the single-target runs, the family's members and the dense model."""
    from apps.plots import metric_against_speedup

    points = [{"speedup": 1.0, "metric": rows[0]["dense_accuracy"], "label": "dense",
               "method": "dense"}]
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


def main(argv=None):
    args = parse_args(argv)
    from apps import common

    results = os.path.join(args.output_dir, "results.json")
    saved = common.read_json(results, missing={})
    rows, family = saved.get("rows", []), saved.get("family")
    if args.smoke:
        glue_dir, teacher = smoke_fixture(os.path.join(args.output_dir, "fixture"))
    else:
        glue_dir, teacher = os.path.join(args.data, "glue"), teacher_model(args)
    speedups = [float(s) for s in args.speedups.split(",")]
    given = args.latency_table and os.path.exists(args.latency_table)

    def table():
        """The latency table to pass: --latency_table, else the one a row measured (None:
        the next row measures it)."""
        if given:
            return args.latency_table
        measured = [measured_table(row_directory(args, r["requested"])) for r in rows]
        return next((path for path in measured if os.path.exists(path)), None)

    data = None
    for requested in speedups:
        if any(r["requested"] == requested for r in rows):
            print(f"{requested:g}x: kept from {results}", flush=True)
            continue
        directory = row_directory(args, requested)
        command = prune_command(args, glue_dir, teacher, directory, table(),
                                "--target_speedup", f"{requested:g}", "--num_train_epochs",
                                args.epochs)
        print(f"\n== {requested:g}x", flush=True)
        run(command, f"{directory}.log")  # the run directory is the app's alone
        if data is None:  # the dev set as the app tokenizes it, for the batch-1 timing
            data = eval_data(glue_dir, "sst2", os.path.join(directory, "finetune", "vocab.txt"),
                             args.max_seq_length)
        batch1 = run_speedups(directory, data, args.timed_examples // 2, (1,))[1]
        rows.append(dict(row_figures(directory, requested, batch1), command=shown(command)))
        rows.sort(key=lambda r: r["requested"])
        saved = {"table": common.read_json(table()), "rows": rows, "family": family}
        common.write_json(results, saved)
    if args.latency_table and not given:
        shutil.copyfile(table(), args.latency_table)
    print("\n" + machine_header())
    print("\n".join(table_lines(args, saved["table"], rows)), flush=True)
    if args.family and family is None:
        if data is None:
            data = eval_data(glue_dir, "sst2", os.path.join(
                row_directory(args, rows[0]["requested"]), "finetune", "vocab.txt"),
                args.max_seq_length)
        family = run_family(args, glue_dir, teacher, table(), speedups, rows, data)
        common.write_json(results, {**saved, "family": family})
    if family is not None:
        print("\n" + "\n".join(family_lines(args, rows, family)))
        plot_frontier(args, rows, family)


if __name__ == "__main__":
    main()
