"""Does a default run reach its target? Expected and realized sparsity for every task,
structure and target.

    python benchmarks/reach_target.py --data /path/to/shared/data \\
        [--tasks sst2,rte,mrpc,cola,stsb] [--targets 0.3,0.5,0.7] [--max_train_examples 1067]

For each task the real MiniLM encoder is fine-tuned once (2 epochs, lr 5e-5, on up to
`--max_train_examples` training examples, and saved as `--dense_dir/<task>_seed<seed>.keras`
for the next run; or `--dense_model` is loaded), then pruned with the defaults of
`python -m apps.prune` for each structure and target: model frozen, 3 epochs (3 · ⌈n / 32⌉
steps: 102 with the default 1,067 examples, the shortest run the schedules are sized for),
the `|ŝ - t|` constraint, gate and λ schedules sized to the run, target warmup a third of it,
rank gates starting at the break-even rank, `topk` inference mask calibrated as the app
does. Printed per cell: pruning steps, the first step from which `ŝ` stays within 0.01 of the
target to the end (`reached`; the target warmup ends at a third of the steps), the final
expected sparsity, the compact model's realized sparsity (and, where the inference mask had to
be calibrated, what it was before), the dev score of the pruned model (no fine-tuning after
pruning) and the wall time of pruning. The promise: realized within 0.02 of the target.
`--init_masks none,fisher` runs each cell twice at the same step budget: gates all open, and
gates started from the Fisher mask at the target.
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
import numpy as np  # noqa: E402

import keras_flop  # noqa: E402
from keras_flop.training import evaluation  # noqa: E402
from keras_flop.training import data as training_data  # noqa: E402
from support import add_data_argument, fine_tuned_dense, machine_header  # noqa: E402

STRUCTURES = ("heads+ffn+layers", "heads+ffn", "rank", "all")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--tasks", default="sst2,rte,mrpc,cola,stsb")
    parser.add_argument("--structures", default=",".join(STRUCTURES))
    parser.add_argument("--targets", default="0.3,0.5,0.7")
    parser.add_argument("--init_masks", default="none",
                        help="Comma-separated starting gates, run side by side: none (all "
                             "open, the app's default) and/or fisher (the Fisher mask at the "
                             "target, as `apps.prune --init_mask fisher`; not for rank).")
    parser.add_argument("--max_train_examples", type=int, default=1067)
    parser.add_argument("--epochs", type=int, default=3, help="Pruning epochs (app default 3).")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense_model", default=None,
                        help="A fine-tuned dense .keras model to prune instead of fine-tuning "
                             "one (with a single --tasks).")
    parser.add_argument("--dense_dir", default=None,
                        help="Reuse <dir>/<task>_seed<seed>.keras as the fine-tuned model, "
                             "or save it there (the naming of benchmarks/post_training.py).")
    parser.add_argument("--output_dir", default=None,
                        help="Writes results.json there after every cell; the cells already "
                             "in it are kept and not run again.")
    return parser.parse_args()


class SparsityTrace(keras.callbacks.Callback):
    """`ŝ` and `t` after every training step."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        self.rows.append((float(logs["expected_sparsity"]), float(logs["target_sparsity"])))


def reached_step(rows, target, tolerance=0.01):
    """The first step from which `ŝ` stays within `tolerance` of `target`, or None."""
    within = np.abs(np.array([s for s, _ in rows]) - target) <= tolerance
    if not within[-1]:
        return None
    outside = np.flatnonzero(~within)
    return int(outside[-1] + 1) if len(outside) else 0


def prune_once(dense, data, structure, target, steps, seed, init_mask="none"):
    keras.utils.set_random_seed(seed)
    rank = "break_even" if structure in ("rank", "all") else None
    pruning_model = keras_flop.factorize(dense, structure=structure, rank=rank,
                                         gate_config={"eval_mask": "topk"},
                                         target_sparsity=target, pruning_steps=steps)
    fisher_seconds = None
    if init_mask == "fisher":
        from keras_flop.fisher.post_training import init_gates_from_masks, post_training_masks

        began = time.perf_counter()
        masks = post_training_masks(dense, data.train_dataset(32, seed), target=1.0 - target,
                                    tune=False)
        init_gates_from_masks(pruning_model, masks)
        fisher_seconds = time.perf_counter() - began
    pruning_model.compile(optimizer=None, loss=training_data.task_loss(data.task))
    trace = SparsityTrace()
    start = time.perf_counter()
    pruning_model.fit(data.training_stream(32, seed, steps, 0), epochs=1, steps_per_epoch=steps,
                      callbacks=[trace], verbose=0)
    seconds = time.perf_counter() - start
    expected = float(pruning_model.expected_sparsity())
    shift, before = (0.0, 0.0), None
    if abs(expected - target) <= 0.02:  # as apps.prune: the mask keeps a target training reached
        before = keras_flop.realized_sparsity(pruning_model)
        shift = keras_flop.calibrate_mask(pruning_model, target)
    return {"steps": steps, "reached_step": reached_step(trace.rows, target),
            "target_warmup": pruning_model.target_sparsity_warmup, "expected": expected,
            "realized": keras_flop.realized_sparsity(pruning_model), "mask_shift": shift,
            "realized_uncalibrated": before if any(shift) else None,
            "seconds": seconds, "init_mask": init_mask, "fisher_seconds": fisher_seconds,
            # The gated model with its inference mask computes the compact model's outputs.
            "score": evaluation.evaluate(pruning_model, data, 32)[
                next(iter(data.evals))]["eval_score"]}


