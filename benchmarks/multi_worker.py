"""Two workers of `python -m apps.prune --strategy multi_worker` on 127.0.0.1.

    python benchmarks/multi_worker.py

Runs `tests/test_multi_worker.py` (`-m slow`): the toy pipeline in one process and on two
workers with the same global batch, compared step by step; which files each worker wrote;
a worker killed mid-pruning, the other's exit and the resumed run; and the sharding of
training and dev examples. Prints the machine, what each test measured and the outcome.
`benchmarks/multi_worker_toy.py` runs the default toy task on two workers, with the threads,
memory and open files of every process.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def main():
    from support import machine_header

    print(machine_header())
    command = [sys.executable, "-m", "pytest", "tests/test_multi_worker.py", "-m", "slow",
               "-s", "-q", "-p", "no:cacheprovider"]
    print("$ " + " ".join(["python"] + command[1:]), flush=True)
    began = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    keep = ("toy run", "logged scalars", "compact weights", "worker 0 exited", "passed",
            "failed", "skipped", "error")
    for line in result.stdout.splitlines():
        line = line.lstrip(".sFE ")
        if line.startswith(keep) or "logged scalars" in line or " passed" in line or \
                " failed" in line:
            print(line)
    print(f"exit status {result.returncode}, {time.monotonic() - began:.0f} s in all")
    if result.returncode:
        print(result.stdout[-5000:], result.stderr[-3000:])
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
