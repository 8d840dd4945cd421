"""The benchmarks that run apps.prune per row (prune_sst2, reach_target, target_speedup,
input_lengths) and table_lengths, which reads a finished run: their commands, what they read
back from hand-made run directories, and their tables. Nothing here trains or times a model;
the `slow` tests run each benchmark's `--smoke` mode end to end on the toy task."""

import json
import os
import shlex
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)

import input_lengths  # noqa: E402
import last_layer_heads  # noqa: E402
import prune_sst2  # noqa: E402
import reach_target  # noqa: E402
import support  # noqa: E402
import table_lengths  # noqa: E402
import target_speedup  # noqa: E402


def write_run(directory, files):
    """A hand-made apps.prune run directory: `files` maps relative paths to JSON values (or
    to text, written as it is)."""
    for path, value in files.items():
        target = os.path.join(directory, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(value if isinstance(value, str) else json.dumps(value))
    return str(directory)


def report(dense_accuracy=0.84, accuracy=0.80, fixed=(2.0, 1.8, 2.5),
           bucketed=(1.6, 1.5, 1.7), parameters=17_000_000):
    """A report.json as apps.prune's report step writes it (the fields the benchmarks read)."""
    return {"speedup_fixed": list(fixed), "speedup_bucketed": list(bucketed),
            "dense": {"parameters": 22_713_986, "latency_s": 12.0,
                      "results": {"eval_accuracy": dense_accuracy, "eval_examples": 872}},
            "compact": {"parameters": parameters, "latency_s": 6.0,
                        "results": {"eval_accuracy": accuracy, "eval_examples": 872}}}


def flag(command, name):
    """The value after `name` in `command` (its last occurrence: argparse's)."""
    at = len(command) - 1 - command[::-1].index(name)
    return command[at + 1]


# -- support -------------------------------------------------------------------------------


def test_passed_flags_name_the_apps_flags_and_leave_out_unset_ones():
    import argparse

    args = argparse.Namespace(learning_rate=3e-5, alpha_learning_rate=None, schedule="run",
                              max_train_examples=64, distillation_weight=0.0)
    assert support.passed_flags(args, ("learning_rate", "alpha_learning_rate", "schedule",
                                       "max_train_examples", "distillation_weight")) == [
        "--learning_rate", "3e-05", "--schedule", "run", "--max_train_examples", "64",
        "--distillation_weight", "0"]


def test_a_speedup_as_a_latency_ratio_swaps_its_bounds():
    assert support.as_ratio((2.0, 1.6, 2.5)) == pytest.approx((0.5, 0.4, 0.625))


def test_the_commands_ending_a_table_are_listed_once_each_in_order():
    rows = [{"command": "python -m apps.prune A"}, {"command": "python -m apps.prune A"},
            {"command": "python -m apps.prune B"}, {}]
    assert support.command_lines(rows) == [
        "", "Commands (one per row, each once):", "    python -m apps.prune A",
        "    python -m apps.prune B", "    (not recorded with this row)"]


def test_commands_are_shown_as_a_user_types_them():
    command = support.app_command("apps.prune", "--task", "sst2", "--seed", 0,
                                  "--output_dir", "runs/a b")
    assert command[:3] == [sys.executable, "-m", "apps.prune"] and command[-3] == "0"
    assert support.shown(command) == "python -m apps.prune --task sst2 --seed 0 " \
                                     "--output_dir 'runs/a b'"


def test_a_teacher_without_its_vocabulary_beside_it_gets_the_checkpoints(tmp_path):
    bare = write_run(tmp_path / "bare", {"model.keras": ""})
    assert support.dense_model_flags(os.path.join(bare, "model.keras"), "DATA") == [
        "--dense_model", os.path.join(bare, "model.keras"), "--vocab_file",
        os.path.join("DATA", support.CHECKPOINT, "vocab.txt")]
    kept = write_run(tmp_path / "kept", {"model.keras": "", "vocab.txt": "[PAD]\n"})
    assert support.dense_model_flags(os.path.join(kept, "model.keras")) == [
        "--dense_model", os.path.join(kept, "model.keras")]


def test_a_finished_teacher_sweep_is_read_back_not_run_again(tmp_path, capsys):
    sweep = write_run(tmp_path / "teacher", {"results.json": [
        {"task": "sst2", "learning_rate": 5e-5, "eval_score": 0.84},
        {"task": "sst2", "learning_rate": 1e-4, "eval_score": 0.85},
        {"task": "rte", "learning_rate": 5e-5, "eval_score": 0.90}]})
    assert support.fine_tuned_teacher("DATA", "sst2", sweep, 0) == os.path.join(
        sweep, "sst2", "lr_0.0001", "model.keras")
    printed = capsys.readouterr().out
    assert "$ " not in printed and "dev by learning rate 5e-05: 0.8400, 0.0001: 0.8500" in printed


def test_the_smoke_mode_sets_defaults_that_flags_still_override():
    args = prune_sst2.parse_args(["--smoke", "--targets", "0.3"])
    assert (args.targets, args.seeds, args.max_seq_length) == ("0.3", [0], 32)
    assert support.smoke_flags(args) == ["--max_eval_examples", "32", "--train_batch_size",
                                         "16"]
    plain = prune_sst2.parse_args([])
    assert (plain.targets, plain.max_seq_length, support.smoke_flags(plain)) == \
        ("0.5,0.7", 128, [])


# -- prune_sst2 ----------------------------------------------------------------------------


def test_prune_sst2_rows_are_app_commands_with_the_benchmarks_settings():
    args = prune_sst2.parse_args(["--data", "DATA", "--learning_rate", "3e-5",
                                  "--distillation_weight", "1", "--schedule", "noam",
                                  "--alpha_learning_rate", "100"])
    command = prune_sst2.row_command(args, "DATA/glue", "T/model.keras", "heads+ffn", 0.7, 2,
                                     "OUT/seed2/heads+ffn_0.7")
    assert command[1:3] == ["-m", "apps.prune"]
    expected = {"--task": "sst2", "--data_dir": "DATA/glue", "--dense_model": "T/model.keras",
                "--structure": "heads+ffn", "--target_sparsity": "0.7", "--seed": "2",
                "--num_train_epochs": "3", "--learning_rate": "3e-05",
                "--distillation_weight": "1", "--schedule": "noam",
                "--alpha_learning_rate": "100", "--max_seq_length": "128",
                "--max_train_examples": "4000", "--final_epochs": "1",
                "--eval_batch_size": "8",
                "--teacher_outputs": os.path.join("OUT/seed2", "teacher_outputs.npz")}
    assert {name: flag(command, name) for name in expected} == expected
    # Unset settings are the app's defaults: not on the command line.
    assert "--lambda_learning_rate" not in command and "--learning_rate_warmup" not in command
    assert "--allow_short" in command and "--max_eval_examples" not in command


def test_prune_sst2_needs_a_seed_in_a_dense_model_path_for_several_seeds(capsys):
    with pytest.raises(SystemExit):
        prune_sst2.parse_args(["--seeds", "0,1", "--dense_model", "/tmp/dense.keras"])
    assert "{seed}" in capsys.readouterr().err
    assert prune_sst2.parse_args(["--seeds", "0,1", "--dense_model",
                                  "/tmp/dense_{seed}.keras"]).seeds == [0, 1]


def test_prune_sst2_reads_a_row_from_the_run_directory(tmp_path):
    run = write_run(tmp_path / "run", {
        "report.json": report(fixed=(2.0, 1.6, 2.5), bucketed=(1.25, 1.0, 2.0)),
        "prune/eval_results.json": {"expected_sparsity": 0.498, "eval_accuracy": 0.78,
                                    "train_time": 120.0},
        "compact/info.json": {"dense_sparsity": 0.503}})
    row = prune_sst2.row_figures(run, "heads+ffn+layers", 0.5, 1, (4.0, 2.0, 5.0))
    assert row["batch8"] == pytest.approx(0.5) and row["batch8_spread"] == pytest.approx(
        [0.4, 0.625])
    assert row["batch1"] == pytest.approx(0.25) and row["batch1_spread"] == pytest.approx(
        [0.2, 0.5])
    assert row["batch8b"] == pytest.approx(0.8) and row["batch8b_spread"] == pytest.approx(
        [0.5, 1.0])
    assert (row["expected_sparsity"], row["dense_sparsity"], row["gated_accuracy"],
            row["accuracy"], row["dense_accuracy"]) == (0.498, 0.503, 0.78, 0.80, 0.84)
    assert (row["params"], row["dense_params"], row["dev_examples"], row["seed"]) == \
        (17_000_000, 22_713_986, 872, 1)


def test_prune_sst2_table_gives_mean_and_std_over_seeds_against_each_seeds_dense_model():
    args = prune_sst2.parse_args(["--seeds", "0,1", "--dense_model", "d{seed}.keras"])

    def row(seed, accuracy, dense):
        return {"structure": "heads+ffn+layers", "target": 0.5, "seed": seed,
                "expected_sparsity": 0.5, "dense_sparsity": 0.5, "params": 17_000_000,
                "dense_params": 22_713_986, "dense_accuracy": dense, "gated_accuracy": 0.7,
                "accuracy": accuracy, "dev_examples": 872, "command": f"python -m x {seed}",
                **{f"batch{b}": 0.5 for b in ("8", "1", "8b")},
                **{f"batch{b}_spread": [0.4, 0.6] for b in ("8", "1", "8b")}}

    lines = prune_sst2.table_lines(args, [row(0, 0.80, 0.84), row(1, 0.78, 0.80)])
    assert "Dense fine-tuned dev accuracy 0.8200 ± 0.0283" in lines[0]
    line = next(x for x in lines if x.startswith("| heads+ffn+layers"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["heads+ffn+layers", "0.5", "2"]
    assert cells[7] == "0.7900 ± 0.0141"  # the compact models
    assert cells[8] == "-3.00 ± 1.41"  # each against its own dense model: -4 and -2 points
    assert cells[9] == "0.50 (2.00x; 0.40–0.60)"
    assert lines[-2:] == ["    python -m x 0", "    python -m x 1"]


# -- reach_target --------------------------------------------------------------------------


@pytest.mark.parametrize("expected, reached", [
    ([0.1, 0.3, 0.495, 0.505, 0.5], 3),  # within 0.01 from the third step on
    ([0.5, 0.5, 0.5], 1),
    ([0.1, 0.5, 0.45], None),  # left the target again at the end
    ([0.1, 0.5, 0.52, 0.5], 4),
    ([], None)])
def test_reached_step_is_the_first_step_within_tolerance_to_the_end(expected, reached):
    steps = list(range(1, len(expected) + 1))
    assert reach_target.reached_step(steps, expected, 0.5) == reached


def test_reach_target_runs_only_the_cells_not_done():
    args = reach_target.parse_args(["--structures", "heads+ffn,rank", "--targets", "0.3,0.5",
                                    "--init_masks", "none,fisher"])
    done = [{"task": "sst2", "structure": "rank", "target": 0.5, "init_mask": "fisher"},
            {"task": "rte", "structure": "rank", "target": 0.3}]  # an old row: gates open
    todo = reach_target.cells(args, "sst2", done)
    assert len(todo) == 7 and ("rank", 0.5, "fisher") not in todo
    assert len(reach_target.cells(args, "rte", done)) == 7


def test_reach_target_cells_are_the_apps_defaults_without_fine_tuning():
    args = reach_target.parse_args(["--data", "DATA"])
    command = reach_target.cell_command(args, "DATA/glue", "mrpc", "T/model.keras", "rank",
                                        0.7, "none", "OUT/mrpc/rank_0.7_none")
    expected = {"--task": "mrpc", "--structure": "rank", "--target_sparsity": "0.7",
                "--init_mask": "none", "--num_train_epochs": "3",
                "--max_train_examples": "1067", "--max_seq_length": "128", "--seed": "0",
                "--final_epochs": "0", "--output_dir": "OUT/mrpc/rank_0.7_none"}
    assert {name: flag(command, name) for name in expected} == expected
    for default in ("--schedule", "--constraint", "--learning_rate", "--eval_mask"):
        assert default not in command


def test_reach_target_reads_a_calibrated_cell_from_the_run_directory(tmp_path):
    trace = "step,expected_sparsity,target_sparsity\n" + "".join(
        f"{step},{value},0.5\n" for step, value in enumerate(
            [0.0, 0.2, 0.45, 0.495, 0.502, 0.5], start=1))
    run = write_run(tmp_path / "cell", {
        "prune/eval_results.json": {"global_step": 6, "expected_sparsity": 0.5,
                                    "mask_shift_all_gates": -0.5,
                                    "mask_shift_unit_gates": 1.25,
                                    "sparsity_before_calibration": 0.43,
                                    "train_time": 30.0, "eval_score": 0.75},
        "prune/trace.csv": trace,
        "hparams.json": {"target_sparsity_warmup": None},
        "factorize/init_mask.json": {"kept_heads": [1], "kept_units": [2], "seconds": 12.0},
        "compact/info.json": {"dense_sparsity": 0.501},
        "finetune/eval_results.json": {"eval_score": 0.83}})
    cell = reach_target.cell_figures(run, 0.5)
    assert cell == {"steps": 6, "reached_step": 4, "target_warmup": 2, "expected": 0.5,
                    "realized": 0.501, "mask_shift": [-0.5, 1.25],
                    "realized_uncalibrated": 0.43, "seconds": 30.0, "fisher_seconds": 12.0,
                    "score": 0.75, "dense_score": 0.83}
    # A run that needed no calibration, with all gates open and its own target warmup.
    os.remove(os.path.join(run, "factorize", "init_mask.json"))
    write_run(run, {"prune/eval_results.json": {"global_step": 6, "expected_sparsity": 0.5,
                                                "train_time": 30.0, "eval_score": 0.75},
                    "hparams.json": {"target_sparsity_warmup": 5}})
    cell = reach_target.cell_figures(run, 0.5)
    assert (cell["mask_shift"], cell["realized_uncalibrated"], cell["fisher_seconds"],
            cell["target_warmup"]) == ([0.0, 0.0], None, None, 5)


def test_reach_target_table_counts_the_cells_within_the_promise():
    args = reach_target.parse_args([])
    base = {"task": "sst2", "structure": "heads+ffn", "target": 0.5, "steps": 102,
            "target_warmup": 34, "expected": 0.5, "realized_uncalibrated": None,
            "score": 0.8, "dense_score": 0.84, "seconds": 100.0, "fisher_seconds": None}
    rows = [dict(base, reached_step=40, realized=0.51),
            dict(base, reached_step=None, realized=0.53, init_mask="fisher",
                 realized_uncalibrated=0.6, fisher_seconds=20.0)]
    lines = reach_target.table_lines(args, rows)
    assert "| sst2 | heads+ffn | none | 0.5 | 102 | 40 (34) | 0.500 | 0.510 | +0.010 | – | " \
           "0.8000 (0.8400) | 100 |" in lines
    assert "| sst2 | heads+ffn | fisher | 0.5 | 102 | never (34) | 0.500 | 0.530 | +0.030 | " \
           "0.600 | 0.8000 (0.8400) | 100 + 20 Fisher |" in lines
    assert "1 of 2 cells realized within 0.02 of the target." in lines


def test_reach_target_takes_one_dense_model_for_one_task_only(capsys):
    with pytest.raises(SystemExit):
        reach_target.parse_args(["--dense_model", "d.keras", "--tasks", "sst2,rte"])
    assert "single --tasks" in capsys.readouterr().err


# -- target_speedup ------------------------------------------------------------------------


def test_target_speedup_rows_pass_the_table_and_the_timing_batch():
    args = target_speedup.parse_args(["--data", "DATA", "--batch_size", "4"])
    command = target_speedup.prune_command(args, "DATA/glue", "T/model.keras", "OUT/s2",
                                           "TABLE.json", "--target_speedup", "2")
    expected = {"--target_speedup": "2", "--latency_table": "TABLE.json",
                "--eval_batch_size": "4", "--init_mask": "auto", "--final_epochs": "0",
                "--structure": "heads+ffn+layers", "--max_seq_length": "128"}
    assert {name: flag(command, name) for name in expected} == expected
    first = target_speedup.prune_command(args, "DATA/glue", "T/model.keras", "OUT/s2", None,
                                         "--target_speedup", "2")
    assert "--latency_table" not in first  # the first row measures it


def test_target_speedup_reads_a_row_and_a_familys_members(tmp_path):
    run = write_run(tmp_path / "row", {
        "report.json": report(accuracy=0.75, fixed=(2.1, 2.0, 2.2)),
        "prune/eval_results.json": {"expected_sparsity": 0.5, "train_time": 60.0,
                                    "global_step": 102},
        "compact/info.json": {"predicted_speedup": 2.01, "pruned_total_params": 16_500_000,
                              "total_params": 22_713_986}})
    row = target_speedup.row_figures(run, 2.0, (1.9, 1.8, 2.0))
    assert row == {"requested": 2.0, "expected": pytest.approx(2.0), "predicted": 2.01,
                   "measured": [2.1, 2.0, 2.2], "measured_b1": [1.9, 1.8, 2.0],
                   "params": 16_500_000, "dense_params": 22_713_986, "accuracy": 0.75,
                   "dense_accuracy": 0.84, "seconds": 60.0, "steps": 102}
    family = write_run(tmp_path / "family", {
        "compact/1/info.json": {"predicted_speedup": 1.5, "pruned_total_params": 18_000_000,
                                "total_params": 22_713_986},
        "finetune_compact/1/eval_results.json": {"eval_accuracy": 0.76}})
    member = target_speedup.member_figures(
        family, {"member": 1, "speedup": 1.5, "target": 1 / 3, "snapshot_step": 43},
        {8: (1.48, 1.46, 1.63), 1: (1.58, 1.42, 1.59)})
    assert member == {"requested": 1.5, "snapshot_step": 43, "predicted": 1.5,
                      "measured": [1.48, 1.46, 1.63], "measured_b1": [1.58, 1.42, 1.59],
                      "params": 18_000_000, "dense_params": 22_713_986, "accuracy": 0.76}
    assert target_speedup.member_figures(
        family, {"member": 2, "speedup": 3.0, "target": 2 / 3, "snapshot_step": None},
        None) == {"requested": 3.0, "snapshot_step": None}


def latency_table():
    from keras_flop import LatencyTable

    model = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
             "num_attention_heads": 12, "intermediate_size": 1536,
             "max_position_embeddings": 512, "type_vocab_size": 2}
    table = LatencyTable(model, 8, 128, list(range(13)), [0.004 * h for h in range(13)],
                         [0, 1536], [0.0, 0.04], 0.02, info={"measured_dense_seconds": 0.55})
    return table.to_dict()


def test_target_speedup_tables_of_rows_and_of_a_family():
    args = target_speedup.parse_args([])
    base = {"predicted": 2.0, "measured_b1": [2.0, 1.9, 2.1], "params": 16_000_000,
            "dense_params": 22_000_000, "accuracy": 0.74, "dense_accuracy": 0.84,
            "steps": 102}
    rows = [dict(base, requested=2.0, expected=2.0, measured=[2.1, 2.0, 2.2], seconds=60.0),
            dict(base, requested=3.0, expected=3.0, measured=[3.5, 3.4, 3.6], seconds=90.0)]
    lines = target_speedup.table_lines(args, latency_table(), rows)
    assert "Latency table at batch 8, sequence 128 (dense 548.0 ms per batch as the table " \
           "predicts it, 550.0 ms measured)" in lines[0]
    assert "| 2.00x | 2.00x | 2.00x | 2.10x (2.00–2.20) | +5.0% | 2.00x (1.90–2.10) | " \
           "16,000,000 (0.73) | 0.7400 | 60 |" in lines
    assert "1 of 2 measured within 10% of the requested speedup at batch 8." in lines
    family = {"seconds": 112.5, "steps": 153, "command": "python -m apps.prune ...",
              "members": [dict(base, requested=2.0, snapshot_step=76,
                               measured=[2.0, 1.9, 2.1]),
                          {"requested": 3.0, "snapshot_step": None}]}
    lines = target_speedup.family_lines(args, rows, family)
    assert lines[0].startswith("Family: one run of 153 steps for speedups 2,3 (1.5x a single "
                               "run's 102): 112 s, 1.50x the mean single-target run's 75 s.")
    assert "| 2.00x | 76 | 2.00x | 2.00x (1.90–2.10) | +0.0% | 2.00x (1.90–2.10) | " \
           "16,000,000 (0.73) | 0.7400 |" in lines
    assert "| 3.00x | never | – | – | – | – | – | – |" in lines


# -- input_lengths -------------------------------------------------------------------------


def test_input_lengths_ways_are_app_commands_one_epoch_each():
    args = input_lengths.parse_args(["--data", "DATA", "--max_eval_examples", "200"])
    fixed = input_lengths.way_command(args, "rte", True, "OUT/rte/fixed")
    buckets = input_lengths.way_command(args, "rte", False, "OUT/rte/buckets")
    assert "--pad_to_max_length" in fixed and "--pad_to_max_length" not in buckets
    expected = {"--task": "rte", "--init_checkpoint": os.path.join("DATA", support.CHECKPOINT),
                "--finetune_epochs": "1", "--num_train_epochs": "1",
                "--finetune_learning_rate": "5e-05", "--max_eval_examples": "200",
                "--structure": "heads+ffn", "--learning_rate": "3e-5",
                "--distillation_weight": "1", "--final_epochs": "0"}
    assert {name: flag(fixed, name) for name in expected} == expected
    smoke = input_lengths.way_command(input_lengths.parse_args(["--smoke"]), "sst2", True,
                                      "OUT/sst2/fixed")
    # The toy task: no --task, its own fine-tuning rate, small batches.
    for absent in ("--task", "--init_checkpoint", "--finetune_learning_rate"):
        assert absent not in smoke
    assert flag(smoke, "--train_batch_size") == "16" and flag(smoke, "--max_seq_length") == "32"


def test_input_lengths_reads_epochs_and_padded_lengths_from_the_run(tmp_path):
    from apps import toy_task

    settings = {"data_dir": None, "task": "sst2", "max_seq_length": 32,
                "max_train_examples": 40, "seed": 0, "train_batch_size": 8,
                "bucket_boundaries": None}
    rows = {}
    for padding in (True, False):
        run = str(tmp_path / input_lengths.way_name(padding))
        _, vocab = toy_task.write_toy_glue(os.path.join(run, "data"), train=60, dev=8, test=4)
        write_run(run, {
            "hparams.json": dict(settings, pad_to_max_length=padding),
            "finetune/vocab.txt": open(vocab, encoding="utf-8").read(),
            "finetune/eval_results.json": {"train_time": 20.0 if padding else 8.0,
                                           "eval_score": 0.6},
            "prune/eval_results.json": {"train_time": 30.0 if padding else 10.0,
                                        "eval_score": 0.55}})
        rows[padding] = input_lengths.way_figures(run, "sst2", padding)
    assert rows[True]["examples"] == rows[False]["examples"] == 40
    assert rows[True]["padded_length"] == 32.0
    assert rows[False]["padded_length"] < 32.0
    assert (rows[False]["finetune_s"], rows[False]["prune_s"], rows[False]["batching"]) == \
        (8.0, 10.0, "buckets")
    lines = input_lengths.table_lines(input_lengths.parse_args([]), [rows[True], rows[False]])
    fixed, buckets = (next(x for x in lines if x.startswith(f"| sst2 | {way} |"))
                      for way in ("fixed", "buckets"))
    assert fixed.endswith("| 32.0 | 20 | 1.00x | 0.6000 | 30 | 1.00x | 0.5500 |")
    assert buckets.endswith("| 8 | 2.50x | 0.6000 | 10 | 3.00x | 0.5500 |")


# -- the smoke runs ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("benchmark", [prune_sst2, reach_target, target_speedup,
                                       input_lengths])
