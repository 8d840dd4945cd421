"""benchmarks/frontier.py, the README's headline: its rows, CSV and rerun logic on toy rows
(no training and no timing: the runs are hand-made directories)."""

import argparse
import csv
import json
import os
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import frontier  # noqa: E402


def _row(task="sst2", method="lagrangian", target=2.0, metric=0.9, **extra):
    return {"task": task, "method": method, "structure": "heads+ffn+layers", "target": target,
            "speedup_b8": 2.1, "speedup_b1": 1.9, "metric": "accuracy", "dense_metric": 0.91,
            "compact_metric": metric, "delta_points": 100 * (metric - 0.91),
            "prune_minutes": 1.5, **extra}


def test_rows_parse_with_errors_that_name_the_kinds():
    assert frontier.parse_rows("lagrangian:1.5,2;fisher:3") == [
        ("lagrangian", 1.5), ("lagrangian", 2.0), ("fisher", 3.0)]
    assert frontier.parse_rows(" fisher+finetune:2 ; ") == [("fisher+finetune", 2.0)]
    for text, message in (("magic:2", "KIND one of lagrangian, fisher"),
                          ("fisher", "KIND:T1,T2"), ("fisher:two", "targets must be numbers"),
                          (";", "no rows given")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            frontier.parse_rows(text)


def test_row_kinds_and_keys():
    assert frontier.retraining_free_step("fisher")
    assert frontier.retraining_free_step("fisher+finetune")
    assert not frontier.retraining_free_step("lagrangian+fisher")
    # A row read back from the CSV has its target as text: the same key as the float's.
    assert frontier.row_key(_row(target=2.0)) == frontier.row_key(_row(target="2"))
    assert frontier.row_key(_row(target=2.0)) != frontier.row_key(_row(target=2.5))


def test_row_command_is_one_app_command_with_the_shared_table():
    args = SimpleNamespace(task="sst2", data="/data", seed=3, output_dir="/out",
                           prune_flags="--max_train_examples 64 --final_epochs 2")
    command = frontier.row_command(args, "/t/model.keras", "fisher+finetune", 2.5, "/out/r",
                                   "/out/table.json")
    assert command[1:3] == ["-m", "apps.prune"]
    text = " ".join(command)
    assert "--dense_model /t/model.keras" in text and "--target_speedup 2.5" in text
    assert "--latency_table /out/table.json" in text and "--seed 3" in text
    assert "--teacher_outputs /out/sst2/teacher_outputs.npz" in text
    # --prune_flags come last: their --final_epochs wins over the kind's.
    epochs = [command[i + 1] for i, flag in enumerate(command) if flag == "--final_epochs"]
    assert epochs == ["1", "2"] and command[-2:] == ["--final_epochs", "2"]
    assert "--latency_table" not in frontier.row_command(args, "/t/m.keras", "lagrangian", 2,
                                                         "/out/r", None)


def test_csv_keeps_the_rows_it_does_not_replace(tmp_path):
    path = tmp_path / "frontier.csv"
    frontier.write_csv(path, [_row(target=2.0, metric=0.90), _row(target=3.0, metric=0.88),
                              _row(task="cola", target=2.0, metric=0.5)])
    frontier.write_csv(path, [_row(target=2.0, metric=0.895, prune_minutes=None)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["task"], r["target"], r["compact_metric"]) for r in rows] == [
        ("sst2", "3", "0.8800"), ("cola", "2", "0.5000"), ("sst2", "2", "0.8950")]
    assert list(rows[0]) == list(frontier.COLUMNS)
    assert rows[-1]["prune_minutes"] == ""  # unknown, not "None"


def test_recorded_rows_and_saved_results(tmp_path):
    summary = tmp_path / "sst2.json"
    summary.write_text(json.dumps([_row(target=2.0, command="python -m apps.prune ..."),
                                   _row(target=3.0)]))
    args = SimpleNamespace(task="sst2", rows=[("lagrangian", 2.0)], output_dir=str(tmp_path))
    assert frontier.recorded_rows(args, str(summary), "--rerun")[0]["target"] == 2.0
    for rows, missing in (([("lagrangian", 3.0)], "3"), ([("fisher", 2.0)], "fisher:2")):
        args.rows = rows
        with pytest.raises(SystemExit, match=f"--rerun: no recorded row .*{missing}"):
            frontier.recorded_rows(args, str(summary), "--rerun")
    frontier.save_results(args, "retime", [{"method": "lagrangian", "target": 2.0, "b8": 1}])
    frontier.save_results(args, "retime", [{"method": "fisher", "target": 2.0, "b8": 2},
                                           {"method": "lagrangian", "target": 2.0, "b8": 3}])
    kept = json.loads((tmp_path / "sst2_retime.json").read_text())
    assert sorted((r["method"], r["b8"]) for r in kept) == [("fisher", 2), ("lagrangian", 3)]


def test_rerun_rebuilds_from_the_recorded_command_and_compares(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "sst2" / "lagrangian_2"
    command = f"python -m apps.prune --output_dir {directory} --target_speedup 2"
    summary = tmp_path / "sst2.json"
    summary.write_text(json.dumps([_row(metric=0.9, command=command)]))
    ran = []

    def fake_run(command, log):  # the rebuilt row, 0.3 points below the recorded one
        ran.append((command, log))
        out = command[command.index("--output_dir") + 1]
        os.makedirs(out)
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump({"compact": {"results": {"eval_accuracy": 0.897}}}, f)

    monkeypatch.setattr(frontier, "run", fake_run)
    monkeypatch.setattr(frontier, "machine_header", lambda: "machine")
    args = SimpleNamespace(task="sst2", rows=[("lagrangian", 2.0)], output_dir=str(tmp_path))
    results = frontier.rerun(args, str(summary))
    (command_run, log), = ran
    assert command_run[0] == sys.executable and command_run[-2:] == ["--target_speedup", "2"]
    # A row recorded before --target_start auto ran its warmup from 0, and before
    # --last_layer_heads its Fisher search kept no head by rule: its rerun too.
    directory.mkdir(parents=True)
    for recorded, start, heads in (({}, "zero", "0"),
                                   ({"target_start": "gates", "last_layer_heads": 1}, "gates",
                                    "1")):
        (directory / "hparams.json").write_text(json.dumps(recorded))
        shutil.rmtree(f"{directory}_rerun")
        frontier.rerun(args, str(summary))
        assert ran[-1][0][-6:] == ["--target_speedup", "2", "--target_start", start,
                                   "--last_layer_heads", heads]
    assert command_run[command_run.index("--output_dir") + 1] == f"{directory}_rerun"
    assert log == f"{directory}_rerun.log"
    assert results[0]["difference_points"] == pytest.approx(-0.3)
    assert "| lagrangian | 2 | 0.9000 | 0.8970 | -0.30 | no |" in capsys.readouterr().out
    assert json.loads((tmp_path / "sst2_rerun.json").read_text())[0]["rerun"] == 0.897


def test_row_figures_read_the_run_directory(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "fisher").mkdir(parents=True)
    (run / "factorize").mkdir()
    (run / "report.json").write_text(json.dumps({
        "structure": "heads+ffn", "speedup_fixed": [2.2, 2.0, 2.4],
        "dense": {"results": {"eval_accuracy": 0.91}, "parameters": 1000},
        "compact": {"results": {"eval_accuracy": 0.9}, "parameters": 500}}))
    (run / "fisher" / "eval_results.json").write_text(json.dumps({"pruning_time": 30.0}))
    monkeypatch.setattr(frontier, "timed_speedups",
                        lambda args, directory, data, sizes: {1: (1.8, 1.7, 1.9)})
    data = SimpleNamespace(task=SimpleNamespace(main_metric="accuracy"))
    args = SimpleNamespace(task="sst2", output_dir=str(tmp_path))
    row = frontier.row_figures(args, "fisher", 2.0, str(run), data)
    assert row["speedup_b8"] == 2.2 and row["speedup_b8_range"] == [2.0, 2.4]
    assert row["speedup_b1"] == 1.8 and row["delta_points"] == pytest.approx(-1.0)
    assert row["prune_minutes"] == pytest.approx(0.5)
    # A Lagrangian row started from the Fisher mask counts the mask's search as pruning.
    (run / "prune").mkdir()
    (run / "prune" / "eval_results.json").write_text(json.dumps({"train_time": 60.0}))
    (run / "factorize" / "init_mask.json").write_text(json.dumps({"seconds": 30.0}))
    row = frontier.row_figures(args, "lagrangian+fisher", 2.0, str(run), data)
    assert row["prune_minutes"] == pytest.approx(1.5)


def test_baseline_rows_parse_and_their_commands(monkeypatch):
    import baselines

    assert frontier.parse_rows("lagrangian+fisher:2;minilm-l3;minilm-l3+distill;"
                               "dropped+distill:2,3") == [
        ("lagrangian+fisher", 2.0), ("minilm-l3", None), ("minilm-l3+distill", None),
        ("dropped+distill", 2.0), ("dropped+distill", 3.0)]
    for text, message in (("minilm-l3:2", "minilm-l3 takes no target"),
                          ("dropped+distill", "KIND:T1,T2")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            frontier.parse_rows(text)
    assert [baselines.kept_layers(6, s) for s in (1, 1.5, 2, 3, 100)] == [6, 4, 3, 2, 1]
    args = SimpleNamespace(task="sst2", data="/data", seed=0, output_dir="/out",
                           learning_rates="1e-4", teacher_flags="--num_train_epochs 1",
                           small_checkpoint=baselines.SMALL_CHECKPOINT,
                           prune_flags="--pruning_steps 500 --init_mask=fisher --final_epochs 2 "
                                       "--final_distillation_weight 1")
    # The teacher's recipe, from the 3-layer encoder.
    text = " ".join(baselines.command(args, "/t/m.keras", "minilm-l3", None, "/out/sst2/l3"))
    assert "-m apps.glue_finetune" in text and "--learning_rates 1e-4" in text
    assert f"--init_checkpoint /data/{baselines.SMALL_CHECKPOINT}" in text
    assert text.endswith("--seed 0 --num_train_epochs 1")
    # The same final fine-tuning as the pruned rows, without the pruning steps' flags.
    command = baselines.command(args, "/t/m.keras", "minilm-l3+distill", None, "/out/r")
    assert command[1:3] == ["-m", "apps.prune"]
    assert command[-4:] == ["--final_epochs", "2", "--final_distillation_weight", "1"]
    assert "--pruning_steps" not in command and "--init_mask=fisher" not in command
    assert f"--student_checkpoint /data/{baselines.SMALL_CHECKPOINT}" in " ".join(command)
    assert "--teacher_outputs /out/sst2/teacher_outputs.npz" in " ".join(command)
    monkeypatch.setattr(baselines, "teacher_layers", lambda teacher: 6)
    command = baselines.command(args, "/t/m.keras", "dropped+distill", 2.0, "/out/r")
    assert "--method drop_layers --keep_layers 3" in " ".join(command)


def test_baseline_rows_in_the_csv_table_and_timing(tmp_path, monkeypatch, capsys):
    import baselines

    l3 = _row(method="minilm-l3", target=None, metric=0.85, prune_minutes=None,
              structure="model")
    path = tmp_path / "frontier.csv"
    frontier.write_csv(path, [_row(method="lagrangian+fisher"), l3])
    frontier.write_csv(path, [dict(l3, compact_metric=0.86)])  # replaces the read-back row
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["target"], r["compact_metric"]) for r in rows] == [
        ("lagrangian+fisher", "2", "0.9000"), ("minilm-l3", "", "0.8600")]
    args = SimpleNamespace(task="sst2", output_dir=str(tmp_path), timed_examples=4)
    assert frontier.row_directory(args, "minilm-l3", None) == str(tmp_path / "sst2" / "minilm-l3")
    assert frontier.row_directory(args, "dropped+distill", 2.0).endswith("dropped+distill_2")

    # A minilm-l3 row: apps.glue_finetune's pick, timed against the teacher.
    teacher = tmp_path / "teacher" / "sst2" / "lr_0.0001"
    teacher.mkdir(parents=True)
    (teacher / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.91}))
    run = tmp_path / "sst2" / "minilm-l3"
    for rate, dev, selection in ((5e-5, 0.88, 0.80), (1e-4, 0.86, 0.90)):
        (run / "sst2" / f"lr_{rate:g}").mkdir(parents=True)
        (run / "sst2" / f"lr_{rate:g}" / "eval_results.json").write_text(
            json.dumps({"eval_accuracy": dev}))
    (run / "results.json").write_text(json.dumps([
        {"task": "sst2", "learning_rate": rate, "eval_score": dev,
         "selection_eval_score": selection}
        for rate, dev, selection in ((5e-5, 0.88, 0.80), (1e-4, 0.86, 0.90))]))
    loaded = []

    def fake_load(paths):
        loaded.append(list(paths))
        return [SimpleNamespace(count_params=lambda n=n: n) for n in (1000, 700)]

    monkeypatch.setattr(baselines, "load_models", fake_load)
    monkeypatch.setattr(baselines, "measured_speedups",
                        lambda dense, model, data, count, sizes, padding="fixed": {
                            8: (2.4, 2.3, 2.5) if padding == "fixed" else (1.9, 1.8, 2.0),
                            1: (2.9, 2.8, 3.0)})
    data = SimpleNamespace(task=SimpleNamespace(main_metric="accuracy"))
    row = baselines.fine_tuned_figures(args, "minilm-l3", None, str(run),
                                       str(teacher / "model.keras"), data)
    # The held-out selection split picks the learning rate, not dev.
    assert loaded == [[str(teacher / "model.keras"),
                       str(run / "sst2" / "lr_0.0001" / "model.keras")]]
    assert row["compact_metric"] == 0.86 and row["delta_points"] == pytest.approx(-5.0)
    assert row["speedup_b8"] == 2.4 and row["speedup_b1_range"] == [2.8, 3.0]
    assert row["parameters"] == 700 and row["prune_minutes"] is None
    assert row["speedup_b8_real"] == 1.9 and row["total_minutes"] is None  # no wall on record
    monkeypatch.setattr(frontier, "machine_header", lambda: "machine")
    frontier.print_table(args, [dict(_row(method="lagrangian+fisher"), parameters=800,
                                     dense_parameters=1000, speedup_b8_range=[2.0, 2.2],
                                     speedup_b1_range=[1.8, 2.0]), row])
    out = capsys.readouterr().out
    assert "| minilm-l3 | – | 700 (0.70) | 2.40x (2.30–2.50) | 2.90x (2.80–3.00) | 0.8600 | " \
           "-5.00 | – |" in out
    os.remove(teacher / "eval_results.json")
    with pytest.raises(SystemExit, match="pass a teacher fine-tuned by apps.glue_finetune"):
        baselines.fine_tuned_figures(args, "minilm-l3", None, str(run),
                                     str(teacher / "model.keras"), data)


