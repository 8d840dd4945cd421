"""The frontier in the runtimes a model is served with (`frontier.py --runtimes`).

An apps.prune row exported to ONNX or LiteRT carries the report's runtime table
(`report.json["runtimes"]`): the dense and the compact model in Keras and in each exported
runtime, each with the dev metric that runtime computed on the whole dev set and its speedups
against the dense model in Keras, timed in turn in one process. Each of them becomes a
frontier row with its `runtime`:

- the compact model in every exported runtime (the row's own method and target; its Keras
  row is the frontier's own);
- the dense model quantized or converted alone (`method="dense"`, no target): the baseline
  that pruning must beat in the same runtime.

Every Δ is against the dense model in Keras float32, the reference of every speedup.
"""

import json
import os

# The runtime of a row without one (every row timed in Keras by the frontier itself).
KERAS = "keras"


def runtime_of(row):
    """A row's runtime; rows of older CSV files and the frontier's own rows are Keras'."""
    return row.get("runtime") or KERAS


def label(row):
    """How a table or plot names a row: its method, and its runtime unless Keras."""
    runtime = runtime_of(row)
    return row["method"] if runtime == KERAS else f"{row['method']} [{runtime}]"


def runtime_rows(row, directory):
    """The rows of the finished apps.prune run in `directory` in each exported runtime, from
    its `report.json`; [] when it has no runtime table.

    `row` is the frontier's Keras row of the run (`baselines.frontier_row`): the new rows keep
    its task, method, target, structure, metric and command.
    """
    path = os.path.join(directory, "report.json")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        table = json.load(f).get("runtimes") or {}
    entries = table.get("rows", []) if isinstance(table, dict) else table
    metric = f"eval_{row['metric']}"
    reference = next((e for e in entries if e["model"] == "dense" and e["runtime"] == KERAS),
                     None)
    if reference is None:
        return []
    dense = reference["dev"][metric]
    rows = []
    for entry in entries:
        if entry["runtime"] == KERAS:  # the reference, and the frontier's own row
            continue
        speedups = entry["speedup"]
        is_dense = entry["model"] == "dense"
        rows.append({
            **row, "runtime": entry["runtime"],
            "method": "dense" if is_dense else row["method"],
            "target": None if is_dense else row["target"],
            "structure": "model" if is_dense else row["structure"],
            "parameters": row["dense_parameters"] if is_dense else row["parameters"],
            "speedup_b8": speedups["batch_8_fixed"][0],
            "speedup_b8_range": list(speedups["batch_8_fixed"][1:]),
            "speedup_b8_real": speedups.get("batch_8_bucketed", [None])[0],
            "speedup_b1": speedups["batch_1_fixed"][0],
            "speedup_b1_range": list(speedups["batch_1_fixed"][1:]),
            "dense_metric": dense, "compact_metric": entry["dev"][metric],
            "delta_points": 100.0 * (entry["dev"][metric] - dense),
            "agreement": entry.get("agreement"), "megabytes": entry["bytes"] / 1e6,
            # The dense model's conversion is the report's; pruning minutes are the row's.
            "prune_minutes": None if is_dense else row.get("prune_minutes"),
            "total_minutes": None if is_dense else row.get("total_minutes")})
    return rows
