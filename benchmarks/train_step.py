"""Time per training step: dense fine-tuning vs the pruning model, graph vs XLA.

    python benchmarks/train_step.py [--layers 6 --hidden 384 --batch_size 32 --seq_length 128]

Builds a BERT of MiniLM size (random weights: timing does not depend on them), runs each
configuration for `--warmup` untimed and `--steps` timed training steps on the same batch in
one process, and prints the median step time and the ratios.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_flop  # noqa: E402
from support import machine_header  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--intermediate", type=int, default=1536)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--cases", default="dense,pruning,frozen",
                        help="Comma-separated: dense, pruning, frozen.")
    parser.add_argument("--modes", default="graph,xla", help="Comma-separated: graph, xla.")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="Time steps in wall seconds or in this process' CPU seconds.")
    parser.add_argument("--op_determinism", action="store_true",
                        help="tf.config.experimental.enable_op_determinism() first.")
    return parser.parse_args()


def make_batch(args):
    rng = np.random.default_rng(0)
    shape = (args.batch_size, args.seq_length)
    x = {"token_ids": rng.integers(1, 30522, shape).astype("int32"),
         "segment_ids": np.zeros(shape, "int32"), "padding_mask": np.ones(shape, bool)}
    y = rng.integers(0, 2, args.batch_size).astype("int32")
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def dense_model(config, jit_compile):
    model = keras_flop.build_bert_classifier(config)
    model.compile(keras_flop.optimizers.model_optimizer(2e-5, 1000),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return model


def pruning_model(config, jit_compile, frozen=False):
    model = keras_flop.factorize(keras_flop.build_bert_classifier(config), target_sparsity=0.5)
    model.compile(optimizer=None if frozen else keras_flop.optimizers.model_optimizer(2e-5, 1000),
                  jit_compile=jit_compile)
    return model


class StepTimer(keras.callbacks.Callback):
    """Seconds per step: wall time, or this process' CPU time (all its threads), which other
    load on a shared machine does not inflate."""

    def __init__(self, clock=time.perf_counter):
        super().__init__()
        self.clock = clock
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = self.clock()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(self.clock() - self.start)


def time_steps(model, dataset, args):
    model.fit(dataset, steps_per_epoch=args.warmup, epochs=1, verbose=0)
    timer = StepTimer(time.process_time if args.clock == "cpu" else time.perf_counter)
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[timer])
    return statistics.median(timer.times)


def main():
    args = parse_args()
    if args.op_determinism:
        tf.config.experimental.enable_op_determinism()
    config = keras_flop.BertConfig(vocab_size=30522, hidden_size=args.hidden,
                                   num_hidden_layers=args.layers, num_attention_heads=args.heads,
                                   intermediate_size=args.intermediate)
    dataset = make_batch(args)
    cases = {"dense": ("dense fine-tune", dense_model, {}),
             "pruning": ("pruning (model + gates + λ)", pruning_model, {}),
             "frozen": ("pruning, model frozen (lr 0)", pruning_model, {"frozen": True})}
    cases = [cases[key] for key in args.cases.split(",")]
    modes = [mode == "xla" for mode in args.modes.split(",")]
    results = {}
    for name, build, kwargs in cases:
        for jit_compile in modes:
            keras.utils.set_random_seed(0)
            model = build(config, jit_compile, **kwargs)
            results[name, jit_compile] = time_steps(model, dataset, args)
            print(f"  measured {name:30s} {'XLA' if jit_compile else 'graph':5s} "
                  f"{results[name, jit_compile] * 1000:8.1f} ms/step", flush=True)
    print("RESULT " + json.dumps({f"{name} | {'xla' if xla else 'graph'}": seconds
                                  for (name, xla), seconds in results.items()}), flush=True)
    if len(modes) < 2:
        return
    print(f"\nL={args.layers} H={args.hidden} FF={args.intermediate}, batch {args.batch_size}, "
          f"seq {args.seq_length}, median of {args.steps} steps")
    print(machine_header() + "\n")
    print("| configuration | graph ms/step | XLA ms/step | XLA / graph | vs dense (XLA) "
          "| vs dense (graph) |")
    print("|---|---|---|---|---|---|")
    dense_xla, dense_graph = results[cases[0][0], True], results[cases[0][0], False]
    for name, _, _ in cases:
        graph, xla = results[name, False], results[name, True]
        print(f"| {name} | {graph * 1000:.0f} | {xla * 1000:.0f} | {xla / graph:.2f} | "
              f"{xla / dense_xla:.2f} | {graph / dense_graph:.2f} |")


if __name__ == "__main__":
    main()
