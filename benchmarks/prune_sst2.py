"""Prune the real MiniLM encoder on SST-2 to several sparsities; accuracy, size and latency.

    python benchmarks/prune_sst2.py --data /path/to/shared/data [--targets 0.5,0.7]
    python benchmarks/prune_sst2.py --structures heads+ffn+layers --targets 0.5,0.7,0.9 \\
        --learning_rate 3e-5 --distillation_weight 1
    python benchmarks/prune_sst2.py --seeds 0,1,2 --structures heads+ffn+layers --targets 0.5
    python benchmarks/prune_sst2.py --smoke --output_dir /tmp/prune_sst2_smoke   # minutes

Per seed, the dense model is fine-tuned once by `apps.glue_finetune` (`--finetune_epochs` at
5e-5 on `--max_train_examples` of SST-2 train, into `<output_dir>/seed<seed>/teacher`) or
`--dense_model` is loaded. Then every structure and target is one command a user can run,
`python -m apps.prune --dense_model TEACHER --structure S --target_sparsity T ...` (printed with
the table, its output kept in `<row>.log` beside its run directory `<output_dir>/seed<seed>/
<structure>_<target>`): the app's factorize, Lagrangian pruning (model frozen by default, the
original recipe; `--learning_rate` trains it too, `--distillation_weight` distills from the
dense model), inference mask calibrated when the training reached its target, compact,
fine-tuning of the compact model (`--final_epochs`), export and report. The row's figures are
read from its run directory: reached ŝ and the gated model's dev accuracy
(`prune/eval_results.json`), encoder dense sparsity (`compact/info.json`), parameters, dense and
compact dev accuracy and the latency ratios at batch 8 over the dev set padded to
`--max_seq_length` and in length-bucketed batches (`report.json`: the app's report times the
dense and the compact model in turn). Only batch 1 is timed here (`support.run_speedups`,
`keras_flop.latency.timing`, `--timed_examples` dev examples). A finished row is read back, not
run again: apps.prune finds its steps done.

With several `--seeds`, everything from fine-tuning on is repeated per seed, and the table
gives each figure as mean ± standard deviation over the seeds; the per-seed values are in
`--output_dir`'s results.json.

What changed from the earlier version, which fine-tuned, pruned and compacted in this process:
the rows are the app's runs, so the inference mask is calibrated as the app does (the earlier
version never calibrated it); models train and are timed at one length, `--max_seq_length`
(default 128; training was at 64 before, and SST-2's length-bucketed batches are short either
way); each seed draws its own training subset, as the app's `--seed` does (`--data_seed` is
gone); the noam schedules' rates and warmup default to the app's.
"""

import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import (add_data_argument, add_smoke_argument, app_command, as_ratio,  # noqa: E402
                     command_lines, dense_model_flags, eval_data, fine_tuned_teacher,
                     machine_header, mean_std, parse_seeds, parse_with_smoke, passed_flags, run,
                     run_json, run_speedups, shown, smoke_fixture, smoke_flags)

# Settings passed to every row's apps.prune command under the app's own flag names.
APP_FLAGS = ("learning_rate", "distillation_weight", "distillation_temperature",
             "max_train_examples", "max_seq_length", "final_epochs", "schedule",
             "alpha_learning_rate", "lambda_learning_rate", "learning_rate_warmup", "constraint",
             "factorize_rank", "eval_mask")
SMOKE = dict(seeds=[0], structures="heads+ffn+layers", targets="0.5", max_train_examples=64,
             max_seq_length=32, prune_epochs=1, final_epochs=1, timed_examples=16)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--targets", default="0.5,0.7")
    parser.add_argument("--structures", default="rank",
                        help="Comma-separated: rank, heads+ffn, heads+ffn+layers, all.")
    parser.add_argument("--learning_rate", type=float, default=0.0,
                        help="Model weights while pruning (0: frozen).")
    parser.add_argument("--distillation_weight", type=float, default=0.0)
    parser.add_argument("--distillation_temperature", type=float, default=2.0)
    parser.add_argument("--max_train_examples", type=int, default=4000)
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="Training, evaluation and the timed batches (apps.prune's).")
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--prune_epochs", type=int, default=3)
    parser.add_argument("--final_epochs", type=int, default=1)
    parser.add_argument("--schedule", choices=("run", "noam"), default="run",
                        help="Gate and λ schedules, as apps.prune's --schedule.")
    parser.add_argument("--alpha_learning_rate", type=float, default=None,
                        help="Peak (run; default 80 / steps) or noam scale (default 5).")
    parser.add_argument("--lambda_learning_rate", type=float, default=None,
                        help="Peak (run; default 200 / steps) or noam scale (default 10).")
    parser.add_argument("--learning_rate_warmup", type=int, default=None,
                        help="Warmup steps of the noam schedules (default 200).")
    parser.add_argument("--constraint", choices=("absolute", "equality"), default="absolute")
    parser.add_argument("--factorize_rank", choices=("break_even", "full"), default="break_even",
                        help="Where rank gates start, as apps.prune's --factorize_rank.")
    parser.add_argument("--eval_mask", default="topk")
    parser.add_argument("--dense_model", default=None,
                        help="Reuse this fine-tuned dense .keras model, or save the one "
                             "fine-tuned here there; with several --seeds, a path with {seed} "
                             "in it.")
    parser.add_argument("--seeds", default="0", type=parse_seeds,
                        help="Comma-separated seeds of fine-tuning and pruning (the apps' "
                             "--seed: initialization, dropout, data order, gates and the "
                             "training subset); each metric is reported as mean ± standard "
                             "deviation over them, per-seed values in the JSON.")
    parser.add_argument("--timed_examples", type=int, default=200,
                        help="Dev examples timed at batch 1.")
    parser.add_argument("--output_dir", default=os.path.join("runs", "benchmarks", "prune_sst2"),
                        help="The runs, their logs and results.json.")
    add_smoke_argument(parser)
    args = parse_with_smoke(parser, argv, SMOKE)
    if args.dense_model and len(args.seeds) > 1 and "{seed}" not in args.dense_model:
        parser.error("with several --seeds, --dense_model needs {seed} in its path "
                     "(one dense model per seed)")
    return args


