"""Distillation in the compact model's fine-tuning: none, logit-only, logits and hidden states.

    python benchmarks/distillation.py --data /path/to/shared/data --task sst2 \\
        --runs /tmp/frontier/sst2/lagrangian_2,/tmp/frontier/sst2/lagrangian_3 \\
        --variants none,logit,logit+hidden --output_dir /tmp/distillation [--seeds 0,1]

Each RUN is a finished `apps.prune` run: its fine-tuned dense model (`finetune/model.keras`,
with `vocab.txt`) is the teacher, its compact model before the final fine-tuning
(`compact/model.keras`) the student, and its `report.json` gives the measured speedup. Every
variant fine-tunes a fresh copy of that student the way `apps.prune`'s finetune_compact step
does (`apps.fine_tuning.fine_tune`: AdamW, warmup and linear decay, the run's batch size),
with the distillation named:

- `none`: the task loss alone (apps.prune's default);
- `logit`: plus `T² · KL(teacher ‖ student)` at weight `--logit_weight`
  (`--final_distillation_weight`);
- `logit+hidden`: plus the hidden-state MSE, encoder layer i to layer i, at `--hidden_weight`
  (`--final_hidden_distillation_weight`).

Printed: one row per run and variant, dev metric as mean ± std over `--seeds`, the points
lost against the teacher and the fine-tuning minutes. Every finished fine-tuning is kept in
`<output_dir>/results.json` at once; a rerun skips it.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from support import add_data_argument, machine_header, mean_std, parse_seeds  # noqa: E402

VARIANTS = ("none", "logit", "logit+hidden")


def parse_variants(text):
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise argparse.ArgumentTypeError(
            f"variants are a comma-separated subset of {', '.join(VARIANTS)}; got {text!r}")
    return variants


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_argument(parser)
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--runs", required=True,
                        help="Comma-separated finished apps.prune run directories.")
    parser.add_argument("--variants", type=parse_variants, default=list(VARIANTS))
    parser.add_argument("--logit_weight", type=float, default=1.0)
    parser.add_argument("--hidden_weight", type=float, default=1.0)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--learning_rate", type=float, default=2e-5,
                        help="apps.prune's --final_learning_rate default.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_train_examples", type=int, default=None,
                        help="Fine-tune on a random subset of this size (default: all).")
    parser.add_argument("--seeds", type=parse_seeds, default=[0])
    parser.add_argument("--output_dir", required=True)
    args = parser.parse_args(argv)
    args.runs = [r for r in args.runs.split(",") if r.strip()]
    for run in args.runs:
        for needed in ("finetune/model.keras", "finetune/vocab.txt", "compact/model.keras",
                       "report.json"):
            if not os.path.exists(os.path.join(run, needed)):
                parser.error(f"{run} is not a finished apps.prune run: {needed} is missing "
                             "(run it to the end with --keep_intermediate true).")
    return args


def distillation_of(args, variant):
    if variant == "none":
        return {}
    return {"distillation_weight": args.logit_weight,
            "hidden_distillation_weight": args.hidden_weight if variant == "logit+hidden"
            else 0.0,
            "distillation_temperature": args.temperature}


def fine_tuned_score(args, run, variant, seed, data, teacher):
    """The student of `run` fine-tuned with `variant`: `(dev metric, minutes)`."""
    import keras

    from keras_flop.training import evaluation
    from keras_flop.training import fine_tuning

    keras.utils.set_random_seed(seed)
    student = keras.saving.load_model(os.path.join(run, "compact", "model.keras"),
                                      compile=False)
    distillation = distillation_of(args, variant)
    began = time.perf_counter()
    fine_tuning.fine_tune(student, data, args.learning_rate, args.epochs, args.batch_size,
                          seed, teacher=teacher if distillation else None, **distillation)
    minutes = (time.perf_counter() - began) / 60.0
    results = evaluation.evaluate(student, data, 32)
    return next(iter(results.values()))["eval_score"], minutes


def main(argv=None):
    args = parse_args(argv)
    import keras

    import keras_flop  # noqa: F401 -- registers the saved models' layers
    from apps import common
    from keras_flop.training import evaluation
    from keras_flop.training import data as training_data

    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "results.json")
    done = common.read_json(path) if os.path.exists(path) else []
    rows = []
    for run in args.runs:
        report = common.read_json(os.path.join(run, "report.json"))
        data = training_data.load_task_data(
            os.path.join(args.data, "glue"), args.task, os.path.join(run, "finetune",
                                                                     "vocab.txt"),
            args.max_seq_length, args.max_train_examples)
        teacher = keras.saving.load_model(os.path.join(run, "finetune", "model.keras"),
                                          compile=False)
        dense = next(iter(evaluation.evaluate(teacher, data, 32).values()))["eval_score"]
        for variant in args.variants:
            for seed in args.seeds:
                key = {"run": os.path.abspath(run), "variant": variant, "seed": seed,
                       "learning_rate": args.learning_rate, "epochs": args.epochs,
                       "train_examples": len(data.train), "logit_weight": args.logit_weight,
                       "hidden_weight": args.hidden_weight, "temperature": args.temperature}
                found = [r for r in done if all(r.get(k) == v for k, v in key.items())]
                if found:
                    row = found[0]
                    print(f"{run} {variant} seed {seed}: done already")
                else:
                    print(f"\n== {run}: {variant}, seed {seed}", flush=True)
                    score, minutes = fine_tuned_score(args, run, variant, seed, data, teacher)
                    row = dict(key, score=score, minutes=minutes, dense=dense,
                               speedup_b8=report["speedup_fixed"][0])
                    done.append(row)
                    common.write_json(path, done)
                rows.append(row)
    print(f"\n{machine_header()}")
    print(f"{args.task}: compact models fine-tuned {args.epochs} epoch(s) on "
          f"{rows[0]['train_examples']:,} examples, AdamW {args.learning_rate:g}, batch "
          f"{args.batch_size}; logit weight {args.logit_weight:g} at T={args.temperature:g}, "
          f"hidden-state weight {args.hidden_weight:g}; seeds "
          f"{','.join(str(s) for s in args.seeds)}.\n")
    print("| run | speedup b8 | distillation | dev | dev (dense) | Δ (points) | fine-tuning min |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        for variant in args.variants:
            group = [r for r in rows if r["run"] == os.path.abspath(run) and
                     r["variant"] == variant]
            scores = [r["score"] for r in group]
            delta = [100.0 * (r["score"] - r["dense"]) for r in group]
            print(f"| {os.path.basename(os.path.normpath(run))} | {group[0]['speedup_b8']:.2f}x "
                  f"| {variant} | {mean_std(scores)} | {group[0]['dense']:.4f} | "
                  f"{mean_std(delta, 2)} | "
                  f"{statistics.fmean(r['minutes'] for r in group):.1f} |")
    print(f"\nPer-seed values: {path}")


if __name__ == "__main__":
    main()
