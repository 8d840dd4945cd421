"""Fine-tune a dense BERT on one or all GLUE tasks with a learning-rate sweep.

    python -m apps.glue_finetune --task all --data_dir GLUE_DIR \\
        --init_checkpoint CHECKPOINT_DIR --output_dir runs/glue

`CHECKPOINT_DIR` is a TF1 checkpoint, a Hugging Face BERT, RoBERTa, XLM-RoBERTa or DistilBERT
directory (config.json, model.safetensors, and vocab.txt, vocab.json + merges.txt or
sentencepiece.bpe.model) or a keras-hub preset directory, told apart by its files.
For each task present in `--data_dir` (absent ones are skipped with a message) and each
learning rate, writes `OUTPUT_DIR/<task>/lr_<rate>/eval_results.txt` (and `.json`),
`test_results.tsv` in GLUE's submission format, TensorBoard `logs/`, and `model.keras` with
its tokenizer file (`python -m apps.prune --dense_model .../model.keras` prunes it); per sweep
`OUTPUT_DIR/results.md` and `results.json`: every run, best per task (by the dev score, or by
the score on `--selection_examples` held-out training examples when given, so that dev is not
chosen on). Rerunning the same
command continues the sweep: finished runs are kept, and an interrupted one goes on from its
last step checkpoint (every tenth of the run).
"""

import json
import os
import shutil
import time

from apps import common, results
from apps.workers import make_strategy

# The score the sweep chooses by when a selection split was held out (eval_results' key).
SELECTION_SCORE = "selection_eval_score"


def build_parser():
    parser = common.parser("apps.glue_finetune", __doc__)
    parser.add_argument("--task", required=True,
                        type=lambda text: common.task_name(text, allow_all=True),
                        help=f"GLUE task: {', '.join(common.GLUE_TASKS)} (or its directory "
                             "name, e.g. SST-2), or all (every task present in --data_dir).")
    parser.add_argument("--data_dir", required=True, help="GLUE directory (<dir>/<TASK>/*.tsv).")
    parser.add_argument("--init_checkpoint", required=True,
                        help="BERT checkpoint, told apart by its files: a TF1 checkpoint "
                             "directory (bert_config.json, vocab.txt, bert_model.ckpt*) or "
                             "prefix, a Hugging Face BERT, RoBERTa, XLM-RoBERTa or DistilBERT "
                             "directory (config.json, model.safetensors, and vocab.txt, "
                             "vocab.json + merges.txt or sentencepiece.bpe.model) or a "
                             "keras-hub preset directory "
                             "(save_to_preset: config.json, model.weights.h5, "
                             "assets/tokenizer/vocabulary.txt).")
    parser.add_argument("--bert_config_file", default=None,
                        help="TF1 checkpoints: default bert_config.json beside the checkpoint.")
    parser.add_argument("--vocab_file", default=None,
                        help="The tokenizer file, of the checkpoint's family (a WordPiece "
                             "vocab.txt, RoBERTa's vocab.json with merges.txt beside it, "
                             "XLM-R's sentencepiece.bpe.model). Default: the checkpoint's own "
                             "(beside it, or a keras-hub preset's "
                             "assets/tokenizer/vocabulary.txt).")
    parser.add_argument("--learning_rates", default="5e-5,4e-5,3e-5,2e-5",
                        help="Comma-separated learning rates of the sweep: one run each.")
    parser.add_argument("--num_train_epochs", type=float, default=3.0,
                        help="Training epochs (rounded to whole epochs, at least 1).")
    parser.add_argument("--train_batch_size", type=int, default=32,
                        help="Batch size of every training step.")
    parser.add_argument("--eval_batch_size", type=int, default=32,
                        help="Batch size of evaluation and test predictions.")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="Texts are truncated to this many word pieces.")
    parser.add_argument("--warmup_proportion", type=float, default=0.1,
                        help="Fraction of the steps with a linear learning-rate warmup.")
    common.add_batching_flags(parser)
    parser.add_argument("--max_train_examples", type=int, default=None,
                        help="Train on a random subset of this size (quick runs).")
    parser.add_argument("--max_eval_examples", type=int, default=None,
                        help="Evaluate on a random subset of this size; default: all.")
    common.add_selection_flags(parser, "every run is scored on it beside dev (selection_* in "
                                       "eval_results), and the sweep picks each task's best "
                                       "learning rate by it instead of by dev")
    parser.add_argument("--jit_compile", action="store_true",
                        help="XLA (faster on GPUs; measured slower on our 2-core CPU).")
    parser.add_argument("--mixed_precision", action="store_true", help="mixed_float16.")
    common.add_common_flags(parser)
    return parser


def parse_learning_rates(text):
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise common.UsageError(f"--learning_rates must be comma-separated numbers; got "
                                f"{text!r}.") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise common.UsageError(f"--learning_rates must be positive numbers; got {text!r}.")
    return rates