def settings(args):
    """`[(structure, target), ...]` of the rows of one seed."""
    return [(structure, float(target)) for structure in args.structures.split(",")
            for target in args.targets.split(",")]


def teacher_model(args, seed, directory):
    """The seed's dense model: `--dense_model` if it exists; else fine-tuned by
    apps.glue_finetune in `<directory>/teacher` (and copied, with its vocabulary, to
    `--dense_model` if one is given)."""
    path = args.dense_model.format(seed=seed) if args.dense_model else None
    if path and os.path.exists(path):
        return path
    teacher = fine_tuned_teacher(args.data, "sst2", os.path.join(directory, "teacher"), seed,
                                 "5e-5", ["--num_train_epochs", str(args.finetune_epochs),
                                          "--max_train_examples", str(args.max_train_examples),
                                          "--max_seq_length", str(args.max_seq_length)])
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        shutil.copyfile(teacher, path)
        shutil.copyfile(os.path.join(os.path.dirname(teacher), "vocab.txt"),
                        os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.txt"))
    return teacher


def row_command(args, glue_dir, teacher, structure, target, seed, directory):
    """The apps.prune command of one row."""
    return app_command(
        "apps.prune", "--task", "sst2", "--data_dir", glue_dir,
        *dense_model_flags(teacher, args.data), "--output_dir", directory, "--structure",
        structure, "--target_sparsity", f"{target:g}", "--num_train_epochs", args.prune_epochs,
        "--eval_batch_size", 8, "--seed", seed, "--allow_short",
        # The rows of one seed share its teacher: its outputs for distillation computed once.
        "--teacher_outputs", os.path.join(os.path.dirname(directory), "teacher_outputs.npz"),
        *passed_flags(args, APP_FLAGS), *smoke_flags(args))


def row_figures(directory, structure, target, seed, batch1):
    """A row from the finished apps.prune run in `directory`; `batch1` is its speedup at
    batch 1, `(speedup, low, high)`. Latencies as compact/dense ratios with their min–max
    over rounds."""
    report = run_json(directory, "report.json")
    pruned = run_json(directory, "prune", "eval_results.json")
    timed = {"8": report["speedup_fixed"], "1": batch1, "8b": report["speedup_bucketed"]}
    return {
        "structure": structure, "target": target, "seed": seed,
        "expected_sparsity": pruned["expected_sparsity"],
        "dense_sparsity": run_json(directory, "compact", "info.json")["dense_sparsity"],
        "params": report["compact"]["parameters"],
        "dense_params": report["dense"]["parameters"],
        "dense_accuracy": report["dense"]["results"]["eval_accuracy"],
        "gated_accuracy": pruned["eval_accuracy"],
        "accuracy": report["compact"]["results"]["eval_accuracy"],
        "dev_examples": report["compact"]["results"]["eval_examples"],
        **{f"batch{b}": as_ratio(speedup)[0] for b, speedup in timed.items()},
        **{f"batch{b}_spread": list(as_ratio(speedup)[1:]) for b, speedup in timed.items()},
        "dense8": report["dense"]["latency_s"], "compact8": report["compact"]["latency_s"],
        "prune_seconds": pruned.get("train_time"),
    }


def _ratio(rows, key):
    """`compact/dense (speedup; min–max of the ratio over the timing rounds)`; over several
    seeds, the mean ratio and the min–max over every seed's rounds."""
    low = min(r[key + "_spread"][0] for r in rows)
    high = max(r[key + "_spread"][1] for r in rows)
    ratio = sum(r[key] for r in rows) / len(rows)
    return f"{ratio:.2f} ({1 / ratio:.2f}x; {low:.2f}–{high:.2f})"


def dense_accuracies(rows):
    """`{seed: dev accuracy of its dense model}` (every row of a seed prunes the same one)."""
    return {r["seed"]: r["dense_accuracy"] for r in rows}


def table_lines(args, rows):
    """The printed table: a header, one line per structure and target over its seeds, and the
    command of every row."""
    dense = dense_accuracies(rows)
    seeds = sorted(dense)
    lines = [
        f"MiniLM-L6-H384 (TF1 checkpoint), SST-2: train up to {args.max_train_examples} "
        f"examples, dev {rows[0]['dev_examples']} examples, sequence length "
        f"{args.max_seq_length}; latency: the app's report (batch 8, the dev set padded and "
        f"bucketed) and batch 1 timed here, dense and compact in turn. Dense fine-tuned dev "
        f"accuracy {mean_std(dense.values())}, {rows[0]['dense_params']:,} parameters. "
        f"Pruning: {args.prune_epochs} epochs, model learning rate {args.learning_rate}, "
        f"distillation weight {args.distillation_weight} (T {args.distillation_temperature}), "
        f"eval mask {args.eval_mask}. Seeds {','.join(map(str, seeds))}"
        + (": mean ± standard deviation over seeds." if len(seeds) > 1 else "."),
        "",
        "| structure | target | seeds | reached ŝ | encoder dense sparsity | parameters | "
        "dev acc. gated | dev acc. compact+ft | Δ acc. (points) | latency ratio b8 | "
        "latency ratio b1 | latency ratio b8 bucketed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for structure, target in dict.fromkeys((r["structure"], r["target"]) for r in rows):
        group = [r for r in rows if (r["structure"], r["target"]) == (structure, target)]
        params = sum(r["params"] for r in group) / len(group)
        lines.append(
            f"| {structure} | {target:g} | {len(group)} | "
            f"{mean_std((r['expected_sparsity'] for r in group), 3)} | "
            f"{mean_std((r['dense_sparsity'] for r in group), 3)} | "
            f"{params:,.0f} ({params / group[0]['dense_params']:.2f}) | "
            f"{mean_std(r['gated_accuracy'] for r in group)} | "
            f"{mean_std(r['accuracy'] for r in group)} | "
            f"{mean_std((100 * (r['accuracy'] - dense[r['seed']]) for r in group), 2)} | "
            f"{_ratio(group, 'batch8')} | {_ratio(group, 'batch1')} | "
            f"{_ratio(group, 'batch8b')} |")
    return lines + command_lines(rows)


def plot_frontier(args, rows):
    """`--output_dir`/frontier.png: dev accuracy against the measured speedup at batch 8
    (padded), one series per structure, each point labelled with its target."""
    from apps.plots import metric_against_speedup

    dense = dense_accuracies(rows)
    points = [dict(speedup=1.0, metric=sum(dense.values()) / len(dense), method="dense",
                   label="dense")] + [
        dict(speedup=1.0 / r["batch8"], metric=r["accuracy"], method=r["structure"],
             label=f"{r['target']:g}" + (f" s{r['seed']}" if len(dense) > 1 else ""))
        for r in rows]
    path = metric_against_speedup(points, os.path.join(args.output_dir, "frontier.png"),
                                  "accuracy", "SST-2, MiniLM-L6: compact+ft vs dense")
    if path:
        print(f"plot: {path}")


def main(argv=None):
    args = parse_args(argv)
    from apps import common

    if args.smoke:
        glue_dir, smoke_teacher = smoke_fixture(os.path.join(args.output_dir, "fixture"))
    else:
        glue_dir, smoke_teacher = os.path.join(args.data, "glue"), None
    rows, data = [], None
    for seed in args.seeds:
        seed_dir = os.path.join(args.output_dir, f"seed{seed}")
        teacher = smoke_teacher or teacher_model(args, seed, seed_dir)
        for structure, target in settings(args):
            directory = os.path.join(seed_dir, f"{structure}_{target:g}")
            command = row_command(args, glue_dir, teacher, structure, target, seed, directory)
            print(f"\n== seed {seed}: {structure} {target:g}", flush=True)
            run(command, f"{directory}.log")  # the run directory is the app's alone
            if data is None:  # the dev set as the app tokenizes it, for the batch-1 timing
                data = eval_data(glue_dir, "sst2", os.path.join(directory, "finetune",
                                                                "vocab.txt"),
                                 args.max_seq_length)
            batch1 = run_speedups(directory, data, args.timed_examples, (1,))[1]
            rows.append(dict(row_figures(directory, structure, target, seed, batch1),
                             command=shown(command)))
            common.write_json(os.path.join(args.output_dir, "results.json"),
                              {"dense_accuracy": dense_accuracies(rows), "rows": rows})
            plot_frontier(args, rows)
            # The table so far: a run stopped early still leaves every finished row.
            print("\n" + machine_header())
            print("\n".join(table_lines(args, rows)), flush=True)


if __name__ == "__main__":
    main()
