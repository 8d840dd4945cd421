"""The resource sampler of the soak tests (`resources.py`): its judgement of hand-made series,
and its readings of a live process."""

import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from resources import RESOURCES, ResourceSampler, format_table, growth, read_usage


def noisy(level, count, noise, seed=0):
    """`count` samples around `level`, off by up to `noise` (relative) either way."""
    rng = np.random.default_rng(seed)
    return [level * (1 + noise * float(u)) for u in rng.uniform(-1, 1, count)]


def flat_series(count=60, seed=0):
    return {"threads": [round(v) for v in noisy(180, count, 0.05, seed)],
            "rss_mb": noisy(1100, count, 0.08, seed + 1),
            "fds": [round(v) for v in noisy(16, count, 0.1, seed + 2)]}


def test_a_flat_series_with_noise_passes():
    for seed in range(20):
        series = flat_series(seed=seed)
        # Passing spikes: a checkpoint's files, an evaluation's buffers, a burst of threads.
        series["fds"][30] = 40
        series["rss_mb"][-2] = 2000
        series["threads"][5] = 400
        assert growth(series, 5, "worker 0") == []


def test_a_warm_up_that_grows_is_not_judged():
    series = flat_series()
    series["threads"][:5] = [20, 60, 100, 140, 170]  # starting up
    series["rss_mb"][:5] = [100, 300, 600, 900, 1000]
    assert growth(series, 5, "worker 0") == []


@pytest.mark.parametrize("resource, rate, unit", [("threads", 10.0, "threads"),
                                                  ("rss_mb", 8.0, "MB"), ("fds", 0.2, "fds")])
def test_a_growing_series_fails_and_names_resource_worker_and_figures(resource, rate, unit):
    series = flat_series()
    series[resource] = [v + rate * i for i, v in enumerate(series[resource])]
    problems = growth(series, 5, "worker 1")
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.startswith(f"worker 1: {resource} grew +") and "after warm-up" in problem
    start = np.median(series[resource][5:8])
    end = np.median(series[resource][-3:])
    assert f"from {start:.0f} to {end:.0f} {unit}" in problem
    assert "limit +20%" in problem and "samples 5 to 59" in problem


def test_the_limit_is_twenty_percent_of_the_level_after_warm_up():
    flat = [100.0] * 20
    assert growth({"threads": flat[:10] + [119.0] * 10}, 2, "w") == []
    assert growth({"threads": flat[:10] + [121.0] * 10}, 2, "w") != []
    # Growth before the end of warm-up does not count; a fall is no problem.
    assert growth({"threads": [10.0] * 5 + flat}, 5, "w") == []
    assert growth({"threads": flat[:10] + [50.0] * 10}, 2, "w") == []
    # A leak of a few samples at the very end is seen (two of the last three).
    assert growth({"threads": flat[:17] + [100.0, 500.0, 900.0]}, 2, "w") != []


def test_a_handful_of_descriptors_more_is_not_a_leak():
    assert growth({"fds": [3.0] * 10 + [5.0] * 10}, 2, "w") == []  # +67 %, but 2 files
    assert "fds grew +100%" in growth({"fds": [3.0] * 10 + [6.0] * 10}, 2, "w")[0]
    assert growth({"fds": [3.0] * 10 + [6.0] * 10}, 2, "w", floor={"fds": 3}) == []


def test_only_the_window_from_warm_up_to_its_end_is_judged():
    series = {"threads": [100.0] * 20 + [300.0] * 10}  # more threads for the steps after it
    assert growth(series, 5, "w", end=20) == []
    problem = growth(series, 5, "w")[0]
    assert "from 100 to 300 threads" in problem and "samples 5 to 29" in problem
    series = {"threads": [100.0] * 10 + [130.0] * 10 + [100.0] * 10}
    assert "samples 2 to 19" in growth(series, 2, "w", end=20)[0]
    assert growth(series, 2, "w", end=20, limit=0.5) == []


def test_too_few_samples_after_warm_up_is_a_problem():
    series = {"threads": [100.0] * 10}
    assert "too few after warm-up" in growth(series, None, "worker 0")[0]
    assert "too few after warm-up" in growth(series, 5, "worker 0")[0]
    assert growth(series, 4, "worker 0") == []
    assert "too few after warm-up" in growth(series, 4, "worker 0", end=9)[0]


def test_read_usage_of_this_process_and_of_none():
    usage = read_usage(os.getpid())
    assert set(usage) == set(RESOURCES)
    assert usage["threads"] >= threading.active_count()
    assert usage["rss_mb"] > 10 and usage["fds"] >= 3
    assert read_usage(2 ** 22 + 1) is None  # above any pid_max: no such process


