"""The frontier's rows over seeds, and what a row cost.

Each seed prunes its own teacher (the teacher recipe run with that seed), so a row of several
seeds is `mean ± std` of the compact models' dev metric, and of `Δ = compact − the teacher it
was pruned from`: neither a lucky teacher nor a lucky pruning run decides it. Speedups and
minutes are the seeds' means; `speedup_b8_range` is the min–max of the seeds' speedups.

A row's `total_minutes` is what the row's command cost a user who ran it alone: its wall time
here, plus the one-off work it read rather than did (the latency table a first row measured,
the teacher outputs a first row computed). The teacher's own fine-tuning is not in it: the
user has the teacher.
"""

import contextlib
import fcntl
import json
import math
import os
import statistics
import time

# The CSV's columns: one row per (task, method, target) over `seeds`.
COLUMNS = ("task", "method", "structure", "target", "runtime", "seeds", "speedup_b8",
           "speedup_b8_real", "speedup_b1", "metric", "dense_metric", "compact_metric",
           "compact_mean", "compact_std", "delta_points", "delta_mean", "delta_std",
           "agreement", "megabytes", "prune_minutes", "total_minutes")


def _mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else None


def spread(values):
    """The sample standard deviation of `values`; None for fewer than two."""
    return statistics.stdev(values) if len(values) > 1 else None


def key(row):
    """What names a row across seeds and invocations: its task, method and target, and its
    runtime when it is not Keras (`runtime_rows`)."""
    target = row["target"]
    runtime = row.get("runtime") or "keras"
    return (row["task"], row["method"], "" if target in (None, "") else f"{float(target):g}",
            *(() if runtime == "keras" else (runtime,)))


def record_rows(summary, new, row_key):
    """Writes `new` into the seed's summary `summary` (a JSON list of rows) in place of the
    rows of the same `row_key` (appended in its order: the dense model's runtime rows, which
    every row exported from one teacher repeats, appear once), and returns every row it now
    holds.

    The file is read again under a lock and replaced whole (`apps.common.write_text`), so two
    invocations on one seed (other rows, or `--runtimes` of a finished row) keep each other's
    rows, and a crash never leaves half a file. With no `new` rows it is only read.
    """
    from apps import common

    with _locked(f"{summary}.lock"):
        rows = common.read_json(summary, missing=[])
        if new:  # nothing new: the rows as they are, the file untouched
            keys = {row_key(r) for r in new}
            rows = [r for r in rows if row_key(r) not in keys] + list(new)
            common.write_text(summary, json.dumps(rows, indent=2))
    return rows


