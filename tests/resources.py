"""What a running process holds, sampled over time: its threads, resident memory and open file
descriptors, read from `/proc/<pid>` (Linux) every few seconds by a background thread.

    sampler = ResourceSampler(process.pid, "worker 0", interval=2.0).start()
    ...  # the process runs
    sampler.stop()
    problems = sampler.problems()  # growth over the judged window, a passed ceiling
    assert not problems, "\\n".join(problems)

`growth` judges a series: a resource whose level at the end exceeds its level at the end of
warm-up by more than `limit` (20 %) is a leak. Each level is the median of a few samples, so
that a passing spike (a checkpoint's open files, an evaluation's buffers) is not one.
"""

import os
import signal
import statistics
import threading
import time

RESOURCES = ("threads", "rss_mb", "fds")
UNITS = {"threads": "threads", "rss_mb": "MB", "fds": "fds"}
LIMIT = 0.20  # relative growth from the end of warm-up to the end that counts as a leak
WINDOW = 3  # samples whose median is a level (at the end of warm-up, at the end)
# Growth must also exceed this many units: a process holds a handful of descriptors, and a
# TensorBoard file or a checkpoint's two open at the end is not a leak (a descriptor per
# checkpoint, over 10, is).
FLOOR = {"threads": 2, "rss_mb": 0.0, "fds": 2}


def read_usage(pid):
    """`{"threads", "rss_mb", "fds"}` of process `pid` now, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            status = dict(line.split(":", 1) for line in f if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if "VmRSS" not in status:  # a zombie: exited, not yet reaped
        return None
    return {"threads": int(status["Threads"]), "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "fds": fds}


class ResourceSampler:
    """Samples process `pid` every `interval` seconds in a daemon thread until `stop` or the
    process' exit. `samples` holds `(seconds since start, usage)` pairs.

    The judged window: `warm`, a function of no arguments, is asked at every sample until it
    first says True, and that sample ends the warm-up (`warm_index`); without it, the warm-up
    is the first `warm_fraction` of the samples. `done`, asked likewise from then on, ends the
    window at the first sample it says True of (`end_index`, that sample excluded); without it,
    or until it says so, the window runs to the last sample.

    `ceiling` (`{resource: value}`) guards the machine: a sample above one kills the process
    (SIGKILL) at once, and `exceeded` says which, where and when, so that a leak is stopped
    before it takes every process id or all memory."""

    def __init__(self, pid, name, interval=2.0, warm=None, done=None, warm_fraction=0.1,
                 ceiling=None):
        self.pid, self.name, self.interval = pid, name, interval
        self.warm, self.done, self.warm_fraction = warm, done, warm_fraction
        self.ceiling = dict(ceiling or {})
        self.samples = []
        self.warm_at = None  # index of the first sample taken warm
        self.done_at = None  # index of the first sample taken done
        self.exceeded = None  # a sentence, once a ceiling was passed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler {name}", daemon=True)
        self._began = None

    def start(self):
        self._began = time.monotonic()
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            usage = read_usage(self.pid)
            if usage is None:
                return
            at = len(self.samples)
            if self.warm_at is None and self.warm is not None and self.warm():
                self.warm_at = at
            if self.done_at is None and self.done is not None and \
                    (self.warm is None or self.warm_at is not None) and self.done():
                self.done_at = at
            seconds = time.monotonic() - self._began
            self.samples.append((seconds, usage))
            over = [r for r, most in self.ceiling.items() if usage[r] > most]
            if over:
                then, before = self.samples[max(0, len(self.samples) - 11)]  # ~10 samples ago
                self.exceeded = "; ".join(
                    f"{self.name}: {r} reached {usage[r]:.0f} {UNITS.get(r, '')} at "
                    f"{seconds:.0f} s, above the ceiling of {self.ceiling[r]:.0f}, from "
                    f"{before[r]:.0f} {seconds - then:.0f} s before "
                    f"({(usage[r] - before[r]) / max(seconds - then, 1e-9):+.0f}/s): killed"
                    for r in over)
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        return self

    def series(self):
        """`{resource: [value per sample]}`."""
        return {r: [usage[r] for _, usage in self.samples] for r in RESOURCES}

    def warm_index(self):
        """The index of the first sample after warm-up (None: the warm-up never ended)."""
        if self.warm is not None:
            return self.warm_at
        return int(len(self.samples) * self.warm_fraction)

    def end_index(self):
        """The index after the judged window's last sample."""
        return len(self.samples) if self.done_at is None else self.done_at

    def problems(self, limit=None, window=None):
        """A passed ceiling, and `growth` over the judged window (when the process was killed
        at a ceiling, whatever growth its samples show, but not that they were too few)."""
        options = {k: v for k, v in (("limit", limit), ("window", window)) if v is not None}
        found = growth(self.series(), self.warm_index(), self.name, end=self.end_index(),
                       **options)
        if self.exceeded:  # killed: a window cut short says nothing more
            return [self.exceeded] + [p for p in found if "too few after warm-up" not in p]
        return found

    def summary(self):
        """`{resource: (start, end, max)}` over all samples (levels of single samples)."""
        return {r: (values[0], values[-1], max(values))
                for r, values in self.series().items() if values}


