"""The steps every method shares: the dense model (finetune), the retraining-free method
(fisher), and what follows pruning for one model: compact, finetune_compact, export. Each is
a function of the run (`PruningRun`); a family runs the last three once per member
(`apps.prune.family`)."""

import os
import shutil
import time

import numpy as np

from apps import common, results
from apps.prune.parser import EXPORT_AGREEMENT_EXAMPLES, SHORTFALL_TOLERANCE


def finetune(run):
    """The dense model: the source's, fine-tuned unless it is already (or --finetune_epochs
    0, or the paper pipeline); evaluated and saved with its vocabulary."""
    args = run.args
    model, finetuned = run.source.dense_model(run.config, run.data.task.num_labels)
    extra = {}
    if args.pipeline == "seed" and not finetuned and args.finetune_epochs > 0:
        extra = run.fine_tune(model, "finetune", args.finetune_learning_rate,
                              args.finetune_epochs)
    else:
        print("   the checkpoint is used as it is (fine-tuned checkpoint, the paper "
              "pipeline, or --finetune_epochs 0)")
    os.makedirs(run.out("finetune"), exist_ok=True)
    run.evaluate_to(model, "finetune", extra)
    # With its vocabulary, the model is a --dense_model for other pruning runs.
    from keras_flop.text.subword import copy_tokenizer

    copy_tokenizer(run.vocab, run.out("finetune"))
    run.save_fine_tuned(model, "finetune")


def fisher(run):
    """Retraining-free pruning of the fine-tuned model: Fisher scores, mask search and
    rearrangement, least-squares mask tuning. Saves the gated model that `compact` folds, as
    the Lagrangian's prune step does."""
    import keras_flop
    from keras_flop.fisher.post_training import masked_model, post_training_masks
    from keras_flop.training.fine_tuning import fit_verbosity

    args = run.args
    dense = run.load("finetune")
    # Under --target_speedup the search keeps 1/S of the table's predicted time.
    latency = {} if not run.latency_cost() else {
        "cost": "latency", "latency_table": run.measured_latency_table()}
    start = time.perf_counter()
    masks = post_training_masks(
        dense, run.data.train_dataset(args.train_batch_size, args.seed),
        target_sparsity=args.target_sparsity, num_samples=args.num_fisher_samples,
        last_layer_heads=args.last_layer_heads,
        verbose=fit_verbosity(), **latency)
    gated = masked_model(dense, masks)
    seconds = time.perf_counter() - start
    phases = ", ".join(f"{name} {value:.1f} s" for name, value in masks.seconds.items())
    found = {}
    if latency:
        found["predicted_speedup"] = keras_flop.predicted_speedup(
            gated, latency["latency_table"], args.compact_threshold)
        kept = (f"a predicted speedup of {found['predicted_speedup']:.2f}x (target "
                f"{args.target_speedup:.4g}x); {masks.kept_params:,} of "
                f"{masks.total_params:,} encoder kernel parameters kept")
    else:
        kept = (f"kept {masks.kept_params:,} of {masks.total_params:,} encoder kernel "
                f"parameters ({masks.kept_params / masks.total_params:.3f}; target "
                f"{1.0 - args.target_sparsity:.3f})")
    print(f"   fisher: {kept} in {seconds:.1f} s ({phases}); kept heads per layer "
          f"{masks.kept_heads}, FFN units {masks.kept_units}")
    run.evaluate_to(gated, "fisher", {"pruning_time": seconds, "kept_params": masks.kept_params,
                                      **found, **{f"{k}_time": v for k, v in
                                                  masks.seconds.items()}})
    os.makedirs(run.out("fisher"), exist_ok=True)
    common.save_model(gated, run.out("fisher", "pruning_model.keras"))


def pruning_source(run):
    """The step whose gated model `compact` folds."""
    return "fisher" if run.args.method == "fisher" else "prune"