@contextlib.contextmanager
def _locked(path):
    with open(path, "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def over_seeds(rows_by_seed):
    """`{seed: [row, ...]}` (each row as `baselines.frontier_row` makes it) -> one row per
    key in first-seen order, over the seeds that have it.

    >>> row = {"task": "sst2", "method": "fisher", "structure": "heads+ffn", "target": 2.0,
    ...        "metric": "accuracy", "parameters": 10, "dense_parameters": 20}
    >>> rows = over_seeds({0: [dict(row, compact_metric=0.90, dense_metric=0.91,
    ...                             delta_points=-1.0, speedup_b8=2.0, speedup_b1=1.9)],
    ...                    1: [dict(row, compact_metric=0.88, dense_metric=0.90,
    ...                             delta_points=-2.0, speedup_b8=2.2, speedup_b1=2.1)]})
    >>> r = rows[0]
    >>> r["seeds"], round(r["compact_mean"], 4), round(r["compact_std"], 4), r["delta_mean"]
    ('0,1', 0.89, 0.0141, -1.5)
    >>> round(r["speedup_b8"], 2), r["speedup_b8_range"]
    (2.1, [2.0, 2.2])
    """
    order, grouped = [], {}
    for seed in sorted(rows_by_seed):
        for row in rows_by_seed[seed]:
            if key(row) not in grouped:
                order.append(key(row))
                grouped[key(row)] = []
            grouped[key(row)].append((seed, row))
    rows = []
    for name in order:
        group = grouped[name]
        first = group[0][1]
        compacts = [row["compact_metric"] for _, row in group]
        deltas = [row["delta_points"] for _, row in group]
        speeds = [row["speedup_b8"] for _, row in group]
        rows.append({
            **{k: first.get(k) for k in ("task", "method", "structure", "target", "metric",
                                         "parameters", "dense_parameters")},
            "runtime": first.get("runtime") or "keras",
            "agreement": _mean([row.get("agreement") for _, row in group]),
            "megabytes": _mean([row.get("megabytes") for _, row in group]),
            "seeds": ",".join(str(seed) for seed, _ in group),
            "per_seed": {str(seed): row for seed, row in group},
            "speedup_b8": _mean(speeds), "speedup_b8_range": [min(speeds), max(speeds)],
            "speedup_b1": _mean([row["speedup_b1"] for _, row in group]),
            "speedup_b8_real": _mean([row.get("speedup_b8_real") for _, row in group]),
            "dense_metric": _mean([row["dense_metric"] for _, row in group]),
            "compact_metric": _mean(compacts), "compact_mean": _mean(compacts),
            "compact_std": spread(compacts),
            "delta_points": _mean(deltas), "delta_mean": _mean(deltas), "delta_std": spread(deltas),
            "prune_minutes": _mean([row.get("prune_minutes") for _, row in group]),
            "total_minutes": _mean([row.get("total_minutes") for _, row in group]),
            "commands": [row.get("command") for _, row in group]})
    return rows


def table_lines(task, rows):
    """The rows over seeds as a markdown table: mean ± std of the dev metric and of Δ against
    each seed's own teacher; batch 8's mean speedup (min–max over the seeds)."""
    from runtime_rows import label
    from support import mean_std

    lines = [f"{task}: rows over seeds (each seed's compact model against its own teacher; "
             "mean ± std; speedup b8 mean (min–max over seeds), padded to 128 and at real "
             "lengths).", "",
             "| method | target | seeds | speedup b8 | b8 real lengths | speedup b1 | dev | "
             "Δ (points) | total min |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        seeds = r["per_seed"].values()
        low, high = r["speedup_b8_range"]
        real = "–" if r["speedup_b8_real"] is None else f"{r['speedup_b8_real']:.2f}x"
        minutes = "–" if r["total_minutes"] is None else f"{r['total_minutes']:.1f}"
        target = "–" if r["target"] is None else f"{r['target']:g}"
        lines.append(f"| {label(r)} | {target} | {r['seeds']} | {r['speedup_b8']:.2f}x "
                     f"({low:.2f}–{high:.2f}) | {real} | {r['speedup_b1']:.2f}x | "
                     f"{mean_std(s['compact_metric'] for s in seeds)} | "
                     f"{mean_std((s['delta_points'] for s in seeds), 2)} | {minutes} |")
    return lines


def csv_value(name, value):
    """How a column's value is written: targets as given, floats to 4 decimals, None empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if name == "target":
        return f"{value:g}"
    return f"{value:.4f}" if isinstance(value, float) else value


# -- what a row cost ------------------------------------------------------------------------
def wall_file(directory):
    """Where the frontier keeps a row's wall time: beside its run directory, as its log is."""
    return f"{directory}.wall.json"


def timed_run(run, command, directory, done, shared_before):
    """Runs `command` (`run(command, log)`) and, when the row was not finished before
    (`done`), records its wall seconds and which shared files it made (`shared_before`:
    `{name: path}` of the one-off files the rows share, as they were before it ran)."""
    existed = {name: os.path.exists(path) for name, path in shared_before.items()}
    began = time.perf_counter()
    run(command, f"{directory}.log")
    if done:
        return
    record = {"seconds": time.perf_counter() - began,
              "made": sorted(name for name, path in shared_before.items()
                             if not existed[name] and os.path.exists(path))}
    with open(wall_file(directory), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)


def shared_seconds(name, path):
    """The seconds the one-off file at `path` took to make: a latency table's measurement, or
    the teacher outputs' computation; None when it is not there or says nothing."""
    if not path or not os.path.exists(path):
        return None
    if name == "latency_table":
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("info", {}).get("measurement_seconds")
    import numpy as np

    with np.load(path) as kept:
        return float(kept["seconds"]) if "seconds" in kept else None


def total_minutes(directory, used):
    """A row's `total_minutes`: its recorded wall time plus the seconds of each shared file
    of `used` (`{name: path}`, the ones its command reads) that another row made. None when
    the row's wall time, or a shared file's cost, is not on record."""
    if not os.path.exists(wall_file(directory)):
        return None
    with open(wall_file(directory), encoding="utf-8") as f:
        record = json.load(f)
    seconds = record["seconds"]
    for name, path in used.items():
        if name in record["made"]:
            continue
        extra = shared_seconds(name, path)
        if extra is None or math.isnan(extra):
            return None
        seconds += extra
    return seconds / 60.0
