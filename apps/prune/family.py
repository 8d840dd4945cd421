"""A family of targets (--targets, --target_speedups) from one pruning run: the prune step's
end lists the members snapshotted, and the steps after it run once per member, each into
`<step>/<member>/`. The single-target steps are reused as they are."""

import os
import time

from apps import common
from apps.prune import lagrangian, steps
from apps.prune.run_dir import FAMILY


def member_target_text(member):
    if "speedup" in member:
        return f"{member['speedup']:.4g}x"
    return f"{member['target']:.4g}"


def prune(run):
    """The Lagrangian's prune step, ended by listing the members (`end_pruning`)."""
    lagrangian.prune(run, end=end_pruning)


def end_pruning(run, pruning_model, logs, start, steps_run):
    """The family's prune step ends: which members were snapshotted at which step, which are
    missing; `prune/family.json` lists them for the later steps."""
    members = []
    for i, member in enumerate(pruning_model.family.status(), start=1):
        member = {"member": i, **member}
        members.append(member)
        at = "not reached: missing" if member["snapshot_step"] is None else \
            f"snapshot after step {member['snapshot_step']}"
        print(f"   member {i}: target {member_target_text(member)}: {at}")
    missing = [m for m in members if m["snapshot_step"] is None]
    if missing:
        print(f"   note: {len(missing)} of {len(members)} members missing (target "
              f"{', '.join(member_target_text(m) for m in missing)}): the constraint "
              f"did not hold within {run.args.family_tolerance} for "
              f"{pruning_model.family_hold_steps} steps before the run ended; continue "
              "with --start_from prune and a larger --num_train_epochs")
    logs["train_time"] = time.perf_counter() - start
    logs["global_step"] = steps_run
    logs["family_members_snapshotted"] = len(members) - len(missing)
    run.evaluate_to(pruning_model, "prune", logs)
    common.write_json(run.out("prune", FAMILY), members)
    common.save_model(pruning_model, run.out("prune", "pruning_model.keras"))


def for_each_member(run, step, action):
    """Runs `action(member, directory)` for every snapshotted member whose `<step>/<member>/`
    has no model yet (one finished before an interruption is kept), then marks `step` done."""
    for member in run.family_members():
        directory = os.path.join(step, str(member["member"]))
        if os.path.exists(run.path(directory, "model.keras")):
            print(f"   member {member['member']}: done already")
            continue
        action(member, directory)
    os.makedirs(run.out(step), exist_ok=True)  # a family with no member snapshotted has none
    common.write_text(run.out(step, "DONE"), "")


def compact(run):
    """Each member: its snapshot's gates, the inference mask calibrated to its target, then
    the single target's compaction."""
    from keras_flop.gates.sparsity import calibrate_if_reached

    pruning_model = run.load(steps.pruning_source(run), "pruning_model.keras")

    def compact_member(member, directory):
        print(f"   member {member['member']} (target {member_target_text(member)}, "
              f"snapshot after step {member['snapshot_step']})")
        pruning_model.family.load(member["member"] - 1)
        # As the single-target prune step does: the inference mask keeps the target.
        calibration = calibrate_if_reached(pruning_model, member["target"],
                                           threshold=run.args.compact_threshold)
        if any(calibration.shifts):
            print(f"   inference mask calibrated: {run.cost_name()} {calibration.before:.3f} "
                  f"-> {calibration.after:.3f} (log α shifted by {calibration.shifts[0]:+.3f}, "
                  f"{calibration.shifts[1]:+.3f})")
        steps.compact_one(run, pruning_model, directory, member.get("speedup"),
                          round(member["target"], 4), calibration.expected, {
                              f"family_{k}": v for k, v in (
                                  ("target", member["target"]), ("member", member["member"]),
                                  ("snapshot_step", member["snapshot_step"]),
                                  ("expected_sparsity", calibration.expected))})

    for_each_member(run, "compact", compact_member)


def finetune_compact(run):
    def finetune_member(member, directory):
        print(f"   member {member['member']} (target {member_target_text(member)})")
        steps.finetune_one(run, os.path.join("compact", str(member["member"])), directory)

    for_each_member(run, "finetune_compact", finetune_member)


def export(run):
    """One SavedModel version per member, numbered in target order (a missing one: no
    folder); the other formats in `export/<member>_formats/`."""
    import shutil

    shutil.rmtree(run.out("export"), ignore_errors=True)
    for member in run.family_members():
        model = run.load(os.path.join("finetune_compact", str(member["member"])))
        steps.export_one(run, model, member["member"],
                         run.out("export", f"{member['member']}_formats"))
    os.makedirs(run.out("export"), exist_ok=True)
    common.write_text(run.out("export", "DONE"), "")


def sparsity(run):
    """Each member's target and the realized sparsity (of the run's cost) of its compact
    model."""
    key = steps.realized_key(run)
    return [{"member": m["member"], "target": m["target"], "realized": run.read_json(
        os.path.join("compact", str(m["member"])), "info.json", missing={}).get(key)}
        for m in run.family_members()]


def shortfall(run, what):
    """What to do when a family run misses members or a member fell short, or None."""
    members = run.family_members(snapshotted=False)
    missing = [member_target_text(m) for m in members if m["snapshot_step"] is None]
    short = [f"member {m['member']}: "
             f"{steps.sparsity_shortfall(m['realized'], m['target'], what=what)}"
             for m in sparsity(run) if steps.sparsity_shortfall(m["realized"], m["target"])]
    if missing:
        short.insert(0, f"{len(missing)} of {len(members)} family members missing (target "
                        f"{', '.join(missing)}): their constraint was never met; continue "
                        "pruning with --start_from prune and a larger --num_train_epochs (the "
                        "schedule goes on where it stopped), or pass --allow_short to accept "
                        "the members there are.")
    return "; ".join(short) or None
