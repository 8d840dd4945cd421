"""The accuracy–speed frontier: compact models of one fine-tuned teacher, by method and target.

    python benchmarks/frontier.py --data /path/to/shared/data --task sst2 \\
        --rows "lagrangian:1.5,2,3,4;fisher:1.5,2;lagrangian+fisher:2,3" \\
        --output_dir /tmp/frontier [--teacher RUN/model.keras] [--csv docs/frontier.csv] \\
        [--prune_flags "--max_train_examples 4000 --num_train_epochs 3"]

Every row is one command a user can run: `python -m apps.prune --dense_model TEACHER ...`, so
that one command reruns one row (each row's command is printed, its output kept in
`<output_dir>/<task>/<row>.log`). Without `--teacher`, the teacher is fine-tuned first by
`apps.glue_finetune` over `--learning_rates` into `<output_dir>/<task>/teacher` (the best dev
metric wins; its command is printed too; an interrupted sweep continues). Row kinds:

- `lagrangian:S,...`: `--target_speedup S --init_mask none` (heads+ffn+layers under the
  latency table, every gate open at the start);
- `fisher:S,...`: `--method fisher --target_speedup S` (retraining-free: the Fisher mask
  searched under the latency table, tuned by least squares, no fine-tuning);
- `fisher+finetune:S,...`: the same compact model, then apps.prune's final fine-tuning
  (`--final_epochs 1`, or what `--prune_flags` says);
- `lagrangian+fisher:S,...`: `--init_mask fisher --target_speedup S` (the Lagrangian started
  from the Fisher mask searched under the latency table);
- baselines, the models a user would pick instead (`benchmarks/baselines.py`): `minilm-l3`
  (the 3-layer encoder fine-tuned by apps.glue_finetune with the teacher's recipe),
  `minilm-l3+distill` (the same encoder fine-tuned from the teacher by apps.prune's final
  step) and `dropped+distill:S` (the teacher's bottom round(L/S) layers, fine-tuned the same
  way). The `minilm-l3` rows take no target.

Each row's report (`report.json`) gives the dev metric and the speedup at batch 8, padded to
128 tokens (the command's `--eval_batch_size 8 --max_seq_length 128`) and length-bucketed as
served text comes (`speedup_b8_real`); the speedup at batch 1 is measured here, dense and
compact run in turn. Printed: one table per task and seed; written: `--csv` (columns in
`seed_rows.COLUMNS`) and `<output_dir>/<task>.png` (dev metric against measured speedup). The
pruning minutes are the prune step's (with the Fisher mask's search of a `lagrangian+fisher`
row; a `fisher` row's whole retraining-free step); the total minutes everything the row's
command cost run alone (`seed_rows`). A finished row is read back, not run again: apps.prune
finds its steps done.

`--seeds 0,1,2`: each seed fine-tunes its own teacher with the same recipe and prunes it with
the same seed, in `<output_dir>/seed<S>`; the CSV's row is the mean and std over the seeds
(`seeds`, `compact_mean`, `compact_std`, `delta_mean`, `delta_std`: Δ against each seed's own
teacher), and the plot draws them as error bars. A seed's finished rows are read back, so
seeds can be run one invocation at a time (`--seeds 1`) and joined later (`--seeds 0,1,2`).

`--rerun` checks that rows reproduce: each row of `--rows` already in the task's table is
built again from scratch by its recorded command, into `<row>_rerun` (the only change), and
the two dev metrics are printed side by side; a row reproduces when they agree to 0.1 point.
A flag whose default changed since the row was recorded (`CHANGED_DEFAULTS`) is passed with
the recorded run's value.
`--retime` times finished rows again, on an idle machine, beside their recorded speedups.
`--join` reads each seed's recorded rows of `--rows` and writes them over the seeds without
running or timing anything (seeds run by separate invocations with other `--prune_flags`).
"""

import argparse
import csv
import json
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines  # noqa: E402
import runtime_rows  # noqa: E402
import seed_rows  # noqa: E402
from seed_rows import COLUMNS  # noqa: E402,F401 -- the CSV's columns, named here too
from support import (add_data_argument, command_lines, fine_tuned_teacher,  # noqa: E402
                     machine_header, measured_speedups, parse_seeds, run, run_json, shown)

