"""The settings of a pruning run: the defaults that depend on the task and the method, their
checks (one-line errors), and which step first reads each setting."""

import os
import time

from apps import common
from apps.prune.parser import (BASELINE_METHODS, EXPORT_FORMATS, EXPORT_PACKAGES, FAMILY_LENGTH,
                               method_steps)

# Flags that do not change what a run computes: they may differ when a run is continued.
RUN_CONTROL = {"start_from", "overwrite", "verbose", "keep_intermediate",
               "eval_every_n_steps", "checkpoint_every_n_steps", "allow_short",
               "worker_timeout", "changed_settings", "log_every_n_steps",
               "teacher_outputs", "output_dir"}
# The first step that reads a setting: changing it redoes that step and the ones after it and
# keeps the finished steps before it. A flag not listed here belongs to the first step
# (`finetune`), so a new flag is safe by default; list it here to let reruns keep more.
# Names are of the Lagrangian's steps; under --method fisher, factorize and prune are `fisher`.
FIRST_STEP_USING = {
    **dict.fromkeys(("method", "structure", "init_mask", "num_fisher_samples", "last_layer_heads",
                     "distillation_weight", "distillation_temperature",
                     "hidden_distillation_weight", "target_sparsity",
                     "sparsity_denominator", "regularization_scale", "eval_mask",
                     "constraint", "factorize_rank", "target_speedup", "latency_table",
                     "latency_lengths",
                     "targets", "target_speedups"),
                    "factorize"),  # the pruning model's (and the latency table it holds)
    # The run's length: a larger --num_train_epochs with --start_from prune continues pruning
    # from the gates the finished prune step has.
    **dict.fromkeys(("learning_rate", "schedule", "learning_rate_warmup",
                     "alpha_learning_rate", "lambda_learning_rate", "num_train_epochs",
                     "pruning_steps",
                     "target_sparsity_warmup", "target_start", "family_hold_steps",
                     "family_tolerance"),
                    "prune"),
    **dict.fromkeys(("compact_threshold", "keep_layers", "student_checkpoint"), "compact"),
    **dict.fromkeys(("final_learning_rate", "final_epochs", "final_distillation_weight",
                     "final_hidden_distillation_weight"), "finetune_compact"),
    "export_formats": "export",
    "export_min_agreement": "export",
    "report_examples": "report",
}


def _default(value, fallback):
    return fallback if value is None else value


