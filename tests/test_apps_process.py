"""The pruning app's longest whole runs (second tier): a mirrored strategy and its
continuation, Ctrl-C, a target speedup and a family. Apart from tests/test_apps.py so that
the second tier's two workers share the whole-app runs (a test file stays on one worker)."""

import json
import re

import keras
import pytest

import keras_flop


@pytest.mark.process
def test_prune_app_under_mirrored_strategy_a_short_run_and_its_continuation(tmp_path, capsys):
    from apps import prune as prune_app

    output = tmp_path / "mirrored"
    # The original recipe's noam schedules cannot move the gates in 8 steps: the run writes
    # everything, then fails with its own exit status.
    args = ["--output_dir", str(output), "--strategy", "mirrored", "--schedule", "noam",
            "--max_train_examples", "128", "--train_batch_size", "16",
            "--finetune_epochs", "1", "--final_epochs", "1"]
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(args + ["--num_train_epochs", "1"])
    assert exit_info.value.code == prune_app.EXIT_SHORT == 3
    assert "short of the target 0.5" in capsys.readouterr().err
    assert (output / "report.md").exists() and (output / "export" / "1").exists()
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-4
    # A longer run continues from the gates, λ and step the finished one ended with, in the
    # directory the run was moved to; --allow_short accepts what it reaches.
    output = output.rename(tmp_path / "moved")
    args[1] = str(output)
    assert prune_app.main(args + ["--num_train_epochs", "2", "--start_from", "prune",
                                  "--allow_short"]) == str(output)
    printed = capsys.readouterr().out
    assert "continuing the finished pruning from step 8 to 16" in printed
    assert "done already" in printed and not (output / prune_app.CONTINUED).exists()
    pruned = keras.saving.load_model(output / "prune" / "pruning_model.keras", compile=False)
    assert int(pruned.pruning_step.numpy()) == 16
    # The continued run's trace holds the first run's steps, then its own.
    trace = keras_flop.training.callbacks.read_step_csv(output / "prune" / "trace.csv")
    assert trace["step"] == list(range(1, 17))


