"""The frontier's baseline rows: the models a user would pick instead of a pruned one, each
one app command, read back and timed against the teacher as the pruned rows are.

- `minilm-l3`: the smaller pre-trained encoder (`--small_checkpoint`, a folder of `--data`)
  fine-tuned by `apps.glue_finetune` with the teacher's own recipe (`--learning_rates`,
  `--teacher_flags`);
- `minilm-l3+distill`: the same encoder fine-tuned from the teacher by `apps.prune --method
  student` (the final step of every row, with `--prune_flags`: the same distillation);
- `dropped+distill:S`: the teacher's bottom round(L / S) of its L encoder layers (`apps.prune
  --method drop_layers`, Sajjad et al.), fine-tuned the same way.
"""

import os
import shlex
import sys

import seed_rows
from support import best_fine_tuned, finetune_command, measured_speedups

# The baseline kinds, and whether a row needs a target speedup.
BASELINES = {"minilm-l3": False, "minilm-l3+distill": False, "dropped+distill": True}
# The 3-layer encoder of the shared data folder (see its README).
SMALL_CHECKPOINT = "minilm-l3-h384-uncased-tf1"


def is_baseline(kind):
    return kind in BASELINES


def kept_layers(num_layers, target):
    """How many of `num_layers` encoder layers a `dropped` row keeps for `target` speedup:
    the encoder's layers take nearly all of the time, so round(num_layers / target)."""
    return max(1, min(num_layers, int(round(num_layers / target))))


def load_models(paths):
    """The `.keras` models at `paths`, uncompiled."""
    import keras

    import keras_flop  # noqa: F401 -- registers the saved models' classes

    return [keras.saving.load_model(path, compile=False) for path in paths]


def teacher_layers(teacher):
    """The teacher's encoder layer count, from its `.keras` file."""
    return load_models([teacher])[0].bert_config.num_hidden_layers


def command(args, teacher, kind, target, directory):
    """The row's one app command."""
    small = os.path.join(args.data, getattr(args, "small_checkpoint", SMALL_CHECKPOINT))
    if kind == "minilm-l3":  # the teacher's recipe, from the smaller encoder
        return finetune_command(args.data, args.task, directory, args.seed,
                                args.learning_rates, shlex.split(args.teacher_flags),
                                checkpoint=small)
    flags = (["--method", "student", "--student_checkpoint", small] if kind ==
             "minilm-l3+distill" else
             ["--method", "drop_layers", "--keep_layers",
              str(kept_layers(teacher_layers(teacher), target))])
    return [sys.executable, "-m", "apps.prune", "--task", args.task, "--data_dir",
            os.path.join(args.data, "glue"), "--dense_model", teacher, "--output_dir",
            directory, *flags, "--eval_batch_size", "8", "--max_seq_length", "128",
            "--seed", str(args.seed),
            "--teacher_outputs", os.path.join(args.output_dir, args.task, "teacher_outputs.npz"),
            *without_pruning_flags(shlex.split(args.prune_flags))]


# apps.prune flags that only the pruning steps read: a baseline run is given the others.
PRUNING_ONLY = {"--pruning_steps", "--num_train_epochs", "--init_mask", "--structure",
                "--learning_rate", "--alpha_learning_rate", "--lambda_learning_rate",
                "--distillation_weight", "--hidden_distillation_weight",
                "--num_fisher_samples", "--target_sparsity_warmup", "--constraint",
                "--eval_mask", "--compact_threshold", "--schedule", "--latency_table"}


def without_pruning_flags(flags):
    """`flags` without the pruning steps' flags and their values (`--flag value` or
    `--flag=value`)."""
    kept, skip = [], False
    for flag in flags:
        if skip:
            skip = False
        elif flag.split("=")[0] in PRUNING_ONLY:
            skip = "=" not in flag
        else:
            kept.append(flag)
    return kept


def model_paths(directory, kind, teacher, task):
    """`(dense, compact)` `.keras` paths of a finished row: its run's own dense model and
    final one, or for `minilm-l3` the teacher and the run apps.glue_finetune picked."""
    if kind == "minilm-l3":
        return teacher, best_fine_tuned(directory, task, kind)
    return (os.path.join(directory, "finetune", "model.keras"),
            os.path.join(directory, "finetune_compact", "model.keras"))


def fine_tuned_figures(args, kind, target, directory, teacher, data):
    """A `minilm-l3` row: its dev metric beside the teacher's (each from its run's
    eval_results.json), and both speedups timed here, teacher and model in turn."""
    from apps import common

    dense_path, path = model_paths(directory, kind, teacher, args.task)
    metric = f"eval_{data.task.main_metric}"
    teacher_results = os.path.join(os.path.dirname(os.path.abspath(teacher)),
                                   "eval_results.json")
    if not os.path.exists(teacher_results):
        raise SystemExit(f"{kind}: no {teacher_results}: pass a teacher fine-tuned by "
                         "apps.glue_finetune (its dev results beside it) or leave --teacher "
                         "out.")
    dense = common.read_json(teacher_results)[metric]
    compact = common.read_json(os.path.join(os.path.dirname(path), "eval_results.json"))[metric]
    models = load_models((dense_path, path))
    timed = measured_speedups(*models, data, args.timed_examples, (8, 1))
    real = measured_speedups(*models, data, args.timed_examples, (8,), padding="bucketed")
    return frontier_row(args.task, kind, target, "model", timed[8], timed[1],
                        data.task.main_metric, dense, compact, None,
                        models[1].count_params(), models[0].count_params(),
                        speedup_b8_real=real[8][0],
                        total_minutes=seed_rows.total_minutes(directory, {}))


def frontier_row(task, kind, target, structure, batch8, batch1, metric, dense, compact,
                 minutes, parameters, dense_parameters, speedup_b8_real=None,
                 total_minutes=None):
    """One row of the frontier's table and CSV, pruned or baseline: `batch8` and `batch1`
    are `(speedup, low, high)`, `dense` and `compact` the dev `metric`; `speedup_b8_real`
    batch 8's speedup on length-bucketed dev batches, `total_minutes` what the row's command
    cost (`seed_rows.total_minutes`)."""
    return {"task": task, "method": kind, "structure": structure, "target": target,
            "speedup_b8": batch8[0], "speedup_b8_range": list(batch8[1:]),
            "speedup_b8_real": speedup_b8_real, "total_minutes": total_minutes,
            "speedup_b1": batch1[0], "speedup_b1_range": list(batch1[1:]),
            "metric": metric, "dense_metric": dense, "compact_metric": compact,
            "delta_points": 100.0 * (compact - dense), "prune_minutes": minutes,
            "parameters": parameters, "dense_parameters": dense_parameters}


def markers():
    """The plot's marker of each baseline: points, not a line through targets."""
    return {"minilm-l3": "s", "minilm-l3+distill": "D", "dropped+distill": "^"}
