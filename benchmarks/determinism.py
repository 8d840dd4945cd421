"""What op determinism costs per training step.

    python benchmarks/determinism.py [--rounds 2 --seq_length 128]

Runs `benchmarks/train_step.py` (MiniLM-size BERT, random weights, graph mode) for the dense
fine-tuning step and the pruning step, in fresh processes with and without
`tf.config.experimental.enable_op_determinism()` (the apps' default; `--nondeterministic`
turns it off), alternating `--rounds` times so that load on a shared machine hits both alike,
and prints the median CPU time per step of each (this process' CPU seconds, all threads,
which other load on a shared machine does not inflate) and their ratio.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_length", type=int, default=128)
    args = parser.parse_args()
    times = {True: [], False: []}
    for _ in range(args.rounds):
        for determinism in (True, False):
            command = [sys.executable, os.path.join(HERE, "train_step.py"), "--cases",
                       "dense,pruning", "--modes", "graph", "--clock", "cpu", "--steps",
                       str(args.steps), "--batch_size", str(args.batch_size), "--seq_length",
                       str(args.seq_length)] + (["--op_determinism"] if determinism else [])
            output = subprocess.run(command, capture_output=True, text=True, check=True,
                                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout
            line = next(line for line in output.splitlines() if line.startswith("RESULT "))
            times[determinism].append(json.loads(line[len("RESULT "):]))
            print(f"  op determinism {'on ' if determinism else 'off'}: {times[determinism][-1]}",
                  flush=True)
    from support import machine_header

    print(f"\nBatch {args.batch_size}, seq {args.seq_length}, graph mode, median of "
          f"{args.steps} steps per process, {args.rounds} processes each way, alternating.")
    print(machine_header().replace("op determinism off", "op determinism as listed") + "\n")
    print("| step | determinism off, CPU ms | determinism on, CPU ms | on / off |")
    print("|---|---|---|---|")
    for name in times[True][0]:
        on = statistics.median(run[name] for run in times[True])
        off = statistics.median(run[name] for run in times[False])
        print(f"| {name.split(' | ')[0]} | {off * 1000:.0f} | {on * 1000:.0f} | {on / off:.2f} |")


if __name__ == "__main__":
    main()