def sparsity(run):
    """Target, expected (at the end of pruning) and realized (in the compact model) sparsity
    of the run's cost, from the files the steps wrote."""
    args = run.args
    if args.method == "fisher":
        found = run.read_json("fisher", "eval_results.json", missing={})
        if run.latency_cost():  # nothing trains after the search: expected is found
            expected = (1.0 - 1.0 / found["predicted_speedup"]
                        if "predicted_speedup" in found else None)
        else:
            expected = (1.0 - found["kept_params"] / run.read_json("compact", "info.json")[
                "dense_origin_params"]) if "kept_params" in found else None
    else:
        expected = run.read_json("prune", "eval_results.json", missing={}).get(
            "expected_sparsity")
    return {"target": args.target_sparsity, "expected": expected,
            "realized": run.read_json("compact", "info.json", missing={}).get(realized_key(run))}


def sparsity_shortfall(reached, target, tolerance=SHORTFALL_TOLERANCE, what="sparsity"):
    """What to do when a run ended with its sparsity short of the target, or None."""
    if target - reached <= tolerance:
        return None
    return (f"the {what} {reached:.3f} is {target - reached:.3f} short of the target "
            f"{target}: continue pruning with --start_from prune and a larger "
            "--num_train_epochs (it goes on from the gates it has), or pass --allow_short to "
            "accept it.")


def realized_key(run):
    """The key of `info.json` that holds the compact model's sparsity of the run's cost."""
    return "latency_sparsity" if run.latency_cost() else "dense_sparsity"


def compact(run):
    compact_one(run, run.load(pruning_source(run), "pruning_model.keras"), "compact",
                run.args.target_speedup, run.args.target_sparsity)


def compact_one(run, pruning_model, directory, target_speedup, target, expected=None,
                extra=None):
    """Compacts `pruning_model` into `<directory>/`: the model, its parameter report (with
    the predicted speedup under a latency target, and `extra`) and its dev results.
    `expected`: the cost at the end of pruning; None reads it from the run's files."""
    import keras_flop

    args = run.args
    compact_model = keras_flop.compact(pruning_model, threshold=args.compact_threshold)
    batch = next(iter(run.data.eval_dataset(next(iter(run.data.evals)), 8)))[0]
    gap = float(np.max(np.abs(np.asarray(compact_model(batch)) -
                              np.asarray(pruning_model(batch, training=False)))))
    report = keras_flop.parameter_report(pruning_model, threshold=args.compact_threshold)
    report.update(extra or {})
    if target_speedup is not None:
        # The compact model's latency as the table predicts it, beside the parameters: the
        # table the PruningModel priced units with, or the fisher step's file (its gated
        # classifier carries none).
        from apps.prune.run_dir import LATENCY_TABLE

        cost_model = getattr(pruning_model, "cost_model", None)
        table = cost_model.table if cost_model is not None else \
            keras_flop.LatencyTable.load(run.path(run.pricing_step(), LATENCY_TABLE))
        network = getattr(pruning_model, "network", pruning_model)
        dense_seconds = table.dense_seconds(network.layer_shapes)
        speedup = keras_flop.predicted_speedup(pruning_model, table, args.compact_threshold)
        report.update({"target_speedup": target_speedup,
                       "predicted_speedup": speedup,
                       "latency_sparsity": 1.0 - 1.0 / speedup,
                       "predicted_dense_latency_s": dense_seconds,
                       "predicted_latency_s": dense_seconds / speedup,
                       "latency_table_batch_size": table.batch_size,
                       "latency_table_seq_length": table.seq_length,
                       # {length: weight} of a table of the task's lengths (--latency_lengths)
                       "latency_table_lengths": table.info.get("lengths")})
    os.makedirs(run.out(directory), exist_ok=True)
    keras_flop.write_parameter_report(report, run.out(directory))
    if expected is None:  # the fisher step's is relative to the report just written
        expected = sparsity(run)["expected"]
    if target_speedup is None:
        print(f"   compact: {report['pruned_total_params']:,} of "
              f"{report['total_params']:,} parameters ({report['actual_compact_rate']:.3f}); "
              f"encoder dense sparsity: target {target}, expected "
              f"{expected:.3f}, realized {report['dense_sparsity']:.3f}; max |compact - "
              f"gated| = {gap:.2e}")
    else:
        print(f"   compact: {report['pruned_total_params']:,} of "
              f"{report['total_params']:,} parameters ({report['actual_compact_rate']:.3f}); "
              f"speedup predicted by the latency table: target {target_speedup:.4g}x, "
              f"expected {1.0 / (1.0 - expected):.2f}x, compact model "
              f"{report['predicted_speedup']:.2f}x; max |compact - gated| = {gap:.2e}")
    for key, label in (("kept_heads", "heads"), ("kept_ffn_units", "FFN units")):
        if key in report:
            print(f"   kept {label} per layer: {list(report[key].values())}")
    run.evaluate_to(compact_model, directory, {"parity_max_abs_diff": gap})
    common.save_model(compact_model, run.out(directory, "model.keras"))


