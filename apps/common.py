"""What every app shares: flags and their help, argument checks, one-line errors, a quiet
TensorFlow, output directories, atomic files, seeds.

Nothing here imports TensorFlow at module level: `--help` and flag errors answer at once.
"""

import argparse
import contextlib
import functools
import json
import logging
import os
import shutil
import sys

# keras_flop.glue.TASKS (name -> GLUE directory), spelled out so that --help and flag errors
# need no TensorFlow import (a test keeps the two equal).
GLUE_TASKS = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}


class UsageError(ValueError):
    """Bad input from the command line or its files: exit status 2, one line, no traceback."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with where it stopped: the apps print this one line and exit with status 130."""


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run died or stopped answering: one line, exit status
    EXIT_WORKER_LOST, and no wait for the cluster's orderly shutdown (it would wait for the
    dead worker)."""


# sysexits' EX_TEMPFAIL: the run may be retried; rerunning the same commands continues it.
EXIT_WORKER_LOST = 75
# Default bound, in seconds, on every collective and barrier of a multi-worker run.
WORKER_TIMEOUT = 600


def task_name(text, allow_all=False):
    """The canonical name of a GLUE task given by name or directory (`SST-2`, `sst2`)."""
    key = text.lower().replace("-", "").replace("_", "")
    if allow_all and key == "all":
        return "all"
    for name, directory in GLUE_TASKS.items():
        if key in (name, directory.lower().replace("-", "")):
            return name
    names = ", ".join(GLUE_TASKS) + (", all" if allow_all else "")
    raise argparse.ArgumentTypeError(f"Unknown GLUE task {text!r}; choose from {names}.")


def boolean(text):
    """`true`/`false` (also 1/0, yes/no) for flags that default to true."""
    value = text.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false; got {text!r}")


def add_common_flags(parser):
    parser.add_argument("--output_dir", required=False, help="Where the run's outputs go.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a non-empty output directory.")
    parser.add_argument("--seed", type=int, default=0,
                        help="Random seed of weights, data order and gates (recorded).")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="Let TensorFlow use nondeterministic kernels (see the README: "
                             "without it a repeated command gives the same digits on the same "
                             "machine).")
    parser.add_argument("--verbose", action="store_true",
                        help="Show TensorFlow's own log lines, and tracebacks on errors.")
    parser.add_argument("--strategy", choices=("none", "mirrored", "multi_worker", "tpu"),
                        default="none",
                        help="tf.distribute strategy: all local GPUs (mirrored), several "
                             "machines configured by TF_CONFIG (multi_worker), or a TPU "
                             "(--tpu names it).")
    parser.add_argument("--tpu", default="", help="TPU name or address for --strategy tpu.")
    parser.add_argument("--worker_timeout", type=float, default=WORKER_TIMEOUT,
                        help="--strategy multi_worker: seconds a worker waits for the others at "
                             "a barrier between steps before it gives up with an error (a "
                             "killed or unreachable worker is noticed sooner, see the README).")


def add_batching_flags(parser):
    parser.add_argument("--pad_to_max_length", action="store_true",
                        help="Pad every batch to --max_seq_length (fixed shapes). Default: "
                             "batches of examples of similar length, each padded to the "
                             "smallest --bucket_boundaries value that fits it.")
    parser.add_argument("--bucket_boundaries", default=None,
                        help="Comma-separated padded lengths; default 8,16,24,32,48,64,96,"
                             "128,... up to --max_seq_length, which is always the last.")


def add_selection_flags(parser, use):
    """--selection_examples and --selection_seed; `use` says what the app does with the
    split."""
    parser.add_argument("--selection_examples", type=int, default=0,
                        help="Hold this many training examples out as the split `selection`, "
                             "never trained on (taken out before --max_train_examples draws "
                             f"its subset); {use}. 0: no selection split.")
    parser.add_argument("--selection_seed", type=int, default=0,
                        help="Draws the --selection_examples, apart from --seed: runs with "
                             "other seeds hold out the same examples.")


def check_selection_flags(args):
    for flag in ("selection_examples", "selection_seed"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag} must be >= 0; got {getattr(args, flag)}.")


def bucket_boundaries(args):
    """`--bucket_boundaries` as a list of ints (None: the default), checked."""
    if not args.bucket_boundaries:
        return None
    try:
        values = [int(part) for part in args.bucket_boundaries.split(",") if part.strip()]
    except ValueError:
        raise UsageError("--bucket_boundaries must be comma-separated integers; got "
                         f"{args.bucket_boundaries!r}.") from None
    if not values or min(values) < 1 or max(values) > args.max_seq_length:
        raise UsageError(f"--bucket_boundaries must be integers in [1, --max_seq_length "
                         f"{args.max_seq_length}]; got {args.bucket_boundaries!r}.")
    return values


def main_wrapper(run):
    """Runs `run(args)` after a quiet TensorFlow import; bad input exits with status 2 and a
    one-line message, Ctrl-C with status 130 and one line saying where it stopped."""
    @functools.wraps(run)
    def main(parser, argv=None):
        args = parser.parse_args(argv)
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.ERROR)
        try:
            import_tensorflow(verbose)
            from keras_flop.latency.device import describe_devices

            print(f"device: {describe_devices()}")
            return run(args)
        except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
            if verbose:
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        except WorkerLost as e:
            if verbose:
                raise
            print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_WORKER_LOST)  # not sys.exit: TensorFlow's shutdown waits for the lost
        except KeyboardInterrupt as e:
            if verbose:
                raise
            where = str(e) if isinstance(e, Interrupted) else \
                "interrupted; rerun the same command to continue"
            print(f"\n{where}", file=sys.stderr)
            sys.exit(130)
    return main


@contextlib.contextmanager
def _stderr_to_devnull():
    """Points file descriptor 2 at /dev/null: TensorFlow's C++ libraries log there while they
    load, before TF_CPP_MIN_LOG_LEVEL is read (the CUDA probes on a CPU-only machine)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow(verbose=False):
    """Imports TensorFlow: all its log lines with `verbose`, otherwise none (the level has to
    be set before the first import)."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with contextlib.nullcontext() if verbose else _stderr_to_devnull():
        import tensorflow as tf
    return tf


def prepare_output_dir(path, overwrite=False, create=True):
    """Creates `path`; a non-empty one is an error unless `overwrite`. `create=False` only
    checks (the workers of a multi-worker run that do not write it)."""
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise UsageError(f"Output directory {path} is not empty: pass --overwrite to "
                             "replace it, or choose another --output_dir.")
        if not create:
            return path
        shutil.rmtree(path)
    if not create:
        return path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"Cannot create output directory {path}: {e.strerror}.") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"Output directory {path} is not writable.")
    return path


def read_json(path, missing=None):
    """The JSON value in `path`; `missing` when there is no such file, if `missing` is given."""
    if missing is not None and not os.path.exists(path):
        return missing
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_text(path, text):
    """Writes `text` under a temporary name, then renames: no half-written file."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path, value):
    """Writes JSON as `write_text` does."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def save_model(model, path):
    """Saves `model` (architecture and weights, no optimizer state) to a temporary name, then
    renames. A compiled model is saved as an uncompiled copy: its optimizer state would double
    or triple the file, and no step resumes from it (the pruning step resumes from its own
    `tf.train` checkpoints)."""
    if getattr(model, "compiled", False) or getattr(model, "optimizer", None) is not None:
        copy = type(model).from_config(model.get_config())
        if [v.path for v in copy.weights] != [v.path for v in model.weights]:
            raise ValueError(f"Cannot copy {type(model).__name__} for saving: its rebuilt "
                             "weights differ from the model's.")
        copy.set_weights(model.get_weights())
        model = copy
    temporary = path + ".tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)
    return path


def set_seed(seed, deterministic=True):
    """Seeds Python, NumPy, TensorFlow and Keras; `deterministic` also makes TensorFlow pick
    deterministic kernels (same machine, same command: same digits)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # The apps' one-line format for every bad flag, argparse's own checks included.
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """States each default once: argparse's "(default: X)" only where the help does not say
    it already and X is a value (a None default is resolved later and described in the help;
    a switch's False goes without saying)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if not action.option_strings or default is None or default is False or \
                default in ("", argparse.SUPPRESS) or "default" in text.lower():
            return text
        return text + " (default: %(default)s)"


def parser(module, doc):
    """The parser of `python -m <module>`, its docstring as the description."""
    return _ArgumentParser(prog=f"python -m {module}", description=doc,
                           formatter_class=_HelpFormatter)
