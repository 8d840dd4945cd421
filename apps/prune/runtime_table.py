"""The report's runtime table: the dense and the compact model in each runtime of
--export_formats (Keras as a graph, ONNX Runtime and LiteRT, float32 and INT8), measured in
this process: the dev metric computed by each runtime on the whole dev set, the latency at
batch 8 and batch 1 (padded to --max_seq_length and length-bucketed), every runtime on the
same number of threads and timed in turn with the others (`keras_flop.latency.timing.
calls_in_turn`), the speedup against the dense model in Keras measured in the same rounds,
and the files' sizes.

The compact model's files are the export step's (`export/`). The dense model's are exported
here, to `report_scratch/` in the run directory, and deleted once measured: the table needs
them, a run's outputs do not. They are checked as the export step checks its own (float files
to 1e-4; an INT8 file's agreement is measured but accepted whatever it is: the table shows
what it costs).
"""

import os
import shutil
import statistics
import time

from apps import common
from apps.prune.dev_batches import timed_batches
from apps.prune.parser import EXPORT_AGREEMENT_EXAMPLES

# The rows of each model, in this order; the first is the reference of every speedup.
RUNTIMES = {"keras": "Keras (graph)", "onnx": "ONNX Runtime fp32",
            "onnx_int8": "ONNX Runtime INT8", "litert": "LiteRT fp32",
            "litert_int8": "LiteRT INT8"}
MODELS = {"dense": ("finetune", "dense (fine-tuned)"),
          "compact": ("finetune_compact", "compact (final)")}
REFERENCE = "dense keras"
BATCH_SIZES = (8, 1)
# Each runtime runs this many batches of each size per round (256 examples at batch 8, 32 at
# batch 1), whatever --report_examples is: the toy task's 10 rows are timed in about 10 s.
TIMED_BATCHES = 32
SCRATCH = "report_scratch"
ROUNDS = 3


def runtime_formats(args):
    """The file formats of --export_formats the table runs, in the table's order (none when
    only a SavedModel is exported: then there is no table)."""
    asked = {f.strip() for f in args.export_formats.split(",")}
    return [fmt for fmt in RUNTIMES if fmt != "keras" and fmt in asked]


def timed_examples(args, total, batch_size):
    """How many dev examples the latencies at `batch_size` are timed on: --report_examples
    (all when 0), at most `TIMED_BATCHES` batches, whole batches when there are enough."""
    limit = min(args.report_examples or total, total, TIMED_BATCHES * batch_size)
    return limit // batch_size * batch_size if limit >= batch_size else limit


def config_key(batch_size, padding):
    return f"batch_{batch_size}_{padding}"


def config_text(batch_size, padding, max_seq_length):
    where = f"padded to {max_seq_length}" if padding == "fixed" else "length-bucketed"
    return f"batch {batch_size}, {where}"


def export_dense(run, model, formats, directory):
    """The dense model's files of `formats` in `directory` (replaced), checked in their
    runtimes; `{format: path}`."""
    import keras_flop

    from apps.prune.steps import export_check_text

    shutil.rmtree(directory, ignore_errors=True)
    dev = next(iter(run.data.eval_dataset(next(iter(run.data.evals)),
                                          EXPORT_AGREEMENT_EXAMPLES)))[0]
    files = keras_flop.export_formats(model, directory, formats, agreement_batch=dev,
                                      min_agreement=0.0)
    for fmt, path in files.items():
        print(f"      dense {fmt}: {export_check_text(fmt, files.checks[fmt])}", flush=True)
    return dict(files)