def test_smoke_run(benchmark, tmp_path, capsys):
    """Each benchmark end to end on the toy task: its app commands run and its table prints
    (a few minutes each on two cores)."""
    output = tmp_path / "out"
    benchmark.main(["--smoke", "--output_dir", str(output)])
    printed = capsys.readouterr().out
    assert "Commands (one per" in printed and "$ " + shlex.quote(sys.executable) in printed
    assert (output / "results.json").exists()


# -- table_lengths -------------------------------------------------------------------------

def tiny_table(length):
    """A hand-made latency table of a 2-layer model (2 heads, 8 FFN units) at `length`."""
    from keras_flop.latency.table import LatencyTable

    return LatencyTable({"hidden_size": 4, "num_attention_heads": 2, "intermediate_size": 8,
                         "num_hidden_layers": 2}, batch_size=8, seq_length=length,
                        attention_heads=[0, 1, 2], attention_seconds=[0.0, 3.0, 4.0],
                        ffn_units=[0, 4, 8], ffn_seconds=[0.0, 2.0, 6.0], fixed_seconds=1.0)


def test_table_lengths_splits_the_compact_model_into_its_blocks():
    from keras_flop import BertConfig

    config = BertConfig(vocab_size=30, hidden_size=4, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=8)
    shapes = table_lengths.layer_shapes(config, [[2, 3], [0, 8]])
    assert shapes == {"dense": [(2, 8), (2, 8)], "compact": [(2, 3), (0, 8)],
                      "fixed": [(0, 0), (0, 0)], "compact attention": [(2, 0), (0, 0)],
                      "compact FFN": [(0, 3), (0, 8)]}
    assert set(shapes) == set(table_lengths.MODELS)


