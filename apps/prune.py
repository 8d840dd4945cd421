"""The whole FLOP pipeline on a GLUE task: fine-tune, factorize, prune, compact, fine-tune
again, export, report.

    python -m apps.prune                      # built-in toy task, offline, a few minutes
    python -m apps.prune --task sst2 --data_dir GLUE_DIR --init_checkpoint CKPT_DIR \\
        --output_dir runs/sst2 --target_sparsity 0.5

Every step writes its outputs under `OUTPUT_DIR/<step>/` before the next starts. Rerunning the
same command continues after the last finished step (Ctrl-C, then the same command, continues
the pruning step from its last checkpoint); `--start_from STEP` redoes that step and those
after it, also with changed settings that only that step and later ones use (the error names
the step when others changed). Steps: finetune (skipped for a fine-tuned checkpoint),
factorize, prune, compact, finetune_compact, export, report. `--method fisher` replaces
factorize and prune by one retraining-free step, fisher (`keras_flop.prune_post_training`), and
skips the final fine-tuning unless `--final_epochs` asks for it. `--targets 0.3,0.5,0.7` (or
`--target_speedups 1.5,2,3`) prunes a family in one run: each member gets its own compact
model (`compact/<i>/`), fine-tuned model, SavedModel version (`export/<i>/`) and report row.
"""

import dataclasses
import os
import shutil
import time
import warnings

from apps import common, glue_common

STEPS = ("finetune", "factorize", "prune", "compact", "finetune_compact", "export", "report")
FISHER_STEPS = ("finetune", "fisher", "compact", "finetune_compact", "export", "report")
METHODS = ("lagrangian", "fisher")
SCHEDULES = ("run", "noam")
# How far short of the target a run may end before the app reports failure (exit status 3).
SHORTFALL_TOLERANCE = 0.02
EXIT_SHORT = 3
# The shortest run the sized schedules were measured to bring to their target.
MIN_SIZED_STEPS = 100
# A family's pruning run is this many times the single-target default length (the issue's
# budget: three members for at most 1.5 times the wall time of one single-target run).
FAMILY_LENGTH = 1.5
# Where a finished prune step waits while a longer run continues it.
CONTINUED = "prune_continued"
TRACE = "trace.csv"  # every pruning step's logs (keras_flop.callbacks.StepCSVLogger)
# The Fisher mask the gates started from (--init_mask fisher), and the seconds it took.
INIT_MASK = "init_mask.json"
# A --target_speedup run's latency table, in the directory of the step that prices units.
LATENCY_TABLE = "latency_table.json"
# The note --keep_intermediate false leaves where it deleted a step's models.
REMOVED = "removed.txt"
# Flags that do not change what a run computes: they may differ when a run is continued.
_RUN_CONTROL = {"start_from", "overwrite", "verbose", "keep_intermediate",
                "eval_every_n_steps", "checkpoint_every_n_steps", "allow_short",
                "worker_timeout", "changed_settings", "log_every_n_steps",
                "teacher_outputs", "output_dir"}
# The first step that reads a setting: changing it redoes that step and the ones after it and
# keeps the finished steps before it. A flag not listed here belongs to the first step
# (`finetune`), so a new flag is safe by default; list it here to let reruns keep more.
# Names are of the Lagrangian's steps; under --method fisher, factorize and prune are `fisher`.
FIRST_STEP_USING = {
    **dict.fromkeys(("method", "structure", "init_mask", "num_fisher_samples",
                     "distillation_weight", "distillation_temperature",
                     "hidden_distillation_weight", "target_sparsity",
                     "sparsity_denominator", "regularization_scale", "eval_mask",
                     "constraint", "factorize_rank", "target_speedup", "latency_table",
                     "targets", "target_speedups"),
                    "factorize"),  # the pruning model's (and the latency table it holds)
    # The run's length: a larger --num_train_epochs with --start_from prune continues pruning
    # from the gates the finished prune step has.
    **dict.fromkeys(("learning_rate", "schedule", "learning_rate_warmup",
                     "alpha_learning_rate", "lambda_learning_rate", "num_train_epochs",
                     "pruning_steps",
                     "target_sparsity_warmup", "family_hold_steps", "family_tolerance"),
                    "prune"),
    "compact_threshold": "compact",
    **dict.fromkeys(("final_learning_rate", "final_epochs", "final_distillation_weight",
                     "final_hidden_distillation_weight"), "finetune_compact"),
    "export_formats": "export",
}
# keras_flop.structure.STRUCTURES, spelled out so that --help and flag errors need no TensorFlow
# import (a test keeps the two equal).
STRUCTURES = ("rank", "heads+ffn", "heads+ffn+layers", "all")
# keras_flop.export_formats.FORMATS, spelled out for the same reason.
EXPORT_FORMATS = ("saved_model", "onnx", "litert")


