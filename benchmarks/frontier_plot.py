"""A task's frontier drawn from `docs/frontier.csv`, the rows kept over machines, seeds and
invocations (`benchmarks/frontier.py` draws the rows of one invocation only).

    python benchmarks/frontier_plot.py --csv docs/frontier.csv --task sst2 \\
        --output docs/plots/frontier_sst2_seeds.png [--speed speedup_b8_real] [--min_seeds 3]

Each Keras row is one point: its Δ against the teacher it was pruned from (`delta_mean`, the
mean over its seeds, with `delta_std` as an error bar) against its measured speedup. Δ and not
the dev metric, because the rows of one task come from different teachers (one per seed, and
older rows from one seed's teacher): only each row's own Δ compares them. The dense teacher is
the star at (1, 0); the same-speed baselines have markers of their own. `--speed` picks the
speedup column: batch 8 padded to 128 (`speedup_b8`, the default), length-bucketed as served
text comes (`speedup_b8_real`) or batch 1 (`speedup_b1`). Rows without that figure are left
out and named.
"""

import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines  # noqa: E402
import frontier  # noqa: E402
import runtime_rows  # noqa: E402

SPEEDS = {"speedup_b8": "batch 8, padded to 128", "speedup_b8_real": "batch 8, real lengths",
          "speedup_b1": "batch 1, padded to 128"}


def _number(text):
    return float(text) if text not in (None, "") else None


def _seed_count(row):
    return len(row["seeds"].split(",")) if row.get("seeds") else 1


def read_rows(path, task, runtime="keras"):
    """The CSV's rows of `task` in `runtime` (`"all"`: every runtime)."""
    if not os.path.exists(path):
        raise SystemExit(f"No CSV at {path}: pass the frontier's CSV with --csv.")
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["task"] == task
                and runtime in ("all", runtime_rows.runtime_of(r))]
    if not rows:
        raise SystemExit(f"{path} has no {task} rows in runtime {runtime!r}.")
    return rows


def points(rows, speed="speedup_b8", min_seeds=1):
    """`(points, left_out)`: the plot's points (`apps.plots.metric_against_speedup`'s dicts)
    of the rows over at least `min_seeds` seeds that have the `speed` figure and a Δ, and the
    names of the rows left out for lacking them.

    >>> rows = [{"method": "fisher", "target": "2", "runtime": "keras", "seeds": "0,1,2",
    ...          "speedup_b8": "2.02", "delta_mean": "-0.27", "delta_std": "0.26",
    ...          "delta_points": "-0.27"},
    ...         {"method": "dropped+distill", "target": "2", "runtime": "keras", "seeds": "",
    ...          "speedup_b8": "", "delta_mean": "", "delta_std": "", "delta_points": "-3.1"}]
    >>> drawn, left_out = points(rows)
    >>> [(p["method"], p["speedup"], p["metric"], p["metric_std"]) for p in drawn]
    [('dense', 1.0, 0.0, None), ('fisher', 2.02, -0.27, 0.26)]
    >>> left_out
    ['dropped+distill 2']
    """
    if speed not in SPEEDS:
        raise ValueError(f"`speed` must be one of {sorted(SPEEDS)}; got {speed!r}.")
    drawn = [{"speedup": 1.0, "metric": 0.0, "label": "", "method": "dense",
              "metric_std": None}]
    left_out = []
    for row in rows:
        seeds = _seed_count(row)
        if seeds < min_seeds:
            continue
        method = runtime_rows.label(row)
        speedup = _number(row.get(speed))
        delta = _number(row.get("delta_mean"))
        if delta is None:  # a row of an older CSV, from one run
            delta = _number(row.get("delta_points"))
        if speedup is None or delta is None:
            left_out.append(f"{method} {row['target']}".strip())
            continue
        drawn.append({"speedup": speedup, "metric": delta,
                      "label": (row["target"] or "") + (f" ({seeds} seeds)" if seeds > 1
                                                        else ""),
                      "method": method, "metric_std": _number(row.get("delta_std"))})
    return drawn, left_out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default="docs/frontier.csv", help="The frontier's CSV.")
    parser.add_argument("--task", required=True, help="The task whose rows to draw.")
    parser.add_argument("--output", default=None,
                        help="The PNG to write (default: frontier_<task>.png here).")
    parser.add_argument("--speed", default="speedup_b8", choices=sorted(SPEEDS),
                        help="The speedup column on the x axis.")
    parser.add_argument("--min_seeds", type=int, default=1,
                        help="Draw only rows measured over at least this many seeds.")
    parser.add_argument("--runtime", default="keras",
                        help="The runtime whose rows to draw (keras, onnx_int8, ...; all).")
    args = parser.parse_args(argv)
    if args.min_seeds < 1:
        parser.error(f"--min_seeds must be at least 1; got {args.min_seeds}.")
    return args


def main(argv=None):
    from apps.plots import MATPLOTLIB_MISSING, metric_against_speedup

    args = parse_args(argv)
    rows = read_rows(args.csv, args.task, args.runtime)
    drawn, left_out = points(rows, args.speed, args.min_seeds)
    if len(drawn) == 1:
        raise SystemExit(f"No {args.task} row of {args.csv} has {args.speed} and a Δ over "
                         f"{args.min_seeds}+ seeds.")
    output = args.output or f"frontier_{args.task}.png"
    metric = rows[0]["metric"]
    path = metric_against_speedup(
        drawn, output, f"{metric}: Δ against its teacher (points)",
        title=f"{args.task}: {SPEEDS[args.speed]}; bars: std over seeds",
        colors=frontier.method_colors(), markers=baselines.markers())
    if path is None:
        raise SystemExit(f"{MATPLOTLIB_MISSING}.")
    for point in drawn[1:]:
        std = f" ± {point['metric_std']:.2f}" if point["metric_std"] is not None else ""
        print(f"{point['method']:<32} {point['label']:<14} {point['speedup']:.2f}x "
              f"{point['metric']:+.2f}{std} points")
    if left_out:
        print(f"Left out (no {args.speed} or Δ): {', '.join(left_out)}")
    print(f"Plot: {path}")


if __name__ == "__main__":
    main()
