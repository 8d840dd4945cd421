"""The command line of `python -m apps.prune`: its flags, their help, and the names of the
steps. Nothing here imports TensorFlow: `--help` answers at once."""

from apps import common

STEPS = ("finetune", "factorize", "prune", "compact", "finetune_compact", "export", "report")
FISHER_STEPS = ("finetune", "fisher", "compact", "finetune_compact", "export", "report")
# The compact models a user would pick instead of pruning (apps.prune.baselines): made by the
# compact step, then fine-tuned, exported and reported as a pruned one is.
BASELINE_METHODS = ("drop_layers", "student")
BASELINE_STEPS = ("finetune", "compact", "finetune_compact", "export", "report")
METHODS = ("lagrangian", "fisher") + BASELINE_METHODS
SCHEDULES = ("run", "noam")
# How far short of the target a run may end before the app reports failure (exit status
# EXIT_SHORT): keras_flop.gates.sparsity.TARGET_TOLERANCE, spelled out so that --help needs no
# TensorFlow import (a test keeps the two equal).
SHORTFALL_TOLERANCE = 0.02
EXIT_SHORT = 3
# The shortest run the sized schedules were measured to bring to their target.
MIN_SIZED_STEPS = 100
# A family's pruning run is this many times the single-target default length (the issue's
# budget: three members for at most 1.5 times the wall time of one single-target run).
FAMILY_LENGTH = 1.5
# keras_flop.gates.structure.STRUCTURES, spelled out so that --help and flag errors need no
# TensorFlow import (a test keeps the two equal).
STRUCTURES = ("rank", "heads+ffn", "heads+ffn+layers", "all")
# keras_flop.export.requirements.FORMATS, and the packages of each format (its _REQUIREMENTS)
# with the extra that installs them, spelled out for the same reason (a test keeps them equal).
EXPORT_FORMATS = ("saved_model", "onnx", "litert", "onnx_int8", "litert_int8")
EXPORT_PACKAGES = {"onnx": (("tf2onnx", "onnxruntime"), "onnx"),
                   "litert": (("ai_edge_litert",), "litert"),
                   "onnx_int8": (("tf2onnx", "onnxruntime", "onnx"), "onnx"),
                   "litert_int8": (("ai_edge_litert",), "litert")}
# The dev examples an INT8 export's agreement with the float model is measured on.
EXPORT_AGREEMENT_EXAMPLES = 256


def method_steps(method):
    """The steps of a run of `--method method`, in order."""
    return FISHER_STEPS if method == "fisher" else \
        BASELINE_STEPS if method in BASELINE_METHODS else STEPS