def test_table_lengths_sets_each_prediction_beside_the_median_round():
    shapes = {"dense": [(2, 8)] * 2, "compact": [(2, 4), (1, 0)], "fixed": [(0, 0)] * 2,
              "compact attention": [(2, 0), (1, 0)], "compact FFN": [(0, 4), (0, 0)]}
    # Seconds of each round over 2 batches; the table predicts dense 21, compact 10 s.
    rounds = {"dense": [42.0, 40.0, 44.0], "compact": [24.0, 20.0, 22.0],
              "fixed": [2.0, 2.0, 2.0], "compact attention": [8.0, 8.0, 8.0],
              "compact FFN": [10.0, 10.0, 10.0]}
    rows, speedup = table_lengths.length_rows(16, tiny_table(16), shapes, rounds, batches=2)
    by_model = {row["model"]: row for row in rows}
    assert by_model["dense"]["predicted_ms"] == pytest.approx(21e3)
    assert by_model["dense"]["measured_ms"] == pytest.approx(21e3)
    assert by_model["compact"]["predicted_ms"] == pytest.approx(10e3)
    assert by_model["compact"]["measured_over_predicted"] == pytest.approx(1.1)
    assert by_model["compact attention"]["predicted_ms"] == pytest.approx(8e3)
    assert by_model["compact FFN"]["predicted_ms"] == pytest.approx(3e3)
    assert by_model["fixed"]["measured_over_predicted"] == pytest.approx(1.0)
    assert speedup["predicted"] == pytest.approx(2.1)
    # The measured speedup is the ratio within each round: 42/24, 40/20, 44/22.
    assert speedup["measured"] == pytest.approx((2.0, 1.75, 2.0))
    lines = table_lengths.table_lines(rows, [speedup], {16: 1.0}, (1.9, 1.8, 2.0))
    assert "| 16 | compact | 10000.00 | 11000.00 | 1.100 |" in lines
    assert "| the tables' prediction | 2.10x |" in lines
    assert "| the times measured here | 1.91x |" in lines
    assert "| the dev batches, timed | 1.90x (1.80–2.00) |" in lines


