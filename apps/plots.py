"""The report's figures, as PNG files (matplotlib, non-interactive backend).

matplotlib is optional (`pip install keras-flop[plots]`): without it every function here
returns None and the report says how to get its figures.
"""

import os


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None if matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path):
    """Writes `figure` to `path` (its folder made if need be), frees it, returns `path`."""
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# What a caller without matplotlib is told: the install hint alone, and the prune app's form
# of it, which also says how to draw the figures of a finished run.
MATPLOTLIB_MISSING = "figures need matplotlib: `pip install keras-flop[plots]`"
PLOTS_MISSING = f"{MATPLOTLIB_MISSING}, then rerun with `--start_from report`"

# (column, label) per panel; a panel is drawn when the trace has its first column.
_PANELS = (
    (("task_loss", "task loss"), ("loss", "total loss")),
    (("expected_sparsity", "expected sparsity ŝ"), ("target_sparsity", "target t")),
    (("lambda_1", "λ1"),),
    (("lambda_2", "λ2"),),
)


def training_curves(trace, path, title=None):
    """A 2×2 figure of a pruning run's curves against the step: task loss, expected sparsity
    with its target, λ1 and λ2, from `trace` (the columns of a
    `keras_flop.training.callbacks.StepCSVLogger` file, as `read_step_csv` returns them).
    Writes `path` and returns it; None without matplotlib or without any step."""
    plt = _pyplot()
    if plt is None or not trace.get("step"):
        return None
    panels = [panel for panel in _PANELS if panel[0][0] in trace]
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for (column, label), style in zip(panel, ("-", "--")):
            if column in trace:
                steps, values = zip(*[(s, v) for s, v in zip(trace["step"], trace[column])
                                      if v is not None]) or ((), ())
                ax.plot(steps, values, style, label=label, linewidth=1.2)
        ax.set_xlabel("pruning step")
        ax.set_title(panel[0][1])
        ax.grid(alpha=0.3)
        if len(panel) > 1:
            ax.legend(loc="best", fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title)
    return _save(plt, figure, path)


def metric_against_speedup(points, path, metric, title=None, colors=None, markers=None):
    """Dev `metric` against measured speedup: one marker per `points` entry, a dict with
    `speedup`, `metric`, `label` and optional `method` (one colour and legend entry per
    method; the dense model is `method="dense"`), `metric_std` and `speedup_range` (`[low,
    high]`), drawn as error bars. `colors` ({method: matplotlib colour})
    keeps a method's colour the same across plots that show different methods; `markers`
    ({method: matplotlib format, e.g. "s"}) draws a method's points with their own marker
    and no line. Writes `path` and returns it; None without matplotlib or without points."""
    plt = _pyplot()
    if plt is None or not points:
        return None
    figure, ax = plt.subplots(figsize=(6.5, 4.5))
    methods = list(dict.fromkeys(p.get("method", "") for p in points))
    for method in methods:
        group = sorted((p for p in points if p.get("method", "") == method),
                       key=lambda p: p["speedup"])
        ax.plot([p["speedup"] for p in group], [p["metric"] for p in group],
                "*" if method == "dense" else (markers or {}).get(method, "o-"),
                markersize=12 if method == "dense" else 6,
                label=method or None, **({"color": colors[method]}
                                         if colors and method in colors else {}))
        bars = [p for p in group if p.get("metric_std") or p.get("speedup_range")]
        if bars:  # the spread over seeds: metric std, speedup min–max
            ax.errorbar([p["speedup"] for p in bars], [p["metric"] for p in bars],
                        yerr=[p.get("metric_std") or 0.0 for p in bars],
                        xerr=[[p["speedup"] - (p.get("speedup_range") or [p["speedup"]] * 2)[0]
                               for p in bars],
                              [(p.get("speedup_range") or [p["speedup"]] * 2)[1] - p["speedup"]
                               for p in bars]],
                        fmt="none", capsize=3, elinewidth=1,
                        **({"ecolor": colors[method]} if colors and method in colors else {}))
        for p in group:
            if p.get("label"):
                ax.annotate(p["label"], (p["speedup"], p["metric"]), textcoords="offset points",
                            xytext=(4, 4), fontsize="small")
    ax.set_xlabel("measured speedup over dense (×)")
    ax.set_ylabel(f"dev {metric}")
    ax.grid(alpha=0.3)
    if any(methods):
        ax.legend(loc="best", fontsize="small")
    if title:
        ax.set_title(title)
    return _save(plt, figure, path)