def build_rows(run, loaded, formats, scratch, threads):
    """`({name: runner}, [row])` for every model and runtime: the runners on `threads`
    threads, the rows with their file and its size."""
    from keras_flop.export import runtimes
    from keras_flop.export.requirements import FILE_NAMES

    files = {model: {"keras": run.path(step, "model.keras")} for model, (step, _) in
             MODELS.items()}
    files["compact"].update({fmt: run.path("export", FILE_NAMES[fmt]) for fmt in formats})
    missing = [path for path in files["compact"].values() if not os.path.exists(path)]
    if missing:  # before the dense model's export
        raise common.UsageError(f"The runtime table runs the export step's files; missing: "
                                f"{', '.join(missing)}. Pass --start_from export.")
    files["dense"].update(export_dense(run, loaded["dense"], formats, scratch))
    runners, rows = {}, []
    for model, paths in files.items():
        for runtime, path in paths.items():
            name = f"{model} {runtime}"
            runners[name] = runtimes.KerasRunner(loaded[model]) if runtime == "keras" else \
                runtimes.runner(runtime, path, threads=threads)
            shown = os.path.relpath(path, run.run_dir) if model == "compact" or \
                runtime == "keras" else f"{SCRATCH}/{os.path.basename(path)} (deleted)"
            rows.append({"name": name, "model": model, "runtime": runtime,
                         "label": RUNTIMES[runtime], "file": shown,
                         "bytes": os.path.getsize(path)})
    return runners, rows