def build_parser():
    import apps.prune

    parser = common.parser("apps.prune", apps.prune.__doc__)
    data = parser.add_argument_group("task and model")
    data.add_argument("--task", default=None, type=common.task_name,
                      help=f"GLUE task: {', '.join(common.GLUE_TASKS)} (or its directory "
                           "name, e.g. SST-2). Default: the built-in toy sentiment task.")
    data.add_argument("--data_dir", default=None, help="GLUE directory (<dir>/<TASK>/*.tsv).")
    data.add_argument("--init_checkpoint", default=None,
                      help="BERT checkpoint (pre-trained or fine-tuned), told apart by its "
                           "files: a TF1 checkpoint dir or prefix (bert_config.json, vocab.txt, "
                           "bert_model.ckpt*), a Hugging Face BERT, RoBERTa, XLM-RoBERTa or "
                           "DistilBERT dir (config.json, model.safetensors, and vocab.txt, "
                           "vocab.json + merges.txt or sentencepiece.bpe.model) or a "
                           "keras-hub preset dir "
                           "(save_to_preset: config.json, model.weights.h5, "
                           "assets/tokenizer/vocabulary.txt).")
    data.add_argument("--bert_config_file", default=None,
                      help="TF1 checkpoints: default bert_config.json beside the checkpoint.")
    data.add_argument("--vocab_file", default=None,
                      help="The tokenizer file, of the checkpoint's family (a WordPiece "
                           "vocab.txt, RoBERTa's vocab.json with merges.txt beside it, XLM-R's "
                           "sentencepiece.bpe.model). Default: the checkpoint's own (beside "
                           "it, or a keras-hub preset's assets/tokenizer/vocabulary.txt).")
    data.add_argument("--keras_hub_model", default=None,
                      help="A fine-tuned keras-hub classifier's .keras file (BERT family, see "
                           "keras_flop.from_keras_hub), instead of --init_checkpoint; the dense "
                           "fine-tuning is skipped. Vocabulary: its saved preprocessor's, else "
                           "--vocab_file.")
    data.add_argument("--dense_model", default=None,
                      help="A fine-tuned keras-flop classifier's .keras file (apps.glue_finetune's "
                           "model.keras, or a run's finetune/model.keras), instead of "
                           "--init_checkpoint: one teacher for many pruning runs; the dense "
                           "fine-tuning is skipped. Tokenizer: the vocab.txt, vocab.json or "
                           "sentencepiece.bpe.model beside it, else --vocab_file.")
    data.add_argument("--pipeline", choices=("seed", "paper"), default="seed",
                      help="seed: fine-tune dense, then train only gates and λ (model lr 0); "
                           "paper: factorize the pre-trained model, train all jointly.")
    data.add_argument("--method", choices=METHODS, default="lagrangian",
                      help="lagrangian: gates trained under the Lagrangian (FLOP); fisher: "
                           "retraining-free pruning of heads and FFN units in minutes (Kwon et "
                           "al. 2022: Fisher scores, mask search, least-squares tuning); "
                           "baselines, not pruning: drop_layers keeps the dense model's bottom "
                           "--keep_layers encoder layers (Sajjad et al.), student is the "
                           "pre-trained --student_checkpoint with a fresh head; either is then "
                           "fine-tuned by the final step (distilled from the dense model with "
                           "--final_distillation_weight).")
    data.add_argument("--keep_layers", type=int, default=None,
                      help="--method drop_layers: how many encoder layers to keep, from the "
                           "bottom.")
    data.add_argument("--student_checkpoint", default=None,
                      help="--method student: a smaller pre-trained BERT checkpoint (any kind "
                           "--init_checkpoint takes) with the dense model's vocabulary.")
    data.add_argument("--max_seq_length", type=int, default=None,
                      help="Default 128 (32 for the toy task).")
    data.add_argument("--max_train_examples", type=int, default=None,
                      help="Train on a random subset of this size (quick runs); default: all.")
    data.add_argument("--max_eval_examples", type=int, default=None,
                      help="Evaluate on a random subset of this size; default: all.")
    common.add_selection_flags(data, "each step's results score it beside dev "
                                     "(selection_* in <step>/eval_results.json)")
    common.add_batching_flags(data)
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
    train.add_argument("--latency_lengths", choices=("padded", "train"), default="padded",
                       help="The lengths the measured latency table times (without "
                            "--latency_table): every input --max_seq_length long (padded), or "
                            "the training set's batches at their bucketed lengths (train), so "
                            "that --target_speedup aims at the speed of text at its real "
                            "length; the report then compares it with the length-bucketed "
                            "speedup.")
    train.add_argument("--target_start", choices=("auto", "zero", "gates"), default="auto",
                       help="Where the target's warmup starts: at 0 (zero), or at the gates' "
                            "expected cost when pruning starts (gates: under --init_mask "
                            "fisher, the Fisher mask's, which the Lagrangian then keeps "
                            "instead of reopening gates to meet a target that starts at 0). "
                            "auto: gates under --init_mask fisher, zero otherwise.")
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
    train.add_argument("--last_layer_heads", type=int, default=1,
                       help="Heads the Fisher mask keeps in the last encoder layer whatever "
                            "their score: the classifier pools the first token, which reads "
                            "the sentence through that layer's attention (with none, MiniLM "
                            "gave every SST-2 sentence the same logits); 0: the plain search.")
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

    train.add_argument("--report_examples", type=int, default=256,
                       help="Dev examples the report times, dense and compact in turn (a "
                            "sample drawn once, enough for a stable ratio; the rounds' spread "
                            "is shown); 0 times the whole dev set. Its runtime table times at "
                            "most 32 batches of each size of them.")
    train.add_argument("--export_formats", default="saved_model",
                       help="Comma-separated, from saved_model, onnx, litert, onnx_int8, "
                            "litert_int8 (onnx* and litert* need pip install "
                            "\"keras-flop[onnx]\" / \"keras-flop[litert]\"). The _int8 files "
                            "have int8 weights; each is checked against the float model's "
                            f"predictions on {EXPORT_AGREEMENT_EXAMPLES} dev examples. With onnx* "
                            "or litert*, the report adds a runtime table: the dense and the "
                            "compact model in Keras and each of these formats (dev metric, "
                            "latency at batch 8 and 1, speedup, file size).")
    train.add_argument("--export_min_agreement", type=float, default=0.9,
                       help="The smallest share of those dev examples on which an _int8 file "
                            "must predict what the float model predicts; below it the export "
                            "fails and writes no file.")

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
