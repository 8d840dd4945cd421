"""Fixed padding vs length-bucketed batches: epoch time, throughput and dev metric.

    python benchmarks/input_lengths.py --data /path/to/shared/data [--tasks sst2,mrpc,rte]

For each task, on the real MiniLM encoder at `--max_seq_length 128`, in this process and in
turn for the two ways of batching (`--pad_to_max_length` and the default buckets):
- one epoch of dense fine-tuning (from the pre-trained checkpoint, lr 5e-5, batch 32) on
  `--max_train_examples` training examples, then the dev metric;
- one epoch of structured pruning (`heads+ffn`, target 0.5, model lr 3e-5) with logit
  distillation from that fine-tuned model (its outputs computed once, timed with the epoch),
  then the gated model's dev metric.
It prints the epoch time of both in wall and CPU seconds, their ratio (in CPU seconds, which
other load on a shared machine does not inflate), the dev metrics, and the mean padded length
per example. The order of the two ways alternates between
tasks so that slow drift of a shared machine does not favour one.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_flop  # noqa: E402
from apps import common  # noqa: E402
from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import fine_tuning  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from keras_flop.training import optimizers  # noqa: E402
from support import add_data_argument, machine_header  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--tasks", default="sst2,mrpc,rte")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=2000)
    parser.add_argument("--max_eval_examples", type=int, default=None,
                        help="Evaluate on a random subset of the dev set (quick runs).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default=None, help="Writes results.json there.")
    return parser.parse_args()


def padded_tokens_per_example(data):
    """Mean tokens per training example a batch of 32 computes on, padding included."""
    tokenized = data.tokenized("train")
    plan = keras_flop.glue.batching.epoch_plan(tokenized.lengths, 32, 0, 0,
                                               by_length=not tokenized.pad_to_max_length)
    return sum(len(b) * w for b, w in zip(plan, map(tokenized.padded_width, plan))) / len(tokenized)


def one_way(args, task, checkpoint, padding):
    vocab = os.path.join(checkpoint, "vocab.txt")
    data = training_data.load_task_data(os.path.join(args.data, "glue"), task, vocab,
                                        args.max_seq_length, args.max_train_examples,
                                        args.max_eval_examples, seed=args.seed,
                                        pad_to_max_length=padding)
    row = {"task": task, "batching": "fixed" if padding else "buckets",
           "examples": len(data.train), "padded_length": padded_tokens_per_example(data)}
    keras.utils.set_random_seed(args.seed)
    dense = keras_flop.load_tf1_checkpoint(checkpoint, num_labels=data.task.num_labels)
    cpu = time.process_time()
    _, seconds = fine_tuning.fine_tune(dense, data, 5e-5, 1, 32, args.seed)
    row["finetune_cpu_s"] = time.process_time() - cpu
    row["finetune_s"] = seconds
    row["finetune_score"] = evaluation.evaluate(dense, data, 32)[
        next(iter(data.evals))]["eval_score"]
    keras.utils.set_random_seed(args.seed)
    steps = -(-len(data.train) // 32)
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn", target_sparsity=0.5,
                                         target_sparsity_warmup=steps // 2, teacher=dense,
                                         distillation_weight=1.0, distillation_temperature=2.0)
    pruning_model.compile(optimizer=optimizers.model_optimizer(3e-5, steps),
                          loss=training_data.task_loss(data.task), jit_compile=False)
    start, cpu = time.perf_counter(), time.process_time()
    # Logit distillation only: the teacher's outputs are computed once, not every step.
    teacher_logits = data.tokenized("train").predict(dense, 32)
    pruning_model.fit(data.training_stream(32, args.seed, steps, teacher_logits=teacher_logits),
                      epochs=1, shuffle=False, verbose=fine_tuning.fit_verbosity())
    row["prune_s"] = time.perf_counter() - start
    row["prune_cpu_s"] = time.process_time() - cpu
    row["prune_score"] = evaluation.evaluate(pruning_model, data, 32)[
        next(iter(data.evals))]["eval_score"]
    print(row, flush=True)
    return row


def print_table(args, rows):
    print(f"\nMiniLM-L6-H384, max_seq_length {args.max_seq_length}, batch 32, one epoch of "
          f"up to {args.max_train_examples} training examples per task, graph mode.")
    print(machine_header())
    print("Epoch time: wall seconds and CPU seconds of this process (all its threads; what "
          "other load on a shared machine does not inflate), tracing included; pruning "
          "includes computing the teacher's outputs once. Speedup: fixed / buckets, in CPU "
          "seconds.\n")
    print("| task | batching | tokens/example (padded) | fine-tune epoch s (CPU s) | speedup | "
          "dev score | prune+distill epoch s (CPU s) | speedup | dev score |")
    print("|---|---|---|---|---|---|---|---|---|")
    fixed = {r["task"]: r for r in rows if r["batching"] == "fixed"}
    for r in rows:
        base = fixed.get(r["task"], r)
        print(f"| {r['task']} | {r['batching']} | {r['padded_length']:.1f} | "
              f"{r['finetune_s']:.0f} ({r['finetune_cpu_s']:.0f}) | "
              f"{base['finetune_cpu_s'] / r['finetune_cpu_s']:.2f}x | {r['finetune_score']:.4f} | "
              f"{r['prune_s']:.0f} ({r['prune_cpu_s']:.0f}) | "
              f"{base['prune_cpu_s'] / r['prune_cpu_s']:.2f}x | {r['prune_score']:.4f} |",
              flush=True)


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    rows = []
    for index, task in enumerate(args.tasks.split(",")):
        ways = (True, False) if index % 2 == 0 else (False, True)
        for padding in ways:
            rows.append(one_way(args, task, checkpoint, padding))
        rows.sort(key=lambda r: (args.tasks.split(",").index(r["task"]), r["batching"] != "fixed"))
        print_table(args, rows)
        if args.output_dir:
            os.makedirs(args.output_dir, exist_ok=True)
            common.write_json(os.path.join(args.output_dir, "results.json"), {"rows": rows})


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
