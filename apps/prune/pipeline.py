"""The order of a run's steps: each once, skipped when done, redone from --start_from, a
finished pruning continued when only the run's length grew; every decision agreed by all
workers of a multi-worker run, every write the chief's."""

import shutil

from apps import common
from apps.prune import baselines, family, lagrangian, report, steps
from apps.prune.context import PruningRun
from apps.prune.parser import BASELINE_METHODS, method_steps
from apps.prune.run_dir import CONTINUED

# What each step runs for a single target, and for a family (the steps after pruning once per
# member).
SINGLE = {"finetune": steps.finetune, "factorize": lagrangian.factorize,
          "prune": lagrangian.prune, "fisher": steps.fisher, "compact": steps.compact,
          "finetune_compact": steps.finetune_compact, "export": steps.export,
          "report": report.write_report}
FAMILY = {**SINGLE, "prune": family.prune, "compact": family.compact,
          "finetune_compact": family.finetune_compact, "export": family.export,
          "report": report.write_family_report}


class Pipeline(PruningRun):
    """The steps of a run (`run`), or one of them by name (`pipeline.finetune()`)."""

    def step_names(self):
        return method_steps(self.args.method)

    def run_step(self, step):
        if step == "compact" and self.args.method in BASELINE_METHODS:
            return baselines.compact(self)
        (SINGLE if self.args.family is None else FAMILY)[step](self)

    def finetune(self):
        self.run_step("finetune")

    def factorize(self):
        self.run_step("factorize")

    def prune(self):
        self.run_step("prune")

    def fisher(self):
        self.run_step("fisher")

    def compact(self):
        self.run_step("compact")

    def finetune_compact(self):
        self.run_step("finetune_compact")

    def export(self):
        self.run_step("export")

    def report(self):
        self.run_step("report")

    def sparsity(self):
        """The target and the realized sparsity: one dict, or a list of one per member."""
        return steps.sparsity(self) if self.args.family is None else family.sparsity(self)

    def shortfall(self, what):
        """What to do when the compact model(s) fell short of the target(s), or None."""
        if self.args.method in BASELINE_METHODS:
            return None  # no target
        if self.args.family is not None:
            return family.shortfall(self, what)
        return steps.sparsity_shortfall(self.sparsity()["realized"], self.args.target_sparsity,
                                        what=what)

    def run(self):
        steps_ = self.step_names()
        start = steps_.index(self.args.start_from) if self.args.start_from else None
        if start and self.removed(steps_[start - 1]):  # checked before anything is redone
            raise common.UsageError(
                f"--start_from {steps_[start]} needs the model of the step {steps_[start - 1]}, "
                "deleted when the run finished (--keep_intermediate false): pass --start_from "
                f"{steps_[start - 1]}.")
        workers = self.workers
        for index, step in enumerate(steps_):
            redo = start is not None and index >= start
            # Every worker reads the run directory the chief finished writing, and decides alike.
            skip = workers.agree(f"whether the step {step} is done", self.done(step) and not redo)
            if skip:
                print(f"== {step}: done already ({self.path(step)})")
                continue
            print(f"== {step}")
            continued = redo and step == "prune" and self.continues_pruning()
            workers.agree(f"whether the step {step} continues a finished pruning", continued)
            if workers.chief:  # the run directory is the chief's to change
                if continued:
                    self.move_finished_pruning_aside()
                elif redo and step != "report":
                    shutil.rmtree(self.path(step), ignore_errors=True)  # no resuming a redone step
            workers.agree(f"the start of the step {step}")
            self.counter = None
            try:
                self.run_step(step)
                workers.agree(f"the end of the step {step}")  # its files are written
            except KeyboardInterrupt:
                raise common.Interrupted(f"interrupted {self.where(step)}; rerun the same "
                                         "command to continue") from None
            except Exception as e:
                lost = workers.lost(e, self.where(step))
                if lost is None:
                    raise
                raise lost from e
        if workers.chief:
            shutil.rmtree(self.path(CONTINUED), ignore_errors=True)
            if not self.args.keep_intermediate:
                self.drop_intermediate(steps_)
        workers.agree("the end of the run")

    def where(self, step):
        """Where in `step` the run is: `at step N of prune`, or `in compact`."""
        return f"at step {self.counter.step} of {step}" if self.counter else f"in {step}"

    def continues_pruning(self):
        """Whether the prune step goes on from the finished one: only the run's length
        changed (`--start_from prune` with a larger --num_train_epochs), or such a
        continuation was interrupted."""
        import os

        if os.path.isdir(self.path(CONTINUED)):
            return True
        if self.args.changed_settings not in (["num_train_epochs"], ["pruning_steps"]) or \
                not self.done("prune"):
            return False
        previous = self.load("prune", "pruning_model.keras")
        return int(previous.pruning_step.numpy()) < self.pruning_steps()
