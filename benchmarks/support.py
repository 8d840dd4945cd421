"""What the benchmarks share: where the real data is, the machine they ran on (the header of
every printed table), the app commands they run (each printed, its output kept in a log), the
teacher they prune, what they read back from a run directory of `apps.prune`, and the speedups
they time (`keras_flop.latency.timing`)."""

import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The pre-trained encoder every benchmark starts from, in the shared data folder.
CHECKPOINT = "minilm-l6-h384-uncased-tf1"


def add_data_argument(parser):
    """`--data`: the shared data folder (GLUE and the checkpoints); default $KERAS_FLOP_DATA,
    else `../shared/data` beside the project."""
    default = os.environ.get("KERAS_FLOP_DATA", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
    parser.add_argument("--data", default=default,
                        help="The shared data folder (GLUE tasks, MiniLM checkpoint).")


def add_model_arguments(parser):
    """`--data`, `--model` (one fine-tuned .keras model), `--vocab` and `--task`: the
    arguments of a benchmark of one model's exported files (checked by `model_vocabulary`)."""
    add_data_argument(parser)
    parser.add_argument("--model", required=True,
                        help="A fine-tuned .keras model (dense or compact), vocab.txt beside it.")
    parser.add_argument("--vocab", default=None,
                        help="The model's vocab.txt; default beside --model, else in the "
                             "apps.prune run's finetune/ (for RUN/finetune_compact/model.keras).")
    parser.add_argument("--task", default="sst2")


def model_vocabulary(parser, args):
    """Checks `args.model` and sets `args.vocab`: given, beside the model, or in the
    apps.prune run's `finetune/` (for `RUN/finetune_compact/model.keras`)."""
    if not os.path.exists(args.model):
        parser.error(f"--model {args.model} does not exist.")
    folder = os.path.dirname(os.path.abspath(args.model))
    candidates = [args.vocab] if args.vocab else [
        os.path.join(folder, "vocab.txt"),
        os.path.join(os.path.dirname(folder), "finetune", "vocab.txt")]
    args.vocab = next((path for path in candidates if os.path.exists(path)), None)
    if args.vocab is None:
        parser.error(f"no vocabulary at {' or '.join(candidates)}: pass --vocab.")


def feature_batches(dataset):
    """The feature dicts (`keras_flop.export.runtimes.feature_batch`) of a labelled dataset's
    batches, and all its labels concatenated."""
    import numpy as np

    from keras_flop.export.runtimes import feature_batch

    pairs = [(feature_batch(x), np.asarray(y)) for x, y in dataset]
    return [x for x, _ in pairs], np.concatenate([y for _, y in pairs])


def ms_and_speedup(rounds, name, count, baseline="keras"):
    """From `calls_in_turn` rounds over `count` batches: `name`'s milliseconds per batch in its
    median round, and its speedup over `baseline` within each round (`ratio_spread`:
    median, min, max)."""
    from keras_flop.latency.timing import ratio_spread

    seconds = sorted(rounds[name])
    return 1e3 * seconds[len(seconds) // 2] / count, ratio_spread(rounds, baseline, name)


def machine_header():
    """One line: CPU model, cores, TensorFlow and Keras versions, thread settings."""
    import keras
    import tensorflow as tf

    from keras_flop.compat import op_determinism_enabled
    from keras_flop.latency.device import cpu_description

    intra = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    inter = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (f"Machine: {cpu_description()}, {os.cpu_count()} cores, "
            f"{gpus or 'no'} GPU{'s' if gpus != 1 else ''}; TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}; TF threads intra-op {intra}, inter-op {inter}; "
            f"op determinism {'on' if op_determinism_enabled() else 'off'}.")


def add_seeds_argument(parser):
    """`--seeds 0,1,2`: the seeds of fine-tuning and pruning; metrics as mean ± std over them.
    `--data_seed` draws the training subset once, so that seeds vary the runs, not the data."""
    parser.add_argument("--seeds", default="0", type=parse_seeds,
                        help="Comma-separated seeds of fine-tuning and pruning (initialization, "
                             "dropout, data order, gates); each metric is reported as mean ± "
                             "standard deviation over them, per-seed values in the JSON.")
    parser.add_argument("--data_seed", type=int, default=0,
                        help="Draws the --max_train_examples subset, the same for every seed.")


def comma_numbers(text, kind=float):
    """The numbers of a comma-separated list such as `"2,3"` as `kind`; `[]` when one of them
    is not a `kind` (the caller says what it needs).

    >>> comma_numbers("2, 3,"), comma_numbers("0,x", int)
    ([2.0, 3.0], [])
    """
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        return []


def parse_seeds(text):
    import argparse

    seeds = comma_numbers(text, int)
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"needs distinct integers such as 0,1,2; got {text!r}")
    return seeds


def mean_std(values, digits=4):
    """`mean ± std` (sample standard deviation) of `values`, or the value alone if there is
    one, with `digits` decimals."""
    import statistics

    values = list(values)
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def fine_tuned_dense(path, data, checkpoint, seed, epochs=2):
    """`(model, how)`: the dense model of `data`'s task loaded from `path` if it exists, else
    the TF1 `checkpoint` fine-tuned with `seed` (`keras_flop.training.fine_tuning.fine_tune`,
    AdamW 5e-5, batch 32, `epochs`) and saved to `path` if one is given; `how` says which, for
    the log."""
    import keras

    import keras_flop
    from apps import common
    from keras_flop.training import fine_tuning

    if path and os.path.exists(path):
        return keras.saving.load_model(path, compile=False), f"loaded {path}"
    keras.utils.set_random_seed(seed)
    dense = keras_flop.load_tf1_checkpoint(checkpoint, num_labels=data.task.num_labels)
    _, seconds = fine_tuning.fine_tune(dense, data, 5e-5, epochs, 32, seed)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        common.save_model(dense, path)
    return dense, f"fine-tuned in {seconds:.0f} s"


def measured_speedups(dense, compact, data, count, batch_sizes=(8, 1), padding="fixed"):
    """`{batch: (speedup, low, high)}`: dense over compact time, run in turn
    (`keras_flop.latency.timing.speedup_in_turn`, median round and min–max over rounds), on
    the first dev examples of `data` padded to its `max_seq_length` (`padding="fixed"`) or
    batched by length as served text is (`"bucketed"`, the apps' length buckets): `count` of
    them at the first batch size, half as many at the others."""
    from keras_flop import glue
    from keras_flop.latency.timing import speedup_in_turn

    split = next(iter(data.evals))
    tokenized = glue.tokenize_examples(data.evals[split][:count], data.task, data.preprocessor,
                                       pad_to_max_length=padding == "fixed")
    speedups = {}
    for index, batch in enumerate(batch_sizes):
        limit = count if index == 0 else count // 2
        batches = [x for x, _ in glue.make_dataset(tokenized, data.task, None, batch)]
        speedups[batch] = speedup_in_turn(dense, compact, batches[:-(-limit // batch)])
    return speedups


def run(command, log):
    """Runs `command` (a list) from the project root with its output shown and kept in
    `log`; an error naming the log if it fails."""
    print("$ " + shlex.join(command), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
    with open(log, "a", encoding="utf-8") as kept:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout:  # shown and kept as it comes
            sys.stdout.write(line)
            sys.stdout.flush()
            kept.write(line)
            kept.flush()
    if process.wait():
        raise SystemExit(f"failed (exit {process.returncode}); its output is in {log}")


def app_command(module, *flags):
    """The command that runs `python -m module flags...` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, flags)]


def shown(command):
    """`command` as a user types it (`python -m ...`): what a row records and prints."""
    return shlex.join(["python"] + list(command[1:]))


def fine_tuned_teacher(data, task, directory, seed, learning_rates="5e-5", flags=(),
                       checkpoint=CHECKPOINT, name="teacher"):
    """The `.keras` path of a dense model of `task` fine-tuned from `checkpoint` (a folder in
    `data`, default the MiniLM-L6 one) by `apps.glue_finetune` into `directory`, over
    `learning_rates` (comma-separated; the app's pick wins: the best dev metric, or the best
    on `--selection_examples` when `flags` hold them), with more `flags` of that app. The
    sweep runs unless it finished (an interrupted one continues: the app resumes the same
    command); its command is printed and its output kept in `<directory>.log`."""
    results = os.path.join(directory, "results.json")
    if not os.path.exists(results):
        run(finetune_command(data, task, directory, seed, learning_rates, flags, checkpoint),
            directory.rstrip("/") + ".log")
    return best_fine_tuned(directory, task, name)


def finetune_command(data, task, directory, seed, learning_rates, flags=(),
                     checkpoint=CHECKPOINT):
    """The `apps.glue_finetune` command of `fine_tuned_teacher`."""
    return app_command("apps.glue_finetune", "--task", task, "--data_dir",
                       os.path.join(data, "glue"), "--init_checkpoint",
                       os.path.join(data, checkpoint), "--output_dir", directory,
                       "--learning_rates", learning_rates, "--seed", seed, *flags)


def best_fine_tuned(directory, task, name="teacher"):
    """The `.keras` path of the run `apps.glue_finetune` picked in `directory` (its
    `results.json` marks it best), said in one line that starts with `name`."""
    from apps import common
    from apps.glue_finetune import best_runs

    runs = [r for r in common.read_json(os.path.join(directory, "results.json"))
            if r["task"] == task]
    best = best_runs(runs)[task]
    scores = ", ".join(f"{r['learning_rate']:g}: {r['eval_score']:.4f}" for r in runs)
    print(f"{name}: learning rate {best['learning_rate']:g} (dev by learning rate {scores})")
    return os.path.join(directory, task, f"lr_{best['learning_rate']:g}", "model.keras")


def dense_model_flags(teacher, data=None):
    """apps.prune's flags that prune `teacher` (a fine-tuned `.keras` file): its vocabulary is
    `vocab.txt` beside it, else the MiniLM checkpoint's in `data`."""
    flags = ["--dense_model", teacher]
    if not os.path.exists(os.path.join(os.path.dirname(os.path.abspath(teacher)), "vocab.txt")):
        flags += ["--vocab_file", os.path.join(data, CHECKPOINT, "vocab.txt")]
    return flags


def run_json(directory, *path, missing=None):
    """A JSON file of a finished apps.prune run, e.g. `run_json(run, "prune",
    "eval_results.json")`; `missing` when it does not exist (an error if that is None)."""
    from apps import common

    return common.read_json(os.path.join(directory, *path), missing=missing)


def eval_data(glue_dir, task, vocab, max_seq_length):
    """The dev split of `task` (no training data) that the benchmarks time models on."""
    from keras_flop.training import data as training_data

    return training_data.load_task_data(glue_dir, task, vocab, max_seq_length,
                                        need_train=False)


def run_speedups(directory, data, count, batch_sizes, compact="finetune_compact"):
    """`{batch: (speedup, low, high)}` of the finished apps.prune run in `directory`: its
    dense model (`finetune/`) and its final compact model (`compact`, a step directory such as
    `finetune_compact/2` for a family's member) timed in turn (`measured_speedups`)."""
    import keras

    import keras_flop  # noqa: F401 -- registers the saved models' layers

    models = [keras.saving.load_model(os.path.join(directory, step, "model.keras"),
                                      compile=False) for step in ("finetune", compact)]
    return measured_speedups(*models, data, count, batch_sizes)


def smoke_flags(args):
    """The smoke mode's apps.prune flags (none without `--smoke`): the toy task's dev set cut
    short, small batches. A benchmark sets the length (32) and the run's steps itself."""
    return ["--max_eval_examples", "32", "--train_batch_size", "16"] if args.smoke else []


def add_smoke_argument(parser):
    parser.add_argument("--smoke", action="store_true",
                        help="A tiny run on the built-in toy task (SST-2 format) with a "
                             "random teacher, to check the benchmark end to end in minutes; "
                             "its figures mean nothing.")


def smoke_fixture(directory):
    """`(glue_dir, teacher)`: the built-in toy task's GLUE folder and an untrained toy
    classifier saved with its vocabulary, under `directory` (made once)."""
    import shutil

    import keras_flop
    from apps import toy_task

    glue_dir = os.path.join(directory, "glue")
    teacher = os.path.join(directory, "teacher", "model.keras")
    if not os.path.exists(teacher):
        _, vocab = toy_task.write_toy_glue(glue_dir, seed=0)
        os.makedirs(os.path.dirname(teacher), exist_ok=True)
        shutil.copyfile(vocab, os.path.join(directory, "teacher", "vocab.txt"))
        keras_flop.build_bert_classifier(toy_task.toy_config(), 2).save(teacher)
    return glue_dir, teacher


def parse_with_smoke(parser, argv, smoke_defaults):
    """`parser`'s arguments; under `--smoke` with `smoke_defaults` as the defaults (flags given
    on the command line still win)."""
    args = parser.parse_args(argv)
    if args.smoke:
        parser.set_defaults(**smoke_defaults)
        args = parser.parse_args(argv)
    return args


def passed_flags(args, names):
    """`--name value` for each of `names` (settings the benchmark shares with the app, by the
    app's flag names) that is not None."""
    flags = []
    for name in names:
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name}", f"{value:g}" if isinstance(value, float) else str(value)]
    return flags


def as_ratio(speedup):
    """`(ratio, low, high)` of compact over dense time from `(speedup, low, high)` of dense over
    compact (the apps' report.json and `measured_speedups`)."""
    median, low, high = speedup
    return 1.0 / median, 1.0 / high, 1.0 / low


def command_lines(rows, what="row"):
    """The lines that end a printed table: the command of every row, as a user types it, each
    once (the rows of one run, such as its runtimes, share it)."""
    commands = [r.get("command", f"(not recorded with this {what})") for r in rows]
    return ["", f"Commands (one per {what}, each once):"] + [
        "    " + command for command in dict.fromkeys(commands)]