KINDS = {  # row kind: (flags of apps.prune, the target's flag)
    "lagrangian": (["--structure", "heads+ffn+layers", "--init_mask", "none"],
                   "--target_speedup"),
    "fisher": (["--method", "fisher"], "--target_speedup"),
    # --final_epochs in --prune_flags comes later on the command line and wins.
    "fisher+finetune": (["--method", "fisher", "--final_epochs", "1"], "--target_speedup"),
    "lagrangian+fisher": (["--structure", "heads+ffn+layers", "--init_mask", "fisher"],
                          "--target_speedup"),
}


def retraining_free_step(kind):
    """Whether a row kind prunes by apps.prune's fisher step (no factorize, no prune)."""
    return kind in KINDS and KINDS[kind][0][:2] == ["--method", "fisher"]


def parse_rows(text):
    """`"kind:t1,t2;kind:t3;minilm-l3"` -> `[(kind, target), ...]` (target None for a baseline
    that takes none), with errors that name the kinds."""
    rows = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, targets = part.partition(":")
        if baselines.BASELINES.get(kind) is False:
            if targets:
                raise argparse.ArgumentTypeError(f"{kind} takes no target; got {part!r}")
            rows.append((kind, None))
            continue
        if (kind not in KINDS and kind not in baselines.BASELINES) or not targets:
            raise argparse.ArgumentTypeError(
                f"each row group is KIND:T1,T2 with KIND one of "
                f"{', '.join(list(KINDS) + ['dropped+distill'])}, or minilm-l3 or "
                f"minilm-l3+distill alone; got {part!r}")
        try:
            rows += [(kind, float(t)) for t in targets.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"targets must be numbers; got {part!r}") from None
    if not rows:
        raise argparse.ArgumentTypeError("no rows given")
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--task", default="sst2", help="The GLUE task (default sst2).")
    parser.add_argument("--rows", type=parse_rows,
                        default=parse_rows("lagrangian:1.5,2,3,4;fisher:1.5,2"),
                        help="KIND:T1,T2;KIND:T3 with KIND lagrangian, fisher, "
                             "fisher+finetune, lagrangian+fisher or the baseline "
                             "dropped+distill, T a target speedup; the baselines minilm-l3 and "
                             "minilm-l3+distill alone (default "
                             "'lagrangian:1.5,2,3,4;fisher:1.5,2').")
    parser.add_argument("--small_checkpoint", default=baselines.SMALL_CHECKPOINT,
                        help="The smaller pre-trained encoder of the minilm-l3 rows, a folder "
                             "of --data.")
    parser.add_argument("--teacher", default=None,
                        help="The fine-tuned dense model (.keras with vocab.txt beside it); "
                             "default: fine-tuned here by apps.glue_finetune.")
    parser.add_argument("--learning_rates", default="5e-5,3e-5",
                        help="The teacher's learning-rate sweep (without --teacher).")
    parser.add_argument("--teacher_flags", default="--num_train_epochs 2",
                        help="More apps.glue_finetune flags for the teacher, e.g. "
                             "'--max_train_examples 4000'.")
    parser.add_argument("--prune_flags", default="",
                        help="More apps.prune flags for every row, e.g. "
                             "'--max_train_examples 4000 --num_train_epochs 3'.")
    parser.add_argument("--latency_table", default=None,
                        help="The latency table of the rows at a speedup; default: the first "
                             "such row measures it, the others reuse it.")
    parser.add_argument("--timed_examples", type=int, default=400,
                        help="Dev examples timed at batch 1 (twice as many as are run).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--csv", default=None,
                        help="Where the rows go as CSV (default <output_dir>/frontier.csv); "
                             "rows of other tasks already in the file are kept.")
    parser.add_argument("--seed", type=int, default=0,
                        help="The teacher's and every row's seed (one seed, in --output_dir).")
    parser.add_argument("--seeds", type=parse_seeds, default=None,
                        help="Several seeds, e.g. 0,1,2: each seed fine-tunes its own teacher "
                             "and prunes it with the same seed, in <output_dir>/seed<S>; a "
                             "row is the mean ± std over the seeds (replaces --seed).")
    parser.add_argument("--runtimes", action="store_true",
                        help="Add a row per runtime of each apps.prune row exported to ONNX or "
                             "LiteRT (its report's runtime table, e.g. --prune_flags "
                             "'--export_formats saved_model,onnx,onnx_int8'): the compact model "
                             "in each, and the dense model alone in each (the baseline pruning "
                             "must beat there); the CSV's `runtime` column names it.")
    parser.add_argument("--retime", action="store_true",
                        help="Time the finished rows of --rows again (dense and compact in "
                             "turn, batch 8 and 1) and print them beside the recorded "
                             "speedups; nothing is rebuilt or rewritten.")
    parser.add_argument("--rerun", action="store_true",
                        help="Rebuild the finished rows of --rows from their recorded commands "
                             "in <row>_rerun directories and compare their dev metrics.")
    parser.add_argument("--join", action="store_true",
                        help="Join the recorded rows of --rows over --seeds as they are (each "
                             "seed's <task>.json), running and timing nothing: the CSV, table "
                             "and plot of seeds run by separate invocations, also with other "
                             "--prune_flags (e.g. exports on one seed only). Only --rows go to "
                             "the CSV.")
    args = parser.parse_args(argv)
    if sum((args.retime, args.rerun, args.join)) > 1:
        parser.error("--retime, --rerun and --join each do one thing: pass one of them.")
    if args.teacher and not os.path.exists(args.teacher):
        parser.error(f"--teacher {args.teacher} does not exist: pass a fine-tuned model's "
                     ".keras file (vocab.txt beside it), or leave it out to fine-tune one.")
    if args.teacher and args.seeds and len(args.seeds) > 1:
        parser.error("--seeds fine-tunes one teacher per seed: leave --teacher out.")
    return args


