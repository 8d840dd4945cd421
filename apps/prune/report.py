"""The run's report: size, memory and latency of the dense and the compact model measured side
by side in this process (`keras_flop.latency.timing`), their dev metrics from the run
directory, each model in the runtimes it was exported to (`apps.prune.runtime_table`), the
pruning curves, and the warnings a reader must see; `report.md` and, for programs,
`report.json`."""

import gc
import os
import statistics

import numpy as np

from apps import common
from apps.prune import baselines, family, runtime_table
from apps.prune.dev_batches import timed_batches, timed_text
from apps.prune.parser import BASELINE_METHODS, SHORTFALL_TOLERANCE


def final_fine_tuning_text(args):
    """One sentence on how the compact model was fine-tuned (or that it was not)."""
    epochs = getattr(args, "final_epochs", 0)
    if not epochs:
        return "The compact model was not fine-tuned."
    logit = getattr(args, "final_distillation_weight", 0.0)
    hidden = getattr(args, "final_hidden_distillation_weight", 0.0)
    teacher = ("" if not (logit or hidden) else
               f", distilled from the dense model (logit weight {logit:g} at T="
               f"{args.distillation_temperature:g}, hidden-state weight {hidden:g})")
    return (f"The compact model was fine-tuned {epochs} epoch(s) at learning rate "
            f"{args.final_learning_rate:g}{teacher}.")


def weights_mb(model):
    """Size of the model's weights in MB as stored (no optimizer state, no file overhead)."""
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
               for v in model.weights) / 2 ** 20


def majority_rate(examples):
    """The share of the most frequent label among `examples` (None for a regression task)."""
    labels = [e.label for e in examples]
    if not labels or isinstance(labels[0], float):
        return None
    return max(labels.count(label) for label in set(labels)) / len(labels)


def report_warnings(args, data, split, dense_results, info, tolerance=SHORTFALL_TOLERANCE):
    """What a reader of report.md must know before trusting its comparison."""
    warnings = []
    majority = majority_rate(data.evals[split])
    accuracy = dense_results.get("eval_accuracy")
    if majority is not None and accuracy is not None and accuracy <= majority + 0.01:
        warnings.append(
            f"The dense model is at chance level: dev accuracy {accuracy:.4f} against "
            f"{majority:.4f} for always answering the most frequent label. The pruned model "
            "is compared with a model that learned nothing: fine-tune the dense model first "
            "(another --finetune_learning_rate or more --finetune_epochs, or a fine-tuned "
            "--init_checkpoint).")
    if getattr(args, "method", None) in BASELINE_METHODS:
        return warnings  # no target to fall short of
    key = "dense_sparsity" if getattr(args, "sparsity_denominator", "dense") == "dense" \
        else "dense_sparsity_of_factorized"
    what = "sparsity"
    if "latency_sparsity" in info:  # pruned to a speedup: its target is a latency sparsity
        key, what = "latency_sparsity", "latency sparsity (1 - latency/dense, predicted)"
    reached, target = info[key], args.target_sparsity
    if abs(reached - target) > tolerance:
        side = "short of" if reached < target else "past"
        warnings.append(
            f"The compact model's {what} {reached:.3f} is {abs(reached - target):.3f} "
            f"{side} the target {target:.4g} (more than {tolerance}): "
            + ("more --num_train_epochs or a higher --lambda_learning_rate lets the "
               "Lagrangian reach it." if reached < target else
               "the gates closed more than asked; compare at the sparsity reached."))
    return warnings


def training_curves_section(run, title):
    """The report's lines for the pruning run's curves: `training_curves.png` beside
    report.md, drawn from the prune step's trace (none for the Fisher method)."""
    from apps import plots
    from keras_flop.training.callbacks import read_step_csv

    trace = run.path("prune", "trace.csv")
    if not os.path.exists(trace):
        return []
    lines = ["## Pruning curves", ""]
    png = plots.training_curves(read_step_csv(trace),
                                os.path.join(run.write_dir, "training_curves.png"),
                                f"Pruning: {title}")
    if png is None:
        return lines + [f"The per-step logs are in `prune/trace.csv`; "
                        f"{plots.PLOTS_MISSING}.", ""]
    return lines + ["![Task loss, expected sparsity against its target, λ1 and λ2 per "
                    "pruning step](training_curves.png)", "",
                    "From `prune/trace.csv`, every pruning step's logs.", ""]


