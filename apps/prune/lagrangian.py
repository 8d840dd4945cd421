"""The Lagrangian's two steps: factorize (the pruning model, its gates started from the
Fisher mask if asked) and prune (gate training to the target, resumable, then the inference
mask calibrated to a target the training reached)."""

import os
import shutil
import time
import warnings

from apps import common
from apps.prune.parser import MIN_SIZED_STEPS
from apps.prune.run_dir import CONTINUED, INIT_MASK, TRACE


def factorize(run):
    import keras_flop

    args = run.args
    dense = run.load("finetune")
    distillation = {}
    if args.distillation_weight > 0 or args.hidden_distillation_weight > 0:
        # The fine-tuned dense model teaches the pruned one.
        distillation = dict(teacher=dense, distillation_weight=args.distillation_weight,
                            distillation_temperature=args.distillation_temperature,
                            hidden_distillation_weight=args.hidden_distillation_weight)
    os.makedirs(run.out("factorize"), exist_ok=True)
    target = {"target_sparsity": args.target_sparsity}
    if args.family is not None:
        target = {"targets": args.targets} if args.targets else {
            "target_speedups": args.target_speedups}
    if run.latency_cost():
        target = {**target, "cost": "latency", "latency_table": run.measured_latency_table()}
        if args.family is None:
            target = {k: v for k, v in target.items() if k != "target_sparsity"}
            target["target_speedup"] = args.target_speedup
    pruning_model = keras_flop.factorize(
        dense, gate_config={"eval_mask": args.eval_mask}, structure=args.structure,
        rank="break_even" if args.factorize_rank == "break_even" else None,
        **distillation, **target, target_sparsity_warmup=run.target_warmup(),
        constraint=args.constraint, pruning_steps=run.pruning_steps(),
        sparsity_denominator=args.sparsity_denominator,
        regularization_scale=args.regularization_scale)
    if args.init_mask == "fisher":
        start_from_fisher_mask(run, dense, pruning_model)
    start = float(pruning_model.expected_sparsity())
    print(f"   factorize: expected {run.cost_name()} at the start {start:.3f} (target "
          f"{run.target_text()})")
    if start < 0:
        print("   (negative: at full rank the factors P (a×k) and Q (k×b) of an a×b kernel "
              "hold more weights than the kernel; the gates must close ranks before the "
              "model gets smaller than the dense one)")
    common.save_model(pruning_model, run.out("factorize", "pruning_model.keras"))


def start_from_fisher_mask(run, dense, pruning_model):
    """--init_mask fisher: the head and FFN-unit gates start from the Fisher mask at the
    target (under a speedup target the search budgets the latency table's time, 1 / S)."""
    from keras_flop.fisher.post_training import init_gates_from_masks, post_training_masks
    from keras_flop.training.fine_tuning import fit_verbosity

    args = run.args
    latency = {} if not run.latency_cost() else {
        "cost": "latency", "latency_table": pruning_model.cost_model.table}
    began = time.perf_counter()
    masks = post_training_masks(
        dense, run.data.train_dataset(args.train_batch_size, args.seed),
        target_sparsity=args.target_sparsity, num_samples=args.num_fisher_samples,
        last_layer_heads=args.last_layer_heads,
        tune=False, verbose=fit_verbosity(), **latency)
    init_gates_from_masks(pruning_model, masks)
    seconds = time.perf_counter() - began
    print(f"   gates start from the Fisher mask: kept heads per layer "
          f"{masks.kept_heads}, FFN units {masks.kept_units} ({seconds:.0f} s)")
    common.write_json(run.out("factorize", INIT_MASK),
                      {"kept_heads": [int(h) for h in masks.kept_heads],
                       "kept_units": [int(u) for u in masks.kept_units], "seconds": seconds})


def prune(run, end=None):
    """Gate training under the Lagrangian, from its last checkpoint if one was left; then
    `end(run, pruning_model, logs, start, steps)`: by default the single target's
    (`end_pruning`; a family's is `apps.prune.family.end_pruning`)."""
    pruning_model, logs, start, steps = train_gates(run)
    (end or end_pruning)(run, pruning_model, logs, start, steps)