def seed_arguments(args, seed):
    """The arguments of one seed's teacher and rows: `--seed`, and with `--seeds` its own
    `<output_dir>/seed<S>` (its teacher, teacher outputs and rows)."""
    return argparse.Namespace(**{**vars(args), "seed": seed, "output_dir": (
        args.output_dir if args.seeds is None else
        os.path.join(args.output_dir, f"seed{seed}"))})


def teacher_model(args):
    """The teacher's `.keras` path: `--teacher`, or the best run of a fine-tuning sweep."""
    if args.teacher:
        return args.teacher
    # One sweep directory per task: tasks run by separate invocations keep their teachers,
    # and an interrupted sweep continues (apps.glue_finetune resumes the same command).
    return fine_tuned_teacher(args.data, args.task,
                              os.path.join(args.output_dir, args.task, "teacher"), args.seed,
                              args.learning_rates, shlex.split(args.teacher_flags))


def row_command(args, teacher, kind, target, directory, table):
    flags, target_flag = KINDS[kind]
    if target_flag == "--target_speedup" and table:
        flags = flags + ["--latency_table", table]
    return [sys.executable, "-m", "apps.prune", "--task", args.task, "--data_dir",
            os.path.join(args.data, "glue"), "--dense_model", teacher, "--output_dir", directory,
            *flags, target_flag, f"{target:g}", "--eval_batch_size", "8", "--max_seq_length",
            "128", "--seed", str(args.seed), "--allow_short",
            # The rows share one teacher: its outputs for distillation are computed once.
            "--teacher_outputs", os.path.join(args.output_dir, args.task, "teacher_outputs.npz"),
            *shlex.split(args.prune_flags)]


def row_directory(args, kind, target):
    """Where a row's run goes: `<output_dir>/<task>/<kind>_<target>` (`<kind>` without one)."""
    name = kind if target is None else f"{kind}_{target:g}"
    return os.path.join(args.output_dir, args.task, name)


def timed_speedups(args, directory, data, batch_sizes, kind=None, teacher=None):
    """`{batch: (speedup, low, high)}` of the finished row in `directory`: its dense (the
    teacher) and final models timed in turn (`support.measured_speedups`)."""
    models = baselines.load_models(baselines.model_paths(directory, kind, teacher, args.task))
    return measured_speedups(*models, data, args.timed_examples, batch_sizes)


def row_figures(args, kind, target, directory, data, table=None):
    """A frontier row from a finished apps.prune run in `directory`."""
    with open(os.path.join(directory, "report.json"), encoding="utf-8") as f:
        report = json.load(f)
    metric = f"eval_{data.task.main_metric}"
    dense = report["dense"]["results"][metric]
    compact = report["compact"]["results"][metric]
    step = "fisher" if retraining_free_step(kind) else "prune"
    results = {}  # a baseline prunes nothing: no pruning minutes
    if not baselines.is_baseline(kind):
        with open(os.path.join(directory, step, "eval_results.json"), encoding="utf-8") as f:
            results = json.load(f)
    seconds = results.get("pruning_time", results.get("train_time"))
    init_mask = os.path.join(directory, "factorize", "init_mask.json")
    if seconds is not None and os.path.exists(init_mask):  # the Fisher start is pruning too
        with open(init_mask, encoding="utf-8") as f:
            seconds += json.load(f)["seconds"]
    batch1 = timed_speedups(args, directory, data, (1,))[1]
    return baselines.frontier_row(args.task, kind, target, report["structure"],
                                  report["speedup_fixed"], batch1, data.task.main_metric,
                                  dense, compact, None if seconds is None else seconds / 60.0,
                                  report["compact"]["parameters"],
                                  report["dense"]["parameters"],
                                  speedup_b8_real=(report.get("speedup_bucketed") or [None])[0],
                                  total_minutes=seed_rows.total_minutes(
                                      directory, shared_files(args, kind, directory, table)))


