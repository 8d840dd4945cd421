"""What every step of a pruning run reads: its settings, its directory, its workers, the
model's config and vocabulary, the task data, and the few helpers the steps share."""

import dataclasses
import os
import shutil

from apps import common, results
from apps.prune.run_dir import LATENCY_TABLE, RunDirectory
from apps.prune.source import model_source
from apps.workers import Workers


class PruningRun(RunDirectory):
    """One run of `apps.prune`: `args` (resolved), the run directory and where this worker
    writes (`RunDirectory`), the `Workers`, and the task data."""

    def __init__(self, args, run_dir, workers=None):
        import tensorflow as tf

        from keras_flop.training.data import load_task_data

        self.args = args
        self.workers = workers or Workers(tf.distribute.get_strategy())
        super().__init__(run_dir, self.workers.write_dir(run_dir), args.family is not None)
        self.counter = None  # the training step's step counter, while one trains
        self.source = model_source(args, self.write_dir)
        overrides = {k: getattr(args, k) for k in ("hidden_dropout_prob",
                                                   "attention_probs_dropout_prob")
                     if getattr(args, k) is not None}
        self.config = dataclasses.replace(self.source.config, **overrides)
        if args.max_seq_length > self.config.max_sequence_length:
            raise common.UsageError(f"--max_seq_length {args.max_seq_length} exceeds the "
                                    "model's longest sequence, "
                                    f"{self.config.max_sequence_length} (max_position_embeddings "
                                    "less RoBERTa's position offset).")
        self.vocab = self.source.vocab
        self.latency_table = None
        if args.latency_table:  # checked before any training
            self.latency_table = self.given_latency_table()
        self.data = load_task_data(
            self.source.data_dir, args.task, self.vocab, args.max_seq_length,
            args.max_train_examples, args.max_eval_examples, args.seed,
            pad_to_max_length=args.pad_to_max_length,
            boundaries=common.bucket_boundaries(args),
            selection_examples=args.selection_examples, selection_seed=args.selection_seed)

    def given_latency_table(self):
        """--latency_table, checked against the model; a note when another device made it."""
        import keras_flop
        from keras_flop.latency.device import describe_devices

        table = keras_flop.LatencyTable.load(self.args.latency_table)
        table.check(self.config)
        measured_on, here = table.info.get("device"), describe_devices()
        if measured_on and measured_on != here:
            print(f"   note: the latency table was measured on {measured_on}; this run "
                  f"is on {here}: its speedup target is that device's")
        return table

    # -- what the run prunes to ------------------------------------------------------------
    def latency_cost(self):
        """Whether the run prunes to speedups (the latency cost)."""
        return self.args.target_speedup is not None or bool(self.args.target_speedups)

    def cost_name(self):
        """What the run's sparsity is a fraction of, for the messages."""
        return "latency sparsity (1 - latency/dense)" if self.latency_cost() else "sparsity"

    def target_text(self):
        """The run's target or family of targets, for the messages."""
        if self.args.family is None:
            return f"{self.args.target_sparsity:.4g}"
        return "family " + ", ".join(f"{t:.4g}" for t in self.args.family)

    def pricing_step(self):
        """The step whose directory holds the latency table: the one that prices units."""
        return "fisher" if self.args.method == "fisher" else "factorize"

    def pruning_steps(self):
        if self.args.pruning_steps is not None:
            return self.args.pruning_steps
        per_epoch = -(-len(self.data.train) // self.args.train_batch_size)
        return per_epoch * self.args.num_train_epochs

    def target_warmup(self):
        from keras_flop.lagrangian.run_length import default_target_warmup

        if self.args.target_sparsity_warmup is not None:
            return self.args.target_sparsity_warmup
        return default_target_warmup(self.pruning_steps(), self.args.family is not None)

    def target_start(self, pruning_model):
        """--target_start: 0, or the pruning model's expected cost as its gates start."""
        if self.args.target_start == "zero":
            return 0.0
        return min(max(float(pruning_model.expected_sparsity()), 0.0), 0.999)

    def measured_latency_table(self):
        """The run's latency table: --latency_table, or measured on this device at
        --eval_batch_size and --max_seq_length; saved as `<step>/latency_table.json` of the
        step that prices the units (factorize, or fisher under --method fisher)."""
        import keras_flop

        args = self.args
        table = self.latency_table
        if table is None:
            lengths = None
            if args.latency_lengths == "train":  # the batches' padded lengths, as served
                lengths = self.data.tokenized("train").length_shares(args.eval_batch_size)
            print(f"   measuring the latency table: batch {args.eval_batch_size}, " + (
                f"length {args.max_seq_length}" if lengths is None else
                "the training set's lengths " + ", ".join(f"{n}: {w:.0%}"
                                                          for n, w in lengths.items())))
            table = keras_flop.measure_latency_table(
                self.config, batch_size=args.eval_batch_size, seq_length=args.max_seq_length,
                verbose=args.verbose, lengths=lengths)
            print(f"   latency table measured in {table.info['measurement_seconds']:.0f} s")
        elif (table.batch_size, table.seq_length) != (args.eval_batch_size,
                                                      args.max_seq_length):
            print(f"   note: the latency table is for batch {table.batch_size}, length "
                  f"{table.seq_length}; the report measures batch {args.eval_batch_size}, "
                  f"length {args.max_seq_length}")
        measured = table.info.get("measured_dense_seconds")
        print(f"   latency table: dense model {table.dense_seconds() * 1e3:.2f} ms per batch as "
              f"the sum of its blocks" + (f" (measured whole: {measured * 1e3:.2f} ms)"
                                          if measured else ""))
        table.save(self.out(self.pricing_step(), LATENCY_TABLE))
        return table

    # -- training and evaluation -------------------------------------------------------------
    def tensorboard(self, step, initial_step=0):
        """The step's TensorBoard callback (`<step>/logs`); its step count also tells where
        Ctrl-C stopped the step."""
        from keras_flop.training.callbacks import PruningTensorBoard

        self.counter = PruningTensorBoard(self.out(step, "logs"),
                                          update_freq=self.args.log_every_n_steps,
                                          hparams=vars(self.args), initial_step=initial_step)
        return self.counter

    def fine_tune(self, model, step, learning_rate, epochs, **distillation):
        """Fine-tuning for the finetune and finetune_compact steps (`distillation`: the
        teacher and weights of `keras_flop.training.fine_tuning.fine_tune`), TensorBoard
        scalars in `<step>/logs`; returns the results to record."""
        from keras_flop.training.fine_tuning import fine_tune

        args = self.args
        board = self.tensorboard(step)
        # Step checkpoints: an interrupted step continues where it stopped on the next run.
        history, seconds = fine_tune(
            model, self.data, learning_rate, epochs, args.train_batch_size, args.seed,
            callbacks=[board], jit_compile=args.jit_compile,
            checkpoint_dir=self.out(step, "checkpoints"),
            checkpoint_every_n_steps=args.checkpoint_every_n_steps,
            restore_from=self.path(step, "checkpoints"), **distillation)
        return {"loss": float(history.history["loss"][-1]), "train_time": seconds,
                **{key: float(values[-1]) for key, values in history.history.items()
                   if key.endswith("distillation_loss")}}

    def teacher_outputs_file(self):
        """Where the dense model's outputs on the training set are kept (`--teacher_outputs`)."""
        from keras_flop.training.fine_tuning import TEACHER_OUTPUTS

        return self.args.teacher_outputs or os.path.join(self.write_dir, TEACHER_OUTPUTS)

    def save_fine_tuned(self, model, step):
        """Writes the step's model; its step checkpoints (model and optimizer, three times
        the model's size) are then of no more use."""
        common.save_model(model, self.out(step, "model.keras"))
        shutil.rmtree(self.out(step, "checkpoints"), ignore_errors=True)

    def evaluate_to(self, model, step, extra=None):
        """Dev metrics of `model` (and the selection split's, when held out), written to
        `<step>/eval_results.*` with `extra`, printed."""
        from keras_flop.training.data import SELECTION
        from keras_flop.training.evaluation import evaluate

        flat = results.write_eval_results(self.out(step), evaluate(
            model, self.data, self.args.eval_batch_size), extra or {})
        if self.counter is not None and step in ("finetune", "finetune_compact"):
            # The final dev metrics and loss beside the step's training scalars, named as the
            # prune step's periodic evaluation names them.
            self.counter.write({k: v for k, v in flat.items() if k.startswith("eval_")
                                and "examples" not in k and "time" not in k}, "eval")
        shown = []
        for split, prefix in (("dev", ""), (SELECTION, f"{SELECTION}_")):
            metrics = [f"{k[len(prefix):]} {v:.4f}" for k, v in flat.items()
                       if k.startswith(f"{prefix}eval_") and "time" not in k
                       and "examples" not in k]
            if metrics:
                shown.append(f"{split} " + ", ".join(metrics))
        print(f"   {step}: " + "; ".join(shown))
        return flat
