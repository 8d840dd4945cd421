"""The default toy run of `python -m apps.prune` on two workers on 127.0.0.1
(`--strategy multi_worker`) against one process, with what each process held.

    python benchmarks/multi_worker_toy.py [--output_dir DIR]

Three runs, one after the other, of the toy task's defaults (2,000 training and 300 dev
examples, global batch 32, 3 fine-tuning epochs, 8 pruning epochs, 1 final epoch; all seven
steps) with dropout off, as in `tests/test_multi_worker.py` (dropout masks depend on how a
batch is split across replicas):

- one process (no strategy): the whole batch's mean gradient;
- one process with two replicas (`--strategy mirrored` on the CPU split into two logical
  devices, `benchmarks/two_replicas.py`): each replica takes half of every global batch, as
  the two workers do, and their gradients are summed;
- two workers.

Two workers must match the two replicas of one process within 1e-4 (relative, at least 1 in
scale) on every dev result of `compact/` and `finetune_compact/`: the same arithmetic up to
float round-off. Against the one process without replicas the difference is printed, not
checked: the sum of two half-batch gradients rounds differently from the whole batch's mean,
and training amplifies that round-off (a run of hundreds of steps at the toy task's learning
rates ends measurably apart). Each process is sampled every 2 s (`tests/resources.py`); the
table gives its threads, RSS and open file descriptors at the start (the first sample once
its first step began), at the end (the last before it exited) and their maximum. Also checks
that every process ran all seven steps and that only the chief wrote the two workers' run
directory. Exit status 1 when a check fails.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

STEPS = ("finetune", "factorize", "prune", "compact", "finetune_compact", "export", "report")
FLAGS = ["--hidden_dropout_prob", "0", "--attention_probs_dropout_prob", "0"]
TIMEOUT = 3600  # seconds for one run
RTOL = 1e-4
CEILING = {"threads": 2000, "rss_mb": 8000}  # a leak: the process is killed
# name: (how the run is started, its processes' names in the tables)
RUNS = {"one": ("python -m apps.prune", ["one process"]),
        "replicas": ("python benchmarks/two_replicas.py apps.prune", ["two replicas"]),
        "two": ("TF_CONFIG=<worker i of 2> python -m apps.prune", ["worker 0", "worker 1"])}
STRATEGY = {"one": [], "replicas": ["--strategy", "mirrored"],
            "two": ["--strategy", "multi_worker"]}


def run(name, command, logs):
    """Runs `command` in its processes, each sampled; `(codes, samplers, seconds)`."""
    from resources import ResourceSampler
    from test_multi_worker import env, start_workers

    began = time.monotonic()
    names = RUNS[name][1]
    if len(names) == 2:
        processes = start_workers(command, logs)
    else:
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "worker0.out", "w") as out, open(logs / "worker0.err", "w") as err:
            processes = [subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err,
                                          env=env())]
    samplers = []
    for index, process in enumerate(processes):
        log = logs / f"worker{index}.out"
        samplers.append(ResourceSampler(
            process.pid, names[index], interval=2.0, ceiling=CEILING,
            warm=lambda log=log: log.exists() and "== finetune" in log.read_text()).start())
    codes = []
    try:
        for process in processes:
            codes.append(process.wait(timeout=max(1.0, began + TIMEOUT - time.monotonic())))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        for sampler in samplers:
            sampler.stop()
    return codes, samplers, time.monotonic() - began


def resource_rows(samplers, seconds):
    rows = []
    for sampler in samplers:
        series = sampler.series()
        start = sampler.warm_index() or 0
        cells = [f"{series[r][start]:.0f} / {series[r][-1]:.0f} / {max(series[r]):.0f}"
                 for r in ("threads", "rss_mb", "fds")]
        rows.append(f"| {sampler.name} | {seconds:.0f} | {len(sampler.samples)} | "
                    + " | ".join(cells) + " |")
    return rows


def chief_only(one, two, logs):
    """Problems with who wrote the two workers' run directory (none: only the chief), and the
    number of TensorBoard directories checked."""
    import tensorflow as tf

    from test_multi_worker import scalars

    tf.get_logger().setLevel("ERROR")  # the event file reader's deprecation warning
    problems = []
    listing = [sorted(str(p.relative_to(d)) for p in d.rglob("*") if "tfevents" not in p.name)
               for d in (one, two)]
    if listing[0] != listing[1]:
        extra = sorted(set(listing[1]) ^ set(listing[0]))
        problems.append(f"the run directories differ in {extra[:10]}")
    worker1 = (logs / "worker1.out").read_text()
    scratch = re.search(r"this worker writes to (\S+), removed at exit", worker1)
    if not scratch or os.path.exists(scratch.group(1)):
        problems.append(f"worker 1's scratch directory is left: {scratch and scratch.group(1)}")
    writers = 0
    for board in two.rglob("logs"):
        for kind in ("train", "eval"):
            if (board / kind).is_dir():
                _, pids = scalars(board / kind)
                writers += 1
                if len(pids) != 1:
                    problems.append(f"{board / kind} has event files of processes {pids}")
    return problems, writers


def dev_results(results, problems):
    """The table of dev results, and problems where two workers and two replicas differ."""
    from test_multi_worker import close

    lines = ["| dev result | one process | two replicas | two workers | workers − replicas "
             "| workers − one process |", "|---|---|---|---|---|---|"]
    compared = 0
    for step in ("compact", "finetune_compact"):
        found = [results[name].get(step) for name in RUNS]
        if None in found:
            problems.append(f"{step}/eval_results.json is missing")
            continue
        one, replicas, two = found
        for key, value in replicas.items():
            if not isinstance(value, float) or key.endswith("_time"):
                continue
            compared += 1
            if key in ("eval_accuracy", "eval_loss"):
                lines.append(f"| {step} {key} | {one[key]:.6f} | {value:.6f} | {two[key]:.6f} | "
                             f"{two[key] - value:+.1e} | {two[key] - one[key]:+.1e} |")
            if not close(value, two[key], RTOL):
                problems.append(f"{step} {key}: {value} in one process with two replicas, "
                                f"{two[key]} on two workers (tolerance {RTOL})")
    return lines, compared


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default=None,
                        help="Where the runs go (default: a new temporary directory).")
    parser.add_argument("--flags", default="",
                        help="More apps.prune flags for every run, e.g. \"--num_train_epochs "
                             "1\" for a quick look (the defaults are the toy run's).")
    args = parser.parse_args(argv)
    from support import machine_header

    base = Path(args.output_dir or tempfile.mkdtemp(prefix="multi_worker_toy-"))
    print(machine_header())
    results, problems, table, steps = {}, [], [], []
    for name, (shown, _) in RUNS.items():
        flags = ["--output_dir", str(base / name), *FLAGS, *args.flags.split(),
                 *STRATEGY[name]]
        start = ([sys.executable, str(HERE / "two_replicas.py"), "apps.prune"]
                 if name == "replicas" else [sys.executable, "-m", "apps.prune"])
        print(f"$ {shown} {' '.join(flags)}", flush=True)
        codes, samplers, seconds = run(name, start + flags, base / f"logs_{name}")
        table += resource_rows(samplers, seconds)
        for index, (code, sampler) in enumerate(zip(codes, samplers)):
            out = (base / f"logs_{name}" / f"worker{index}.out").read_text()
            ran = [step for step in STEPS if f"== {step}\n" in out]
            steps.append(f"{sampler.name} {len(ran)} of {len(STEPS)}, exit status {code}")
            if code != 0 or ran != list(STEPS) or sampler.exceeded:
                error = (base / f"logs_{name}" / f"worker{index}.err").read_text()
                problems.append(f"{sampler.name}: exit status {code}, steps {ran}, "
                                f"{sampler.exceeded or ''} {error[-2000:]}")
        results[name] = {step: json.loads((base / name / step / "eval_results.json")
                                          .read_text())
                         for step in ("compact", "finetune_compact")
                         if (base / name / step / "eval_results.json").exists()}
    print("\n| process | run s | samples | threads start / end / max | RSS MB start / end / max "
          "| fds start / end / max |")
    print("|---|---|---|---|---|---|")
    print("\n".join(table))
    lines, compared = dev_results(results, problems)
    print("\n" + "\n".join(lines))
    written, writers = chief_only(base / "one", base / "two", base / "logs_two")
    problems += written
    print(f"\nSteps run: {'; '.join(steps)}.")
    differ = sum(1 for p in problems if "tolerance" in p)
    print(f"{compared} dev results of compact/ and finetune_compact/, two workers against two "
          f"replicas: {compared - differ} agree within {RTOL} (relative, at least 1 in scale).")
    if not written:
        print(f"Two workers' run directory: the same files as one process's; each of its "
              f"{writers} TensorBoard directories written by one process; worker 1's scratch "
              f"directory removed.")
    print(f"Outputs in {base}")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