def main():
    args = parse_args()
    checkpoint = os.path.join(args.data, "minilm-l6-h384-uncased-tf1")
    vocab = os.path.join(checkpoint, "vocab.txt")
    targets = [float(t) for t in args.targets.split(",")]
    if args.dense_model and "," in args.tasks:
        raise SystemExit("--dense_model is the model of one task: pass a single --tasks.")
    results = os.path.join(args.output_dir, "results.json") if args.output_dir else None
    rows = []
    if results and os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            rows = json.load(f)
        print(f"{len(rows)} cells read from {results}; they are not run again.")
    for task in args.tasks.split(","):
        cells = [(structure, target, init) for structure in args.structures.split(",")
                 for target in targets for init in args.init_masks.split(",")
                 if not any(r["task"] == task and r["structure"] == structure and
                            r["target"] == target and r.get("init_mask", "none") == init
                            for r in rows)]
        if not cells:
            continue
        data = training_data.load_task_data(os.path.join(args.data, "glue"), task, vocab,
                                            args.max_seq_length, args.max_train_examples,
                                            seed=args.seed)
        if args.dense_model:
            dense = keras.saving.load_model(args.dense_model, compile=False)
        else:
            path = (os.path.join(args.dense_dir, f"{task}_seed{args.seed}.keras")
                    if args.dense_dir else None)
            dense, how = fine_tuned_dense(path, data, checkpoint, args.seed)
            print(f"{task}: dense {how}", flush=True)
        dense_score = evaluation.evaluate(dense, data, 32)[next(iter(data.evals))]["eval_score"]
        steps = args.epochs * -(-len(data.train) // 32)
        for structure, target, init in cells:
            row = {"task": task, "structure": structure, "target": target,
                   "dense_score": dense_score,
                   **prune_once(dense, data, structure, target, steps, args.seed, init)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if results:
                os.makedirs(args.output_dir, exist_ok=True)
                with open(results, "w", encoding="utf-8") as f:
                    json.dump(rows, f, indent=2)
    print(f"\nMiniLM-L6-H384, model frozen, {args.epochs} pruning epochs of batch 32 on up to "
          f"{args.max_train_examples} training examples per task, app defaults otherwise.")
    print(machine_header())
    print("reached: first step from which ŝ stays within 0.01 of the target (the target "
          "warmup ends at the step in brackets); realized: encoder dense sparsity of the "
          "compact model.\n")
    print("| task | structure | start | target | steps | reached (warmup) | expected | "
          "realized | realized − target | uncalibrated | dev (dense) | prune s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        reached = "never" if r["reached_step"] is None else r["reached_step"]
        uncalibrated = ("–" if r["realized_uncalibrated"] is None else
                        f"{r['realized_uncalibrated']:.3f}")
        score = "–" if r.get("score") is None else \
            f"{r['score']:.4f} ({r['dense_score']:.4f})"
        seconds = f"{r['seconds']:.0f}"
        if r.get("fisher_seconds") is not None:
            seconds += f" + {r['fisher_seconds']:.0f} Fisher"
        print(f"| {r['task']} | {r['structure']} | {r.get('init_mask', 'none')} | "
              f"{r['target']} | {r['steps']} | {reached} ({r['target_warmup']}) | "
              f"{r['expected']:.3f} | {r['realized']:.3f} | "
              f"{r['realized'] - r['target']:+.3f} | {uncalibrated} | {score} | {seconds} |")
    misses = [r for r in rows if abs(r["realized"] - r["target"]) > 0.02]
    print(f"\n{len(rows) - len(misses)} of {len(rows)} cells realized within 0.02 of the target.")
    if results:
        print(f"Results: {results}")


if __name__ == "__main__":
    main()