def level(values):
    """The median of `values` (a few samples)."""
    return statistics.median(values)


def window_levels(series, warm, end=None, window=WINDOW):
    """`{resource: (level at the end of warm-up, level at the end)}` of the judged window, or
    None when it has fewer than two `window`s of samples."""
    levels = {}
    for resource, values in series.items():
        last = len(values) if end is None else min(end, len(values))
        if warm is None or last - warm < 2 * window:
            return None
        levels[resource] = (level(values[warm:warm + window]), level(values[last - window:last]))
    return levels


def growth(series, warm, name, end=None, limit=LIMIT, window=WINDOW, floor=None):
    """The problems of a sampled process, one sentence each (none: it passes).

    `series` maps each resource to its samples in time order; the judged window runs from
    `warm`, the index of the first sample after warm-up, to `end` (excluded; default: the
    last sample). A resource grew when the median of the window's last `window` samples
    exceeds the median of its first `window` by more than `limit` of the latter and by more
    than `floor[resource]` (default `FLOOR`) units. Too few
    samples in the window (fewer than two `window`s) is a problem too: the run was too short,
    or the warm-up never ended, to tell."""
    floor = FLOOR if floor is None else floor
    problems = []
    for resource, values in series.items():
        last = len(values) if end is None else min(end, len(values))
        if warm is None or last - warm < 2 * window:
            problems.append(f"{name}: {last - (warm or 0)} samples of {resource} from the end "
                            f"of warm-up (sample {warm}) to sample {last}: too few after "
                            f"warm-up to judge its growth")
            continue
        start = level(values[warm:warm + window])
        stop = level(values[last - window:last])
        if stop > start * (1 + limit) and stop - start > floor.get(resource, 0):
            unit = UNITS.get(resource, "")
            problems.append(
                f"{name}: {resource} grew {stop / start - 1:+.0%} after warm-up, from "
                f"{start:.0f} to {stop:.0f} {unit} (limit {limit:+.0%}; samples {warm} to "
                f"{last - 1}, max {max(values[warm:last]):.0f}, first {values[0]:.0f})")
    return problems


def format_table(samplers):
    """A Markdown table of what each sampler saw: the judged window (samples, seconds), and per
    resource its levels at the window's start and end, their change, the window's maximum,
    and the whole run's last and maximum samples."""
    lines = ["| process | judged window | threads | RSS MB | fds |", "|---|---|---|---|---|"]
    for sampler in samplers:
        series = sampler.series()
        warm, end = sampler.warm_index(), sampler.end_index()
        levels = window_levels(series, warm, end)
        if levels is None:
            where = f"none ({len(sampler.samples)} samples, warm-up ended at {warm})"
        else:
            times = [t for t, _ in sampler.samples]
            where = (f"samples {warm}–{end - 1} of {len(times)} "
                     f"({times[warm]:.0f}–{times[end - 1]:.0f} s)")
        cells = []
        for resource in RESOURCES:
            values = series[resource]
            if not values:
                cells.append("–")
                continue
            run = f"run: last {values[-1]:.0f}, max {max(values):.0f}"
            if levels is None:
                cells.append(run)
                continue
            start, stop = levels[resource]
            cells.append(f"{start:.0f} → {stop:.0f} ({stop / start - 1:+.0%}), max "
                         f"{max(values[warm:end]):.0f}; {run}")
        lines.append(f"| {sampler.name} | {where} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