def resolve_args(args):
    """Fills the defaults that depend on the task, pipeline and toy preset; checks ranges."""
    toy = args.task is None
    sources = [flag for flag in ("init_checkpoint", "keras_hub_model", "dense_model")
               if getattr(args, flag)]
    if toy and (args.data_dir or sources):
        raise common.UsageError("--data_dir/--init_checkpoint/--keras_hub_model/--dense_model "
                                "need --task.")
    if len(sources) > 1:
        raise common.UsageError("Pass one of --init_checkpoint, --keras_hub_model and "
                                f"--dense_model; got {', '.join('--' + f for f in sources)}.")
    formats = [f.strip() for f in args.export_formats.split(",") if f.strip()]
    if not formats or set(formats) - set(EXPORT_FORMATS):
        raise common.UsageError(f"--export_formats must be drawn from "
                                f"{','.join(EXPORT_FORMATS)}; got {args.export_formats!r}.")
    import importlib.util
    for fmt, (packages, extra) in EXPORT_PACKAGES.items():
        missing = [p for p in packages if fmt in formats and not importlib.util.find_spec(p)]
        if missing:  # before hours of pruning, not at the export step
            raise common.UsageError(f"--export_formats {fmt} needs {', '.join(missing)}: "
                                    f"pip install \"keras-flop[{extra}]\".")
    if not toy and not args.data_dir:
        raise common.UsageError("--task needs --data_dir (the GLUE directory).")
    args.toy = toy
    # Stored by its canonical name (--task's type): `--task SST-2` and `--task sst2` are one run.
    args.task = "sst2" if toy else args.task
    args.max_seq_length = _default(args.max_seq_length, 32 if toy else 128)
    args.finetune_learning_rate = _default(args.finetune_learning_rate, 1e-3 if toy else 3e-5)
    args.learning_rate = _default(args.learning_rate, 0.0 if args.pipeline == "seed" else 2e-5)
    noam = args.schedule == "noam"
    # The run schedule's peaks depend on the number of pruning steps, known once the data is.
    args.learning_rate_warmup = _default(args.learning_rate_warmup, 200 if noam else None)
    args.alpha_learning_rate = _default(args.alpha_learning_rate, 5.0 if noam else None)
    args.lambda_learning_rate = _default(args.lambda_learning_rate, 10.0 if noam else None)
    resolve_family(args)
    if args.pruning_steps is not None and args.num_train_epochs is not None:
        raise common.UsageError("Pass either --pruning_steps or --num_train_epochs: both set "
                                "the prune step's length.")
    args.num_train_epochs = _default(args.num_train_epochs, int(
        (8 if toy else 3) * (1 if args.family is None else FAMILY_LENGTH)))
    fisher = args.method == "fisher"
    args.final_epochs = _default(args.final_epochs, 0 if fisher else 1)
    if fisher and args.pipeline != "seed":
        raise common.UsageError("--method fisher prunes a fine-tuned model: use it with "
                                "--pipeline seed (the default).")
    if args.init_mask == "auto":  # the Fisher start kept more accuracy at every speedup tried
        args.init_mask = ("fisher" if args.target_speedup is not None and not fisher
                          and args.pipeline == "seed" and args.structure != "rank"
                          else "none")
    if args.target_start == "auto":  # a Fisher start kept, not reopened (docs/benchmarks.md)
        args.target_start = ("gates" if args.init_mask == "fisher" and args.family is None
                             else "zero")
    if args.init_mask == "fisher" and (fisher or args.structure in ("rank",)):
        raise common.UsageError("--init_mask fisher starts the Lagrangian's head and FFN-unit "
                                "gates: use it with --method lagrangian and --structure "
                                "heads+ffn, heads+ffn+layers or all.")
    resolve_baseline(args)
    steps = method_steps(args.method)
    if args.start_from and args.start_from not in steps:
        raise common.UsageError(f"--method {args.method} has the steps {', '.join(steps)}; "
                                f"--start_from {args.start_from} is not one of them.")
    if toy:
        args.final_learning_rate = max(args.final_learning_rate, 1e-4)
    if args.latency_table and args.target_speedup is None and not args.target_speedups:
        raise common.UsageError("--latency_table is read with --target_speedup or "
                                "--target_speedups only.")
    if args.latency_lengths != "padded" and (args.latency_table or (
            args.target_speedup is None and not args.target_speedups)):
        raise common.UsageError("--latency_lengths train measures the latency table of a "
                                "--target_speedup run; a given --latency_table keeps the "
                                "lengths it was measured at.")
    if args.target_speedup is not None:
        if args.target_sparsity is not None:
            raise common.UsageError("Pass either --target_speedup or --target_sparsity (a "
                                    "speedup S is the latency sparsity 1 - 1/S).")
        if not args.target_speedup >= 1.0:
            raise common.UsageError(f"--target_speedup must be >= 1; got "
                                    f"{args.target_speedup}.")
        if not fisher and args.structure in ("rank", "all"):
            raise common.UsageError(
                "--target_speedup prices heads, FFN units and blocks from a latency table of "
                "dense blocks: use it with --structure heads+ffn or heads+ffn+layers, or with "
                "--method fisher (rank gates have no measured time).")
        args.target_sparsity = 1.0 - 1.0 / args.target_speedup
    if args.family is not None:
        if fisher or args.init_mask == "fisher":
            raise common.UsageError("A family (--targets, --target_speedups) is pruned by the "
                                    "Lagrangian: use --method lagrangian and --init_mask none.")
        if args.target_start != "zero":
            raise common.UsageError("--target_start gates is the single target's: a family's "
                                    "schedule ramps from 0 through its members.")
        if args.target_speedups and args.structure in ("rank", "all"):
            raise common.UsageError(
                "--target_speedups prices heads, FFN units and blocks from a latency table of "
                "dense blocks: use --structure heads+ffn or heads+ffn+layers.")
        args.target_sparsity = args.family[-1]  # where the run ends
    args.target_sparsity = _default(args.target_sparsity, 0.5)
    if not 0.0 <= args.target_sparsity < 1.0:
        raise common.UsageError(f"--target_sparsity must be in [0, 1); got "
                                f"{args.target_sparsity}.")
    for flag in ("learning_rate", "finetune_learning_rate", "final_learning_rate",
                 "alpha_learning_rate", "lambda_learning_rate", "regularization_scale",
                 "distillation_weight", "hidden_distillation_weight",
                 "final_distillation_weight", "final_hidden_distillation_weight"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise common.UsageError(f"--{flag} must be >= 0; got {getattr(args, flag)}.")
    common.check_selection_flags(args)
    if args.final_epochs < 0:
        raise common.UsageError(f"--final_epochs must be >= 0; got {args.final_epochs}.")
    if not 0.0 <= args.export_min_agreement <= 1.0:
        raise common.UsageError(f"--export_min_agreement must be in [0, 1] (a share of the dev "
                                f"examples); got {args.export_min_agreement}.")
    if args.last_layer_heads < 0:
        raise common.UsageError(f"--last_layer_heads must be >= 0 (0: no head kept by rule); "
                                f"got {args.last_layer_heads}.")
    if args.report_examples < 0:
        raise common.UsageError(f"--report_examples must be >= 0 (0: the whole dev set); got "
                                f"{args.report_examples}.")
    for flag in ("train_batch_size", "eval_batch_size", "num_train_epochs", "pruning_steps",
                 "num_fisher_samples",
                 "learning_rate_warmup", "eval_every_n_steps", "checkpoint_every_n_steps",
                 "log_every_n_steps"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise common.UsageError(f"--{flag} must be >= 1; got {getattr(args, flag)}.")
    if not args.distillation_temperature > 0:
        raise common.UsageError(f"--distillation_temperature must be > 0; got "
                                f"{args.distillation_temperature}.")
    for flag in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = getattr(args, flag)
        if value is not None and not 0.0 <= value < 1.0:
            raise common.UsageError(f"--{flag} must be in [0, 1); got {value}.")
    if not args.output_dir and args.strategy == "multi_worker":
        raise common.UsageError("--strategy multi_worker needs --output_dir, the same directory "
                                "for every worker (its default is stamped with each worker's "
                                "start time).")
    if not args.output_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        args.output_dir = os.path.join("runs", "prune", "toy" if toy else args.task, stamp)
    return args


def resolve_baseline(args):
    """Checks the flags of the baseline methods (`--method drop_layers` and `student`)."""
    for flag, method in (("keep_layers", "drop_layers"), ("student_checkpoint", "student")):
        given = getattr(args, flag) is not None
        if given != (args.method == method):
            raise common.UsageError(f"--method {method} needs --{flag}, and --{flag} is read "
                                    f"by --method {method} only.")
    if args.method not in BASELINE_METHODS:
        return
    targets = [flag for flag in ("target_sparsity", "target_speedup", "targets",
                                 "target_speedups") if getattr(args, flag) not in (None, "", [])]
    if targets or args.pipeline != "seed":
        raise common.UsageError(f"--method {args.method} prunes nothing: drop --"
                                f"{', --'.join(targets) or 'pipeline'} (its speed is measured "
                                "by the report).")
    if args.keep_layers is not None and args.keep_layers < 1:
        raise common.UsageError(f"--keep_layers must be >= 1; got {args.keep_layers}.")


def _number_list(flag, text):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise common.UsageError(f"--{flag} must be comma-separated numbers, e.g. "
                                f"{'0.3,0.5,0.7' if flag == 'targets' else '1.5,2,3'}; got "
                                f"{text!r}.") from None


def resolve_family(args):
    """Checks --targets/--target_speedups and sets `args.family`, the members' sparsities
    (of the latency cost for speedups), or None for a single target."""
    args.family = None
    given = [flag for flag in ("targets", "target_speedups") if getattr(args, flag)]
    if not given:
        if args.family_hold_steps is not None:
            raise common.UsageError("--family_hold_steps is read with --targets or "
                                    "--target_speedups only.")
        return
    if len(given) == 2:
        raise common.UsageError("Pass either --targets (sparsities) or --target_speedups.")
    flag = given[0]
    for single in ("target_sparsity", "target_speedup"):
        if getattr(args, single) is not None:
            raise common.UsageError(f"Pass either --{flag} (a family) or --{single} (one "
                                    "target).")
    values = _number_list(flag, getattr(args, flag))
    if len(values) < 2:
        one = "--target_sparsity" if flag == "targets" else "--target_speedup"
        raise common.UsageError(f"--{flag} must list at least two values (one target: {one}); "
                                f"got {getattr(args, flag)!r}.")
    if len(set(values)) < len(values):
        raise common.UsageError(f"--{flag} lists a value twice: {getattr(args, flag)!r}.")
    if values != sorted(values):
        raise common.UsageError(f"--{flag} must be in increasing order (the target ramps "
                                f"from one to the next): {','.join(map(str, sorted(values)))}.")
    if flag == "targets" and not (0.0 <= values[0] and values[-1] < 1.0):
        raise common.UsageError(f"--targets must be in [0, 1); got {getattr(args, flag)!r}.")
    if flag == "target_speedups" and values[0] < 1.0:
        raise common.UsageError(f"--target_speedups must be >= 1; got "
                                f"{getattr(args, flag)!r}.")
    if args.family_hold_steps is not None and args.family_hold_steps < 1:
        raise common.UsageError(f"--family_hold_steps must be >= 1; got "
                                f"{args.family_hold_steps}.")
    if not 0.0 < args.family_tolerance < 1.0:
        raise common.UsageError(f"--family_tolerance must be in (0, 1); got "
                                f"{args.family_tolerance}.")
    setattr(args, flag, values)
    args.family = values if flag == "targets" else [1.0 - 1.0 / v for v in values]


def first_step_using(flag, steps):
    """The first of `steps` whose result depends on `flag` (see FIRST_STEP_USING)."""
    step = FIRST_STEP_USING.get(flag, steps[0])
    if step in steps:
        return step
    # factorize and prune: the fisher step under --method fisher, compact for a baseline
    return "fisher" if "fisher" in steps else "compact"