def test_the_sampler_follows_a_process_that_grows_until_it_exits(tmp_path):
    """A child that opens a file and starts a thread every 0.1 s for 1.5 s, then holds them
    until it is killed (an exit would close its files first): the sampler sees both grow,
    stops by itself at the child's end, and the judgement fails it."""
    script = ("import threading, time\n"
              "files = []\n"
              "for i in range(15):\n"
              f"    files.append(open({str(tmp_path)!r} + f'/f{{i}}', 'w'))\n"
              "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
              "    time.sleep(0.1)\n"
              "print('grown', flush=True)\n"
              "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    sampler = ResourceSampler(child.pid, "child", interval=0.05).start()
    try:
        assert child.stdout.readline() == "grown\n"
        time.sleep(0.5)
    finally:
        child.kill()
        child.wait(timeout=60)
    sampler._thread.join(timeout=10)
    assert not sampler._thread.is_alive()  # ended with the process
    sampler.stop()
    series = sampler.series()
    assert len(series["threads"]) >= 10
    assert series["threads"][-1] >= series["threads"][0] + 10
    assert series["fds"][-1] >= series["fds"][0] + 10
    problems = growth(series, sampler.warm_index(), "child")
    assert any(p.startswith("child: threads grew") for p in problems), problems
    assert any(p.startswith("child: fds grew") for p in problems), problems
    start, end, most = sampler.summary()["threads"]
    assert start < end <= most
    assert sampler.problems() == problems and sampler.exceeded is None


def test_a_process_above_a_ceiling_is_killed_at_once():
    child = subprocess.Popen([sys.executable, "-c", (
        "import threading, time\n"
        "for i in range(200):\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "    time.sleep(0.05)\n")])
    sampler = ResourceSampler(child.pid, "worker 1", interval=0.05,
                              ceiling={"threads": 30}).start()
    try:
        assert child.wait(timeout=60) == -9  # long before the child's 10 s
    finally:
        if child.poll() is None:
            child.kill()
    sampler.stop()
    found = re.fullmatch(r"worker 1: threads reached (\d+) threads at \d+ s, above the "
                         r"ceiling of 30, from \d+ \d+ s before \(\+\d+/s\): killed",
                         sampler.exceeded)
    assert found and 30 < int(found.group(1)) < 150, sampler.exceeded
    problems = sampler.problems()
    assert problems[0] == sampler.exceeded and "threads grew" in problems[1], problems
    # Killed before the end of warm-up: the ceiling alone, not that the window was too short.
    sampler.warm, sampler.warm_at = (lambda: False), None
    assert sampler.problems() == [sampler.exceeded]


def test_the_warm_up_ends_at_the_first_sample_warm_says_so():
    calls, ends = [], []
    sampler = ResourceSampler(os.getpid(), "self", interval=0.01,
                              warm=lambda: calls.append(1) or len(calls) >= 4,
                              done=lambda: ends.append(1) or len(ends) >= 3).start()
    while len(sampler.samples) < 8:
        threading.Event().wait(0.01)
    sampler.stop()
    assert sampler.warm_index() == 3
    assert len(calls) == 4  # not asked again once warm
    assert sampler.end_index() == 5 and len(ends) == 3  # asked from the end of warm-up on
    never = ResourceSampler(os.getpid(), "self", warm=lambda: False)
    assert never.warm_index() is None
    fraction = ResourceSampler(os.getpid(), "self", warm_fraction=0.25)
    fraction.samples = [(i, {}) for i in range(20)]
    assert fraction.warm_index() == 5


def test_the_table_shows_the_window_and_the_whole_run():
    sampler = ResourceSampler(1, "worker 0", warm=lambda: True, done=lambda: True)
    usage = [(1, 10.0, 3), (150, 900.0, 12), (160, 1000.0, 14), (160, 1010.0, 14),
             (162, 1020.0, 14), (161, 1030.0, 15), (165, 1040.0, 14), (163, 1050.0, 14),
             (240, 1300.0, 12)]
    sampler.samples = [(2.0 * i, {"threads": t, "rss_mb": r, "fds": f})
                       for i, (t, r, f) in enumerate(usage)]
    sampler.warm_at, sampler.done_at = 2, 8
    table = format_table([sampler]).splitlines()
    assert table[0] == "| process | judged window | threads | RSS MB | fds |"
    assert table[2] == ("| worker 0 | samples 2–7 of 9 (4–14 s) | 160 → 163 (+2%), max 165; "
                        "run: last 240, max 240 | 1010 → 1040 (+3%), max 1050; run: last "
                        "1300, max 1300 | 14 → 14 (+0%), max 15; run: last 12, max 15 |")
    sampler.warm_at = None
    assert "| worker 0 | none (9 samples, warm-up ended at None) | run: last 240, max 240 |" \
        in format_table([sampler])