def family_frontier_section(run, title, rounds, results, metric_keys):
    """The family report's lines for `family_frontier.png`: the dev metric of every member
    and of the dense model against its measured speedup."""
    from apps import plots
    from keras_flop.latency.timing import ratio_spread

    if not metric_keys:
        return []
    metric = metric_keys[0]
    points = [{"speedup": 1.0 / ratio_spread(rounds, name, "dense")[0],
               "metric": results[name][metric],
               "label": "dense" if name == "dense" else f"member {name}",
               "method": "dense" if name == "dense" else "family"} for name in rounds]
    lines = ["## Frontier", ""]
    png = plots.metric_against_speedup(points, os.path.join(run.write_dir,
                                                            "family_frontier.png"),
                                       metric[len("eval_"):], f"One pruning run: {title}")
    if png is None:
        return lines + [f"{plots.PLOTS_MISSING}.", ""]
    return lines + [f"![Dev {metric[len('eval_'):]} against measured speedup, every member "
                    "and the dense model](family_frontier.png)", ""]


def write_report(run):
    """Measures both models in this process on the dev set and writes `report.md`."""
    import tensorflow as tf

    from keras_flop.latency.timing import predicting_peak_memory_mb, ratio_spread, time_in_turn

    args, data = run.args, run.data

    split = next(iter(data.evals))
    # Fixed padding to --max_seq_length (comparable with published latencies), and the
    # length-bucketed batches a service would run.
    batches, timed, total = timed_batches(run)
    on = timed_text(timed, total)
    print(f"   report: peak memory, then latency of the dense and the compact model in turn "
          f"(3 rounds) on the {on}, padded to {args.max_seq_length} and length-bucketed",
          flush=True)
    models = {"dense (fine-tuned)": ("finetune", "model.keras"),
              "compact (final)": ("finetune_compact", "model.keras")}
    # Memory first, one model loaded at a time; then both, run in turn, for the latency.
    memory = {}
    for name, (step, file) in models.items():
        memory[name] = predicting_peak_memory_mb(run.load(step, file),
                                                 batches["fixed"])
        gc.collect()
    loaded = {name: run.load(step, file) for name, (step, file) in models.items()}
    rounds = {padding: time_in_turn(loaded, padded) for padding, padded in batches.items()}
    latency = {padding: {name: statistics.median(values) for name, values in times.items()}
               for padding, times in rounds.items()}
    # One speedup everywhere (table, device line, report.json, the benchmarks): within each
    # round dense over compact time, then the median round and the rounds' min–max. The
    # table's compact/dense column is its reciprocal (the rounds are odd in number).
    speedups = {padding: list(ratio_spread(times, "dense (fine-tuned)", "compact (final)"))
                for padding, times in rounds.items()}
    rows = {}
    for name, (step, file) in models.items():
        rows[name] = {
            "parameters": loaded[name].count_params(),
            "weights_mb": weights_mb(loaded[name]),
            "peak_memory_mb": memory[name],
            "latency_s": latency["fixed"][name],
            "bucketed_latency_s": latency["bucketed"][name],
            "results": common.read_json(run.path(step, "eval_results.json")),
        }
    dense, compact = rows["dense (fine-tuned)"], rows["compact (final)"]
    # Each model in the runtimes it was exported to (none without an ONNX or LiteRT format).
    runtimes = runtime_table.measure(run, {"dense": loaded["dense (fine-tuned)"],
                                           "compact": loaded["compact (final)"]})
    info = common.read_json(run.path("compact", "info.json"))
    metric_keys = dev_metric_keys(dense["results"])
    # Which method produced the compact model.
    method = getattr(args, "method", "lagrangian")
    how = (f"retraining-free: Fisher mask search and least-squares mask tuning, then "
           f"{args.final_epochs} epoch(s) of fine-tuning" if method == "fisher" else
           f"Lagrangian gate training, initial mask `{getattr(args, 'init_mask', 'none')}`")
    title = report_title(args, data)
    if method in BASELINE_METHODS:
        intro = baselines.describe(args, info)
    elif "target_speedup" not in info:
        intro = (f"Method `{method}` ({how}; target sparsity {args.target_sparsity}, "
                 f"{args.sparsity_denominator} denominator), ")
    else:
        intro = (f"Method `{method}` ({how}; target speedup {info['target_speedup']:.4g}x "
                 "under the latency table), ")
    lines = [
        f"# Pruning report: {title}",
        "",
        intro +
        f"pipeline `{args.pipeline}`, eval mask `{args.eval_mask}`, seed {args.seed}. "
        f"{final_fine_tuning_text(args)} "
        f"Dev split `{split}`: {len(data.evals[split])} examples, batch {args.eval_batch_size}, "
        f"sequence length {args.max_seq_length}, {os.cpu_count()} CPU cores, "
        f"TF {tf.__version__}.",
        "",
        "| | dense (fine-tuned) | compact (final) | compact / dense |",
        "|---|---|---|---|",
    ]

    def row(label, key, fmt):
        a, b = dense[key], compact[key]
        lines.append(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {b / a:.3f} |")

    row("parameters", "parameters", "{:,}")
    row("weights (MB, without optimizer state)", "weights_mb", "{:.1f}")
    row("peak resident memory while predicting (MB)", "peak_memory_mb", "{:.0f}")
    for label, key, padding in (
            (f"latency, {on}, padded to {args.max_seq_length} (s)", "latency_s", "fixed"),
            (f"latency, {on}, length-bucketed batches (s)", "bucketed_latency_s",
             "bucketed")):
        speedup, low, high = speedups[padding]
        lines.append(f"| {label} | {dense[key]:.3f} | {compact[key]:.3f} | "
                     f"{1.0 / speedup:.3f} (rounds {1.0 / high:.3f}–{1.0 / low:.3f}) |")
    for key in metric_keys:
        a, b = dense["results"][key], compact["results"][key]
        lines.append(f"| dev {key[len('eval_'):]} | {a:.4f} | {b:.4f} | {b - a:+.4f} (diff) |")
    lines += [
        "",
        f"Encoder dense weights kept: {info['dense_pruned_params']:,} of "
        f"{info['dense_origin_params']:,} (sparsity {info['dense_sparsity']:.3f}); "
        f"whole model {info['pruned_total_params']:,} of {info['total_params']:,} "
        f"(actual_compact_rate {info['actual_compact_rate']:.3f}). Kept ranks per layer are in "
        "`compact/info.txt`. Peak memory is the process' resident set (it includes "
        "TensorFlow itself), reset before each model's measurement. Latencies are medians "
        "of 3 rounds that run the two models in turn; their ratio is the median round's "
        "(and the rounds' min–max).",
        "",
    ]
    if "predicted_speedup" in info:
        # A table of the task's lengths predicts the length-bucketed speed.
        lengths = info.get("latency_table_lengths")
        measured, low, high = speedups["bucketed" if lengths else "fixed"]
        shape = "length-bucketed" if lengths else f"padded to {args.max_seq_length}"
        lines += [
            "| speedup on this device | predicted by the latency table | measured |",
            "|---|---|---|",
            f"| batch {args.eval_batch_size}, {shape} (target "
            f"{info['target_speedup']:.4g}x) | {info['predicted_speedup']:.2f}x | "
            f"{measured:.2f}x (rounds {low:.2f}–{high:.2f}) |",
            "",
            f"The table (`{run.pricing_step()}/latency_table.json`) was measured at batch "
            f"{info['latency_table_batch_size']}, " + (
                "the training set's lengths (" + ", ".join(
                    f"{n}: {w:.0%}" for n, w in lengths.items()) + ")" if lengths else
                f"length {info['latency_table_seq_length']}") + ": it "
            f"predicts the dense model at {info['predicted_dense_latency_s'] * 1e3:.2f} ms and "
            f"the compact one at {info['predicted_latency_s'] * 1e3:.2f} ms per batch.",
            "",
        ]
    if runtimes:
        lines += runtime_table.section(runtimes, args)
    lines += training_curves_section(run, title)
    # The same figures for programs (benchmarks/frontier.py reads them).
    common.write_json(os.path.join(run.write_dir, "report.json"), {
        "method": method, "init_mask": getattr(args, "init_mask", "none"),
        # Fisher pruning removes heads and FFN units whatever --structure says.
        "structure": "heads+ffn" if method == "fisher" else
        baselines.structure(method) or args.structure,
        "target_sparsity": args.target_sparsity,
        "target_speedup": info.get("target_speedup"), "dev_split": split,
        "eval_batch_size": args.eval_batch_size, "max_seq_length": args.max_seq_length,
        "timed_examples": timed,
        # Dense over compact time, and its min–max over the rounds.
        "speedup_fixed": speedups["fixed"], "speedup_bucketed": speedups["bucketed"],
        "dense": dense, "compact": compact, "compact_info": info,
        # One row per model and runtime (None without an ONNX or LiteRT format), with the
        # rounds every latency and speedup was taken from.
        "runtimes": runtimes})
    return finish_report(run, lines,
                         report_warnings(args, data, split, dense["results"], info))


def finish_report(run, lines, warnings):
    """Adds the warnings to `lines`, writes them as `report.md` to the worker's directory (the
    chief's is the run directory), prints them and returns the path."""
    if warnings:
        lines += ["## Warnings", ""] + [f"- {warning}" for warning in warnings] + [""]
    path = os.path.join(run.write_dir, "report.md")
    common.write_text(path, "\n".join(lines))
    print("\n".join(lines))
    return path


def dev_metric_keys(results):
    """The dev metrics (`eval_*`) of an eval_results.json, without its time and size."""
    return [k for k in results if k.startswith("eval_") and k not in ("eval_time",
                                                                      "eval_examples")]


def report_title(args, data):
    return "the built-in toy sentiment task (SST-2 format)" if getattr(args, "toy", False) \
        else data.task.name


def write_family_report(run):
    """`report.md` of a family run: the dense model and one row per member (target, realized
    sparsity or predicted speedup, parameters, dev metrics, measured latency against dense),
    and the members that are missing."""
    import tensorflow as tf

    from keras_flop.latency.timing import ratio_spread, time_in_turn

    args, data = run.args, run.data

    split = next(iter(data.evals))
    batches, timed, total = timed_batches(run, ("fixed",))
    batches = batches["fixed"]
    print(f"   report: latency of the dense model and every member in turn (3 rounds) on the "
          f"{timed_text(timed, total)}", flush=True)
    members = run.family_members(snapshotted=False)
    present = [m for m in members if m["snapshot_step"] is not None]
    steps = {"dense": "finetune", **{m["member"]: os.path.join("finetune_compact",
                                                               str(m["member"]))
                                     for m in present}}
    loaded = {name: run.load(step) for name, step in steps.items()}
    rounds = time_in_turn(loaded, batches)
    results = {name: common.read_json(run.path(step, "eval_results.json"))
               for name, step in steps.items()}
    infos = {m["member"]: common.read_json(run.path(os.path.join(
        "compact", str(m["member"])), "info.json")) for m in present}
    metric_keys = dev_metric_keys(results["dense"])
    latency = run.latency_cost()
    title = report_title(args, data)
    what = "predicted speedup" if latency else "realized sparsity"
    lines = [
        f"# Pruning report: {title}, a family of {len(members)}",
        "",
        f"One pruning run (Lagrangian gate training, {args.structure}), its target ramped "
        f"through {run.target_text()} ({'latency sparsity' if latency else 'sparsity'}); "
        f"each member's gates were snapshotted once its constraint held within "
        f"{args.family_tolerance}, then compacted with its own calibrated mask, fine-tuned "
        f"({args.final_epochs} epoch(s)) and exported as `export/<member>/`. Pipeline "
        f"`{args.pipeline}`, eval mask `{args.eval_mask}`, seed {args.seed}. Dev split "
        f"`{split}`: {len(data.evals[split])} examples, batch {args.eval_batch_size}, padded to "
        f"{args.max_seq_length}, {os.cpu_count()} CPU cores, TF {tf.__version__}.",
        "",
        "| model | target | " + what + " | snapshot step | parameters | " +
        " | ".join(f"dev {k[len('eval_'):]}" for k in metric_keys) +
        " | latency / dense (measured) | measured speedup |",
        "|---" * (7 + len(metric_keys)) + "|",
    ]
    for name in steps:
        ratio, low, high = ratio_spread(rounds, name, "dense")
        metrics = " | ".join(f"{results[name][k]:.4f}" for k in metric_keys)
        parameters = loaded[name].count_params()
        if name == "dense":
            lines.append(f"| dense (fine-tuned) | | | | {parameters:,} | {metrics} | 1.000 | "
                         "1.00x |")
            continue
        member = next(m for m in present if m["member"] == name)
        info = infos[name]
        target = f"{member['speedup']:.4g}x" if latency else f"{member['target']:.4g}"
        reached = f"{info['predicted_speedup']:.2f}x" if latency else \
            f"{info['dense_sparsity']:.3f}"
        lines.append(f"| member {name} (`export/{name}`) | {target} | {reached} | "
                     f"{member['snapshot_step']} | {parameters:,} | {metrics} | "
                     f"{ratio:.3f} (rounds {low:.3f}–{high:.3f}) | {1.0 / ratio:.2f}x |")
    lines += [
        "",
        f"Latencies: the {timed_text(timed, total)}, medians of 3 rounds that run every model "
        "in turn; "
        "the ratio is measured within each round. Each member's kept heads, FFN units and "
        "ranks are in `compact/<member>/info.txt`.",
        "",
    ]
    lines += family_frontier_section(run, title, rounds, results, metric_keys)
    lines += training_curves_section(run, title)
    warnings = [w for w in report_warnings(args, data, split, results["dense"], {
        "dense_sparsity": args.target_sparsity}) if "at chance level" in w]  # the dense model's
    missing = [m for m in members if m["snapshot_step"] is None]
    if missing:
        warnings.append(
            f"{len(missing)} of {len(members)} members are missing (target "
            f"{', '.join(family.member_target_text(m) for m in missing)}): the run ended "
            "before their constraint held. Continue with --start_from prune and a larger "
            "--num_train_epochs.")
    for member in present:
        reached = infos[member["member"]]["latency_sparsity" if latency else "dense_sparsity"]
        if abs(reached - member["target"]) > SHORTFALL_TOLERANCE:
            side = "short of" if reached < member["target"] else "past"
            warnings.append(f"Member {member['member']}'s compact model is at "
                            f"{reached:.3f}, {abs(reached - member['target']):.3f} {side} its "
                            f"target {member['target']:.4g}.")
    return finish_report(run, lines, warnings)
