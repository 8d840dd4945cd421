"""`--strategy multi_worker` for real: two worker processes on 127.0.0.1 form a cluster.

Each case starts its processes with `TF_CONFIG` naming two workers on free loopback ports.
Every wait is bounded (`TIMEOUT` per run, `KILL_TIMEOUT` for the survivor of a killed worker)
and every process is killed when a test ends early. Several minutes each: `-m slow`
(`benchmarks/multi_worker.py` runs them and prints what they measured).

Float tolerance: the two workers sum two half-batch gradients where one process takes the mean
of the whole batch, so their numbers differ by float32 round-off, amplified by training;
losses, sparsities, λ and dev metrics agree within `RTOL` (relative, at least 1 in scale) and
weights, logits and exported outputs within `ATOL`.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 1500  # seconds for one run of the toy pipeline (two processes on 2 shared cores)
KILL_TIMEOUT = 120  # seconds for the survivor of a killed worker to exit
RTOL, ATOL = 1e-4, 1e-5
# Tiny toy run: 4 fine-tuning steps, 16 pruning steps (checkpoints every 4), 4 final steps;
# no dropout, whose masks depend on how a batch is split across replicas.
ARGS = ["--max_train_examples", "64", "--max_eval_examples", "32", "--train_batch_size", "16",
        "--finetune_epochs", "1", "--num_train_epochs", "4", "--checkpoint_every_n_steps", "4",
        "--eval_every_n_steps", "8", "--log_every_n_steps", "1", "--final_epochs", "1",
        "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0", "--seed", "3",
        "--allow_short"]
# The syscalls that create, change or remove a file or directory.
WRITES = "openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir," \
         "truncate,link,linkat,symlink,symlinkat"

pytestmark = pytest.mark.slow


def free_ports(count):
    """Loopback ports free now (held open together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT),
                PYTHONUNBUFFERED="1", **extra)


def start_workers(command, logs, wrap=None):
    """Starts one process of `command` per worker of a fresh two-worker cluster (`{index}` in
    an argument becomes the worker's index); `wrap(i)` prefixes worker i's command. stdout and
    stderr go to `logs/worker{i}.{out,err}`."""
    ports = free_ports(2)
    logs.mkdir(parents=True, exist_ok=True)
    processes = []
    for index in range(2):
        prefix = wrap(index) if wrap else []
        argv = [part.format(index=index) for part in command]
        with open(logs / f"worker{index}.out", "w") as out, \
                open(logs / f"worker{index}.err", "w") as err:
            processes.append(subprocess.Popen(
                prefix + argv, cwd=ROOT, stdout=out, stderr=err,
                env=env(TF_CONFIG=tf_config(ports, index))))
    return processes


def finish(processes, timeout):
    """Waits (at most `timeout` seconds in all) for every process; kills those left."""
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)


def read(logs, index, kind="out"):
    return (logs / f"worker{index}.{kind}").read_text()


def prune_command(output, *extra):
    return [sys.executable, "-m", "apps.prune", "--output_dir", str(output), *ARGS, *extra]


def two_worker_run(output, logs, wrap=None):
    processes = start_workers(prune_command(output, "--strategy", "multi_worker"), logs, wrap)
    codes = finish(processes, TIMEOUT)
    assert codes == [0, 0], (codes, read(logs, 0, "err")[-3000:], read(logs, 1, "err")[-3000:])
    return [read(logs, i) for i in range(2)]


