"""Retraining-free pruning of the real MiniLM encoder at several parameter targets.

    python benchmarks/post_training.py --data /path/to/shared/data [--tasks sst2,mrpc]
        [--targets 0.7,0.5,0.4] [--dense_dir /tmp/dense]

Per task: fine-tunes the dense model once (`apps.glue_common.fine_tune`, AdamW 5e-5 with warmup
and linear decay, batch 32, length-bucketed batches of up to 128 tokens, `--max_train_examples`
of the train split, `--finetune_epochs`), or reuses `--dense_dir/<task>.keras`. Then for each
target (fraction of the encoder's head and FFN kernel parameters kept):
`keras_flop.prune_post_training` on `--num_samples` training examples, no retraining; prints
the dev score, parameters, the pruning wall time and the CPU latency of compact vs dense at
batch 8 and batch 1, padded to 128 tokens, run in turn (`apps.measure.compare_latency`).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_flop  # noqa: E402
from apps import common, glue_common  # noqa: E402
from apps.measure import compare_latency  # noqa: E402
from keras_flop import glue  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("KERAS_FLOP_DATA", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
    parser.add_argument("--data", default=default)
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--targets", default="0.7,0.5,0.4")
    parser.add_argument("--num_samples", type=int, default=2048)
    parser.add_argument("--max_train_examples", type=int, default=4000)
    parser.add_argument("--finetune_epochs", type=int, default=2)
    parser.add_argument("--latency_examples", type=int, default=400,
                        help="Dev examples timed at batch 8 (half of them at batch 1).")
    parser.add_argument("--dense_dir", default=None,
                        help="Reuse <dir>/<task>.keras as the fine-tuned model, or save it.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def latency_ratios(dense, compact, data, count):
    """Compact / dense seconds over `count` dev examples at batch 8 and `count // 2` at batch
    1, every batch padded to 128 tokens."""
    tokenized = glue.tokenize_examples(data.evals[next(iter(data.evals))][:count], data.task,
                                       data.preprocessor, pad_to_max_length=True)
    ratios = {}
    for batch, limit in ((8, count), (1, count // 2)):
        batches = [x for x, _ in glue.make_dataset(tokenized, data.task, None, batch)]
        timing = compare_latency({"dense": dense, "compact": compact},
                                 batches[:-(-limit // batch)])
        ratios[batch] = timing["compact"] / timing["dense"]
    return ratios


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    vocab = os.path.join(checkpoint, "vocab.txt")
    rows = []
    for task in args.tasks.split(","):
        keras.utils.set_random_seed(args.seed)
        data = glue_common.load_task_data(os.path.join(args.data, "glue"), task, vocab, 128,
                                          args.max_train_examples, seed=args.seed)
        path = os.path.join(args.dense_dir, f"{task}.keras") if args.dense_dir else None
        if path and os.path.exists(path):
            dense = keras.saving.load_model(path)
            how = f"loaded {path}"
        else:
            dense = keras_flop.load_tf1_checkpoint(checkpoint, num_labels=data.task.num_labels)
            _, seconds = glue_common.fine_tune(dense, data, 5e-5, args.finetune_epochs, 32,
                                               args.seed)
            how = f"fine-tuned in {seconds:.0f} s"
            if path:
                os.makedirs(args.dense_dir, exist_ok=True)
                common.save_model(dense, path)
        dense_score = glue_common.evaluate(dense, data, 32)
        split = next(iter(dense_score))
        dense_score = dense_score[split]["eval_score"]
        print(f"{task}: dense {how}, dev {data.task.main_metric} {dense_score:.4f}",
              flush=True)
        sample = data.train_dataset(32, args.seed)
        for target in (float(t) for t in args.targets.split(",")):
            start, cpu = time.perf_counter(), time.process_time()
            compact, masks = keras_flop.prune_post_training(
                dense, sample, target=target, num_samples=args.num_samples, verbose=0,
                return_masks=True)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            score = glue_common.evaluate(compact, data, 32)[split]["eval_score"]
            ratios = latency_ratios(dense, compact, data, args.latency_examples)
            rows.append(dict(task=task, metric=data.task.main_metric, target=target,
                             dense=dense_score, score=score, seconds=seconds, cpu=cpu,
                             phases=masks.seconds, kept=masks.kept_params / masks.total_params,
                             params=compact.count_params(), dense_params=dense.count_params(),
                             heads=masks.kept_heads, units=masks.kept_units,
                             b8=ratios[8], b1=ratios[1]))
            print(rows[-1], flush=True)
            print_table(args, rows)


def print_table(args, rows):
    print(f"\nMiniLM-L6-H384, fine-tuned on {args.max_train_examples} training examples "
          f"({args.finetune_epochs} epochs); pruning on {args.num_samples} of them, no "
          f"retraining; latency over {args.latency_examples} dev examples at batch 8 and "
          f"{args.latency_examples // 2} at batch 1, padded to 128 ({os.cpu_count()} CPU "
          f"cores, graph mode, TF {tf.__version__}).\n")
    print("| task | target kept | encoder kept | parameters | dev dense | dev pruned | Δ (points) "
          "| speedup b8 | speedup b1 | pruning wall s (CPU s) | kept heads per layer |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} ({r['metric']}) | {r['target']} | {r['kept']:.3f} | "
              f"{r['params']:,} ({r['params'] / r['dense_params']:.2f}) | {r['dense']:.4f} | "
              f"{r['score']:.4f} | {100 * (r['score'] - r['dense']):+.2f} | "
              f"{1 / r['b8']:.2f}x | {1 / r['b1']:.2f}x | {r['seconds']:.0f} ({r['cpu']:.0f}) | "
              f"{r['heads']} |",
              flush=True)


if __name__ == "__main__":
    main()