def test_table_lengths_mixes_lengths_by_their_weights():
    rows = [{"length": n, "model": m, "predicted_ms": p, "measured_ms": q}
            for n, m, p, q in ((8, "dense", 4.0, 4.0), (8, "compact", 2.0, 3.0),
                               (64, "dense", 20.0, 20.0), (64, "compact", 10.0, 10.0))]
    assert table_lengths.mixed_speedups(rows, {8: 0.5, 64: 0.5}) == pytest.approx(
        (2.0, 24.0 / 13.0))
    # All the weight on the short length: there the compact model measured 3 ms, not 2.
    assert table_lengths.mixed_speedups(rows, {8: 1.0}) == pytest.approx((2.0, 4.0 / 3.0))


def test_table_lengths_needs_a_finished_run_and_lengths_in_range(tmp_path, capsys):
    with pytest.raises(SystemExit):
        table_lengths.parse_args(["--run", str(tmp_path)])
    assert "no finetune/model.keras" in capsys.readouterr().err
    run = write_run(tmp_path, {"finetune/model.keras": "", "finetune_compact/model.keras": ""})
    for bad in ("0,16", "16,256", "x"):
        with pytest.raises(SystemExit):
            table_lengths.parse_args(["--run", run, "--lengths", bad])
        assert "--lengths needs integers in 1..128" in capsys.readouterr().err
    assert table_lengths.parse_args(["--run", run, "--lengths", "64,16,64"]).lengths == [16, 64]