def build_parser():
    parser = common.parser("apps.prune", __doc__)
    data = parser.add_argument_group("task and model")
    data.add_argument("--task", default=None, type=common.task_name,
                      help=f"GLUE task: {', '.join(common.GLUE_TASKS)} (or its directory "
                           "name, e.g. SST-2). Default: the built-in toy sentiment task.")
    data.add_argument("--data_dir", default=None, help="GLUE directory (<dir>/<TASK>/*.tsv).")
    data.add_argument("--init_checkpoint", default=None,
                      help="TF1 BERT checkpoint dir or prefix (pre-trained or fine-tuned).")
    data.add_argument("--bert_config_file", default=None,
                      help="Default: bert_config.json beside the checkpoint.")
    data.add_argument("--vocab_file", default=None,
                      help="Default: vocab.txt beside the checkpoint.")
    data.add_argument("--keras_hub_model", default=None,
                      help="A fine-tuned keras-hub classifier's .keras file (BERT family, see "
                           "keras_flop.from_keras_hub), instead of --init_checkpoint; the dense "
                           "fine-tuning is skipped. Vocabulary: its saved preprocessor's, else "
                           "--vocab_file.")
    data.add_argument("--dense_model", default=None,
                      help="A fine-tuned keras-flop classifier's .keras file (apps.glue_finetune's "
                           "model.keras, or a run's finetune/model.keras), instead of "
                           "--init_checkpoint: one teacher for many pruning runs; the dense "
                           "fine-tuning is skipped. Vocabulary: vocab.txt beside it, else "
                           "--vocab_file.")
    data.add_argument("--pipeline", choices=("seed", "paper"), default="seed",
                      help="seed: fine-tune dense, then train only gates and λ (model lr 0); "
                           "paper: factorize the pre-trained model, train all jointly.")
    data.add_argument("--method", choices=METHODS, default="lagrangian",
                      help="lagrangian: gates trained under the Lagrangian (FLOP); fisher: "
                           "retraining-free pruning of heads and FFN units in minutes (Kwon et "
                           "al. 2022: Fisher scores, mask search, least-squares tuning).")
    data.add_argument("--max_seq_length", type=int, default=None,
                      help="Default 128 (32 for the toy task).")
    data.add_argument("--max_train_examples", type=int, default=None,
                      help="Train on a random subset of this size (quick runs); default: all.")
    data.add_argument("--max_eval_examples", type=int, default=None,
                      help="Evaluate on a random subset of this size; default: all.")
    glue_common.add_batching_flags(data)
    data.add_argument("--hidden_dropout_prob", type=float, default=None,
                      help="Default: the BERT config's.")
    data.add_argument("--attention_probs_dropout_prob", type=float, default=None,
                      help="Default: the BERT config's.")

    train = parser.add_argument_group("training (names as in the original run.sh)")
    train.add_argument("--train_batch_size", type=int, default=32,
                       help="Batch size of every training step.")
    train.add_argument("--eval_batch_size", type=int, default=8,
                       help="Also the batch size of the latency measurement.")
    train.add_argument("--finetune_learning_rate", type=float, default=None,
                       help="Dense fine-tuning; default 3e-5 (1e-3 for the toy task).")
    train.add_argument("--finetune_epochs", type=int, default=3,
                       help="Dense fine-tuning epochs; 0 uses the checkpoint as it is.")
    train.add_argument("--learning_rate", type=float, default=None,
                       help="Model weights during pruning; default 0 (seed: frozen model) "
                            "or 2e-5 (paper).")
    train.add_argument("--schedule", choices=SCHEDULES, default="run",
                       help="Gate and λ learning rates. run: sized to the number of pruning "
                            "steps (warmup over 5 %%, then linear decay to 0), so that a run "
                            "of about 100 steps or more reaches its target; noam: the original "
                            "recipe's noam schedules, sized for tens of thousands of steps.")
    train.add_argument("--learning_rate_warmup", type=int, default=None,
                       help="Warmup steps of the noam schedules; default 200.")
    train.add_argument("--alpha_learning_rate", type=float, default=None,
                       help="Gates: the peak rate of the run schedule (unless given, 80 / "
                            "pruning steps) or the scale of the noam schedule (5).")
    train.add_argument("--lambda_learning_rate", type=float, default=None,
                       help="λ: the peak rate of the run schedule (unless given, 200 / "
                            "pruning steps) or the scale of the noam schedule (10).")
    train.add_argument("--constraint", choices=("absolute", "equality"), default="absolute",
                       help="The Lagrangian's gap: absolute, λ1|ŝ-t| + λ2(ŝ-t)², holds the "
                            "target without overshoot; equality, λ1(ŝ-t) + λ2(ŝ-t)², FLOP's "
                            "own form.")
    train.add_argument("--factorize_rank", choices=("break_even", "full"), default="break_even",
                       help="Structures with rank gates: the rank the factorization starts "
                            "at. break_even: where the factor pair costs what the dense "
                            "kernel costs (top singular values kept), so the expected sparsity "
                            "starts at 0; full: every singular value (FLOP's start, at an "
                            "expected sparsity below 0).")
    train.add_argument("--target_sparsity", type=float, default=None,
                       help="Fraction of the encoder's dense weights to remove, in [0, 1); "
                            "default 0.5.")
    train.add_argument("--target_speedup", type=float, default=None,
                       help="Prune to this speedup S >= 1 on this device instead of a "
                            "sparsity: the expected latency, predicted by a latency table "
                            "(--eval_batch_size, --max_seq_length), is held at 1/S of dense. "
                            "Needs --structure heads+ffn or heads+ffn+layers, or --method "
                            "fisher (its mask search budgets the table's time).")
    train.add_argument("--latency_table", default=None,
                       help="With --target_speedup: a latency table (JSON written by "
                            "keras_flop.LatencyTable.save, e.g. factorize/latency_table.json "
                            "of a run on the serving machine). Default: measured by the "
                            "factorize step (the fisher step under --method fisher) and saved "
                            "there."),
    train.add_argument("--targets", default=None,
                       help="A family from one run: increasing sparsities, e.g. 0.3,0.5,0.7. "
                            "The target ramps through them; each member's gates (and weights) "
                            "are snapshotted once its target has held, and each becomes its own "
                            "compact model, SavedModel version (export/1, export/2, ... in "
                            "target order) and report row. Unless --num_train_epochs is "
                            f"given, the pruning run is {FAMILY_LENGTH}x a single target's.")
    train.add_argument("--target_speedups", default=None,
                       help="A family of speedups, e.g. 1.5,2,3 (as --targets, under the latency "
                            "table of --target_speedup).")
    train.add_argument("--family_hold_steps", type=int, default=None,
                       help="A family: steps the constraint must hold at a member's target "
                            "before its snapshot; default a twentieth of the pruning steps.")
    train.add_argument("--family_tolerance", type=float, default=0.01,
                       help="A family: |expected - target| at which a member's constraint "
                            "counts as met.")
    train.add_argument("--target_sparsity_warmup", type=int, default=None,
                       help="Steps of the target's linear warmup; default a third of the "
                            "pruning steps (a fifth for a family: its first ramp).")
    train.add_argument("--sparsity_denominator", choices=("dense", "factorized"),
                       default="dense",
                       help="What the sparsity is a fraction of: the dense kernels' parameters, "
                            "or the factorized ones (the original's figure).")
    train.add_argument("--structure", choices=STRUCTURES, default="heads+ffn+layers",
                       help="What the gates prune: heads+ffn+layers (attention heads, FFN "
                            "units and whole attention/FFN blocks: the fastest model for its "
                            "accuracy in our measurements), heads+ffn (no whole blocks), rank "
                            "(FLOP's own method: the SVD ranks of every dense layer), all "
                            "(ranks and all of those).")
    train.add_argument("--init_mask", choices=("auto", "none", "fisher"), default="auto",
                       help="lagrangian: start the head and FFN-unit gates from the Fisher "
                            "mask at the target (kept units open, the others closed, all "
                            "trainable; needs a --structure with heads and FFN units), or "
                            "with every gate open (none). auto: fisher under "
                            "--target_speedup, none otherwise.")
    train.add_argument("--num_fisher_samples", type=int, default=2048,
                       help="Training examples for the Fisher scores and mask tuning.")
    train.add_argument("--distillation_weight", type=float, default=0.0,
                       help="α_pred: weight of KL(teacher ‖ student) from the fine-tuned dense "
                            "model while pruning (0: no distillation).")
    train.add_argument("--distillation_temperature", type=float, default=2.0,
                       help="Temperature T of the distillation's softmax.")
    train.add_argument("--hidden_distillation_weight", type=float, default=0.0,
                       help="Weight of the hidden-state MSE to the dense model, layer i to "
                            "layer i (0: none).")
    train.add_argument("--regularization_scale", type=float, default=0.0,
                       help="L2 penalty on the model weights while pruning (0: none).")
    train.add_argument("--num_train_epochs", type=int, default=None,
                       help="Pruning epochs; default 3 (8 for the toy task).")
    train.add_argument("--pruning_steps", type=int, default=None,
                       help="The prune step's length in steps, instead of --num_train_epochs: "
                            "on a large training set a few hundred steps reach the target, "
                            "and the compact model's fine-tuning still sees all of it.")
    train.add_argument("--eval_mask", choices=("topk", "deterministic"), default="topk",
                       help="Gate values for evaluation and compaction. topk: each gate "
                            "keeps its round(Σ p) units of largest log α (p = P(z ≠ 0); "
                            "never closes a unit with ẑ = 1), at value max(ẑ, σ(0.8 log α)), "
                            "1 for an open gate, so the compact size follows the target. "
                            "deterministic (the original rule): every unit at "
                            "ẑ = clip(1.2 σ(log α) − 0.1, 0, 1), which keeps the units with "
                            "p > 0.5.")
    train.add_argument("--compact_threshold", type=float, default=0.0,
                       help="Compaction drops units whose gate value is at most this.")
    train.add_argument("--allow_short", action="store_true",
                       help="Exit with status 0 even when the compact model's sparsity ends "
                            f"more than {SHORTFALL_TOLERANCE} short of --target_sparsity (by "
                            f"default such a run writes everything, then exits with status "
                            f"{EXIT_SHORT}).")
    train.add_argument("--final_learning_rate", type=float, default=2e-5,
                       help="Fine-tuning of the compact model; default 2e-5, at least 1e-4 "
                            "for the toy task (the original used 1e-6).")
    train.add_argument("--final_epochs", type=int, default=None,
                       help="Fine-tuning epochs of the compact model, 0 skips it; default 1 "
                            "(lagrangian) or 0 (fisher).")
    train.add_argument("--final_distillation_weight", type=float, default=0.0,
                       help="Fine-tuning of the compact model: weight of KL(dense ‖ compact) "
                            "at --distillation_temperature added to the task loss, the "
                            "fine-tuned dense model the teacher (0: none).")
    train.add_argument("--final_hidden_distillation_weight", type=float, default=0.0,
                       help="Fine-tuning of the compact model: weight of the hidden-state MSE "
                            "to the dense model, encoder layer i to layer i (0: none; a "
                            "compact model keeps every layer; those it emptied are left "
                            "out).")
    train.add_argument("--teacher_outputs", default=None,
                       help="A .npz file that keeps the dense model's outputs on the training "
                            "set for logit distillation (prune and finetune_compact steps): "
                            "read when it holds this model's outputs on these examples, "
                            "written otherwise. Runs of one teacher that name the same file "
                            "compute them once. Default: teacher_outputs.npz in --output_dir.")
    train.add_argument("--eval_every_n_steps", type=int, default=None,
                       help="Dev evaluation while pruning, every this many steps; default a "
                            "tenth of the pruning steps (at least 1).")
    train.add_argument("--log_every_n_steps", type=int, default=10,
                       help="TensorBoard training scalars every this many steps.")
    train.add_argument("--checkpoint_every_n_steps", type=int, default=None,
                       help="Resume checkpoint of every training step (finetune, prune, "
                            "finetune_compact) every this many steps; default a tenth of "
                            "that step's steps (at least 1).")
    train.add_argument("--jit_compile", action="store_true",
                       help="XLA for the training steps (measured slower on a 2-core CPU).")
    train.add_argument("--mixed_precision", action="store_true", help="mixed_float16.")

    train.add_argument("--export_formats", default="saved_model",
                       help="Comma-separated, from saved_model, onnx, litert (onnx and litert "
                            "need pip install \"keras-flop[onnx]\" / \"keras-flop[litert]\").")

    run = parser.add_argument_group("run control")
    run.add_argument("--start_from", choices=sorted(set(STEPS + FISHER_STEPS), key=(
                         STEPS + FISHER_STEPS).index), default=None,
                     help="Redo this step and the ones after it in an existing --output_dir, "
                          "keeping the finished steps before it.")
    run.add_argument("--keep_intermediate", type=common.boolean, default=True,
                     metavar="{true,false}",
                     help="false: once the run has finished, delete what no later step needs "
                          "(factorize/pruning_model.keras, prune/pruning_model.keras and "
                          "prune/checkpoints/, or fisher/pruning_model.keras, and "
                          "compact/model.keras); the steps' results, logs and reports stay. "
                          "Default true.")
    common.add_common_flags(parser)
    return parser


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
    for fmt, packages in (("onnx", ("tf2onnx", "onnxruntime")), ("litert", ("ai_edge_litert",))):
        missing = [p for p in packages if fmt in formats and not importlib.util.find_spec(p)]
        if missing:  # before hours of pruning, not at the export step
            raise common.UsageError(f"--export_formats {fmt} needs {', '.join(missing)}: "
                                    f"pip install \"keras-flop[{fmt}]\".")
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
    if args.init_mask == "fisher" and (fisher or args.structure in ("rank",)):
        raise common.UsageError("--init_mask fisher starts the Lagrangian's head and FFN-unit "
                                "gates: use it with --method lagrangian and --structure "
                                "heads+ffn, heads+ffn+layers or all.")
    steps = FISHER_STEPS if fisher else STEPS
    if args.start_from and args.start_from not in steps:
        raise common.UsageError(f"--method {args.method} has the steps {', '.join(steps)}; "
                                f"--start_from {args.start_from} is not one of them.")
    if toy:
        args.final_learning_rate = max(args.final_learning_rate, 1e-4)
    if args.latency_table and args.target_speedup is None and not args.target_speedups:
        raise common.UsageError("--latency_table is read with --target_speedup or "
                                "--target_speedups only.")
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
    if args.final_epochs < 0:
        raise common.UsageError(f"--final_epochs must be >= 0; got {args.final_epochs}.")
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