def describe_checkpoint(args):
    """The `--init_checkpoint` (`keras_flop.checkpoints.detect.Checkpoint`: TF1, Hugging Face
    or keras-hub preset), its config and vocabulary with the flags' defaults, checked."""
    from keras_flop.checkpoints.detect import describe_checkpoint as describe

    checkpoint = describe(args.init_checkpoint, args.bert_config_file, args.vocab_file)
    config = checkpoint.config
    if args.max_seq_length > config.max_sequence_length:
        raise common.UsageError(f"--max_seq_length {args.max_seq_length} exceeds the model's "
                                f"longest sequence, {config.max_sequence_length} "
                                "(max_position_embeddings less RoBERTa's position offset).")
    return checkpoint


def checkpoint_files(args):
    """(config, vocab file) of `--init_checkpoint`, checked (`describe_checkpoint`)."""
    checkpoint = describe_checkpoint(args)
    return checkpoint.config, checkpoint.vocab_file


def check_common_args(args):
    if args.max_seq_length < 3:
        raise common.UsageError(f"--max_seq_length must be >= 3; got {args.max_seq_length}.")
    for flag in ("train_batch_size", "eval_batch_size"):
        if getattr(args, flag) < 1:
            raise common.UsageError(f"--{flag} must be >= 1; got {getattr(args, flag)}.")
    if args.num_train_epochs <= 0:
        raise common.UsageError(f"--num_train_epochs must be > 0; got {args.num_train_epochs}.")
    common.check_selection_flags(args)


def select_tasks(task_arg, data_dir):
    from keras_flop import glue

    if not os.path.isdir(data_dir):
        raise common.UsageError(f"GLUE data directory not found: {data_dir}")
    if task_arg.lower() != "all":
        return [glue.get_task(task_arg)]
    present = []
    for task in glue.TASKS.values():
        if os.path.isdir(glue.readers.task_dir(data_dir, task)):
            present.append(task)
        else:
            print(f"Skipping {task.name}: no {task.directory}/ in {data_dir}.")
    if not present:
        raise common.UsageError(f"No GLUE task directory found in {data_dir}.")
    return present