def shared_files(args, kind, directory, table):
    """`{name: path}` of the one-off files a row's command reads that rows share: the teacher
    outputs (every apps.prune row) and the latency table (the rows at a target speedup: the
    one given, or the one this row measures in its own directory)."""
    if kind == "minilm-l3":  # apps.glue_finetune: no teacher, no table
        return {}
    files = {"teacher_outputs": os.path.join(args.output_dir, args.task,
                                             "teacher_outputs.npz")}
    if kind in KINDS and KINDS[kind][1] == "--target_speedup":
        step = "fisher" if retraining_free_step(kind) else "factorize"
        files["latency_table"] = table or os.path.join(directory, step, "latency_table.json")
    return files


row_key = seed_rows.key  # what names a row across invocations (its directory) and seeds


def write_csv(path, rows):
    """Writes `rows` to `path`, keeping the rows already there that they do not replace
    (other tasks, and this task's other methods and targets)."""
    kept = []
    if os.path.exists(path):
        with open(path, newline="", encoding="utf-8") as f:
            replaced = {row_key(r) for r in rows}
            kept = [r for r in csv.DictReader(f) if row_key(r) not in replaced]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        # Rows of older files lack the newer columns: they stay empty.
        writer = csv.DictWriter(f, COLUMNS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        for r in rows:
            writer.writerow({k: seed_rows.csv_value(k, r.get(k)) for k in COLUMNS})


def plot(args, rows):
    from apps.plots import metric_against_speedup

    # Over several seeds: the teachers' mean, and each row's mean with its std (metric) and
    # the min–max of its seeds' speedups as error bars.
    teachers = {seed: row["dense_metric"] for r in rows
                for seed, row in r.get("per_seed", {}).items()}
    points = [{"speedup": 1.0, "metric": rows[0]["dense_metric"], "label": "dense",
               "method": "dense", "metric_std": seed_rows.spread(list(teachers.values()))}]
    points += [{"speedup": r["speedup_b8"], "metric": r["compact_metric"],
                "label": "" if r["target"] is None else f"{r['target']:g}",
                "method": runtime_rows.label(r), "metric_std": r.get("compact_std"),
                "speedup_range": r.get("speedup_b8_range") if r.get("compact_std") else None}
               for r in rows]
    return metric_against_speedup(points, os.path.join(args.output_dir, f"{args.task}.png"),
                                  rows[0]["metric"],
                                  title=f"{args.task}: MiniLM-L6, batch 8, length 128" + (
                                      f", mean ± std over {len(teachers)} seeds"
                                      if len(teachers) > 1 else ""),
                                  colors=method_colors(), markers=baselines.markers())


def method_colors():
    """One colour per method in every task's plot, whichever methods it shows (a baseline's
    points also have a marker of their own: `baselines.markers`)."""
    return {method: f"C{i}" for i, method in
            enumerate(("dense",) + tuple(KINDS) + tuple(baselines.BASELINES))}


def print_table(args, rows):
    print(f"\n{machine_header()}")
    print(f"{args.task}: compact models of one teacher (dev {rows[0]['metric']} "
          f"{rows[0]['dense_metric']:.4f}); speedups are dense over compact time on dev "
          f"examples padded to 128 tokens, median round (min–max).\n")
    print("| method | target | parameters | speedup b8 | speedup b1 | dev | Δ (points) | "
          "pruning min |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b8, b1 = r["speedup_b8_range"], r["speedup_b1_range"]
        minutes = "–" if r["prune_minutes"] is None else f"{r['prune_minutes']:.1f}"
        target = "–" if r["target"] is None else f"{r['target']:g}"
        print(f"| {runtime_rows.label(r)} | {target} | {r['parameters']:,} "
              f"({r['parameters'] / r['dense_parameters']:.2f}) | {r['speedup_b8']:.2f}x "
              f"({b8[0]:.2f}–{b8[1]:.2f}) | {r['speedup_b1']:.2f}x ({b1[0]:.2f}–{b1[1]:.2f}) | "
              f"{r['compact_metric']:.4f} | {r['delta_points']:+.2f} | {minutes} |")
    print("\n".join(command_lines(rows)))


def recorded_rows(args, summary, flag):
    """The recorded rows of `args.rows` in `summary`, in order; all are checked before any is
    used, and a missing one is an error naming `flag`."""
    recorded = {}
    if os.path.exists(summary):
        with open(summary, encoding="utf-8") as f:
            recorded = {row_key(r): r for r in json.load(f)}
    rows = []
    for kind, target in args.rows:
        row = recorded.get(row_key({"task": args.task, "method": kind, "target": target}))
        if row is None or "command" not in row:
            raise SystemExit(f"{flag}: no recorded row {row_name(kind, target)} for {args.task} in "
                             f"{summary}; run it first (without {flag}).")
        rows.append(row)
    return rows


def save_results(args, kind, results):
    """Keeps `results` in `<output_dir>/<task>_<kind>.json`, after every row: an interrupted
    check loses only the row it was on. Rows of earlier checks that `results` does not
    replace (other methods or targets) stay in the file."""
    seed_rows.record_rows(os.path.join(args.output_dir, f"{args.task}_{kind}.json"), results,
                          lambda r: row_key({**r, "task": args.task}))


def row_name(kind, target):
    """`kind:target`, or the kind alone for a row without a target."""
    return kind if target is None else f"{kind}:{target:g}"


def retime(args, summary, data, teacher):
    """`--retime`: the finished rows of `args.rows` timed again at batch 8 and 1, one after
    the other in this process, printed beside their recorded speedups (the rows themselves
    are kept as they are)."""
    results = []
    for (kind, target), row in zip(args.rows, recorded_rows(args, summary, "--retime")):
        print(f"== timing {row_name(kind, target)} again", flush=True)
        timed = timed_speedups(args, row_directory(args, kind, target), data, (8, 1), kind,
                               teacher)
        results.append({"method": kind, "target": target, "recorded_b8": row["speedup_b8"],
                        "recorded_b1": row["speedup_b1"], "b8": timed[8], "b1": timed[1]})
        save_results(args, "retime", results)
    print(f"\n{machine_header()}")
    print(f"{args.task}: finished rows timed again ({args.timed_examples} dev examples at batch "
          f"8, half as many at batch 1, padded to 128; median round (min–max)).\n")
    print("| method | target | b8 recorded | b8 again | b1 recorded | b1 again |")
    print("|---|---|---|---|---|---|")
    for r in results:
        b8, b1 = r["b8"], r["b1"]
        target = "–" if r["target"] is None else f"{r['target']:g}"
        print(f"| {r['method']} | {target} | {r['recorded_b8']:.2f}x | {b8[0]:.2f}x "
              f"({b8[1]:.2f}–{b8[2]:.2f}) | {r['recorded_b1']:.2f}x | {b1[0]:.2f}x "
              f"({b1[1]:.2f}–{b1[2]:.2f}) |")
    return results


# apps.prune flags whose default changed after rows were recorded: {flag: (the hparams.json
# key, the value of a run recorded before the key existed)}. A rerun passes the recorded run's
# value when its command leaves the flag out, so that it rebuilds the same row.
CHANGED_DEFAULTS = {"--target_start": ("target_start", "zero"),
                    "--last_layer_heads": ("last_layer_heads", "0")}


def pinned_defaults(command, directory):
    """The flags (`CHANGED_DEFAULTS`) that pin the recorded run in `directory` to the
    defaults it ran with; none when its `hparams.json` is gone."""
    if not os.path.exists(os.path.join(directory, "hparams.json")):
        return []
    settings = run_json(directory, "hparams.json")
    return [value for flag, (key, before) in CHANGED_DEFAULTS.items() if flag not in command
            for value in (flag, str(settings.get(key, before)))]


def rerun(args, summary):
    """`--rerun`: each row of `args.rows` built again by its recorded command in a fresh
    directory; prints recorded and rebuilt dev metrics. Returns the comparisons."""
    results = []
    rows = recorded_rows(args, summary, "--rerun")
    for (kind, target), row in zip(args.rows, rows):
        if "apps.prune" not in row["command"]:
            raise SystemExit(f"--rerun compares apps.prune reports: run the {kind} row's "
                             f"recorded command by hand ({row['command']}).")
    for (kind, target), row in zip(args.rows, rows):
        command = shlex.split(row["command"])
        at = command.index("--output_dir") + 1
        command += pinned_defaults(command, command[at])
        command[at] = command[at].rstrip("/") + "_rerun"
        command[0] = sys.executable
        print(f"\n== rerun of {row_name(kind, target)}", flush=True)
        run(command, command[at] + ".log")
        with open(os.path.join(command[at], "report.json"), encoding="utf-8") as f:
            report = json.load(f)
        metric = f"eval_{row['metric']}"
        again = report["compact"]["results"][metric]
        results.append({"method": kind, "target": target, "metric": row["metric"],
                        "recorded": row["compact_metric"], "rerun": again,
                        "difference_points": 100.0 * (again - row["compact_metric"]),
                        "command": shown(command)})
        save_results(args, "rerun", results)
    print(f"\n{machine_header()}")
    print(f"{args.task}: rows rebuilt from their recorded commands; reproduced means the dev "
          f"metrics agree to 0.1 point.\n")
    print("| method | target | dev (recorded) | dev (rerun) | difference (points) | reproduced |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['method']} | {r['target']:g} | {r['recorded']:.4f} | {r['rerun']:.4f} | "
              f"{r['difference_points']:+.2f} | "
              f"{'yes' if abs(r['difference_points']) <= 0.1 else 'no'} |")
    return results


def main(argv=None):
    args = parse_args(argv)
    per_seed = {}
    for seed in args.seeds or [args.seed]:
        seed_args = seed_arguments(args, seed)
        if args.seeds:
            print(f"\n== seed {seed}: {seed_args.output_dir}", flush=True)
        summary = os.path.join(seed_args.output_dir, f"{args.task}.json")
        if args.join:
            per_seed[seed] = recorded_rows(seed_args, summary, "--join")
            continue
        if args.rerun:
            rerun(seed_args, summary)
            continue
        rows = seed_rows_of(seed_args, summary)
        if rows is not None:
            per_seed[seed] = rows
    if not per_seed:
        return
    rows = seed_rows.over_seeds(per_seed)
    csv_path = args.csv or os.path.join(args.output_dir, "frontier.csv")
    write_csv(csv_path, rows)
    if len(per_seed) > 1:
        print(f"\n{machine_header()}")
        print("\n".join(seed_rows.table_lines(args.task, rows)))
    figure = plot(args, rows)
    print(f"\nRows: {csv_path}" + (f"; plot: {figure}" if figure else ""))


def seed_rows_of(args, summary):
    """One seed's teacher and rows (`args` of that seed): each row run, or read back when
    finished, and printed as a table; returns the seed's rows of the task (those of earlier
    invocations too), or None for `--retime`."""
    from keras_flop.training import data as training_data

    teacher = teacher_model(args)
    vocab = os.path.join(os.path.dirname(os.path.abspath(teacher)), "vocab.txt")
    data = training_data.load_task_data(os.path.join(args.data, "glue"), args.task, vocab, 128,
                                        need_train=False)
    if args.retime:
        retime(args, summary, data, teacher)
        return None
    # Rows of earlier invocations (other methods or targets, other --prune_flags) stay.
    rows = seed_rows.record_rows(summary, [], row_key)
    table = args.latency_table
    for index, (kind, target) in enumerate(args.rows, 1):
        directory = row_directory(args, kind, target)
        command = (baselines.command(args, teacher, kind, target, directory)
                   if baselines.is_baseline(kind) else
                   row_command(args, teacher, kind, target, directory, table))
        print(f"\n== row {index} of {len(args.rows)}: {row_name(kind, target)}", flush=True)
        # The run directory is the app's alone: the log and wall time go beside it.
        done = os.path.exists(os.path.join(directory, "report.json")) or (
            kind == "minilm-l3" and os.path.exists(os.path.join(directory, "results.json")))
        seed_rows.timed_run(run, command, directory, done,
                            shared_files(args, kind, directory, table))
        figures = (baselines.fine_tuned_figures(args, kind, target, directory, teacher, data)
                   if kind == "minilm-l3" else
                   row_figures(args, kind, target, directory, data, table))
        if kind in KINDS and KINDS[kind][1] == "--target_speedup" and table is None:
            # Measured once; the step that prices units holds it.
            table = shared_files(args, kind, directory, None)["latency_table"]
        figures = dict(figures, seed=args.seed, command=shown(command))
        rows = seed_rows.record_rows(summary, [figures] + (
            runtime_rows.runtime_rows(figures, directory) if args.runtimes else []), row_key)
    print_table(args, rows)
    return rows


if __name__ == "__main__":
    main()