def sparsity_shortfall(reached, target, tolerance=SHORTFALL_TOLERANCE, what="sparsity"):
    """What to do when a run ended with its sparsity short of the target, or None."""
    if target - reached <= tolerance:
        return None
    return (f"the {what} {reached:.3f} is {target - reached:.3f} short of the target "
            f"{target}: continue pruning with --start_from prune and a larger "
            "--num_train_epochs (it goes on from the gates it has), or pass --allow_short to "
            "accept it.")


def family_shortfall(pipeline, what):
    """What to do when a family run misses members or a member fell short, or None."""
    members = pipeline.family_members(snapshotted=False)
    missing = [pipeline.member_target_text(m) for m in members if m["snapshot_step"] is None]
    short = [f"member {m['member']}: {sparsity_shortfall(m['realized'], m['target'], what=what)}"
             for m in pipeline.sparsity() if sparsity_shortfall(m["realized"], m["target"])]
    if missing:
        short.insert(0, f"{len(missing)} of {len(members)} family members missing (target "
                        f"{', '.join(missing)}): their constraint was never met; continue "
                        "pruning with --start_from prune and a larger --num_train_epochs (the "
                        "schedule goes on where it stopped), or pass --allow_short to accept "
                        "the members there are.")
    return "; ".join(short) or None


def first_step_using(flag, steps):
    """The first of `steps` whose result depends on `flag` (see FIRST_STEP_USING)."""
    step = FIRST_STEP_USING.get(flag, steps[0])
    return step if step in steps else "fisher"  # factorize and prune, under --method fisher


def prepare_run(args, write=True):
    """The run directory; continues a run with the same settings, refuses a different one.
    `write=False` checks and decides without writing (every worker checks; the chief
    writes)."""
    settings_path = os.path.join(args.output_dir, "hparams.json")
    settings = {k: v for k, v in vars(args).items() if k not in _RUN_CONTROL}
    # A run that finished no step (a failed start) holds no settings to protect.
    started = any(os.path.isdir(os.path.join(args.output_dir, step)) for step in STEPS)
    args.changed_settings = []
    if os.path.exists(settings_path) and not args.overwrite and started:
        previous = common.read_json(settings_path)
        # A setting the saved run does not name came with a later version of this app: at
        # its default it is what the run did.
        new = set(settings) - set(previous)
        parser = build_parser() if new else None
        defaults = {k: parser.get_default(k) for k in new}
        changed = sorted(k for k in set(previous) | set(settings)
                         if k not in _RUN_CONTROL and previous.get(k, defaults.get(k)) !=
                         settings.get(k))
        if changed:
            steps = FISHER_STEPS if args.method == "fisher" else STEPS
            first = min((first_step_using(flag, steps) for flag in changed), key=steps.index)
            if args.start_from is None or steps.index(args.start_from) > steps.index(first):
                raise common.UsageError(
                    f"{args.output_dir} holds a run with other settings ({', '.join(changed)}), "
                    f"used from the step {first} on: pass --start_from {first} to redo it and "
                    "the steps after it, or --overwrite, or another --output_dir.")
            if write:
                common.write_json(settings_path, settings)  # the settings of the steps redone
            args.changed_settings = changed
        return args.output_dir
    if args.start_from:
        raise common.UsageError(f"--start_from needs an existing run in {args.output_dir}.")
    # What a failed start left (its settings, the toy data) is replaced.
    failed_start = os.path.exists(settings_path) and not started
    common.prepare_output_dir(args.output_dir, args.overwrite or failed_start, create=write)
    if write:
        common.write_json(settings_path, settings)
    return args.output_dir


