"""What the benchmarks share: where the real data is, and the machine they ran on (the header
of every printed table)."""

import os


def add_data_argument(parser):
    """`--data`: the shared data folder (GLUE and the checkpoints); default $KERAS_FLOP_DATA,
    else `../shared/data` beside the project."""
    default = os.environ.get("KERAS_FLOP_DATA", os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
    parser.add_argument("--data", default=default,
                        help="The shared data folder (GLUE tasks, MiniLM checkpoint).")


def machine_header():
    """One line: CPU model, cores, TensorFlow and Keras versions, thread settings."""
    import keras
    import tensorflow as tf

    from keras_flop.latency.device import cpu_description

    intra = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    inter = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    gpus = len(tf.config.list_physical_devices("GPU"))
    return (f"Machine: {cpu_description()}, {os.cpu_count()} cores, "
            f"{gpus or 'no'} GPU{'s' if gpus != 1 else ''}; TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}; TF threads intra-op {intra}, inter-op {inter}; "
            f"op determinism {'on' if _determinism_on() else 'off'}.")


def _determinism_on():
    import tensorflow as tf

    try:
        from tensorflow.python.framework import config as tf_config
        return bool(tf_config.is_op_determinism_enabled())
    except (ImportError, AttributeError):
        return bool(getattr(tf.config.experimental, "is_op_determinism_enabled", lambda: False)())


def add_seeds_argument(parser):
    """`--seeds 0,1,2`: the seeds of fine-tuning and pruning; metrics as mean ± std over them.
    `--data_seed` draws the training subset once, so that seeds vary the runs, not the data."""
    parser.add_argument("--seeds", default="0", type=parse_seeds,
                        help="Comma-separated seeds of fine-tuning and pruning (initialization, "
                             "dropout, data order, gates); each metric is reported as mean ± "
                             "standard deviation over them, per-seed values in the JSON.")
    parser.add_argument("--data_seed", type=int, default=0,
                        help="Draws the --max_train_examples subset, the same for every seed.")


def parse_seeds(text):
    import argparse

    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError:
        seeds = []
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
    the TF1 `checkpoint` fine-tuned with `seed` (`keras_flop.training.fine_tuning.fine_tune`, AdamW 5e-5,
    batch 32, `epochs`) and saved to `path` if one is given; `how` says which, for the log."""
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


def measured_speedups(dense, compact, data, count, batch_sizes=(8, 1)):
    """`{batch: (speedup, low, high)}`: dense over compact time, run in turn
    (`keras_flop.latency.timing.speedup_in_turn`, median round and min–max over rounds), on
    the first dev examples of `data` padded to its `max_seq_length`: `count` of them at the
    first batch size, half as many at the others."""
    from keras_flop import glue
    from keras_flop.latency.timing import speedup_in_turn

    split = next(iter(data.evals))
    tokenized = glue.tokenize_examples(data.evals[split][:count], data.task, data.preprocessor,
                                       pad_to_max_length=True)
    speedups = {}
    for index, batch in enumerate(batch_sizes):
        limit = count if index == 0 else count // 2
        batches = [x for x, _ in glue.make_dataset(tokenized, data.task, None, batch)]
        speedups[batch] = speedup_in_turn(dense, compact, batches[:-(-limit // batch)])
    return speedups