def dev_metrics(run, runners, rows):
    """Each row's dev metrics computed by its runtime on the whole first dev split, and its
    agreement with its own model's Keras predictions (`keras_flop.export.quantized.
    agreement`); returns the number of examples."""
    import numpy as np

    from keras_flop import glue
    from keras_flop.export import quantized, runtimes

    split = next(iter(run.data.evals))
    pairs = [(runtimes.feature_batch(x), np.asarray(y))
             for x, y in run.data.eval_dataset(split, run.args.eval_batch_size)]
    batches, labels = [x for x, _ in pairs], np.concatenate([y for _, y in pairs])
    task = glue.get_task(run.data.task)
    keras_logits = {}
    for row in rows:  # each model's Keras row comes first
        start = time.perf_counter()
        logits = runtimes.predict(runners[row["name"]], batches)
        keras_logits.setdefault(row["model"], logits)
        metrics = glue.compute_metrics(task, logits, labels)
        row["dev"] = {f"eval_{m}": metrics[f"eval_{m}"] for m in task.metrics}
        row["agreement"] = quantized.agreement(keras_logits[row["model"]], logits)
        print(f"      {row['model']} {row['label']}: " +
              ", ".join(f"{k[len('eval_'):]} {v:.4f}" for k, v in row["dev"].items()) +
              f", agrees with its Keras predictions on {row['agreement']:.1%} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    return len(labels)


def latencies(run, runners, rows, total):
    """Times every runner in turn (`calls_in_turn`) at each batch size and padding; fills
    each row's `latency_ms` and `speedup` (`[median, min, max]` over the rounds) and returns
    `(configs, rounds)`."""
    from keras_flop.export import runtimes
    from keras_flop.latency.timing import calls_in_turn, ratio_spread

    configs, rounds = [], {}
    for batch_size in BATCH_SIZES:
        timed = timed_examples(run.args, total, batch_size)
        padded, _, _ = timed_batches(run, batch_size=batch_size, limit=timed)
        for padding, batches in padded.items():
            key = config_key(batch_size, padding)
            start = time.perf_counter()
            rounds[key] = calls_in_turn(runners, [runtimes.feature_batch(b) for b in batches],
                                        ROUNDS)
            configs.append({"key": key, "batch_size": batch_size, "padding": padding,
                            "batches": len(batches), "examples": timed})
            for row in rows:
                ms = [1e3 * s / len(batches) for s in rounds[key][row["name"]]]
                row.setdefault("latency_ms", {})[key] = [statistics.median(ms), min(ms),
                                                         max(ms)]
                row.setdefault("speedup", {})[key] = list(
                    ratio_spread(rounds[key], REFERENCE, row["name"]))
            print(f"      {config_text(batch_size, padding, run.args.max_seq_length)}: "
                  f"{len(runners)} runtimes in turn, {ROUNDS} rounds in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    return configs, rounds


def measure(run, loaded):
    """The runtime table's figures (for report.json), or None when --export_formats has no
    ONNX or LiteRT format. `loaded`: `{"dense": model, "compact": model}` in Keras."""
    import tensorflow as tf

    from keras_flop.export.runtimes import tf_threads

    formats = runtime_formats(run.args)
    if not formats:
        return None
    threads = tf_threads()
    scratch = os.path.join(run.write_dir, SCRATCH)
    total = len(run.data.tokenized(next(iter(run.data.evals))))
    print(f"   report: runtime table of the dense and the compact model in Keras and "
          f"{', '.join(formats)}, {threads} threads each; the dense model's files exported to "
          f"{SCRATCH}/ (deleted once measured)", flush=True)
    try:
        runners, rows = build_rows(run, loaded, formats, scratch, threads)
        print("   report: runtime table: the dev metric computed by each runtime on the whole "
              "dev set", flush=True)
        examples = dev_metrics(run, runners, rows)
        print(f"   report: runtime table: latency in turn ({ROUNDS} rounds) at batch "
              f"{' and '.join(map(str, BATCH_SIZES))}, up to {TIMED_BATCHES} batches of each "
              f"drawn from the {total} dev examples", flush=True)
        configs, rounds = latencies(run, runners, rows, total)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for row in rows:
        del row["name"]
    return {"threads": threads,
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "metric_examples": examples, "split_examples": total,
            "rounds_per_config": ROUNDS, "reference": REFERENCE, "configs": configs,
            "rows": rows, "rounds": rounds}


def section(table, args):
    """The report's lines for the runtime table (`measure`'s figures)."""
    metrics = list(table["rows"][0]["dev"])
    configs = table["configs"]
    head = ["model", "runtime", "file (MB)"] + [
        f"dev {m[len('eval_'):]}, whole dev set" for m in metrics] + [
        "agrees with its Keras model"] + [
        f"{config_text(c['batch_size'], c['padding'], args.max_seq_length)}: ms (min–max); "
        "speedup" for c in configs]
    lines = ["## Runtimes", "", "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in table["rows"]:
        cells = [MODELS[row["model"]][1], row["label"], f"{row['bytes'] / 2 ** 20:.2f}"]
        cells += [f"{row['dev'][m]:.4f}" for m in metrics] + [f"{row['agreement']:.1%}"]
        for c in configs:
            ms, low, high = row["latency_ms"][c["key"]]
            speedup, slow, fast = row["speedup"][c["key"]]
            cells.append(f"{ms:.2f} ({low:.2f}–{high:.2f}); {speedup:.2f}x "
                         f"({slow:.2f}–{fast:.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    inter = table["tf_inter_op_threads"] or "TensorFlow's default"
    sampled = " and ".join(dict.fromkeys(f"at batch {c['batch_size']} on {c['examples']}"
                                         for c in configs))
    lines += [
        "",
        f"Every runtime on {table['threads']} threads: TensorFlow's intra-op threads (inter-op: "
        f"{inter}), onnxruntime's `intra_op_num_threads` and the LiteRT interpreter's "
        f"`num_threads`. Dev metrics: computed by each runtime from its own logits on the "
        f"whole dev set ({table['metric_examples']} examples, batch {args.eval_batch_size}); "
        "the agreement is the share of them on which a row predicts what the same model "
        f"predicts in Keras. Latency: milliseconds per batch, {sampled} of the "
        f"{table['split_examples']} dev examples (drawn once), the median of "
        f"{table['rounds_per_config']} rounds that run every row in turn (the rounds' "
        "min–max); speedup: the dense model's Keras time over the row's, within each round "
        "(median round, min–max). File: `model.keras` for Keras rows, else the ONNX or "
        "LiteRT file (the compact model's in `export/`; the dense model's exported by the "
        f"report to `{SCRATCH}/` and deleted once measured).",
        "",
    ]
    return lines
