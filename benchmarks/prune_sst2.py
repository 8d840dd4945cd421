"""Prune the real MiniLM encoder on SST-2 to several sparsities; accuracy, size and latency.

    python benchmarks/prune_sst2.py --data /path/to/shared/data [--targets 0.5,0.7]
    python benchmarks/prune_sst2.py --structures heads+ffn+layers --targets 0.5,0.7,0.9 \
        --learning_rate 3e-5 --distillation_weight 1
    python benchmarks/prune_sst2.py --seeds 0,1,2 --structures heads+ffn+layers --targets 0.5

Fine-tunes the dense model once (on `--max_train_examples` of SST-2 train), then for each
structure and target: factorize, Lagrangian pruning (model frozen by default, the original
recipe; `--learning_rate` trains it too, `--distillation_weight` distills from the dense
model), compact, fine-tune the compact model, and measure SST-2 dev accuracy, parameters, and
the CPU latency of compact vs dense over the dev set at batch 8 and batch 1, sequence length
128, in this process.

With several `--seeds`, everything from fine-tuning on is repeated per seed (on the same
training subset, `--data_seed`), and the table gives each figure as mean ± standard deviation
over the seeds; the per-seed values are in `--output_dir`'s results.json.
"""

import argparse
import statistics
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_flop  # noqa: E402
from apps import common  # noqa: E402
from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import fine_tuning  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from keras_flop.latency.timing import ratio_spread, time_in_turn  # noqa: E402
from support import (add_data_argument, add_seeds_argument, fine_tuned_dense,  # noqa: E402
                     machine_header, mean_std)
from keras_flop import glue
from keras_flop.training import optimizers  # noqa: E402


def parse_args():
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
    parser.add_argument("--train_seq_length", type=int, default=64)
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--prune_epochs", type=int, default=3)
    parser.add_argument("--final_epochs", type=int, default=1)
    parser.add_argument("--schedule", choices=("run", "noam"), default="run",
                        help="Gate and λ schedules, as apps.prune's --schedule.")
    parser.add_argument("--alpha_learning_rate", type=float, default=None,
                        help="Peak (run; default 80 / steps) or noam scale (default 100).")
    parser.add_argument("--lambda_learning_rate", type=float, default=None,
                        help="Peak (run; default 200 / steps) or noam scale (default 40).")
    parser.add_argument("--learning_rate_warmup", type=int, default=50,
                        help="Warmup steps of the noam schedules.")
    parser.add_argument("--constraint", choices=("absolute", "equality"), default="absolute")
    parser.add_argument("--factorize_rank", choices=("break_even", "full"), default="break_even",
                        help="Where rank gates start, as apps.prune's --factorize_rank.")
    parser.add_argument("--eval_mask", default="topk")
    parser.add_argument("--dense_model", default=None,
                        help="Reuse this fine-tuned dense .keras model, or save it there; with "
                             "several --seeds, a path with {seed} in it.")
    add_seeds_argument(parser)
    parser.add_argument("--output_dir", default=None,
                        help="Saves each compact model and results.json there.")
    args = parser.parse_args()
    if args.dense_model and len(args.seeds) > 1 and "{seed}" not in args.dense_model:
        parser.error("with several --seeds, --dense_model needs {seed} in its path "
                     "(one dense model per seed)")
    return args


def accuracy(model, data):
    return evaluation.evaluate(model, data, 32)["dev"]["eval_accuracy"]


def latencies(dense, compact, data_128):
    """Compact/dense latency ratios over the dev set, the models run in turn (`time_in_turn`):
    `(median round's ratio, min, max)` at batch 8 and 1 padded to 128 (comparable with
    published figures), and at batch 8 in length-bucketed batches (what a service pays); keys
    `(model, batch)` hold the median seconds. Batch `8`, `1` or `"8b"`."""
    results = {}
    for batch, padding in ((8, True), (1, True), ("8b", False)):
        tokenized = glue.tokenize_examples(data_128.evals["dev"], "sst2", data_128.preprocessor,
                                           pad_to_max_length=padding)
        batches = [x for x, _ in glue.make_dataset(tokenized, "sst2", None,
                                                   8 if batch == "8b" else batch)]
        if batch == 1:
            batches = batches[:200]  # 200 single examples: enough for a stable median
        rounds = time_in_turn({"dense": dense, "compact": compact}, batches)
        results.update({(name, batch): statistics.median(seconds)
                        for name, seconds in rounds.items()})
        results["ratio", batch] = ratio_spread(rounds, "compact", "dense")
    return results