def strace(log):
    """A command prefix recording every file-changing syscall of a process and its threads."""
    return ["strace", "-f", "-qq", "--seccomp-bpf", "-e", f"trace={WRITES}", "-o", str(log)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same toy run in one process and on two workers (worker 1 under strace when the
    machine has it); `{name: directory}` plus what worker 1 printed and wrote."""
    base = tmp_path_factory.mktemp("multi_worker")
    began = time.monotonic()
    one = subprocess.run(prune_command(base / "one"), cwd=ROOT, env=env(), timeout=TIMEOUT,
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-3000:]
    traced = shutil.which("strace") is not None
    syscalls = base / "worker1.strace"
    middle = time.monotonic()
    printed = two_worker_run(base / "two", base / "logs",
                             wrap=lambda i: strace(syscalls) if i == 1 and traced else [])
    print(f"\ntoy run, one process: {middle - began:.0f} s; two workers: "
          f"{time.monotonic() - middle:.0f} s (worker 1 {'under strace' if traced else ''})")
    return {"one": base / "one", "two": base / "two", "base": base, "printed": printed,
            "syscalls": syscalls if traced else None}


def scalars(directory):
    """`{tag: {step: value}}` of the TensorBoard event files in `directory`, and the process
    ids in their names (`events.out.tfevents.<time>.<host>.<pid>.<n>.v2`)."""
    import tensorflow as tf

    values, pids = {}, set()
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        pids.add(int(path.name.split(".")[-3]))
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    values.setdefault(value.tag, {})[event.step] = float(
                        tf.make_ndarray(value.tensor))
    return values, pids


def close(a, b, rtol=RTOL):
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


def test_two_workers_follow_the_one_process_run(runs):
    one, two = runs["one"], runs["two"]
    worker0, worker1 = runs["printed"]
    assert "All outputs are in" in worker0 and "Worker 1 of 2 done" in worker1
    # Training: every logged step of every training step, loss and sparsity alike.
    compared = 0
    for step in ("finetune", "prune", "finetune_compact"):
        for kind in ("train", "eval"):
            expected, _ = scalars(one / step / "logs" / kind)
            found, _ = scalars(two / step / "logs" / kind)
            assert set(found) == set(expected), (step, kind)
            for tag, by_step in expected.items():
                assert set(found[tag]) == set(by_step), (step, kind, tag)
                for at, value in by_step.items():
                    assert close(value, found[tag][at]), (step, kind, tag, at, value,
                                                          found[tag][at])
                    compared += 1
    prune_train, _ = scalars(one / "prune" / "logs" / "train")
    assert len(prune_train["loss"]) == 16 and len(prune_train["expected_sparsity"]) == 16
    # Results of every step, dev metrics over the whole dev set (32 examples) once.
    for step in ("finetune", "prune", "compact", "finetune_compact"):
        expected = json.loads((one / step / "eval_results.json").read_text())
        found = json.loads((two / step / "eval_results.json").read_text())
        assert found["eval_examples"] == expected["eval_examples"] == 32
        for key, value in expected.items():
            if isinstance(value, float) and not key.endswith("_time"):
                assert close(value, found[key]), (step, key, value, found[key])
    print(f"{compared} logged scalars agree within {RTOL}")


def test_compact_model_and_export_match_the_one_process_run(runs):
    import keras
    import tensorflow as tf

    import keras_flop  # noqa: F401 -- registers the layers the saved models use

    one, two = runs["one"], runs["two"]
    models = [keras.saving.load_model(d / "finetune_compact" / "model.keras") for d in (one, two)]
    assert models[0].layer_shapes == models[1].layer_shapes
    assert [v.path for v in models[0].weights] == [v.path for v in models[1].weights]
    gap = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
              for a, b in zip(models[0].weights, models[1].weights))
    assert gap <= ATOL, gap
    assert (json.loads((one / "compact" / "info.json").read_text()) ==
            json.loads((two / "compact" / "info.json").read_text()))
    files = [sorted(str(p.relative_to(d / "export")) for p in (d / "export").rglob("*"))
             for d in (one, two)]
    assert files[0] == files[1] and "1/saved_model.pb" in files[0]
    assert (one / "export/1/assets/vocab.txt").read_bytes() == \
        (two / "export/1/assets/vocab.txt").read_bytes()
    loaded = [tf.saved_model.load(str(d / "export" / "1")) for d in (one, two)]
    ids = tf.constant([[2, 8, 9, 10, 3, 0, 0, 0]] * 2, tf.int32)
    inputs = {"token_ids": ids, "segment_ids": tf.zeros_like(ids),
              "padding_mask": tf.cast(ids > 0, tf.int32)}
    signature = [m.signatures["serving_default"] for m in loaded]
    names = sorted(signature[0].structured_input_signature[1])
    outputs = [s(**{n: tf.cast(inputs[n], s.structured_input_signature[1][n].dtype)
                    for n in names}) for s in signature]
    for key in outputs[0]:
        diff = float(np.max(np.abs(outputs[0][key].numpy() - outputs[1][key].numpy())))
        assert diff <= ATOL, (key, diff)
    print(f"compact weights within {gap:.1e}; export files identical in name, outputs within "
          f"{ATOL}")


def test_only_the_chief_writes_the_run_directory(runs):
    one, two, base = runs["one"], runs["two"], runs["base"]
    worker1 = runs["printed"][1]
    listing = [sorted(str(p.relative_to(d)) for p in d.rglob("*")
                      if "tfevents" not in p.name) for d in (one, two)]
    assert listing[0] == listing[1]  # nothing more, nothing less than one process writes
    # Worker 1 wrote its copies to a scratch directory and removed it.
    scratch = re.search(r"this worker writes to (\S+), removed at exit", worker1).group(1)
    assert not os.path.exists(scratch)
    # TensorBoard files carry their writer's process id: all are the chief's, one per writer.
    for logs in two.rglob("logs"):
        for kind in ("train", "eval"):
            if (logs / kind).is_dir():
                _, pids = scalars(logs / kind)
                assert len(pids) == 1, (logs, kind, pids)
    if runs["syscalls"] is None:
        pytest.skip("strace is not installed: worker 1's file writes were not recorded")
    changes = []
    for line in runs["syscalls"].read_text().splitlines():
        call = line.split(None, 1)[1] if " " in line else line
        if str(two) not in call or call.startswith("+++") or " = -1 " in call:
            continue
        if call.startswith(("open", "creat")) and not re.search(r"O_WRONLY|O_RDWR|O_CREAT",
                                                                call):
            continue  # a read
        changes.append(call)
    assert not changes, changes[:10]
    assert str(base) in runs["syscalls"].read_text()  # worker 1 did read the run directory


def test_a_killed_worker_stops_the_other_and_both_resume(runs, tmp_path):
    output, logs = tmp_path / "killed", tmp_path / "logs"
    command = prune_command(output, "--strategy", "multi_worker")
    processes = start_workers(command, logs)
    checkpoint = output / "prune" / "checkpoints" / "ckpt-8.index"
    try:
        deadline = time.monotonic() + TIMEOUT
        while not checkpoint.exists():
            assert time.monotonic() < deadline, "no pruning checkpoint in time"
            assert all(p.poll() is None for p in processes), read(logs, 0, "err")[-3000:]
            time.sleep(0.2)
        os.kill(processes[1].pid, signal.SIGKILL)  # mid-pruning
        killed_at = time.monotonic()
        code = processes[0].wait(timeout=KILL_TIMEOUT)
        seconds = time.monotonic() - killed_at
    finally:
        finish(processes, 30)
    error = read(logs, 0, "err").strip()
    assert code == 75, (code, error[-3000:])
    last = error.splitlines()[-1]
    assert re.fullmatch(r"error: worker 0 of 2 lost the other workers at step \d+ of prune "
                        r"\(\w+Error: .+\); rerun the same command on every worker to "
                        r"continue from the last checkpoint", last), last
    assert "Traceback" not in error
    assert not (output / "prune" / "pruning_model.keras").exists()
    print(f"worker 0 exited {seconds:.1f} s after worker 1 was killed: {last}")
    # The same two commands again: both resume from the chief's last checkpoint.
    printed = two_worker_run(output, tmp_path / "rerun")
    for text in printed:
        assert "== finetune: done already" in text
        resumed = int(re.search(r"resuming from \S+ at step (\d+) of 16", text).group(1))
        assert 8 <= resumed < 16
    straight = runs["two"]
    import keras

    import keras_flop  # noqa: F401

    for step, name in (("prune", "pruning_model.keras"), ("finetune_compact", "model.keras")):
        weights = [[np.asarray(v) for v in keras.saving.load_model(d / step / name).variables
                    if not v.path.endswith("seed_generator_state")] for d in (straight, output)]
        assert len(weights[0]) == len(weights[1])
        for a, b in zip(*weights):
            np.testing.assert_allclose(a, b, atol=ATOL)
    for step in ("prune", "finetune_compact"):
        expected = json.loads((straight / step / "eval_results.json").read_text())
        found = json.loads((output / step / "eval_results.json").read_text())
        for key in ("eval_accuracy", "eval_loss", "expected_sparsity", "lambda_1"):
            if key in expected:
                assert close(expected[key], found[key]), (step, key)


def test_each_example_once_per_epoch_and_the_whole_dev_set_once(tmp_path):
    """Through the apps' training stream, their fine-tuning epochs and `model.predict`: the
    workers split every global batch, its first half to worker 0 and its second to worker 1,
    so each epoch sees every example once; prediction covers the dev set once (an odd 37
    examples) and gathers it in order, so both workers compute the dev metrics of all of it."""
    from keras_flop.glue import batching

    script = str(ROOT / "tests" / "multi_worker_ids.py")
    processes = start_workers([sys.executable, script, str(tmp_path / "ids{index}.json")],
                              tmp_path)
    assert finish(processes, TIMEOUT) == [0, 0], read(tmp_path, 0, "err")[-3000:]
    found = [json.loads((tmp_path / f"ids{i}.json").read_text()) for i in range(2)]
    train, epochs, per_epoch = found[0]["train"], found[0]["epochs"], found[0]["per_epoch"]
    lengths = np.random.default_rng(0).integers(3, 30, train)  # the script's training set
    batch = 16
    for key in ("stream", "fine_tuning"):
        plans = [batching.epoch_plan(lengths, batch, 0, epoch) for epoch in range(epochs)]
        halves = [[], []]
        for plan in plans:
            for ids in plan:
                halves[0] += ids[:batch // 2].tolist()
                halves[1] += ids[batch // 2:].tolist()
        assert found[0][key] == halves[0] and found[1][key] == halves[1], key
        for epoch in range(epochs):
            window = slice(epoch * per_epoch * batch // 2, (epoch + 1) * per_epoch * batch // 2)
            assert sorted(found[0][key][window] + found[1][key][window]) == list(range(train))
    dev = found[0]["dev"]
    assert sorted(found[0]["predicted_on"] + found[1]["predicted_on"]) == list(range(dev))
    assert 0 < len(found[1]["predicted_on"]) < dev
    for worker in found:
        assert worker["predictions"] == worker["dev_order"]  # every worker has all, in order
        assert worker["eval_examples"] == dev
    assert found[0]["eval_loss"] == found[1]["eval_loss"]
