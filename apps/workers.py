"""The workers of a multi-worker run: the `tf.distribute` strategy the flags name, and
`Workers`, which agrees every decision across workers and lets only the chief write the run
directory. Nothing here imports TensorFlow at module level."""

import json
import os
import shutil
import tempfile

from apps.common import WORKER_TIMEOUT, UsageError, WorkerLost


def make_strategy(name, tpu=""):
    """The `tf.distribute` strategy an app runs under (`none`: the default strategy).

    `multi_worker` connects to the cluster `TF_CONFIG` names (waiting for every worker to
    start). A killed worker is noticed by its peers: their connections are reset at once, and
    TensorFlow's coordination service aborts every collective when a worker misses its
    heartbeats (about 10 s). The strategy's collectives have no timeout of their own:
    TensorFlow starts a thread for each collective with a timeout, which sleeps out the whole
    timeout (tensorflow/tensorflow#62466, `base_collective_executor.cc` in TensorFlow 2.20 and
    2.21): with a timeout on every collective of the training steps, a run gained about 600
    threads a second and died at the system's thread limit. Only the barriers of
    `Workers.agree` are bounded, by its `timeout` (--worker_timeout): a few threads each, gone
    once it has passed."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):  # else a one-worker "cluster" runs silently
            raise UsageError("--strategy multi_worker needs the TF_CONFIG environment variable "
                             "naming the cluster and this worker (see the README).")
        try:
            config = json.loads(os.environ["TF_CONFIG"])
            config["cluster"]["worker"], config["task"]["index"]
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"TF_CONFIG must be JSON like {{\"cluster\": {{\"worker\": "
                             f"[\"host1:port\", \"host2:port\"]}}, \"task\": {{\"type\": "
                             f"\"worker\", \"index\": 0}}}}; got {os.environ['TF_CONFIG']!r} "
                             f"({type(e).__name__}: {e}).") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as e:
        raise UsageError(f"No TPU found for --strategy tpu --tpu {tpu!r}: {e}") from None
    return tf.distribute.TPUStrategy(resolver)


# Errors of a collective or barrier whose peer died, stopped answering or timed out.
_LOST_ERRORS = ("UnavailableError", "DeadlineExceededError", "AbortedError", "CancelledError")


class Workers:
    """The workers of a run and what each may write.

    Under a multi-worker strategy every worker runs the same steps (each training, evaluation
    and variable creation is a collective of all of them) and reads the run directory; only
    the chief (worker 0) writes there. The others write the same files to a temporary
    directory (`scratch`, named after the run directory and the worker, so that one left by a
    killed worker is replaced by the next start), made on entry and removed on exit. `agree`
    is the barrier between
    the chief's writes and everyone's reads, and checks that the workers took the same
    decision. Without a multi-worker strategy there is one worker, the chief, and `agree`
    returns at once.

    Example:
    >>> with Workers(strategy, "runs/sst2") as workers:  # doctest: +SKIP
    ...     workers.agree("the step to resume from", step)
    """

    def __init__(self, strategy, run_dir="", timeout=WORKER_TIMEOUT):
        self.strategy = strategy
        self.run_dir = run_dir
        self.timeout = timeout
        from keras_flop.distribute import is_multi_worker

        extended = strategy.extended
        self.count = 1
        self.multi = is_multi_worker(strategy)
        self.chief = True
        self.index = 0
        if self.multi:
            self.count = strategy.num_replicas_in_sync // len(extended.worker_devices)
            self.chief = bool(extended.should_checkpoint)
            self.index = strategy.cluster_resolver.task_id
        self.scratch = None

    def __enter__(self):
        if not self.chief:
            import hashlib
            key = hashlib.sha1(os.path.abspath(self.run_dir).encode()).hexdigest()[:12]
            self.scratch = os.path.join(tempfile.gettempdir(),
                                        f"keras_flop-{key}-worker{self.index}")
            shutil.rmtree(self.scratch, ignore_errors=True)
            os.makedirs(self.scratch)
            print(f"worker {self.index} of {self.count}: the chief (worker 0) writes "
                  f"{self.run_dir}; this worker writes to {self.scratch}, removed at exit")
        return self

    def __exit__(self, *exc):
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def write_dir(self, run_dir):
        """Where this worker writes what belongs in `run_dir`."""
        return run_dir if self.chief else self.scratch

    def agree(self, what, value=0):
        """Waits for every worker, then checks that all passed the same integer `value` (a
        UsageError naming `what` when not). Bounded by --worker_timeout."""
        if not self.multi:
            return value
        import numpy as np
        import tensorflow as tf

        # The one collective with a timeout (see `make_strategy`): a few per step of a run.
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=self.timeout)
        values = self.strategy.experimental_local_results(self.strategy.run(
            lambda: tf.distribute.get_replica_context().all_gather(
                tf.constant([int(value)], tf.int64), axis=0, options=options)))[0]
        values = [int(v) for v in np.asarray(values)[::len(self.strategy.extended.worker_devices)]]
        if len(set(values)) > 1:
            raise UsageError(f"The workers disagree on {what} ({', '.join(map(str, values))} "
                             "by worker): start every worker with the same command, on the "
                             "same --output_dir (a directory all of them read).")
        return value

    def lost(self, error, where):
        """A `WorkerLost` for a TensorFlow error that says a peer is gone, else None."""
        if not self.multi or type(error).__name__ not in _LOST_ERRORS:
            return None
        lines = [line.strip() for line in str(getattr(error, "message", error)).splitlines()]
        lines = [line for line in lines if line]
        at = next((i for i, line in enumerate(lines) if "aborted by:" in line), None)
        if at is None:
            cause = next((line for line in lines if not line.startswith(
                ("Graph execution", "Detected at"))), "")
        else:  # "...aborted by: <cause>", whose last word may go on to the next line
            cause = lines[at].split("aborted by:", 1)[1].strip()
            if cause.endswith(":") and at + 1 < len(lines):
                cause = f"{cause} {lines[at + 1]}"
        return WorkerLost(f"worker {self.index} of {self.count} lost the other workers {where} "
                          f"({type(error).__name__}: {cause}); rerun the same command on every "
                          "worker to continue from the last checkpoint")