# -- last_layer_heads ----------------------------------------------------------------------

def test_last_layer_heads_checks_its_lists_and_files(tmp_path, capsys):
    teacher = write_run(tmp_path, {"t/model.keras": "", "t/vocab.txt": "", "table.json": "{}"})
    base = ["--teacher", f"{teacher}/t/model.keras", "--latency_table", f"{teacher}/table.json"]
    args = last_layer_heads.parse_args(base + ["--heads", "0,2", "--tune", "on"])
    assert (args.heads, args.tune, args.target_speedups) == ([0, 2], [True], [2.0, 3.0])
    for bad, message in ((["--heads", "x"], "--heads needs comma-separated numbers"),
                         (["--tune", "of"], "--tune takes off, on or off,on")):
        with pytest.raises(SystemExit):
            last_layer_heads.parse_args(base + bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        last_layer_heads.parse_args(["--teacher", "missing.keras", "--latency_table", "t"])
    assert "missing.keras does not exist" in capsys.readouterr().err


def test_a_model_that_answers_every_sentence_alike_has_no_logit_spread():
    import keras
    import numpy as np

    inputs = keras.Input((3,))
    constant = keras.Model(inputs, keras.ops.zeros_like(inputs[:, :2]) + 1.5)
    varying = keras.Model(inputs, inputs[:, :2] * 2.0)
    x = np.array([[0.0, 1.0, 0.0], [2.0, 3.0, 0.0]], "float32")
    assert last_layer_heads.logit_spread(constant, x) == 0.0
    assert last_layer_heads.logit_spread(varying, x) == pytest.approx(2.0)  # std 2 of each
