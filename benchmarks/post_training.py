"""Retraining-free pruning of the real MiniLM encoder at several parameter targets.

    python benchmarks/post_training.py --data /path/to/shared/data [--tasks sst2,mrpc]
        [--targets 0.7,0.5,0.4] [--dense_dir /tmp/dense] [--seeds 0,1,2]

Per task: fine-tunes the dense model once (`keras_flop.training.fine_tuning.fine_tune`, AdamW 5e-5 with warmup
and linear decay, batch 32, length-bucketed batches of up to 128 tokens, `--max_train_examples`
of the train split, `--finetune_epochs`), or reuses `--dense_dir/<task>_seed<seed>.keras`.
Then for each target (fraction of the encoder's head and FFN kernel parameters kept):
`keras_flop.prune_post_training` on `--num_samples` training examples, no retraining; prints
the dev score, parameters, the pruning wall time and the CPU latency of compact vs dense at
batch 8 and batch 1, padded to 128 tokens, run in turn (`support.measured_speedups`: the
median round's ratio).
With several `--seeds` (fine-tuning and the pruning sample's order; the training subset stays
`--data_seed`'s), each figure is the mean ± standard deviation over seeds.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras_flop  # noqa: E402
from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from support import (add_data_argument, add_seeds_argument, fine_tuned_dense,  # noqa: E402
                     machine_header, mean_std, measured_speedups)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--targets", default="0.7,0.5,0.4",
                        help="fractions of the encoder's head and FFN parameters kept "
                             "(1 - target_sparsity)")
    parser.add_argument("--num_samples", type=int, default=2048)
    parser.add_argument("--max_train_examples", type=int, default=4000)
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--latency_examples", type=int, default=400,
                        help="Dev examples timed at batch 8 (half of them at batch 1).")
    parser.add_argument("--dense_dir", default=None,
                        help="Reuse <dir>/<task>_seed<seed>.keras as the fine-tuned model, "
                             "or save it.")
    add_seeds_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    vocab = os.path.join(checkpoint, "vocab.txt")
    rows = []
    for task in args.tasks.split(","):
        data = training_data.load_task_data(os.path.join(args.data, "glue"), task, vocab, 128,
                                            args.max_train_examples, seed=args.data_seed)
        for seed in args.seeds:
            dense, dense_score, split = evaluated_dense(args, data, checkpoint, seed)
            sample = data.train_dataset(32, seed)
            for target in (float(t) for t in args.targets.split(",")):
                start, cpu = time.perf_counter(), time.process_time()
                compact, masks = keras_flop.prune_post_training(
                    dense, sample, target_sparsity=1.0 - target,
                    num_samples=args.num_samples, verbose=0, return_masks=True)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                score = evaluation.evaluate(compact, data, 32)[split]["eval_score"]
                speedups = measured_speedups(dense, compact, data, args.latency_examples)
                rows.append(dict(task=task, seed=seed, metric=data.task.main_metric,
                                 target=target, dense=dense_score, score=score, seconds=seconds,
                                 cpu=cpu, phases=masks.seconds,
                                 kept=masks.kept_params / masks.total_params,
                                 params=compact.count_params(),
                                 dense_params=dense.count_params(), heads=masks.kept_heads,
                                 units=masks.kept_units, b8=speedups[8][0],
                                 b1=speedups[1][0]))
                print(rows[-1], flush=True)
                print_table(args, rows)


def evaluated_dense(args, data, checkpoint, seed):
    """(model, dev score, eval split name) of the dense model fine-tuned with `seed`: loaded
    from `--dense_dir` if there, else fine-tuned (and saved there)."""
    task = data.task.name
    path = os.path.join(args.dense_dir, f"{task}_seed{seed}.keras") if args.dense_dir else None
    dense, how = fine_tuned_dense(path, data, checkpoint, seed, args.finetune_epochs)
    scores = evaluation.evaluate(dense, data, 32)
    split = next(iter(scores))
    print(f"{task} seed {seed}: dense {how}, dev {data.task.main_metric} "
          f"{scores[split]['eval_score']:.4f}", flush=True)
    return dense, scores[split]["eval_score"], split


def print_table(args, rows):
    print(f"\n{machine_header()}")
    print(f"MiniLM-L6-H384, fine-tuned on {args.max_train_examples} training examples "
          f"({args.finetune_epochs} epochs); pruning on {args.num_samples} of them, no "
          f"retraining; latency over {args.latency_examples} dev examples at batch 8 and "
          f"{args.latency_examples // 2} at batch 1, padded to 128 (graph mode). Seeds "
          f"{','.join(map(str, args.seeds))}" + (": mean ± standard deviation over seeds."
                                                 if len(args.seeds) > 1 else ".") + "\n")
    print("| task | target kept | seeds | encoder kept | parameters | dev dense | dev pruned | "
          "Δ (points) | speedup b8 | speedup b1 | pruning wall s (CPU s) | kept heads per layer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task, target in dict.fromkeys((r["task"], r["target"]) for r in rows):
        group = [r for r in rows if (r["task"], r["target"]) == (task, target)]
        params = sum(r["params"] for r in group) / len(group)
        heads = "; ".join(str(r["heads"]) for r in group)
        print(f"| {task} ({group[0]['metric']}) | {target} | {len(group)} | "
              f"{mean_std((r['kept'] for r in group), 3)} | "
              f"{params:,.0f} ({params / group[0]['dense_params']:.2f}) | "
              f"{mean_std(r['dense'] for r in group)} | {mean_std(r['score'] for r in group)} | "
              f"{mean_std((100 * (r['score'] - r['dense']) for r in group), 2)} | "
              f"{mean_std((r['b8'] for r in group), 2)}x | "
              f"{mean_std((r['b1'] for r in group), 2)}x | "
              f"{mean_std((r['seconds'] for r in group), 0)} "
              f"({mean_std((r['cpu'] for r in group), 0)}) | {heads} |",
              flush=True)


if __name__ == "__main__":
    main()