def _ratio(rows, key):
    """`compact/dense (speedup; min–max of the ratio over the timing rounds)`; over several
    seeds, the mean ratio and the min–max over every seed's rounds."""
    low = min(r[key + "_spread"][0] for r in rows)
    high = max(r[key + "_spread"][1] for r in rows)
    ratio = sum(r[key] for r in rows) / len(rows)
    return f"{ratio:.2f} ({1 / ratio:.2f}x; {low:.2f}–{high:.2f})"


def print_table(args, data, dense_accuracies, rows):
    seeds = sorted(dense_accuracies)
    print(f"\n{machine_header()}")
    print(f"MiniLM-L6-H384 (TF1 checkpoint), SST-2: train {len(data.train)} examples "
          f"(seq {args.train_seq_length}), dev {len(data.evals['dev'])} examples; latency over "
          f"the dev set at seq 128 ({os.cpu_count()} CPU cores, graph mode, TF {tf.__version__})."
          f" Dense fine-tuned dev accuracy {mean_std(dense_accuracies.values())}, "
          f"{rows[0]['dense_params']:,} parameters. Pruning: {args.prune_epochs} epochs, model "
          f"learning rate {args.learning_rate}, distillation weight {args.distillation_weight} "
          f"(T {args.distillation_temperature}), eval mask {args.eval_mask}. Seeds "
          f"{','.join(map(str, seeds))}" + (": mean ± standard deviation over seeds."
                                            if len(seeds) > 1 else ".") + "\n")
    print("| structure | target | seeds | reached ŝ | encoder dense sparsity | parameters | "
          "dev acc. gated | dev acc. compact+ft | Δ acc. (points) | latency ratio b8 | "
          "latency ratio b1 | latency ratio b8 bucketed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    settings = list(dict.fromkeys((r["structure"], r["target"]) for r in rows))
    for structure, target in settings:
        group = [r for r in rows if (r["structure"], r["target"]) == (structure, target)]
        params = sum(r["params"] for r in group) / len(group)
        print(f"| {structure} | {target} | {len(group)} | "
              f"{mean_std((r['expected_sparsity'] for r in group), 3)} | "
              f"{mean_std((r['dense_sparsity'] for r in group), 3)} | "
              f"{params:,.0f} ({params / group[0]['dense_params']:.2f}) | "
              f"{mean_std(r['gated_accuracy'] for r in group)} | "
              f"{mean_std(r['accuracy'] for r in group)} | "
              f"{mean_std((100 * (r['accuracy'] - dense_accuracies[r['seed']]) for r in group), 2)}"
              f" | {_ratio(group, 'batch8')} | {_ratio(group, 'batch1')} | "
              f"{_ratio(group, 'batch8b')} |",
              flush=True)


def plot_frontier(args, dense_accuracies, rows):
    """`--output_dir`/frontier.png: dev accuracy against the measured speedup at batch 8
    (seq 128), one series per structure, each point labelled with its target."""
    from apps.plots import metric_against_speedup

    dense = sum(dense_accuracies.values()) / len(dense_accuracies)
    points = [dict(speedup=1.0, metric=dense, method="dense", label="dense")] + [
        dict(speedup=1.0 / r["batch8"], metric=r["accuracy"], method=r["structure"],
             label=f"{r['target']:g}" + (f" s{r['seed']}" if len(dense_accuracies) > 1 else ""))
        for r in rows]
    path = metric_against_speedup(points, os.path.join(args.output_dir, "frontier.png"),
                                  "accuracy", "SST-2, MiniLM-L6: compact+ft vs dense")
    if path:
        print(f"plot: {path}")


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    vocab = os.path.join(checkpoint, "vocab.txt")
    glue_dir = os.path.join(args.data, "glue")
    data = training_data.load_task_data(glue_dir, "sst2", vocab, args.train_seq_length,
                                        args.max_train_examples, seed=args.data_seed)
    data_128 = training_data.load_task_data(glue_dir, "sst2", vocab, 128, 1, seed=args.data_seed)
    settings = [(structure, float(target)) for structure in args.structures.split(",")
                for target in args.targets.split(",")]
    dense_accuracies, rows = {}, []
    for seed in args.seeds:
        start = time.perf_counter()
        dense, _ = fine_tuned_dense(args.dense_model.format(seed=seed) if args.dense_model
                                    else None, data, checkpoint, seed, args.finetune_epochs)
        dense_accuracies[seed] = accuracy(dense, data)
        print(f"seed {seed}: dense fine-tuned, dev accuracy {dense_accuracies[seed]:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        for structure, target in settings:
            rows.append(prune_one(args, data, data_128, dense, structure, target, seed))
            compact = rows[-1].pop("model")
            print(rows[-1], flush=True)
            if args.output_dir:
                os.makedirs(args.output_dir, exist_ok=True)
                common.save_model(compact, os.path.join(
                    args.output_dir, f"compact_{structure}_{target}_seed{seed}.keras"))
                common.write_json(os.path.join(args.output_dir, "results.json"),
                                  {"dense_accuracy": dense_accuracies, "rows": rows})
                plot_frontier(args, dense_accuracies, rows)
            # The table so far: a run stopped early still leaves every finished row.
            print_table(args, data, dense_accuracies, rows)


def prune_one(args, data, data_128, dense, structure, target, seed):
    """Factorize, prune, compact and fine-tune one setting with `seed`; its row (with the
    compact model under "model")."""
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    distill = dict(teacher=dense, distillation_weight=args.distillation_weight,
                   distillation_temperature=args.distillation_temperature) \
        if args.distillation_weight > 0 else {}
    steps = -(-len(data.train) // 32) * args.prune_epochs
    pruning_model = keras_flop.factorize(
        dense, gate_config={"eval_mask": args.eval_mask}, target_sparsity=target,
        pruning_steps=steps, constraint=args.constraint, structure=structure,
        rank="break_even" if args.factorize_rank == "break_even" else None, **distill)
    if args.schedule == "noam":
        alpha = optimizers.gate_optimizer(args.alpha_learning_rate or 100.0,
                                          args.learning_rate_warmup)
        lam = optimizers.lambda_optimizer(args.lambda_learning_rate or 40.0,
                                          args.learning_rate_warmup)
    else:
        alpha = optimizers.sized_gate_optimizer(steps, args.alpha_learning_rate)
        lam = optimizers.sized_lambda_optimizer(steps, args.lambda_learning_rate)
    pruning_model.compile(
        optimizer=optimizers.model_optimizer(args.learning_rate, steps)
        if args.learning_rate > 0 else None,
        alpha_optimizer=alpha, lambda_optimizer=lam, jit_compile=False)
    history = pruning_model.fit(data.train_dataset(32, seed), epochs=args.prune_epochs,
                                verbose=2, shuffle=False)
    gated_accuracy = accuracy(pruning_model, data)
    compact = keras_flop.compact(pruning_model)
    report = keras_flop.parameter_report(pruning_model)
    fine_tuning.fine_tune(compact, data, 2e-5, args.final_epochs, 32, seed)
    compact_accuracy = accuracy(compact, data)
    timing = latencies(dense, compact, data_128)
    return {
        "structure": structure,
        "target": target,
        "seed": seed,
        "expected_sparsity": history.history["expected_sparsity"][-1],
        "dense_sparsity": report["dense_sparsity"],
        "params": compact.count_params(),
        "dense_params": dense.count_params(),
        "gated_accuracy": gated_accuracy,
        "accuracy": compact_accuracy,
        **{f"batch{b}": timing["ratio", b][0] for b in (8, 1, "8b")},
        **{f"batch{b}_spread": timing["ratio", b][1:] for b in (8, 1, "8b")},
        "dense8": timing["dense", 8], "compact8": timing["compact", 8],
        "seconds": time.perf_counter() - start,
        "model": compact,
    }


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
