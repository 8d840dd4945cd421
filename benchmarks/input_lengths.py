"""Fixed padding vs length-bucketed batches: epoch time, throughput and dev metric.

    python benchmarks/input_lengths.py --data /path/to/shared/data [--tasks sst2,mrpc,rte]
    python benchmarks/input_lengths.py --smoke --output_dir /tmp/lengths_smoke   # minutes

For each task, on the real MiniLM encoder at `--max_seq_length 128`, the two ways of batching
(`--pad_to_max_length` and the app's default buckets) are each one command a user can run,
`python -m apps.prune --init_checkpoint MINILM --finetune_epochs 1 --num_train_epochs 1 ...
[--pad_to_max_length]` (printed with the table, its output kept in `<output_dir>/<task>/<way>.log`
beside its run directory):
- one epoch of dense fine-tuning (the app's finetune step: from the pre-trained checkpoint, lr
  `--finetune_learning_rate` 5e-5, batch 32) on `--max_train_examples` training examples, then
  the dev metric;
- one epoch of structured pruning (the app's prune step: `heads+ffn`, target 0.5, model lr
  3e-5) with logit distillation from that fine-tuned model (its outputs computed once, before
  the epoch), then the gated model's dev metric.
Both epochs' wall seconds and dev metrics are read from the run directory
(`finetune/eval_results.json`, `prune/eval_results.json`: `train_time`, `eval_score`); the
mean padded length per training example is computed here from the run's data
(`keras_flop.glue.batching.epoch_plan`, the batches the app trains on). Printed: the epoch
times of both ways, their ratio, the dev metrics and the padded length. The order of the two
ways alternates between tasks so that slow drift of a shared machine does not favour one.

What changed from the earlier version, which fine-tuned and pruned in this process: the
epochs are the app's steps, so the pruning runs the app's schedules (sized to the run, target
warmup a third of it, `|ŝ - t|` constraint) and the epoch time no longer includes computing
the teacher's outputs; the apps record wall seconds only, so the CPU seconds (which other load
on a shared machine does not inflate) are no longer given, and the ratios are of wall seconds:
run it on an otherwise idle machine.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (CHECKPOINT, add_data_argument, add_smoke_argument, app_command,  # noqa: E402
                     command_lines, machine_header, parse_with_smoke, passed_flags, run, run_json,
                     shown, smoke_flags)

# Settings passed to every command under the app's own flag names.
APP_FLAGS = ("finetune_learning_rate", "max_seq_length", "max_train_examples",
             "max_eval_examples", "seed")
# The recipe of the pruning epoch.
PRUNING = ("--structure", "heads+ffn", "--target_sparsity", "0.5", "--learning_rate", "3e-5",
           "--distillation_weight", "1", "--distillation_temperature", "2")
# The smoke mode: the built-in toy task (its own default fine-tuning rate), a few steps.
SMOKE = dict(tasks="sst2", max_seq_length=32, max_train_examples=64,
             finetune_learning_rate=None)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--tasks", default="sst2,mrpc,rte")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=2000)
    parser.add_argument("--max_eval_examples", type=int, default=None,
                        help="Evaluate on a random subset of the dev set (quick runs).")
    parser.add_argument("--finetune_learning_rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=os.path.join("runs", "benchmarks",
                                                             "input_lengths"),
                        help="The runs, their logs and results.json.")
    add_smoke_argument(parser)
    return parse_with_smoke(parser, argv, SMOKE)


def way_name(padding):
    return "fixed" if padding else "buckets"


def way_command(args, task, padding, directory):
    """The apps.prune command of one task and way of batching: one epoch of fine-tuning, one
    of pruning, no fine-tuning after (the toy task under `--smoke`)."""
    source = [] if args.smoke else [
        "--task", task, "--data_dir", os.path.join(args.data, "glue"), "--init_checkpoint",
        os.path.join(args.data, CHECKPOINT)]
    return app_command(
        "apps.prune", *source, "--output_dir", directory, *passed_flags(args, APP_FLAGS),
        *(["--pad_to_max_length"] if padding else []), "--finetune_epochs", 1,
        *PRUNING, "--num_train_epochs", 1, "--final_epochs", 0, "--allow_short",
        *smoke_flags(args))


def padded_tokens_per_example(directory):
    """`(training examples, mean tokens per training example a batch computes on, padding
    included)` of the finished apps.prune run in `directory`: its data and batches as the
    app made them."""
    import keras_flop
    from apps import common
    from keras_flop.training import data as training_data

    settings = run_json(directory, "hparams.json")
    data = training_data.load_task_data(
        settings["data_dir"] or os.path.join(directory, "data"), settings["task"],
        os.path.join(directory, "finetune", "vocab.txt"), settings["max_seq_length"],
        settings["max_train_examples"], seed=settings["seed"],
        pad_to_max_length=settings["pad_to_max_length"],
        boundaries=common.bucket_boundaries(argparse.Namespace(**settings)))
    tokenized = data.tokenized("train")
    plan = keras_flop.glue.batching.epoch_plan(tokenized.lengths, settings["train_batch_size"],
                                               settings["seed"], 0,
                                               by_length=not tokenized.pad_to_max_length)
    padded = sum(len(b) * w for b, w in zip(plan, map(tokenized.padded_width, plan)))
    return len(tokenized), padded / len(tokenized)


def way_figures(directory, task, padding):
    """A row from the finished apps.prune run in `directory`."""
    tuned = run_json(directory, "finetune", "eval_results.json")
    pruned = run_json(directory, "prune", "eval_results.json")
    examples, padded = padded_tokens_per_example(directory)
    return {"task": task, "batching": way_name(padding), "examples": examples,
            "padded_length": padded, "finetune_s": tuned["train_time"],
            "finetune_score": tuned["eval_score"], "prune_s": pruned["train_time"],
            "prune_score": pruned["eval_score"]}


def table_lines(args, rows):
    lines = [
        f"MiniLM-L6-H384, max_seq_length {args.max_seq_length}, batch "
        f"{16 if args.smoke else 32}, one epoch of up to {args.max_train_examples} training "
        f"examples per task, graph mode.",
        "Epoch time: the apps' wall seconds of the epoch (tracing included; the teacher's "
        "outputs are computed before the pruning epoch). Speedup: fixed / buckets.", "",
        "| task | batching | tokens/example (padded) | fine-tune epoch s | speedup | "
        "dev score | prune+distill epoch s | speedup | dev score |",
        "|---|---|---|---|---|---|---|---|---|"]
    fixed = {r["task"]: r for r in rows if r["batching"] == "fixed"}
    for r in rows:
        base = fixed.get(r["task"], r)
        lines.append(
            f"| {r['task']} | {r['batching']} | {r['padded_length']:.1f} | "
            f"{r['finetune_s']:.0f} | {base['finetune_s'] / r['finetune_s']:.2f}x | "
            f"{r['finetune_score']:.4f} | {r['prune_s']:.0f} | "
            f"{base['prune_s'] / r['prune_s']:.2f}x | {r['prune_score']:.4f} |")
    return lines + command_lines(rows)


def main(argv=None):
    args = parse_args(argv)
    from apps import common

    tasks = args.tasks.split(",")
    rows = []
    for index, task in enumerate(tasks):
        for padding in (True, False) if index % 2 == 0 else (False, True):
            directory = os.path.join(args.output_dir, task, way_name(padding))
            command = way_command(args, task, padding, directory)
            print(f"\n== {task}: {way_name(padding)}", flush=True)
            run(command, f"{directory}.log")  # the run directory is the app's alone
            rows.append(dict(way_figures(directory, task, padding), command=shown(command)))
        rows.sort(key=lambda r: (tasks.index(r["task"]), r["batching"] != "fixed"))
        print("\n" + machine_header())
        print("\n".join(table_lines(args, rows)), flush=True)
        common.write_json(os.path.join(args.output_dir, "results.json"), {"rows": rows})


if __name__ == "__main__":
    main()