def run_one(args, checkpoint, data, learning_rate, run_dir):
    from keras_flop.training.callbacks import PruningTensorBoard
    from keras_flop.training.evaluation import evaluate
    from keras_flop.text.subword import copy_tokenizer
    from keras_flop.training.fine_tuning import fine_tune

    common.set_seed(args.seed, not args.nondeterministic)
    model, vocab, _ = checkpoint.load(num_labels=data.task.num_labels)
    epochs = max(1, int(round(args.num_train_epochs)))
    board = PruningTensorBoard(os.path.join(run_dir, "logs"),
                               hparams={"task": data.task.name, "learning_rate": learning_rate,
                                        "epochs": epochs, "seed": args.seed})
    # Step checkpoints: the same command continues an interrupted run where it stopped.
    checkpoints = os.path.join(run_dir, "checkpoints")
    history, train_time = fine_tune(
        model, data, learning_rate, epochs, args.train_batch_size, args.seed, [board],
        jit_compile=args.jit_compile, warmup_proportion=args.warmup_proportion,
        checkpoint_dir=checkpoints)
    evaluation = evaluate(model, data, args.eval_batch_size)
    board.write({k: v for k, v in next(iter(evaluation.values())).items()
                 if k.startswith("eval_") and k not in ("eval_time", "eval_examples")}, "eval")
    steps = epochs * -(-len(data.train) // args.train_batch_size)
    extra = {"global_step": steps, "loss": float(history.history["loss"][-1]),
             "train_time": train_time, "learning_rate": learning_rate,
             "train_examples": len(data.train), "seed": args.seed}
    if args.selection_examples:
        extra["selection_seed"] = args.selection_seed
    flat = results.write_eval_results(run_dir, evaluation, extra)
    results.write_test_results(run_dir, model, data, args.eval_batch_size)
    copy_tokenizer(vocab, run_dir)  # the model's inputs' meaning
    common.save_model(model, os.path.join(run_dir, "model.keras"))  # the run is done
    shutil.rmtree(checkpoints, ignore_errors=True)
    return flat


def chosen_by(rows):
    """The score the sweep picks a learning rate by: the selection split's when the runs were
    scored on one (held-out training examples), so that dev is only reported; else dev's."""
    return SELECTION_SCORE if rows and all(SELECTION_SCORE in r for r in rows) \
        else "eval_score"


def best_runs(rows):
    """The run of each task with the best score (`chosen_by` its task's runs), by task."""
    best = {}
    for task in dict.fromkeys(row["task"] for row in rows):
        runs = [row for row in rows if row["task"] == task]
        key = chosen_by(runs)
        best[task] = max(runs, key=lambda row: row[key])  # the first of equal scores
    return best


def write_sweep_tables(output_dir, rows):
    common.write_json(os.path.join(output_dir, "results.json"), rows)
    selection = chosen_by(rows) == SELECTION_SCORE
    dev = "dev " if selection else ""  # which split each column scores, once there are two
    lines = ["| task | learning rate | " + ("selection score | " if selection else "") +
             f"{dev}score | {dev}accuracy | {dev or 'eval '}loss | steps | train s | best |",
             "|---" * (8 + selection) + "|"]
    best = best_runs(rows)
    for row in rows:
        mark = "**best**" if best[row["task"]] is row else ""
        accuracy = row.get("eval_accuracy")  # none for STS-B, a regression
        accuracy = "–" if accuracy is None else f"{accuracy:.4f}"
        chosen = f"{row[SELECTION_SCORE]:.4f} | " if selection else ""
        lines.append(f"| {row['task']} | {row['learning_rate']:g} | {chosen}"
                     f"{row['eval_score']:.4f} | {accuracy} | {row['eval_loss']:.4f} | "
                     f"{row['global_step']} | {row['train_time']:.0f} | {mark} |")
    if selection:
        held = rows[0].get("selection_eval_examples", "--selection_examples")
        lines += ["", f"Best learning rate chosen by the selection split's score ({held} "
                      "training examples held out, never trained on); the dev columns are "
                      "reported, not chosen on."]
    path = os.path.join(output_dir, "results.md")
    common.write_text(path, "\n".join(lines) + "\n")
    return path


@common.main_wrapper
def run(args):
    if not args.output_dir:
        raise common.UsageError("--output_dir is required.")
    if args.strategy == "multi_worker":  # every worker would write the same files
        raise common.UsageError("--strategy multi_worker is run by apps.prune (only its chief "
                                "writes the outputs); apps.glue_finetune runs on one machine.")
    check_common_args(args)
    rates = parse_learning_rates(args.learning_rates)
    tasks = select_tasks(args.task, args.data_dir)
    checkpoint = describe_checkpoint(args)
    output_dir = prepare_sweep_dir(args)
    if args.mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy("mixed_float16")
    with make_strategy(args.strategy, args.tpu).scope():
        rows = sweep(args, tasks, rates, checkpoint, output_dir)
    if not rows:
        raise common.UsageError(f"No task in {args.data_dir} has both train and dev splits.")
    table = write_sweep_tables(output_dir, rows)
    print(open(table).read())
    print(f"Results: {table}")
    return rows


def prepare_sweep_dir(args):
    """A new output directory, or the one an earlier run of the same command left: that run
    is continued (finished runs kept, an interrupted one resumed from its checkpoints)."""
    settings_path = os.path.join(args.output_dir, "hparams.json")
    settings = json.loads(json.dumps({k: v for k, v in vars(args).items() if k != "overwrite"},
                                     default=str))
    if not args.overwrite and common.read_json(settings_path, {}) == settings:
        print(f"Continuing the sweep in {args.output_dir}: finished runs are kept.")
        return args.output_dir
    output_dir = common.prepare_output_dir(args.output_dir, args.overwrite)
    common.write_json(settings_path, settings)
    return output_dir


def sweep(args, tasks, rates, checkpoint, output_dir):
    from keras_flop.training.data import load_task_data

    rows = []
    for task in tasks:
        try:
            data = load_task_data(
                args.data_dir, task, checkpoint.vocab_file, args.max_seq_length,
                args.max_train_examples, args.max_eval_examples, args.seed,
                pad_to_max_length=args.pad_to_max_length,
                boundaries=common.bucket_boundaries(args),
                selection_examples=args.selection_examples, selection_seed=args.selection_seed)
        except ValueError as e:
            if args.task.lower() != "all":
                raise
            print(f"Skipping {task.name}: {e}")
            continue
        for rate in rates:
            run_dir = os.path.join(output_dir, task.name, f"lr_{rate:g}")
            held = f", {args.selection_examples} held out for selection" \
                if args.selection_examples else ""
            print(f"== {task.name}, learning rate {rate:g}: {len(data.train)} training "
                  f"examples{held}")
            started = time.perf_counter()
            if os.path.exists(os.path.join(run_dir, "model.keras")):
                print("   done already")
                flat = common.read_json(os.path.join(run_dir, "eval_results.json"))
            else:
                flat = run_one(args, checkpoint, data, rate, run_dir)
            chosen = f", selection score {flat[SELECTION_SCORE]:.4f}" \
                if SELECTION_SCORE in flat else ""
            print(f"   {task.name} lr {rate:g}: score {flat['eval_score']:.4f}{chosen} "
                  f"({time.perf_counter() - started:.0f} s) -> {run_dir}")
            rows.append({"task": task.name, **flat})
            write_sweep_tables(output_dir, rows)
    return rows


def main(argv=None):
    return run(build_parser(), argv)


if __name__ == "__main__":
    main()