@pytest.mark.process
def test_prune_app_ctrl_c_says_where_in_one_line(tmp_path):
    """Ctrl-C in the pruning step: one line, status 130, no traceback and no TensorFlow log
    lines on stderr; the device the run uses is named once on stdout."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading
    import time
    from pathlib import Path

    command = [sys.executable, "-m", "apps.prune", "--output_dir", str(tmp_path / "run"),
               "--max_train_examples", "64", "--max_eval_examples", "32",
               "--train_batch_size", "16", "--finetune_epochs", "1", "--num_train_epochs", "500"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=Path(__file__).resolve().parents[1],
                               env=dict(env, PYTHONUNBUFFERED="1"))
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    printed = []
    try:
        deadline = time.monotonic() + 300
        while not any(line.startswith("Epoch 3/") for line in printed):  # pruning steps ran
            assert time.monotonic() < deadline and process.poll() is None, printed
            try:
                printed.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=300)
        error = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert code == 130
    assert error.strip().count("\n") == 0, error
    assert re.fullmatch(r"interrupted at step \d+ of prune; rerun the same command to "
                        r"continue", error.strip()), error
    assert sum(line.startswith("device: CPU") for line in printed) == 1


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_to_a_target_speedup_measures_and_reports_the_latency(tmp_path, capsys):
    from apps import prune as prune_app
    from keras_flop import LatencyTable

    output = tmp_path / "speedup"
    prune_app.main(["--output_dir", str(output), "--target_speedup", "1.5",
                    "--structure", "heads+ffn", "--max_train_examples", "128",
                    "--max_eval_examples", "64", "--train_batch_size", "16",
                    "--finetune_epochs", "1", "--num_train_epochs", "2", "--final_epochs", "0",
                    "--allow_short"])
    printed = capsys.readouterr().out
    assert "measuring the latency table: batch 8, length 32" in printed
    assert "speedup predicted by the latency table: target 1.5x" in printed
    table = LatencyTable.load(str(output / "factorize" / "latency_table.json"))
    assert (table.batch_size, table.seq_length) == (8, 32)
    assert table.attention_heads == [0, 1, 2, 3, 4] and table.ffn_units[-1] == 256
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["target_speedup"] == 1.5
    assert info["latency_sparsity"] == pytest.approx(1.0 - 1.0 / info["predicted_speedup"])
    settings = json.loads((output / "hparams.json").read_text())
    assert settings["target_sparsity"] == pytest.approx(1.0 - 1.0 / 1.5)
    # Under a speedup target the gates start from the Fisher mask by default; under a
    # sparsity target (or when told) with every gate open.
    assert settings["init_mask"] == "fisher" and "gates start from the Fisher mask" in printed
    for flags, expected in (([], "none"), (["--target_speedup", "2", "--init_mask", "none"],
                                           "none")):
        resolved = prune_app.resolve_args(prune_app.build_parser().parse_args(
            ["--output_dir", str(tmp_path / "resolved")] + flags))
        assert resolved.init_mask == expected and resolved.target_start == "zero"
    report = (output / "report.md").read_text()
    assert "target speedup 1.5x under the latency table" in report
    row = re.search(r"\| batch 8, padded to 32 \(target 1.5x\) \| ([\d.]+)x \| ([\d.]+)x "
                    r"\(rounds ([\d.]+)–([\d.]+)\) \|", report)
    assert row, report
    assert float(row.group(1)) == pytest.approx(info["predicted_speedup"], abs=0.005)
    # The target's warmup starts where the Fisher mask's gates start (--target_start auto);
    # the same run from 0 redoes the prune step and those after it only.
    assert settings["target_start"] == "gates"
    start = float(re.search(r"the target's warmup starts at the gates' expected latency "
                            r"sparsity \(1 - latency/dense\) ([\d.]+)", printed).group(1))
    trace = keras_flop.training.callbacks.read_step_csv(output / "prune" / "trace.csv")
    assert start > 0.05 and trace["target_sparsity"][0] >= start - 5e-4  # printed to 3 places
    prune_app.main(["--output_dir", str(output), "--target_speedup", "1.5",
                    "--structure", "heads+ffn", "--max_train_examples", "128",
                    "--max_eval_examples", "64", "--train_batch_size", "16",
                    "--finetune_epochs", "1", "--num_train_epochs", "2", "--final_epochs", "0",
                    "--allow_short", "--target_start", "zero", "--start_from", "prune"])
    printed = capsys.readouterr().out
    assert "== factorize: done already" in printed and "warmup starts at" not in printed
    trace = keras_flop.training.callbacks.read_step_csv(output / "prune" / "trace.csv")
    assert trace["target_sparsity"][0] < 0.05
    # A table measured on another device is used, with a note that says so.
    elsewhere = LatencyTable.from_dict({**table.to_dict(), "info": {"device": "CPU (64 cores: X)"}})
    elsewhere.save(str(tmp_path / "elsewhere.json"))
    resolved = prune_app.resolve_args(prune_app.build_parser().parse_args(
        ["--output_dir", str(tmp_path / "elsewhere"), "--target_speedup", "1.5",
         "--latency_table", str(tmp_path / "elsewhere.json")]))
    prune_app.Pipeline(resolved, prune_app.prepare_run(resolved))
    assert ("the latency table was measured on CPU (64 cores: X); this run is on CPU ("
            in capsys.readouterr().out)
    # The table is reused from a file, checked against the model before anything trains.
    other = LatencyTable(dict(table.model, intermediate_size=128), 8, 32,
                         table.attention_heads, table.attention_seconds, [0, 128], [0.0, 1.0],
                         table.fixed_seconds)
    other.save(str(tmp_path / "other.json"))
    for flags, message in (
            (["--latency_table", str(tmp_path / "other.json")],
             "measured for another model: intermediate_size 256 (table 128)"),
            (["--structure", "rank"], "--target_speedup prices heads, FFN units and blocks"),
            (["--target_sparsity", "0.5"], "either --target_speedup or --target_sparsity")):
        with pytest.raises(SystemExit) as exit_info:
            prune_app.main(["--output_dir", str(tmp_path / "bad"), "--overwrite",
                            "--target_speedup", "2"] + flags)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_family_gives_one_model_export_and_report_row_per_member(tmp_path, capsys):
    from apps import prune as prune_app

    output = tmp_path / "family"
    args = ["--output_dir", str(output), "--targets", "0.2,0.4", "--structure", "heads+ffn",
            "--max_train_examples", "256", "--max_eval_examples", "64", "--train_batch_size",
            "16", "--finetune_epochs", "1", "--num_train_epochs", "6", "--final_epochs", "1",
            "--family_hold_steps", "3", "--family_tolerance", "0.03"]
    prune_app.main(args)
    printed = capsys.readouterr().out
    members = json.loads((output / "prune" / "family.json").read_text())
    assert [m["target"] for m in members] == [0.2, 0.4]
    assert all(m["snapshot_step"] is not None for m in members), printed
    assert members[0]["snapshot_step"] < members[1]["snapshot_step"] <= 96
    report = (output / "report.md").read_text()
    assert "a family of 2" in report
    # No member missing or off its target (the tiny dense model's chance level may be warned).
    warnings = report.partition("## Warnings")[2]
    assert "members are missing" not in warnings and "Member " not in warnings, warnings
    for member in (1, 2):
        for name in ("compact/{}/model.keras", "compact/{}/info.json",
                     "finetune_compact/{}/model.keras", "finetune_compact/{}/eval_results.json",
                     "export/{}/saved_model.pb"):
            assert (output / name.format(member)).exists(), name.format(member)
        info = json.loads((output / "compact" / str(member) / "info.json").read_text())
        target = members[member - 1]["target"]
        assert info["dense_sparsity"] == pytest.approx(target, abs=0.02)
        row = re.search(rf"\| member {member} \(`export/{member}`\) \| {target} \| "
                        r"([\d.]+) \| (\d+) \| ([\d,]+) \|", report)
        assert row, report
        assert float(row.group(1)) == pytest.approx(info["dense_sparsity"], abs=5e-4)
        assert int(row.group(2)) == members[member - 1]["snapshot_step"]
        parameters = int(row.group(3).replace(",", ""))
        assert parameters == info["pruned_total_params"]
    assert sorted(p.name for p in (output / "export").iterdir() if p.is_dir()) == ["1", "2"]
    assert "| dense (fine-tuned) |" in report
    assert "![Dev accuracy against measured speedup" in report
    assert (output / "family_frontier.png").read_bytes().startswith(b"\x89PNG")
    assert (output / "training_curves.png").exists() and "target_sparsity" in (
        output / "prune" / "trace.csv").read_text().splitlines()[0]
    # The same command finds every step done.
    prune_app.main(args)
    assert capsys.readouterr().out.count("done already") == 7