def _fake_row_run(metric_by_seed):
    """A stand-in for `support.run` that leaves what apps.prune leaves: the report (dev metric
    by the command's seed) and, for the first row, the latency table and teacher outputs."""
    import numpy as np

    def fake_run(command, log):
        out = command[command.index("--output_dir") + 1]
        seed = int(command[command.index("--seed") + 1])
        os.makedirs(os.path.join(out, "factorize"), exist_ok=True)
        os.makedirs(os.path.join(out, "prune"), exist_ok=True)
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump({"structure": "heads+ffn+layers", "speedup_fixed": [2.0 + seed / 10, 1.9,
                                                                          2.3],
                       "speedup_bucketed": [1.7, 1.6, 1.8],
                       "dense": {"results": {"eval_accuracy": 0.90 + seed / 100},
                                 "parameters": 1000},
                       "compact": {"results": {"eval_accuracy": metric_by_seed[seed]},
                                   "parameters": 500}}, f)
        with open(os.path.join(out, "prune", "eval_results.json"), "w") as f:
            json.dump({"train_time": 60.0}, f)
        if "--latency_table" not in command:
            with open(os.path.join(out, "factorize", "latency_table.json"), "w") as f:
                json.dump({"info": {"measurement_seconds": 120.0}}, f)
        outputs = command[command.index("--teacher_outputs") + 1]
        if not os.path.exists(outputs):
            with open(outputs, "wb") as f:
                np.savez(f, outputs=np.zeros((2, 2)), fingerprint=np.array("x"),
                         seconds=np.array(60.0))
    return fake_run