class Pipeline:
    """The steps of a run. `path` names what the steps read in the run directory, `out` where
    this worker writes it: the run directory itself, or the scratch directory of a worker
    other than the chief (`common.Workers`)."""

    def __init__(self, args, run_dir, workers=None):
        import keras_flop

        self.args = args
        self.run_dir = run_dir
        self.workers = workers or common.Workers(self._default_strategy())
        self.write_dir = self.workers.write_dir(run_dir)
        self.counter = None  # the training step's step counter, while one trains
        if args.toy:
            from apps import toy_task
            data_dir, vocab = toy_task.write_toy_glue(os.path.join(self.write_dir, "data"),
                                                      seed=args.seed)
            config = toy_task.toy_config()
        elif args.keras_hub_model:
            data_dir = args.data_dir
            config, vocab = self.keras_hub_files(keras_flop)
        elif args.dense_model:
            data_dir = args.data_dir
            config, vocab = self.dense_model_files()
        else:
            from apps.glue_finetune import checkpoint_files
            data_dir = args.data_dir
            if args.init_checkpoint is None:
                raise common.UsageError("--init_checkpoint is required with --task.")
            config, vocab = checkpoint_files(args)
        overrides = {k: getattr(args, k) for k in ("hidden_dropout_prob",
                                                   "attention_probs_dropout_prob")
                     if getattr(args, k) is not None}
        self.config = dataclasses.replace(config, **overrides)
        if args.max_seq_length > self.config.max_position_embeddings:
            raise common.UsageError(f"--max_seq_length {args.max_seq_length} exceeds the "
                                    "model's max_position_embeddings "
                                    f"{self.config.max_position_embeddings}.")
        self.vocab = vocab
        self.latency_table = None
        if args.latency_table:  # checked before any training
            from keras_flop.device import describe_devices

            self.latency_table = keras_flop.LatencyTable.load(args.latency_table)
            self.latency_table.check(self.config)
            measured_on, here = self.latency_table.info.get("device"), describe_devices()
            if measured_on and measured_on != here:
                print(f"   note: the latency table was measured on {measured_on}; this run "
                      f"is on {here}: its speedup target is that device's")
        self.data = glue_common.load_task_data(
            data_dir, args.task, vocab, args.max_seq_length, args.max_train_examples,
            args.max_eval_examples, args.seed, pad_to_max_length=args.pad_to_max_length,
            boundaries=glue_common.bucket_boundaries(args))
        self.keras_flop = keras_flop

    def keras_hub_files(self, kf):
        """(config, vocab file) of --keras_hub_model: the vocabulary of its saved
        preprocessor, else --vocab_file."""
        import keras
        self.hub_model = keras.saving.load_model(self.args.keras_hub_model, compile=False)
        config = kf.from_keras_hub(self.hub_model).bert_config
        vocab = self.args.vocab_file
        if vocab is None:
            if getattr(self.hub_model, "preprocessor", None) is None:
                raise common.UsageError(f"{self.args.keras_hub_model} holds no preprocessor: "
                                        "pass --vocab_file.")
            vocab = os.path.join(self.write_dir, "keras_hub", "vocab.txt")
            kf.preprocessor_from_keras_hub(self.hub_model.preprocessor, vocab,
                                           self.args.max_seq_length)
        return config, vocab

    def dense_model_files(self):
        """(config, vocab file) of --dense_model: the config it carries, vocab.txt beside it
        or --vocab_file."""
        import keras

        from keras_flop.models.bert import bert_network
        path = self.args.dense_model
        if not os.path.exists(path):
            raise common.UsageError(f"--dense_model {path} does not exist.")
        try:
            network = bert_network(keras.saving.load_model(path, compile=False))
        except ValueError as error:
            raise common.UsageError(f"--dense_model {path}: {error}") from None
        if not network.is_dense():
            raise common.UsageError(f"--dense_model {path} has gates or factorized layers: "
                                    "pass the dense fine-tuned model (e.g. "
                                    "finetune/model.keras), not a pruning model.")
        vocab = self.args.vocab_file or os.path.join(os.path.dirname(os.path.abspath(path)),
                                                     "vocab.txt")
        if not os.path.exists(vocab):
            raise common.UsageError(f"No vocabulary for --dense_model: {vocab} does not exist; "
                                    "pass --vocab_file.")
        self.given_dense = network
        return network.bert_config, vocab

    @staticmethod
    def _default_strategy():
        import tensorflow as tf
        return tf.distribute.get_strategy()

    def path(self, step, name=""):
        return os.path.join(self.run_dir, step, name)

    def out(self, step, name=""):
        return os.path.join(self.write_dir, step, name)

    def output(self, step):
        """The file whose presence says that `step` finished."""
        if step == "report":
            return os.path.join(self.run_dir, "report.md")
        if self.args.family is not None and step in ("compact", "finetune_compact"):
            return self.path(step, "DONE")  # every member's model written
        return self.path(step, {"export": "DONE", "factorize": "pruning_model.keras",
                                "prune": "pruning_model.keras",
                                "fisher": "pruning_model.keras"}.get(step, "model.keras"))

    def removed(self, step):
        """Whether --keep_intermediate false deleted the step's model after it finished."""
        return os.path.exists(self.path(step, REMOVED)) and \
            not os.path.exists(self.output(step))

    def done(self, step):
        return os.path.exists(self.output(step)) or self.removed(step)

    def load(self, step, name="model.keras"):
        """A step's saved model, uncompiled: every step that trains compiles it afresh."""
        import keras
        path = self.path(step, name)
        if not os.path.exists(path) and self.removed(step):
            raise common.UsageError(f"{path} was deleted when the run finished "
                                    f"(--keep_intermediate false): pass --start_from {step} "
                                    "to make it again.")
        return keras.saving.load_model(path, compile=False)

    def tensorboard(self, step, initial_step=0):
        """The step's TensorBoard callback (`<step>/logs`); its step count also tells where
        Ctrl-C stopped the step."""
        from keras_flop.callbacks import PruningTensorBoard

        self.counter = PruningTensorBoard(self.out(step, "logs"),
                                          update_freq=self.args.log_every_n_steps,
                                          hparams=vars(self.args), initial_step=initial_step)
        return self.counter

    def fine_tune(self, model, step, learning_rate, epochs, **distillation):
        """Fine-tuning for the finetune and finetune_compact steps (`distillation`: the
        teacher and weights of `glue_common.fine_tune`), TensorBoard scalars in
        `<step>/logs`; returns the results to record."""
        args = self.args
        board = self.tensorboard(step)
        # Step checkpoints: an interrupted step continues where it stopped on the next run.
        history, seconds = glue_common.fine_tune(
            model, self.data, learning_rate, epochs, args.train_batch_size, args.seed,
            callbacks=[board], jit_compile=args.jit_compile,
            checkpoint_dir=self.out(step, "checkpoints"),
            checkpoint_every_n_steps=args.checkpoint_every_n_steps,
            restore_from=self.path(step, "checkpoints"), **distillation)
        return {"loss": float(history.history["loss"][-1]), "train_time": seconds,
                **{key: float(values[-1]) for key, values in history.history.items()
                   if key.endswith("distillation_loss")}}

    def teacher_outputs_file(self):
        """Where the dense model's outputs on the training set are kept (`--teacher_outputs`)."""
        return self.args.teacher_outputs or os.path.join(self.write_dir,
                                                         glue_common.TEACHER_OUTPUTS)

    def save_fine_tuned(self, model, step):
        """Writes the step's model; its step checkpoints (model and optimizer, three times
        the model's size) are then of no more use."""
        common.save_model(model, self.out(step, "model.keras"))
        shutil.rmtree(self.out(step, "checkpoints"), ignore_errors=True)

    def evaluate_to(self, model, step, extra=None):
        results = glue_common.evaluate(model, self.data, self.args.eval_batch_size)
        flat = glue_common.write_eval_results(self.out(step), results, extra or {})
        if self.counter is not None and step in ("finetune", "finetune_compact"):
            # The final dev metrics and loss beside the step's training scalars, named as the
            # prune step's periodic evaluation names them.
            self.counter.write({k: v for k, v in flat.items() if k.startswith("eval_")
                                and "examples" not in k and "time" not in k}, "eval")
        print(f"   {step}: dev " + ", ".join(f"{k} {v:.4f}" for k, v in flat.items()
                                             if k.startswith("eval_") and "time" not in k
                                             and "examples" not in k))
        return flat

    # -- the steps -----------------------------------------------------------------------
    def finetune(self):
        kf, args = self.keras_flop, self.args
        if args.toy:
            model = kf.build_bert_classifier(self.config, self.data.task.num_labels)
            finetuned = False
        elif args.keras_hub_model:
            hub = kf.from_keras_hub(self.hub_model, num_labels=self.data.task.num_labels)
            model = kf.BertClassifier(self.config, hub.num_labels)  # with dropout overrides
            model.set_weights(hub.get_weights())
            finetuned = True
        elif args.dense_model:
            given = self.given_dense
            if given.num_labels != self.data.task.num_labels:
                raise common.UsageError(
                    f"--dense_model {args.dense_model} has {given.num_labels} outputs; task "
                    f"{args.task} needs {self.data.task.num_labels}.")
            model = kf.BertClassifier(self.config, given.num_labels,
                                      layer_shapes=given.layer_shapes)  # dropout overrides
            model.set_weights(given.get_weights())
            finetuned = True
        else:
            from keras_flop.checkpoint import has_classifier_head
            finetuned = has_classifier_head(args.init_checkpoint)
            model = kf.load_tf1_checkpoint(args.init_checkpoint, config=self.config,
                                           num_labels=self.data.task.num_labels)
        extra = {}
        if args.pipeline == "seed" and not finetuned and args.finetune_epochs > 0:
            extra = self.fine_tune(model, "finetune", args.finetune_learning_rate,
                                   args.finetune_epochs)
        else:
            print("   the checkpoint is used as it is (fine-tuned checkpoint, the paper "
                  "pipeline, or --finetune_epochs 0)")
        os.makedirs(self.out("finetune"), exist_ok=True)
        self.evaluate_to(model, "finetune", extra)
        # With its vocabulary, the model is a --dense_model for other pruning runs.
        shutil.copyfile(self.vocab, self.out("finetune", "vocab.txt"))
        self.save_fine_tuned(model, "finetune")

    def factorize(self):
        args = self.args
        dense = self.load("finetune")
        distillation = {}
        if args.distillation_weight > 0 or args.hidden_distillation_weight > 0:
            # The fine-tuned dense model teaches the pruned one.
            distillation = dict(teacher=dense, distillation_weight=args.distillation_weight,
                                distillation_temperature=args.distillation_temperature,
                                hidden_distillation_weight=args.hidden_distillation_weight)
        os.makedirs(self.out("factorize"), exist_ok=True)
        target = {"target_sparsity": args.target_sparsity}
        if args.family is not None:
            target = {"targets": args.targets} if args.targets else {
                "target_speedups": args.target_speedups}
        if self.latency_cost():
            target = {**target, "cost": "latency", "latency_table": self.measured_latency_table()}
            if args.family is None:
                target = {k: v for k, v in target.items() if k != "target_sparsity"}
                target["target_speedup"] = args.target_speedup
        pruning_model = self.keras_flop.factorize(
            dense, gate_config={"eval_mask": args.eval_mask}, structure=args.structure,
            rank="break_even" if args.factorize_rank == "break_even" else None,
            **distillation, **target,
            target_sparsity_warmup=self.target_warmup(),
            constraint=args.constraint, pruning_steps=self.pruning_steps(),
            sparsity_denominator=args.sparsity_denominator,
            regularization_scale=args.regularization_scale)
        if args.init_mask == "fisher":
            from keras_flop.post_training import init_gates_from_masks, post_training_masks

            # Under a speedup target the search budgets the latency table's time (1 / S).
            latency = {} if not self.latency_cost() else {
                "cost": "latency", "latency_table": pruning_model.cost_model.table}
            began = time.perf_counter()
            masks = post_training_masks(
                dense, self.data.train_dataset(args.train_batch_size, args.seed),
                target=1.0 - args.target_sparsity, num_samples=args.num_fisher_samples,
                tune=False, verbose=glue_common.fit_verbosity(), **latency)
            init_gates_from_masks(pruning_model, masks)
            seconds = time.perf_counter() - began
            print(f"   gates start from the Fisher mask: kept heads per layer "
                  f"{masks.kept_heads}, FFN units {masks.kept_units} ({seconds:.0f} s)")
            os.makedirs(self.out("factorize"), exist_ok=True)
            common.write_json(self.out("factorize", INIT_MASK),
                              {"kept_heads": [int(h) for h in masks.kept_heads],
                               "kept_units": [int(u) for u in masks.kept_units],
                               "seconds": seconds})
        start = float(pruning_model.expected_sparsity())
        print(f"   factorize: expected {self.cost_name()} at the start {start:.3f} (target "
              f"{self.target_text()})")
        if start < 0:
            print("   (negative: at full rank the factors P (a×k) and Q (k×b) of an a×b kernel "
                  "hold more weights than the kernel; the gates must close ranks before the "
                  "model gets smaller than the dense one)")
        os.makedirs(self.out("factorize"), exist_ok=True)
        common.save_model(pruning_model, self.out("factorize", "pruning_model.keras"))

    def measured_latency_table(self):
        """The run's latency table: --latency_table, or measured on this device at
        --eval_batch_size and --max_seq_length; saved as `<step>/latency_table.json` of the
        step that prices the units (factorize, or fisher under --method fisher)."""
        args = self.args
        table = self.latency_table
        if table is None:
            print(f"   measuring the latency table: batch {args.eval_batch_size}, length "
                  f"{args.max_seq_length}")
            table = self.keras_flop.measure_latency_table(
                self.config, batch_size=args.eval_batch_size, seq_length=args.max_seq_length,
                verbose=args.verbose)
            print(f"   latency table measured in {table.info['measurement_seconds']:.0f} s")
        elif (table.batch_size, table.seq_length) != (args.eval_batch_size,
                                                      args.max_seq_length):
            print(f"   note: the latency table is for batch {table.batch_size}, length "
                  f"{table.seq_length}; the report measures batch {args.eval_batch_size}, "
                  f"length {args.max_seq_length}")
        measured = table.info.get("measured_dense_seconds")
        print(f"   latency table: dense model {table.dense_seconds() * 1e3:.2f} ms per batch as "
              f"the sum of its blocks" + (f" (measured whole: {measured * 1e3:.2f} ms)"
                                          if measured else ""))
        table.save(self.out(self.pricing_step(), LATENCY_TABLE))
        return table

    def pricing_step(self):
        """The step whose directory holds the latency table: the one that prices units."""
        return "fisher" if self.args.method == "fisher" else "factorize"

    def latency_cost(self):
        """Whether the run prunes to speedups (the latency cost)."""
        return self.args.target_speedup is not None or bool(self.args.target_speedups)

    def cost_name(self):
        """What the run's sparsity is a fraction of, for the messages."""
        return "latency sparsity (1 - latency/dense)" if self.latency_cost() else "sparsity"

    def target_text(self):
        """The run's target or family of targets, for the messages."""
        if self.args.family is None:
            return f"{self.args.target_sparsity:.4g}"
        return "family " + ", ".join(f"{t:.4g}" for t in self.args.family)

    def pruning_steps(self):
        if self.args.pruning_steps is not None:
            return self.args.pruning_steps
        per_epoch = -(-len(self.data.train) // self.args.train_batch_size)
        return per_epoch * self.args.num_train_epochs

    def target_warmup(self):
        if self.args.target_sparsity_warmup is not None:
            return self.args.target_sparsity_warmup
        # A family's first ramp is shorter: the later members need the rest of the run.
        return self.pruning_steps() // (3 if self.args.family is None else 5)

    def prune(self):
        from keras_flop import callbacks, distillation, optimizers
        from keras_flop.seeding import reseed

        args = self.args
        steps = self.pruning_steps()
        if args.schedule == "run" and steps < MIN_SIZED_STEPS:
            print(f"   note: {steps} pruning steps; the schedules are sized for "
                  f"{MIN_SIZED_STEPS} or more (raise --num_train_epochs or --pruning_steps)")
        if os.path.isdir(self.path(CONTINUED)):  # run() moved the finished prune step there
            # A longer run of the same pruning: on from the gates, λ and step it ended with.
            pruning_model = self.load(CONTINUED, "pruning_model.keras")
            first_step = int(pruning_model.pruning_step.numpy())
            print(f"   continuing the finished pruning from step {first_step} to {steps}")
        else:
            pruning_model = self.load("factorize", "pruning_model.keras")
            # The run's length is the prune step's setting: size the target warmup to it.
            pruning_model.pruning_steps = steps
            pruning_model.target_sparsity_warmup = self.target_warmup()
            if args.family is not None:  # sized to the run, like the warmup
                pruning_model.family.hold_steps = args.family_hold_steps
                pruning_model.family.tolerance = args.family_tolerance
            first_step = 0
        reseed(pruning_model, args.seed)
        model_optimizer = None if args.learning_rate == 0 else optimizers.model_optimizer(
            args.learning_rate, steps)
        if args.schedule == "noam":
            alpha_optimizer = optimizers.gate_optimizer(args.alpha_learning_rate,
                                                        args.learning_rate_warmup)
            lambda_optimizer = optimizers.lambda_optimizer(args.lambda_learning_rate,
                                                           args.learning_rate_warmup)
        else:  # sized to the steps this prune step takes
            alpha_optimizer = optimizers.sized_gate_optimizer(steps - first_step,
                                                              args.alpha_learning_rate)
            lambda_optimizer = optimizers.sized_lambda_optimizer(steps - first_step,
                                                                 args.lambda_learning_rate)
        pruning_model.compile(
            optimizer=model_optimizer, alpha_optimizer=alpha_optimizer,
            lambda_optimizer=lambda_optimizer, loss=glue_common.task_loss(self.data.task),
            jit_compile=args.jit_compile)
        os.makedirs(self.out("prune"), exist_ok=True)
        # A killed run left step checkpoints: restore model, optimizers, λ and the random
        # generators, and continue with the batches the interrupted run had not seen.
        tenth = max(1, steps // 10)
        # Every worker restores the chief's latest checkpoint; each saves (a save may be a
        # collective), the chief to the run directory, the others to their scratch.
        saver = callbacks.StepCheckpoint(self.out("prune", "checkpoints"), pruning_model,
                                         every_n_steps=args.checkpoint_every_n_steps or tenth,
                                         restore_from=self.path("prune", "checkpoints"))
        resumed = saver.restore()
        done = int(pruning_model.pruning_step.numpy()) if resumed else first_step
        self.workers.agree("the pruning step to start from", done)
        if resumed:
            print(f"   resuming from {resumed} at step {done} of {steps}")
        saver.step = done
        board = self.tensorboard("prune", initial_step=done)
        split = next(iter(self.data.evals))
        evaluation = callbacks.PeriodicEvaluation(
            self.data.eval_dataset(split, args.eval_batch_size),
            lambda labels, outputs: glue_common.metrics_and_loss(self.data.task, outputs,
                                                                 labels),
            every_n_steps=args.eval_every_n_steps or tenth, tensorboard=board,
            initial_step=done)
        stop = callbacks.StopOnNonFiniteLoss(initial_step=done)
        trace_path = self.out("prune", TRACE)
        if first_step and not os.path.exists(trace_path) and \
                os.path.exists(self.path(CONTINUED, TRACE)):  # the curve goes on, whole
            shutil.copyfile(self.path(CONTINUED, TRACE), trace_path)
        trace = callbacks.StepCSVLogger(trace_path, initial_step=done)
        features = {}
        if pruning_model.teacher is not None and args.hidden_distillation_weight == 0 and \
                args.distillation_weight > 0:
            # Logit distillation from a frozen teacher: its outputs are fixed, computed once.
            features[distillation.TEACHER_LOGITS] = glue_common.teacher_outputs(
                pruning_model.teacher, self.data, keep=[self.teacher_outputs_file()])
        start = time.perf_counter()
        with warnings.catch_warnings():  # missing family members: said below, once
            warnings.filterwarnings("ignore", "The run ended before the constraint")
            history = glue_common.fit_from_step(
                pruning_model, self.data, args.train_batch_size, args.seed, done, steps,
                [board, evaluation, saver, stop, trace], stop, **features)
        logs = {} if history is None else {k: float(v[-1]) for k, v in history.history.items()}
        if stop.failed_step is not None:
            raise common.UsageError(
                f"Non-finite loss at pruning step {stop.failed_step}; the last good checkpoint "
                f"is {saver.manager.latest_checkpoint}. Lower the learning rates.")
        logs.update({"expected_sparsity": float(pruning_model.expected_sparsity()),
                     "lambda_1": float(pruning_model.lambda_1.numpy()),
                     "lambda_2": float(pruning_model.lambda_2.numpy())})
        if args.family is not None:
            self.end_family_pruning(pruning_model, logs, start, steps)
            return
        speedup = "" if args.target_speedup is None else \
            f", expected speedup {1.0 / (1.0 - logs['expected_sparsity']):.2f}x"
        print(f"   prune: expected {self.cost_name()} {logs['expected_sparsity']:.4f} (target "
              f"{args.target_sparsity:.4g}){speedup}, λ1 {logs['lambda_1']:.3f}, "
              f"λ2 {logs['lambda_2']:.3f}")
        gap = logs["expected_sparsity"] - args.target_sparsity
        if abs(gap) > SHORTFALL_TOLERANCE:
            print(f"   note: the expected {self.cost_name()} is {abs(gap):.3f} "
                  f"{'short of' if gap < 0 else 'past'} the target")
        else:  # the training reached its target: the inference mask keeps it
            kf, threshold = self.keras_flop, args.compact_threshold
            cost = pruning_model.cost_model
            before = kf.realized_sparsity(pruning_model, threshold, cost=cost)
            shifts = kf.calibrate_mask(pruning_model, args.target_sparsity,
                                       threshold=threshold)
            if any(shifts):
                logs["mask_shift_all_gates"], logs["mask_shift_unit_gates"] = shifts
                print(f"   inference mask: the gates ended undecided (the compact model would "
                      f"have sparsity {before:.3f}); log α shifted by {shifts[0]:+.3f} (every "
                      f"gate) and {shifts[1]:+.3f} (rank, head and FFN-unit gates) to give "
                      f"{kf.realized_sparsity(pruning_model, threshold, cost=cost):.3f}")
        logs["train_time"] = time.perf_counter() - start
        logs["global_step"] = steps
        self.evaluate_to(pruning_model, "prune", logs)
        common.save_model(pruning_model, self.out("prune", "pruning_model.keras"))

    def end_family_pruning(self, pruning_model, logs, start, steps):
        """The family's prune step ends: which members were snapshotted at which step,
        which are missing; `prune/family.json` lists them for the later steps."""
        members = []
        for i, member in enumerate(pruning_model.family.status(), start=1):
            member = {"member": i, **member}
            members.append(member)
            at = "not reached: missing" if member["snapshot_step"] is None else \
                f"snapshot after step {member['snapshot_step']}"
            print(f"   member {i}: target {self.member_target_text(member)}: {at}")
        missing = [m for m in members if m["snapshot_step"] is None]
        if missing:
            print(f"   note: {len(missing)} of {len(members)} members missing (target "
                  f"{', '.join(self.member_target_text(m) for m in missing)}): the constraint "
                  f"did not hold within {self.args.family_tolerance} for "
                  f"{pruning_model.family_hold_steps} steps before the run ended; continue "
                  "with --start_from prune and a larger --num_train_epochs")
        logs["train_time"] = time.perf_counter() - start
        logs["global_step"] = steps
        logs["family_members_snapshotted"] = len(members) - len(missing)
        self.evaluate_to(pruning_model, "prune", logs)
        common.write_json(self.out("prune", "family.json"), members)
        common.save_model(pruning_model, self.out("prune", "pruning_model.keras"))

    def member_target_text(self, member):
        if "speedup" in member:
            return f"{member['speedup']:.4g}x"
        return f"{member['target']:.4g}"

    def family_members(self, snapshotted=True):
        """The family's members as the prune step left them (`prune/family.json`), those
        with a snapshot only unless `snapshotted` is False."""
        members = common.read_json(self.path("prune", "family.json"))
        return [m for m in members if m["snapshot_step"] is not None or not snapshotted]

    def fisher(self):
        """Retraining-free pruning of the fine-tuned model: Fisher scores, mask search and
        rearrangement, least-squares mask tuning. Saves the gated model that `compact`
        folds, as the Lagrangian's prune step does."""
        from keras_flop.post_training import masked_model, post_training_masks

        args = self.args
        dense = self.load("finetune")
        # Under --target_speedup the search keeps 1/S of the table's predicted time.
        latency = {} if not self.latency_cost() else {
            "cost": "latency", "latency_table": self.measured_latency_table()}
        start = time.perf_counter()
        masks = post_training_masks(
            dense, self.data.train_dataset(args.train_batch_size, args.seed),
            target=1.0 - args.target_sparsity, num_samples=args.num_fisher_samples,
            verbose=glue_common.fit_verbosity(), **latency)
        gated = masked_model(dense, masks)
        seconds = time.perf_counter() - start
        phases = ", ".join(f"{name} {value:.1f} s" for name, value in masks.seconds.items())
        found = {}
        if latency:
            found["predicted_speedup"] = self.keras_flop.predicted_speedup(
                gated, latency["latency_table"], args.compact_threshold)
            kept = (f"a predicted speedup of {found['predicted_speedup']:.2f}x (target "
                    f"{args.target_speedup:.4g}x); {masks.kept_params:,} of "
                    f"{masks.total_params:,} encoder kernel parameters kept")
        else:
            kept = (f"kept {masks.kept_params:,} of {masks.total_params:,} encoder kernel "
                    f"parameters ({masks.kept_params / masks.total_params:.3f}; target "
                    f"{1.0 - args.target_sparsity:.3f})")
        print(f"   fisher: {kept} in {seconds:.1f} s ({phases}); kept heads per layer "
              f"{masks.kept_heads}, FFN units {masks.kept_units}")
        self.evaluate_to(gated, "fisher", {"pruning_time": seconds, "kept_params":
                                           masks.kept_params, **found,
                                           **{f"{k}_time": v for k, v in
                                              masks.seconds.items()}})
        os.makedirs(self.out("fisher"), exist_ok=True)
        common.save_model(gated, self.out("fisher", "pruning_model.keras"))

    def sparsity(self):
        """Target, expected (at the end of pruning) and realized (in the compact model)
        sparsity of the encoder's dense weights, from the files the steps wrote."""
        def read(step, name):
            return common.read_json(self.path(step, name), missing={})

        if self.args.method == "fisher":
            fisher = read("fisher", "eval_results.json")
            if self.latency_cost():  # nothing trains after the search: expected is found
                expected = (1.0 - 1.0 / fisher["predicted_speedup"]
                            if "predicted_speedup" in fisher else None)
            else:
                expected = (1.0 - fisher["kept_params"] / read("compact", "info.json")[
                    "dense_origin_params"]) if "kept_params" in fisher else None
        else:
            expected = read("prune", "eval_results.json").get("expected_sparsity")
        key = "latency_sparsity" if self.latency_cost() else "dense_sparsity"
        if self.args.family is not None:  # per member
            return [{"member": m["member"], "target": m["target"], "realized": read(
                os.path.join("compact", str(m["member"])), "info.json").get(key)}
                for m in self.family_members()]
        return {"target": self.args.target_sparsity, "expected": expected,
                "realized": read("compact", "info.json").get(key)}

    def compact(self):
        kf, args = self.keras_flop, self.args
        source = "fisher" if args.method == "fisher" else "prune"
        pruning_model = self.load(source, "pruning_model.keras")
        if args.family is None:
            self.compact_one(pruning_model, "compact", args.target_speedup)
            return
        for member in self.family_members():
            directory = os.path.join("compact", str(member["member"]))
            if os.path.exists(self.path(directory, "model.keras")):  # before an interruption
                print(f"   member {member['member']}: done already")
                continue
            print(f"   member {member['member']} (target {self.member_target_text(member)}, "
                  f"snapshot after step {member['snapshot_step']})")
            pruning_model.family.load(member["member"] - 1)
            expected = float(pruning_model.expected_sparsity())
            # As the single-target prune step does: the inference mask keeps the target.
            threshold = args.compact_threshold
            before = kf.realized_sparsity(pruning_model, threshold, cost=None)
            shifts = kf.calibrate_mask(pruning_model, member["target"], threshold=threshold)
            if any(shifts):
                print(f"   inference mask calibrated: {self.cost_name()} {before:.3f} -> "
                      f"{kf.realized_sparsity(pruning_model, threshold, cost=None):.3f} "
                      f"(log α shifted by {shifts[0]:+.3f}, {shifts[1]:+.3f})")
            self.compact_one(pruning_model, directory, member.get("speedup"),
                             {"target": member["target"], "member": member["member"],
                              "snapshot_step": member["snapshot_step"],
                              "expected_sparsity": expected})
        open(self.out("compact", "DONE"), "w").close()

    def compact_one(self, pruning_model, directory, target_speedup, family=None):
        """Compacts `pruning_model` into `<directory>/`: the model, its parameter report (with
        the predicted speedup under a latency target) and its dev results."""
        import numpy as np

        kf, args = self.keras_flop, self.args
        compact_model = kf.compact(pruning_model, threshold=args.compact_threshold)
        batch = next(iter(self.data.eval_dataset(next(iter(self.data.evals)), 8)))[0]
        gap = float(np.max(np.abs(np.asarray(compact_model(batch)) -
                                  np.asarray(pruning_model(batch, training=False)))))
        report = kf.parameter_report(pruning_model, threshold=args.compact_threshold)
        if family is not None:
            report.update({f"family_{k}": v for k, v in family.items()})
        if target_speedup is not None:
            # The compact model's latency as the table predicts it, beside the parameters:
            # the table the PruningModel priced units with, or the fisher step's file (its
            # gated classifier carries none).
            cost_model = getattr(pruning_model, "cost_model", None)
            table = cost_model.table if cost_model is not None else \
                self.keras_flop.LatencyTable.load(self.path(self.pricing_step(), LATENCY_TABLE))
            network = getattr(pruning_model, "network", pruning_model)
            dense_seconds = table.dense_seconds(network.layer_shapes)
            speedup = kf.predicted_speedup(pruning_model, table, args.compact_threshold)
            report.update({"target_speedup": target_speedup,
                           "predicted_speedup": speedup,
                           "latency_sparsity": 1.0 - 1.0 / speedup,
                           "predicted_dense_latency_s": dense_seconds,
                           "predicted_latency_s": dense_seconds / speedup,
                           "latency_table_batch_size": table.batch_size,
                           "latency_table_seq_length": table.seq_length})
        os.makedirs(self.out(directory), exist_ok=True)
        kf.write_parameter_report(report, self.out(directory))
        expected = self.sparsity()["expected"] if family is None else family[
            "expected_sparsity"]
        target = args.target_sparsity if family is None else round(family["target"], 4)
        if target_speedup is None:
            print(f"   compact: {report['pruned_total_params']:,} of "
                  f"{report['total_params']:,} parameters ({report['actual_compact_rate']:.3f}); "
                  f"encoder dense sparsity: target {target}, expected "
                  f"{expected:.3f}, realized {report['dense_sparsity']:.3f}; max |compact - "
                  f"gated| = {gap:.2e}")
        else:
            print(f"   compact: {report['pruned_total_params']:,} of "
                  f"{report['total_params']:,} parameters ({report['actual_compact_rate']:.3f}); "
                  f"speedup predicted by the latency table: target {target_speedup:.4g}x, "
                  f"expected {1.0 / (1.0 - expected):.2f}x, compact model "
                  f"{report['predicted_speedup']:.2f}x; max |compact - gated| = {gap:.2e}")
        for key, label in (("kept_heads", "heads"), ("kept_ffn_units", "FFN units")):
            if key in report:
                print(f"   kept {label} per layer: {list(report[key].values())}")
        self.evaluate_to(compact_model, directory, {"parity_max_abs_diff": gap})
        common.save_model(compact_model, self.out(directory, "model.keras"))

    def finetune_compact(self):
        if self.args.family is None:
            self.finetune_one("compact", "finetune_compact")
            return
        for member in self.family_members():
            target = os.path.join("finetune_compact", str(member["member"]))
            if os.path.exists(self.path(target, "model.keras")):  # before an interruption
                print(f"   member {member['member']}: done already")
                continue
            print(f"   member {member['member']} (target {self.member_target_text(member)})")
            self.finetune_one(os.path.join("compact", str(member["member"])), target)
        open(self.out("finetune_compact", "DONE"), "w").close()

    def finetune_one(self, source, directory):
        args = self.args
        model = self.load(source)
        extra = {}
        if args.final_epochs > 0:
            distillation = {}
            if args.final_distillation_weight > 0 or args.final_hidden_distillation_weight > 0:
                distillation = dict(
                    teacher=self.load("finetune"),
                    distillation_weight=args.final_distillation_weight,
                    hidden_distillation_weight=args.final_hidden_distillation_weight,
                    distillation_temperature=args.distillation_temperature,
                    teacher_outputs_file=self.teacher_outputs_file())
            extra = self.fine_tune(model, directory, args.final_learning_rate,
                                   args.final_epochs, **distillation)
        os.makedirs(self.out(directory), exist_ok=True)
        self.evaluate_to(model, directory, extra)
        glue_common.write_test_results(self.out(directory), model, self.data,
                                       args.eval_batch_size)
        self.save_fine_tuned(model, directory)

    def export(self):
        shutil.rmtree(self.out("export"), ignore_errors=True)
        if self.args.family is None:
            self.export_one(self.load("finetune_compact"), None, self.out("export"))
        else:  # one version per member, numbered in target order (a missing one: no folder)
            for member in self.family_members():
                model = self.load(os.path.join("finetune_compact", str(member["member"])))
                self.export_one(model, member["member"],
                                self.out("export", f"{member['member']}_formats"))
        open(self.out("export", "DONE"), "w").close()

    def export_one(self, model, version, others_dir):
        task = self.data.task
        formats = [f.strip() for f in self.args.export_formats.split(",") if f.strip()]
        if "saved_model" in formats:
            path = self.keras_flop.export_saved_model(
                model, self.out("export"), version=version,
                preprocessor=self.data.preprocessor, label_names=list(task.labels) or None)
            print(f"   export: {path}")
        others = [f for f in formats if f != "saved_model"]
        if others:  # beside the version folders, which are all TF Serving reads
            for fmt, path in self.keras_flop.export_formats(model, others_dir,
                                                            others).items():
                print(f"   export: {path} (logits checked in the {fmt} runtime)")

    def report(self):
        from apps.measure import write_family_report, write_report
        (write_report if self.args.family is None else write_family_report)(self)

    def run(self):
        steps = FISHER_STEPS if self.args.method == "fisher" else STEPS
        start = steps.index(self.args.start_from) if self.args.start_from else None
        if start and self.removed(steps[start - 1]):  # checked before anything is redone
            raise common.UsageError(
                f"--start_from {steps[start]} needs the model of the step {steps[start - 1]}, "
                "deleted when the run finished (--keep_intermediate false): pass --start_from "
                f"{steps[start - 1]}.")
        workers = self.workers
        for index, step in enumerate(steps):
            redo = start is not None and index >= start
            # Every worker reads the run directory the chief finished writing, and decides alike.
            skip = workers.agree(f"whether the step {step} is done", self.done(step) and not redo)
            if skip:
                print(f"== {step}: done already ({self.path(step)})")
                continue
            print(f"== {step}")
            continued = redo and step == "prune" and self.continues_pruning()
            workers.agree(f"whether the step {step} continues a finished pruning", continued)
            if workers.chief:  # the run directory is the chief's to change
                if continued:
                    if not os.path.isdir(self.path(CONTINUED)):
                        os.replace(self.path("prune"), self.path(CONTINUED))
                    shutil.rmtree(self.path("prune"), ignore_errors=True)
                elif redo and step != "report":
                    shutil.rmtree(self.path(step), ignore_errors=True)  # no resuming a redone step
            workers.agree(f"the start of the step {step}")
            self.counter = None
            try:
                getattr(self, step)()
                workers.agree(f"the end of the step {step}")  # its files are written
            except KeyboardInterrupt:
                raise common.Interrupted(f"interrupted {self.where(step)}; rerun the same "
                                         "command to continue") from None
            except Exception as e:
                lost = workers.lost(e, self.where(step))
                if lost is None:
                    raise
                raise lost from e
        if workers.chief:
            shutil.rmtree(self.path(CONTINUED), ignore_errors=True)
            if not self.args.keep_intermediate:
                self.drop_intermediate(steps)
        workers.agree("the end of the run")

    def where(self, step):
        """Where in `step` the run is: `at step N of prune`, or `in compact`."""
        return f"at step {self.counter.step} of {step}" if self.counter else f"in {step}"

    def continues_pruning(self):
        """Whether the prune step goes on from the finished one: only the run's length
        changed (`--start_from prune` with a larger --num_train_epochs), or such a
        continuation was interrupted."""
        if os.path.isdir(self.path(CONTINUED)):
            return True
        if self.args.changed_settings not in (["num_train_epochs"], ["pruning_steps"]) or \
                not self.done("prune"):
            return False
        previous = self.load("prune", "pruning_model.keras")
        return int(previous.pruning_step.numpy()) < self.pruning_steps()

    def drop_intermediate(self, steps):
        """Deletes what no step needs once the run has finished (--keep_intermediate false),
        leaving a note in each step directory touched."""
        compact = ["model.keras"] if self.args.family is None else [
            os.path.join(str(m["member"]), "model.keras") for m in self.family_members()] + [
            "DONE"]
        for step, names in (("factorize", ["pruning_model.keras"]),
                            ("prune", ["pruning_model.keras", "checkpoints"]),
                            ("fisher", ["pruning_model.keras"]), ("compact", compact)):
            present = [n for n in names if step in steps and os.path.exists(self.path(step, n))]
            for name in present:
                path = self.path(step, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            if present:
                with open(self.path(step, REMOVED), "w", encoding="utf-8") as f:
                    f.write(f"Deleted when the run finished (--keep_intermediate false): "
                            f"{', '.join(present)}.\n")


@common.main_wrapper
def run(args):
    args = resolve_args(args)
    if args.mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
    common.set_seed(args.seed, not args.nondeterministic)
    strategy = common.make_strategy(args.strategy, args.tpu, args.worker_timeout)
    with common.Workers(strategy, run_dir=args.output_dir) as workers, strategy.scope():
        # Every worker checks the run directory as it is; then the chief prepares it.
        run_dir = prepare_run(args, write=False)
        workers.agree("checking the run directory")
        if workers.chief:
            prepare_run(args)
        workers.agree("preparing the run directory")
        pipeline = Pipeline(args, run_dir, workers)
        pipeline.run()
    logs = "" if args.method == "fisher" else ", TensorBoard logs in prune/logs"
    if not workers.chief:
        print(f"\nWorker {workers.index} of {workers.count} done; the chief (worker 0) wrote "
              f"the outputs to {run_dir}.")
    else:
        print(f"\nAll outputs are in {run_dir}: report.md, info.txt (compact/), the SavedModel "
              f"in export/{logs}.")
    if args.toy:
        print("To run on real data: python -m apps.prune --task sst2 --data_dir GLUE_DIR "
              "--init_checkpoint BERT_CHECKPOINT_DIR --output_dir runs/sst2")
    what = "latency sparsity (1 - latency/dense, predicted)" if pipeline.latency_cost() \
        else "sparsity"
    if args.family is None:
        short = sparsity_shortfall(pipeline.sparsity()["realized"], args.target_sparsity,
                                   what=what)
    else:
        short = family_shortfall(pipeline, what)
    if short and not args.allow_short:
        import sys
        print(f"error: {short}", file=sys.stderr)
        sys.exit(EXIT_SHORT)
    return run_dir


def main(argv=None):
    return run(build_parser(), argv)


if __name__ == "__main__":
    main()
