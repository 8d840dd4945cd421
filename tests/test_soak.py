"""Soak tests: long runs of the apps whose threads, resident memory and open files must stay
flat (issue 36: a multi-worker run leaked about 600 threads a second until it died).

Each test runs an app for 2,000 training steps of a tiny model on the toy task and samples
its processes (`resources.py`) every `INTERVAL` seconds. The judged window is the long step's
training loop: from its progress line at `WARM_PERCENT` % (its first evaluation, checkpoint
and traced functions behind it) to its line at 100 %. A process fails when its threads, RSS
or open file descriptors grow more than 20 % over that window (levels: medians of 3 samples),
when it passes a ceiling (`CEILING`: killed at once, before a leak takes the machine's process
ids), when it does not finish within `TIMEOUT` or when it exits non-zero. The steps before
and after the window (start-up, compaction, export) build new models and functions: they are
sampled and printed, not judged. Several minutes each: `-m slow`.
"""

import re
import subprocess
import sys
import time

import pytest

from resources import ResourceSampler, format_table
from test_multi_worker import ROOT, env, start_workers

TIMEOUT = 1500  # seconds for one run (two workers: 280 s on 2 idle cores, 686 s on busy ones)
INTERVAL = {"multi_worker": 2.0, "one process": 0.5}  # one process trains 4x as fast
WARM_PERCENT = 15
# About 8x what a worker holds (under 250 threads, 1.4 GB): a leak, to be stopped at once.
CEILING = {"threads": 2000, "rss_mb": 8000}
# 256 examples, batch 16: 16 steps an epoch; one epoch of fine-tuning, 2,000 pruning steps
# (an evaluation of 64 dev examples and a checkpoint every 200), no final fine-tuning; no
# dropout, whose masks depend on how a batch is split across workers.
PRUNE_ARGS = ["--max_train_examples", "256", "--max_eval_examples", "64",
              "--train_batch_size", "16", "--finetune_epochs", "1", "--pruning_steps", "2000",
              "--final_epochs", "0", "--allow_short", "--seed", "3",
              "--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0"]
PROGRESS = re.compile(r"^step (\d+) of (\d+) \((\d+)%\)", re.MULTILINE)

pytestmark = pytest.mark.slow


def progress_at(log, header, percent):
    """A function of no arguments: whether the step that prints `header` in file `log` has
    printed its progress line at `percent` % or more."""
    def reached():
        text = log.read_text(errors="replace") if log.exists() else ""
        if header not in text:
            return False
        after = text[text.index(header):]
        return any(int(match.group(3)) >= percent for match in PROGRESS.finditer(after))
    return reached


def soak(label, processes, logs, header, interval):
    """Samples `processes` (`worker{i}` logs in `logs`; `header` starts the long step's
    output) until they exit or `TIMEOUT` passes; prints what they held under `label` and
    fails with every problem found, one line each."""
    began = time.monotonic()
    samplers = []
    for index, process in enumerate(processes):
        log = logs / f"worker{index}.out"
        name = f"worker {index}" if len(processes) > 1 else "process"
        samplers.append(ResourceSampler(
            process.pid, name, interval=interval, ceiling=CEILING,
            warm=progress_at(log, header, WARM_PERCENT),
            done=progress_at(log, header, 100)).start())
    codes = []
    try:
        for process in processes:
            try:
                codes.append(process.wait(timeout=max(1.0, began + TIMEOUT - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for sampler in samplers:
            sampler.stop()
    seconds = time.monotonic() - began
    print(f"\n{label}: {seconds:.0f} s, exit status "
          f"{', '.join(str(c) for c in codes)}")
    print(format_table(samplers))
    problems = []
    for index, (sampler, code) in enumerate(zip(samplers, codes)):
        problems += sampler.problems()
        if code is None:
            problems.append(f"{sampler.name}: not done after {TIMEOUT} s: killed")
        elif code != 0 and not sampler.exceeded:
            error = (logs / f"worker{index}.err").read_text(errors="replace").strip()
            problems.append(f"{sampler.name}: exit status {code}: {error[-2000:]}")
    assert not problems, "\n".join(problems)
    return samplers


def start_one(command, logs):
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "worker0.out", "w") as out, open(logs / "worker0.err", "w") as err:
        return [subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=env())]


def test_two_workers_prune_2000_steps_with_flat_threads_memory_and_files(tmp_path):
    command = [sys.executable, "-m", "apps.prune", "--output_dir", str(tmp_path / "run"),
               "--strategy", "multi_worker", *PRUNE_ARGS]
    soak("two workers, 2,000 pruning steps", start_workers(command, tmp_path / "logs"),
         tmp_path / "logs", "== prune", INTERVAL["multi_worker"])
    assert (tmp_path / "run" / "export" / "1" / "saved_model.pb").exists()


def test_one_process_prunes_2000_steps_with_flat_threads_memory_and_files(tmp_path):
    command = [sys.executable, "-m", "apps.prune", "--output_dir", str(tmp_path / "run"),
               *PRUNE_ARGS]
    soak("one process, 2,000 pruning steps", start_one(command, tmp_path / "logs"),
         tmp_path / "logs", "== prune", INTERVAL["one process"])
    assert (tmp_path / "run" / "export" / "1" / "saved_model.pb").exists()


def test_fine_tuning_2000_steps_with_flat_threads_memory_and_files(tmp_path):
    """`apps.glue_finetune` from a TF1 checkpoint of the toy model's size (random weights, the
    toy vocabulary) on the toy task's SST-2 files: 256 examples, batch 16, 125 epochs."""
    from apps import toy_task
    from tf1_bert import random_weights, tf1_shapes, write_tf1_checkpoint

    data_dir, vocab = toy_task.write_toy_glue(tmp_path / "glue", train=256, dev=64, test=8)
    toy = toy_task.toy_config()
    config = dict(vocab_size=toy.vocab_size, hidden_size=toy.hidden_size,
                  num_hidden_layers=toy.num_hidden_layers,
                  num_attention_heads=toy.num_attention_heads,
                  intermediate_size=toy.intermediate_size, hidden_act="gelu",
                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  max_position_embeddings=toy.max_position_embeddings, type_vocab_size=2,
                  initializer_range=0.02)
    checkpoint = tmp_path / "checkpoint"
    write_tf1_checkpoint(checkpoint, config,
                         random_weights(tf1_shapes(config, num_labels=2), std=0.05), vocab=False)
    command = [sys.executable, "-m", "apps.glue_finetune", "--task", "sst2",
               "--data_dir", str(data_dir), "--init_checkpoint", str(checkpoint),
               "--vocab_file", str(vocab), "--output_dir", str(tmp_path / "run"),
               "--learning_rates", "1e-4", "--num_train_epochs", "125",
               "--train_batch_size", "16", "--max_seq_length", "32", "--seed", "3"]
    soak("apps.glue_finetune, 2,000 steps", start_one(command, tmp_path / "logs"),
         tmp_path / "logs", "== sst2", INTERVAL["one process"])
    assert "step 2000 of 2000" in (tmp_path / "logs" / "worker0.out").read_text()
    assert (tmp_path / "run" / "sst2" / "lr_0.0001" / "model.keras").exists()
