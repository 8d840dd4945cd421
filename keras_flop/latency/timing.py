"""The one timer: a model's inference pass as a graph, timed in turn with others.

Every latency figure of the library, the apps' reports and the benchmarks comes from here, so
that "2x" means one protocol: graph-mode inference (`compiled_forward`), untimed calls
first on one batch of each shape (tracing), then rounds that run each model in turn over the same batches (load on a
shared machine hits all of them alike within a round), and ratios taken within each round
(`ratio_spread`); `calls_in_turn` is the same protocol for the inference calls of other
runtimes (ONNX Runtime, LiteRT). `PerCallTimer` times one fixed input repeatedly (the latency
table's block times), `call_seconds` any runtime's inference call; `peak_memory_mb` reads the
process' peak resident set.
"""

import math
import statistics
import time

import numpy as np


def compiled_forward(model):
    """The model's inference pass as one graph-mode function (no retracing per batch size).

    Example:
    >>> import numpy as np
    >>> import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> forward = compiled_forward(model)
    >>> tuple(forward(np.zeros((4, 3), "float32")).shape)
    (4, 2)
    """
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=False), reduce_retracing=True)


def run_all(forward, batches):
    """One pass of every batch through `forward`, each result brought to the host."""
    for x in batches:
        np.asarray(forward(x))


def time_in_turn(models, batches, repeats=3):
    """`{name: [seconds of each round]}` to run every batch through each of `models`.

    After untimed calls that trace every batch shape, `repeats` rounds time one pass of every
    model in turn (`calls_in_turn` of their `compiled_forward`).

    Example:
    >>> import numpy as np
    >>> import keras
    >>> small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> rounds = time_in_turn({"a": small, "b": small}, [np.zeros((2, 3), "float32")])
    >>> sorted(rounds), len(rounds["a"])
    (['a', 'b'], 3)
    """
    if not models or not batches:
        raise ValueError("`time_in_turn` needs at least one model and one batch; got "
                         f"{len(models)} model(s) and {len(batches)} batch(es).")
    return calls_in_turn({name: compiled_forward(model) for name, model in models.items()},
                         batches, repeats)


def _one_batch_per_shape(batches):
    """The first batch of each distinct shape: enough for the untimed calls to trace (or
    plan) every shape the timed rounds meet, at a fraction of a whole pass's cost."""
    first = {}
    for x in batches:
        parts = [x[k] for k in sorted(x)] if isinstance(x, dict) else [x]
        first.setdefault(tuple(np.shape(part) for part in parts), x)
    return list(first.values())


def calls_in_turn(calls, batches, repeats=3):
    """`{name: [seconds of each round]}` to run every batch through each of `calls`: the
    protocol of `time_in_turn` for inference calls of any runtime (an onnxruntime session or
    a LiteRT interpreter wrapped by `keras_flop.export.runtimes`, a `compiled_forward`).

    After an untimed call of each on one batch of every shape (the first trace or plan of
    each shape is not timed), `repeats` rounds time one pass of every call in turn, in the
    order of `calls`, each result brought to the host.

    Example:
    >>> rounds = calls_in_turn({"double": lambda x: x * 2, "same": lambda x: x},
    ...                        [np.ones(3)], repeats=2)
    >>> sorted(rounds), len(rounds["double"])
    (['double', 'same'], 2)
    """
    if not calls or not batches:
        raise ValueError("`calls_in_turn` needs at least one call and one batch; got "
                         f"{len(calls)} call(s) and {len(batches)} batch(es).")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be a whole number of rounds, at least 1; got "
                         f"{repeats!r}.")
    warmup = _one_batch_per_shape(batches)
    for call in calls.values():
        run_all(call, warmup)
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            run_all(call, batches)
            times[name].append(time.perf_counter() - start)
    return times


def ratio_spread(rounds, numerator, denominator):
    """`(median, min, max)` over rounds of `rounds[numerator][i] / rounds[denominator][i]`:
    a ratio measured within each round, so that 1.80x can be told from 1.70x.

    Example:
    >>> ratio_spread({"dense": [2.0, 2.2, 1.8], "compact": [1.0, 1.0, 1.0]}, "dense", "compact")
    (2.0, 1.8, 2.2)
    """
    ratios = [a / b for a, b in zip(rounds[numerator], rounds[denominator])]
    return statistics.median(ratios), min(ratios), max(ratios)


def speedup_in_turn(dense, compact, batches, repeats=3):
    """`(speedup, low, high)`: dense over compact time (`time_in_turn`), the median round and
    the rounds' min–max."""
    rounds = time_in_turn({"dense": dense, "compact": compact}, batches, repeats)
    return ratio_spread(rounds, "dense", "compact")


class PerCallTimer:
    """One model's inference pass on one input, timed per call over enough calls to last
    `min_seconds` (after `warmup` untimed calls: the first traces)."""

    def __init__(self, model, inputs, warmup=2, min_seconds=0.05):
        self.forward = compiled_forward(model)
        self.inputs = inputs
        for _ in range(max(1, warmup)):
            np.asarray(self.forward(inputs))
        start = time.perf_counter()
        np.asarray(self.forward(inputs))
        self.calls = max(1, math.ceil(min_seconds / max(time.perf_counter() - start, 1e-6)))

    def per_call(self):
        """Seconds per call, averaged over `calls` calls."""
        start = time.perf_counter()
        for _ in range(self.calls):
            np.asarray(self.forward(self.inputs))
        return (time.perf_counter() - start) / self.calls


def call_seconds(call, inputs, repeats, warmup=1):
    """Seconds of each of `repeats` timed calls `call(inputs)`, after `warmup` untimed ones
    (the first traces or compiles), every result brought to the host: a model in another
    runtime (a SavedModel signature, ONNX Runtime, LiteRT), which `compiled_forward` does not
    wrap.

    Example:
    >>> seconds = call_seconds(lambda x: x * 2, np.ones(3), repeats=5)
    >>> len(seconds), min(seconds) >= 0.0
    (5, True)
    """
    for _ in range(warmup):
        np.asarray(call(inputs))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(call(inputs))
        seconds.append(time.perf_counter() - start)
    return seconds


def reset_peak_memory():
    """Resets the process' peak resident memory (Linux); False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb():
    """The process' peak resident memory in MB since start or the last reset (NaN where
    /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def predicting_peak_memory_mb(model, batches):
    """The process' peak resident memory (MB) over one pass of `batches` through `model`,
    counted from a reset just before it (after a first, untimed pass that traces the graph)."""
    forward = compiled_forward(model)
    run_all(forward, batches)
    reset_peak_memory()
    run_all(forward, batches)
    return peak_memory_mb()