def finetune_compact(run):
    finetune_one(run, "compact", "finetune_compact")


def finetune_one(run, source, directory):
    """Fine-tunes the compact model of `source` into `directory` (--final_epochs; with
    distillation from the dense model when its weights are > 0), then dev and test results."""
    args = run.args
    model = run.load(source)
    extra = {}
    if args.final_epochs > 0:
        distillation = {}
        if args.final_distillation_weight > 0 or args.final_hidden_distillation_weight > 0:
            distillation = dict(
                teacher=run.load("finetune"),
                distillation_weight=args.final_distillation_weight,
                hidden_distillation_weight=args.final_hidden_distillation_weight,
                distillation_temperature=args.distillation_temperature,
                teacher_outputs_file=run.teacher_outputs_file())
        extra = run.fine_tune(model, directory, args.final_learning_rate, args.final_epochs,
                              **distillation)
    os.makedirs(run.out(directory), exist_ok=True)
    run.evaluate_to(model, directory, extra)
    results.write_test_results(run.out(directory), model, run.data, args.eval_batch_size)
    run.save_fine_tuned(model, directory)


def export(run):
    shutil.rmtree(run.out("export"), ignore_errors=True)
    export_one(run, run.load("finetune_compact"), None, run.out("export"))
    common.write_text(run.out("export", "DONE"), "")


def export_one(run, model, version, others_dir):
    """The SavedModel version `version` (None: the next) and the other --export_formats in
    `others_dir`, each checked in its runtime."""
    import keras_flop

    task = run.data.task
    formats = [f.strip() for f in run.args.export_formats.split(",") if f.strip()]
    if "saved_model" in formats:
        path = keras_flop.export_saved_model(
            model, run.out("export"), version=version, preprocessor=run.data.preprocessor,
            label_names=list(task.labels) or None)
        print(f"   export: {path}")
    others = [f for f in formats if f != "saved_model"]
    if others:  # beside the version folders, which are all TF Serving reads
        dev = None
        if any(f.endswith("_int8") for f in others):  # agreement on dev, not on random ids
            dev = next(iter(run.data.eval_dataset(next(iter(run.data.evals)),
                                                  EXPORT_AGREEMENT_EXAMPLES)))[0]
        files = keras_flop.export_formats(model, others_dir, others, agreement_batch=dev,
                                          min_agreement=run.args.export_min_agreement)
        for fmt, path in files.items():
            print(f"   export: {path} ({export_check_text(fmt, files.checks[fmt])})")


def export_check_text(fmt, check):
    """What verifying an exported file measured, in words: its size and runtime, and for an
    INT8 file its float counterpart's size, its agreement and largest logit difference."""
    runtime = "onnxruntime" if fmt.startswith("onnx") else "LiteRT"
    if "agreement" not in check:
        return f"logits checked in {runtime}, {check['bytes'] / 1e6:.1f} MB"
    return (f"int8 weights, {check['bytes'] / 1e6:.1f} MB against "
            f"{check['float_bytes'] / 1e6:.1f} MB in float32; agrees with the float model on "
            f"{check['agreement']:.1%} of {check['examples']} dev examples in {runtime} "
            f"(largest logit difference {check['max_abs_diff']:.3g})")