def test_seeds_prune_their_own_teachers_into_mean_and_std_rows(tmp_path, monkeypatch, capsys):
    import seed_rows
    from keras_flop.training import data as training_data

    teachers = []

    def fake_teacher(args):
        teachers.append((args.seed, args.output_dir))
        path = os.path.join(args.output_dir, "teacher", "model.keras")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    monkeypatch.setattr(frontier, "teacher_model", fake_teacher)
    monkeypatch.setattr(training_data, "load_task_data", lambda *a, **k: SimpleNamespace(
        task=SimpleNamespace(main_metric="accuracy")))
    monkeypatch.setattr(frontier, "run", _fake_row_run({0: 0.89, 1: 0.88, 2: 0.91}))
    monkeypatch.setattr(frontier, "timed_speedups",
                        lambda args, directory, data, sizes: {1: (1.8, 1.7, 1.9)})
    monkeypatch.setattr(frontier, "machine_header", lambda: "machine")
    out = tmp_path / "frontier"
    argv = ["--data", str(tmp_path), "--rows", "lagrangian+fisher:2,3", "--seeds", "0,1,2",
            "--output_dir", str(out)]
    frontier.main(argv)
    # Each seed fine-tunes its own teacher in its own directory.
    assert teachers == [(s, str(out / f"seed{s}")) for s in (0, 1, 2)]
    with open(out / "frontier.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(frontier.COLUMNS) and len(rows) == 2
    row = rows[0]
    assert (row["method"], row["target"], row["seeds"]) == ("lagrangian+fisher", "2", "0,1,2")
    # Δ against each seed's own teacher: -1, -3, -1 points.
    assert float(row["delta_mean"]) == pytest.approx(-5 / 3, abs=1e-4)
    assert float(row["delta_std"]) == pytest.approx(np.std([-1, -3, -1], ddof=1), abs=1e-4)
    assert float(row["compact_mean"]) == pytest.approx(0.8933, abs=1e-4)
    assert float(row["speedup_b8"]) == pytest.approx(2.1) and row["speedup_b8_real"] == "1.7000"
    # The first row made the table and the outputs; the second is charged for both.
    made = json.loads((out / "seed0" / "sst2" / "lagrangian+fisher_2.wall.json").read_text())
    assert made["made"] == ["latency_table", "teacher_outputs"]
    second = json.loads((out / "seed0" / "sst2" / "lagrangian+fisher_3.wall.json").read_text())
    assert second["made"] == []
    # The stand-in runs take no time: the second row's minutes are the table's 2 and the
    # outputs' 1.
    assert [float(r["total_minutes"]) for r in rows] == [pytest.approx(0.0, abs=0.05),
                                                         pytest.approx(3.0, abs=0.05)]
    assert "| lagrangian+fisher | 2 | 0,1,2 | 2.10x (2.00–2.20) | 1.70x | 1.80x | " \
           "0.8933 ± 0.0153 | -1.67 ± 1.15 |" in capsys.readouterr().out
    # Run again, every row is read back, not run: the wall times stay those of the first run.
    monkeypatch.setattr(frontier, "run", lambda command, log: None)
    frontier.main(argv)
    assert json.loads((out / "seed0" / "sst2" / "lagrangian+fisher_3.wall.json")
                      .read_text()) == second
    assert seed_rows.total_minutes(str(tmp_path / "nowhere"), {}) is None


def test_one_seed_keeps_its_output_dir_and_writes_no_spread(tmp_path):
    args = frontier.parse_args(["--data", str(tmp_path), "--output_dir", str(tmp_path)])
    assert frontier.seed_arguments(args, 0).output_dir == str(tmp_path)
    import seed_rows

    rows = seed_rows.over_seeds({0: [_row(speedup_b8_range=[2.0, 2.2])]})
    path = tmp_path / "one.csv"
    frontier.write_csv(path, rows)
    with open(path, newline="") as f:
        row, = csv.DictReader(f)
    assert row["seeds"] == "0" and row["compact_std"] == "" and row["delta_std"] == ""
    assert row["total_minutes"] == ""  # not on record
    with pytest.raises(SystemExit):
        frontier.parse_args(["--data", str(tmp_path), "--output_dir", str(tmp_path),
                             "--seeds", "0,0"])


def test_two_invocations_on_one_seed_keep_each_others_rows(tmp_path):
    """One invocation's rows are written while another, started earlier, runs: each write
    reads the summary again, so neither takes back what the other wrote."""
    import threading

    import seed_rows

    summary = str(tmp_path / "sst2.json")
    seed_rows.record_rows(summary, [_row(target=2.0, metric=0.80)], frontier.row_key)
    # The second invocation begins (reads the summary), then the first rewrites its row.
    assert len(seed_rows.record_rows(summary, [], frontier.row_key)) == 1
    seed_rows.record_rows(summary, [_row(target=2.0, metric=0.85)], frontier.row_key)
    rows = seed_rows.record_rows(summary, [_row(target=3.0, metric=0.83)], frontier.row_key)
    assert [(r["target"], r["compact_metric"]) for r in rows] == [(2.0, 0.85), (3.0, 0.83)]
    with open(summary, encoding="utf-8") as f:
        assert json.load(f) == rows
    assert not os.path.exists(f"{summary}.tmp")
    assert seed_rows.record_rows(str(tmp_path / "none.json"), [], frontier.row_key) == []
    assert not os.path.exists(tmp_path / "none.json")  # a read writes nothing

    def invocation(method):
        for target in range(20):
            seed_rows.record_rows(summary, [_row(method=method, target=float(target))],
                                  frontier.row_key)

    threads = [threading.Thread(target=invocation, args=(m,)) for m in ("fisher", "lagrangian")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with open(summary, encoding="utf-8") as f:
        kinds = [(r["method"], r["target"]) for r in json.load(f)]
    assert len(kinds) == len(set(kinds)) == 40  # the two targets above were among them


def _runtime_entry(model, runtime, accuracy, speedup, megabytes=10.0):
    return {"model": model, "runtime": runtime, "dev": {"eval_accuracy": accuracy},
            "agreement": 1.0 if runtime == "keras" else 0.98, "bytes": megabytes * 1e6,
            "speedup": {"batch_8_fixed": [speedup, speedup - 0.1, speedup + 0.1],
                        "batch_8_bucketed": [speedup - 0.5, 0, 0],
                        "batch_1_fixed": [speedup + 0.5, 0, 0]}}


def test_runtimes_give_a_row_per_runtime_and_the_dense_model_alone(
        tmp_path, monkeypatch, capsys):
    import runtime_rows

    row = _row(method="lagrangian+fisher", parameters=500, dense_parameters=1000,
               speedup_b8_range=[2.0, 2.2], speedup_b1_range=[1.8, 2.0], command="c")
    run = tmp_path / "run"
    run.mkdir()
    assert runtime_rows.runtime_rows(row, str(run)) == []  # no report
    (run / "report.json").write_text(json.dumps({"runtimes": {"rows": [
        _runtime_entry("dense", "keras", 0.91, 1.0), _runtime_entry("dense", "onnx_int8", 0.90,
                                                                    2.3),
        _runtime_entry("compact", "keras", 0.90, 2.0),
        _runtime_entry("compact", "onnx_int8", 0.89, 5.0)]}}))
    rows = runtime_rows.runtime_rows(row, str(run))
    assert [(r["method"], r["target"], r["runtime"], r["parameters"]) for r in rows] == [
        ("dense", None, "onnx_int8", 1000), ("lagrangian+fisher", 2.0, "onnx_int8", 500)]
    dense_int8, compact_int8 = rows
    # Every Δ against the dense model in Keras, from the report's own dev metrics.
    assert dense_int8["delta_points"] == pytest.approx(-1.0)
    assert compact_int8["delta_points"] == pytest.approx(-2.0)
    assert compact_int8["speedup_b8"] == 5.0 and compact_int8["speedup_b8_real"] == 4.5
    assert compact_int8["speedup_b1"] == 5.5 and compact_int8["megabytes"] == 10.0
    assert dense_int8["prune_minutes"] is None and compact_int8["agreement"] == 0.98
    # A runtime row has its own key; the dense rows of two pruned rows appear once.
    keys = {frontier.row_key(r) for r in rows}
    assert len(keys) == 2 and frontier.row_key(row) not in keys
    import seed_rows

    summary = str(tmp_path / "sst2.json")
    seed_rows.record_rows(summary, [row] + rows, frontier.row_key)
    merged = seed_rows.record_rows(summary, [dict(dense_int8, compact_metric=0.905)],
                                   frontier.row_key)
    assert [r["compact_metric"] for r in merged if r["method"] == "dense"] == [0.905]
    assert len(merged) == 3
    path = tmp_path / "runtimes.csv"

    frontier.write_csv(path, seed_rows.over_seeds({0: [row] + rows}))
    with open(path, newline="") as f:
        written = list(csv.DictReader(f))
    assert [(r["method"], r["runtime"], r["agreement"]) for r in written] == [
        ("lagrangian+fisher", "keras", ""), ("dense", "onnx_int8", "0.9800"),
        ("lagrangian+fisher", "onnx_int8", "0.9800")]
    monkeypatch.setattr(frontier, "machine_header", lambda: "machine")
    frontier.print_table(SimpleNamespace(task="sst2"), [row] + rows)
    assert "| lagrangian+fisher [onnx_int8] | 2 | 500 (0.50) | 5.00x" in capsys.readouterr().out


def test_frontier_plot_draws_each_rows_delta_from_the_csv(tmp_path, monkeypatch, capsys):
    """benchmarks/frontier_plot.py: the CSV that frontier.py writes, drawn as Δ against the
    speedup, with the std over seeds as the error bar; rows without the chosen speedup are
    named, and --min_seeds keeps only rows over that many seeds."""
    import doctest

    import frontier_plot

    assert doctest.testmod(frontier_plot).failed == 0
    seeded = frontier.seed_rows.over_seeds({
        0: [_row(method="lagrangian+fisher", metric=0.90, parameters=5, dense_parameters=9)],
        1: [_row(method="lagrangian+fisher", metric=0.88, parameters=5, dense_parameters=9,
                 speedup_b8=2.3)]})
    single = frontier.seed_rows.over_seeds({0: [_row(method="fisher", metric=0.85,
                                                     parameters=5, dense_parameters=9)]})
    path = tmp_path / "frontier.csv"
    frontier.write_csv(str(path), seeded + single)
    drawn, left_out = frontier_plot.points(frontier_plot.read_rows(str(path), "sst2"))
    assert [(p["method"], round(p["speedup"], 2), round(p["metric"], 2)) for p in drawn] == [
        ("dense", 1.0, 0.0), ("lagrangian+fisher", 2.2, -2.0), ("fisher", 2.1, -6.0)]
    assert drawn[1]["metric_std"] == pytest.approx(100 * np.std([0.90, 0.88], ddof=1), abs=1e-3)
    assert drawn[2]["metric_std"] is None and left_out == []
    # No real-length speedup in these rows: every one is left out and named.
    assert frontier_plot.points(frontier_plot.read_rows(str(path), "sst2"),
                                "speedup_b8_real")[1] == ["lagrangian+fisher 2", "fisher 2"]

    pytest.importorskip("matplotlib")
    output = tmp_path / "plot.png"
    frontier_plot.main(["--csv", str(path), "--task", "sst2", "--output", str(output),
                        "--min_seeds", "2"])
    printed = capsys.readouterr().out
    assert output.read_bytes().startswith(b"\x89PNG")
    drawn_lines = [line.split()[0] for line in printed.splitlines() if "x " in line]
    assert drawn_lines == ["lagrangian+fisher"] and "± 1.41" in printed
    with pytest.raises(SystemExit, match="no mrpc rows"):
        frontier_plot.main(["--csv", str(path), "--task", "mrpc"])
    with pytest.raises(SystemExit):
        frontier_plot.parse_args(["--task", "sst2", "--min_seeds", "0"])
    # Without matplotlib (the drawing returns None): the install hint, not the prune app's
    # `--start_from report`.
    import apps.plots
    monkeypatch.setattr(apps.plots, "metric_against_speedup", lambda *a, **k: None)
    with pytest.raises(SystemExit) as missing:
        frontier_plot.main(["--csv", str(path), "--task", "sst2", "--output", str(output)])
    assert str(missing.value) == "figures need matplotlib: `pip install keras-flop[plots]`."


def test_join_writes_the_recorded_rows_over_seeds_and_runs_nothing(tmp_path, monkeypatch, capsys):
    """--join: each seed's recorded rows of --rows, joined over the seeds as they are (no
    run, no timing); only those rows reach the CSV, and a seed without one is named."""
    import seed_rows

    def no_run(*args, **kwargs):
        raise AssertionError("--join ran something")

    monkeypatch.setattr(frontier, "run", no_run)
    monkeypatch.setattr(frontier, "timed_speedups", no_run)
    monkeypatch.setattr(frontier, "plot", lambda args, rows: None)
    for seed, metric in ((0, 0.90), (1, 0.88)):
        directory = tmp_path / f"seed{seed}"
        directory.mkdir()
        seed_rows.record_rows(str(directory / "sst2.json"), [
            _row(method="fisher", metric=metric, seed=seed, command="python -m apps.prune",
                 parameters=5, dense_parameters=9),
            _row(method="lagrangian", metric=0.5, seed=seed, command="python -m apps.prune",
                 parameters=5, dense_parameters=9)], frontier.row_key)
    path = tmp_path / "frontier.csv"
    frontier.main(["--data", str(tmp_path), "--output_dir", str(tmp_path), "--join",
                   "--seeds", "0,1", "--rows", "fisher:2", "--csv", str(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["seeds"]) for r in rows] == [("fisher", "0,1")]
    assert float(rows[0]["compact_mean"]) == pytest.approx(0.89)
    assert float(rows[0]["delta_mean"]) == pytest.approx(-2.0)
    assert "| fisher | 2 | 0,1 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--join: no recorded row fisher:3"):
        frontier.main(["--data", str(tmp_path), "--output_dir", str(tmp_path), "--join",
                       "--seeds", "0,1", "--rows", "fisher:3", "--csv", str(path)])
    with pytest.raises(SystemExit):
        frontier.parse_args(["--data", str(tmp_path), "--output_dir", str(tmp_path),
                             "--join", "--retime"])
