"""What every app shares: argument checks, one-line errors, output directories, seeds."""

import argparse
import functools
import json
import logging
import os
import shutil
import sys
import time


class UsageError(ValueError):
    """Bad input from the command line or its files: exit status 2, one line, no traceback."""


def add_common_flags(parser):
    parser.add_argument("--output_dir", required=False, help="Where the run's outputs go.")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace a non-empty output directory.")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (recorded).")
    parser.add_argument("--nondeterministic", action="store_true",
                        help="Let TensorFlow use nondeterministic kernels (see the README: "
                             "without it a repeated command gives the same digits on the same "
                             "machine).")
    parser.add_argument("--verbose", action="store_true", help="Tracebacks on errors.")
    parser.add_argument("--strategy", choices=("none", "mirrored", "multi_worker", "tpu"),
                        default="none",
                        help="tf.distribute strategy: all local GPUs (mirrored), several "
                             "machines configured by TF_CONFIG (multi_worker), or a TPU "
                             "(--tpu names it).")
    parser.add_argument("--tpu", default="", help="TPU name or address for --strategy tpu.")


def main_wrapper(run):
    """Runs `run(args)`; bad input exits with status 2 and a one-line message."""
    @functools.wraps(run)
    def main(parser, argv=None):
        args = parser.parse_args(argv)
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        for noisy in ("absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            return run(args)
        except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
            if getattr(args, "verbose", False):
                raise
            message = " ".join(str(e).split()) or type(e).__name__
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
    return main


def prepare_output_dir(path, overwrite=False):
    """Creates `path`; a non-empty one is an error unless `overwrite`."""
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise UsageError(f"Output directory {path} is not empty: pass --overwrite to "
                             "replace it, or choose another --output_dir.")
        shutil.rmtree(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UsageError(f"Cannot create output directory {path}: {e.strerror}.") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"Output directory {path} is not writable.")
    return path


def write_json(path, value):
    """Writes JSON under a temporary name, then renames: no half-written file."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(path + ".tmp", path)


def save_model(model, path):
    """`model.save` to a temporary name, then rename."""
    temporary = path + ".tmp.keras"
    model.save(temporary)
    os.replace(temporary, path)
    return path


def make_strategy(name, tpu=""):
    """The `tf.distribute` strategy an app runs under (`none`: the default strategy)."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise UsageError(f"No TPU found for --strategy tpu --tpu {tpu!r}: {e}") from None
    return tf.distribute.TPUStrategy(resolver)


def set_seed(seed, deterministic=True):
    """Seeds Python, NumPy, TensorFlow and Keras; `deterministic` also makes TensorFlow pick
    deterministic kernels (same machine, same command: same digits)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        # The apps' one-line format for every bad flag, argparse's own checks included.
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser(description):
    return _ArgumentParser(description=description,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
