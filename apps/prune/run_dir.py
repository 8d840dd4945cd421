"""The run directory of `apps.prune`: which step finished, what a continued run may keep,
and what `--keep_intermediate false` removes. Only the chief of a multi-worker run writes it;
the other workers write the same files to their scratch directory (`apps.workers.Workers`)."""

import os
import shutil

from apps import common
from apps.prune.parser import STEPS, build_parser, method_steps
from apps.prune.settings import RUN_CONTROL, first_step_using

# Where a finished prune step waits while a longer run continues it.
CONTINUED = "prune_continued"
TRACE = "trace.csv"  # every pruning step's logs (keras_flop.training.callbacks.StepCSVLogger)
# The Fisher mask the gates started from (--init_mask fisher), and the seconds it took.
INIT_MASK = "init_mask.json"
# A --target_speedup run's latency table, in the directory of the step that prices units.
LATENCY_TABLE = "latency_table.json"
# The note --keep_intermediate false leaves where it deleted a step's models.
REMOVED = "removed.txt"
# The family's members as the prune step left them.
FAMILY = "family.json"


def prepare_run(args, write=True):
    """The run directory; continues a run with the same settings, refuses a different one.
    `write=False` checks and decides without writing (every worker checks; the chief
    writes)."""
    settings_path = os.path.join(args.output_dir, "hparams.json")
    settings = {k: v for k, v in vars(args).items() if k not in RUN_CONTROL}
    # A run that finished no step (a failed start) holds no settings to protect.
    started = any(os.path.isdir(os.path.join(args.output_dir, step)) for step in STEPS)
    args.changed_settings = []
    if os.path.exists(settings_path) and not args.overwrite and started:
        previous = common.read_json(settings_path)
        # A setting the saved run does not name came with a later version of this app: at
        # its default it is what the run did.
        new = set(settings) - set(previous)
        parser = build_parser() if new else None
        defaults = {k: parser.get_default(k) for k in new}
        changed = sorted(k for k in set(previous) | set(settings)
                         if k not in RUN_CONTROL and previous.get(k, defaults.get(k)) !=
                         settings.get(k))
        if changed:
            steps = method_steps(args.method)
            first = min((first_step_using(flag, steps) for flag in changed), key=steps.index)
            if args.start_from is None or steps.index(args.start_from) > steps.index(first):
                raise common.UsageError(
                    f"{args.output_dir} holds a run with other settings ({', '.join(changed)}), "
                    f"used from the step {first} on: pass --start_from {first} to redo it and "
                    "the steps after it, or --overwrite, or another --output_dir.")
            if write:
                common.write_json(settings_path, settings)  # the settings of the steps redone
            args.changed_settings = changed
        return args.output_dir
    if args.start_from:
        raise common.UsageError(f"--start_from needs an existing run in {args.output_dir}.")
    # What a failed start left (its settings, the toy data) is replaced.
    failed_start = os.path.exists(settings_path) and not started
    common.prepare_output_dir(args.output_dir, args.overwrite or failed_start, create=write)
    if write:
        common.write_json(settings_path, settings)
    return args.output_dir


class RunDirectory:
    """The files of one run. `path` names what the steps read in the run directory, `out`
    where this worker writes it (the run directory itself, or a worker's scratch)."""

    def __init__(self, run_dir, write_dir, family=False):
        self.run_dir = run_dir
        self.write_dir = write_dir
        self.family = family

    def path(self, step, name=""):
        return os.path.join(self.run_dir, step, name)

    def out(self, step, name=""):
        return os.path.join(self.write_dir, step, name)

    def output(self, step):
        """The file whose presence says that `step` finished."""
        if step == "report":
            return os.path.join(self.run_dir, "report.md")
        if self.family and step in ("compact", "finetune_compact"):
            return self.path(step, "DONE")  # every member's model written
        return self.path(step, {"export": "DONE", "factorize": "pruning_model.keras",
                                "prune": "pruning_model.keras",
                                "fisher": "pruning_model.keras"}.get(step, "model.keras"))

    def removed(self, step):
        """Whether --keep_intermediate false deleted the step's model after it finished."""
        return os.path.exists(self.path(step, REMOVED)) and \
            not os.path.exists(self.output(step))

    def done(self, step):
        return os.path.exists(self.output(step)) or self.removed(step)

    def read_json(self, step, name, missing=None):
        return common.read_json(self.path(step, name), missing=missing)

    def load(self, step, name="model.keras"):
        """A step's saved model, uncompiled: every step that trains compiles it afresh."""
        from keras_flop.checkpoints.keras_file import load_keras_file

        path = self.path(step, name)
        if not os.path.exists(path) and self.removed(step):
            raise common.UsageError(f"{path} was deleted when the run finished "
                                    f"(--keep_intermediate false): pass --start_from {step} "
                                    "to make it again.")
        return load_keras_file(path, f"The {step} step's model")

    def family_members(self, snapshotted=True):
        """The family's members as the prune step left them (`prune/family.json`), those
        with a snapshot only unless `snapshotted` is False."""
        members = self.read_json("prune", FAMILY)
        return [m for m in members if m["snapshot_step"] is not None or not snapshotted]

    def move_finished_pruning_aside(self):
        """Keeps the finished prune step as CONTINUED while a longer run continues it."""
        if not os.path.isdir(self.path(CONTINUED)):
            os.replace(self.path("prune"), self.path(CONTINUED))
        shutil.rmtree(self.path("prune"), ignore_errors=True)

    def drop_intermediate(self, steps):
        """Deletes what no step needs once the run has finished (--keep_intermediate false),
        leaving a note in each step directory touched."""
        compact = ["model.keras"] if not self.family else [
            os.path.join(str(m["member"]), "model.keras") for m in self.family_members()] + [
            "DONE"]
        for step, names in (("factorize", ["pruning_model.keras"]),
                            ("prune", ["pruning_model.keras", "checkpoints"]),
                            ("fisher", ["pruning_model.keras"]), ("compact", compact)):
            present = [n for n in names if step in steps and os.path.exists(self.path(step, n))]
            for name in present:
                path = self.path(step, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            if present:
                common.write_text(self.path(step, REMOVED),
                                  "Deleted when the run finished (--keep_intermediate false): "
                                  f"{', '.join(present)}.\n")