def train_gates(run):
    """Trains the pruning model to the end of its run; returns `(pruning_model, logs,
    start time, steps)`."""
    from keras_flop.training import callbacks, distillation, optimizers
    from keras_flop.training.data import task_loss
    from keras_flop.training.evaluation import metrics_and_loss
    from keras_flop.training.fine_tuning import fit_from_step, teacher_outputs
    from keras_flop.training.seeding import reseed

    args = run.args
    steps = run.pruning_steps()
    if args.schedule == "run" and steps < MIN_SIZED_STEPS:
        print(f"   note: {steps} pruning steps; the schedules are sized for "
              f"{MIN_SIZED_STEPS} or more (raise --num_train_epochs or --pruning_steps)")
    if os.path.isdir(run.path(CONTINUED)):  # the pipeline moved the finished prune step there
        # A longer run of the same pruning: on from the gates, λ and step it ended with.
        pruning_model = run.load(CONTINUED, "pruning_model.keras")
        first_step = int(pruning_model.pruning_step.numpy())
        print(f"   continuing the finished pruning from step {first_step} to {steps}")
    else:
        pruning_model = run.load("factorize", "pruning_model.keras")
        # The run's length is the prune step's setting: size the target warmup to it.
        pruning_model.pruning_steps = steps
        pruning_model.target_sparsity_warmup = run.target_warmup()
        if args.family is None:
            pruning_model.target_sparsity_start = run.target_start(pruning_model)
            if args.target_start == "gates":
                print(f"   the target's warmup starts at the gates' expected "
                      f"{run.cost_name()} {pruning_model.target_sparsity_start:.3f}")
        if args.family is not None:  # sized to the run, like the warmup
            pruning_model.family.hold_steps = args.family_hold_steps
            pruning_model.family.tolerance = args.family_tolerance
        first_step = 0
    reseed(pruning_model, args.seed)
    model_optimizer = None if args.learning_rate == 0 else optimizers.model_optimizer(
        args.learning_rate, steps)
    if args.schedule == "noam":
        alpha_optimizer = optimizers.gate_optimizer(args.alpha_learning_rate,
                                                    args.learning_rate_warmup)
        lambda_optimizer = optimizers.lambda_optimizer(args.lambda_learning_rate,
                                                       args.learning_rate_warmup)
    else:  # sized to the steps this prune step takes
        alpha_optimizer = optimizers.sized_gate_optimizer(steps - first_step,
                                                          args.alpha_learning_rate)
        lambda_optimizer = optimizers.sized_lambda_optimizer(steps - first_step,
                                                             args.lambda_learning_rate)
    pruning_model.compile(
        optimizer=model_optimizer, alpha_optimizer=alpha_optimizer,
        lambda_optimizer=lambda_optimizer, loss=task_loss(run.data.task),
        jit_compile=args.jit_compile)
    os.makedirs(run.out("prune"), exist_ok=True)
    # A killed run left step checkpoints: restore model, optimizers, λ and the random
    # generators, and continue with the batches the interrupted run had not seen.
    tenth = max(1, steps // 10)
    # Every worker restores the chief's latest checkpoint; each saves (a save may be a
    # collective), the chief to the run directory, the others to their scratch.
    saver = callbacks.StepCheckpoint(run.out("prune", "checkpoints"), pruning_model,
                                     every_n_steps=args.checkpoint_every_n_steps or tenth,
                                     restore_from=run.path("prune", "checkpoints"))
    resumed = saver.restore()
    done = int(pruning_model.pruning_step.numpy()) if resumed else first_step
    run.workers.agree("the pruning step to start from", done)
    if resumed:
        print(f"   resuming from {resumed} at step {done} of {steps}")
    saver.step = done
    board = run.tensorboard("prune", initial_step=done)
    data = run.data
    evaluation = callbacks.PeriodicEvaluation(
        data.eval_dataset(next(iter(data.evals)), args.eval_batch_size),
        lambda labels, outputs: metrics_and_loss(data.task, outputs, labels),
        every_n_steps=args.eval_every_n_steps or tenth, tensorboard=board, initial_step=done)
    stop = callbacks.StopOnNonFiniteLoss(initial_step=done)
    trace_path = run.out("prune", TRACE)
    if first_step and not os.path.exists(trace_path) and \
            os.path.exists(run.path(CONTINUED, TRACE)):  # the curve goes on, whole
        shutil.copyfile(run.path(CONTINUED, TRACE), trace_path)
    trace = callbacks.StepCSVLogger(trace_path, initial_step=done)
    features = {}
    if pruning_model.teacher is not None and args.hidden_distillation_weight == 0 and \
            args.distillation_weight > 0:
        # Logit distillation from a frozen teacher: its outputs are fixed, computed once.
        features[distillation.TEACHER_LOGITS] = teacher_outputs(
            pruning_model.teacher, data, keep=[run.teacher_outputs_file()])
    start = time.perf_counter()
    with warnings.catch_warnings():  # missing members, a target missed: said at the step's end
        warnings.filterwarnings("ignore", "The run ended before the constraint")
        warnings.filterwarnings("ignore", "The run ended at step")
        warnings.filterwarnings("ignore", "Training was stopped at step")
        history = fit_from_step(pruning_model, data, args.train_batch_size, args.seed, done,
                                steps, [board, evaluation, saver, stop, trace], stop,
                                **features)
    logs = {} if history is None else {k: float(v[-1]) for k, v in history.history.items()}
    if stop.failed_step is not None:
        raise common.UsageError(
            f"Non-finite loss at pruning step {stop.failed_step}; the last good checkpoint "
            f"is {saver.manager.latest_checkpoint}. Lower the learning rates.")
    logs.update({"expected_sparsity": float(pruning_model.expected_sparsity()),
                 "lambda_1": float(pruning_model.lambda_1.numpy()),
                 "lambda_2": float(pruning_model.lambda_2.numpy())})
    return pruning_model, logs, start, steps


def end_pruning(run, pruning_model, logs, start, steps):
    """A single target: the expected cost against the target, the inference mask calibrated
    to a target the training reached, the dev results and the pruning model."""
    from keras_flop.gates.sparsity import TARGET_TOLERANCE, calibrate_if_reached

    args = run.args
    speedup = "" if args.target_speedup is None else \
        f", expected speedup {1.0 / (1.0 - logs['expected_sparsity']):.2f}x"
    print(f"   prune: expected {run.cost_name()} {logs['expected_sparsity']:.4f} (target "
          f"{args.target_sparsity:.4g}){speedup}, λ1 {logs['lambda_1']:.3f}, "
          f"λ2 {logs['lambda_2']:.3f}")
    calibration = calibrate_if_reached(pruning_model, args.target_sparsity,
                                       threshold=args.compact_threshold)
    gap = calibration.expected - args.target_sparsity
    if not calibration.reached:
        print(f"   note: the expected {run.cost_name()} is {abs(gap):.3f} "
              f"{'short of' if gap < 0 else 'past'} the target (more than {TARGET_TOLERANCE})")
    elif any(calibration.shifts):
        logs["mask_shift_all_gates"], logs["mask_shift_unit_gates"] = calibration.shifts
        # What the compact model's sparsity (of the run's cost) would have been uncalibrated.
        logs["sparsity_before_calibration"] = calibration.before
        print(f"   inference mask: the gates ended undecided (the compact model would "
              f"have sparsity {calibration.before:.3f}); log α shifted by "
              f"{calibration.shifts[0]:+.3f} (every gate) and {calibration.shifts[1]:+.3f} "
              f"(rank, head and FFN-unit gates) to give {calibration.after:.3f}")
    logs["train_time"] = time.perf_counter() - start
    logs["global_step"] = steps
    run.evaluate_to(pruning_model, "prune", logs)
    common.save_model(pruning_model, run.out("prune", "pruning_model.keras"))
