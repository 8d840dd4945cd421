"""The command-line apps, run in-process on fixtures the tests build."""

import json
import re
import zipfile

import keras
import pytest

import keras_flop
from apps import factorize as factorize_app
from tf1_bert import random_weights, tf1_shapes, write_tf1_checkpoint

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=32, type_vocab_size=2,
              initializer_range=0.02)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tf1")
    write_tf1_checkpoint(directory, CONFIG, random_weights(tf1_shapes(CONFIG, num_labels=2)))
    return directory


def test_factorize_app_writes_a_loadable_pruning_model(checkpoint_dir, tmp_path, capsys):
    output = tmp_path / "out"
    args = ["--bert_config_file", str(checkpoint_dir / "bert_config.json"),
            "--checkpoint", str(checkpoint_dir), "--output_dir", str(output), "--finetuned"]
    factorize_app.main(args)
    printed = capsys.readouterr().out
    assert "layer_1_output" in printed and "rel. error" in printed
    report = json.loads((output / "factorize.json").read_text())
    assert len(report["layers"]) == 12
    assert max(row["relative_error"] for row in report["layers"]) < 1e-5
    model = keras.saving.load_model(output / "pruning_model.keras")
    assert model.network.get_layer("layer_0_intermediate").rank == 32
    assert (output / "vocab.txt").exists() and (output / "bert_config.json").exists()
    # A second run does not overwrite the first.
    with pytest.raises(SystemExit) as exit_info:
        factorize_app.main(args)
    assert exit_info.value.code == 2
    assert "not empty" in capsys.readouterr().err
    factorize_app.main(args + ["--overwrite", "--energy", "0.9"])
    ranks = [row["rank"] for row in json.loads((output / "factorize.json").read_text())["layers"]]
    assert max(ranks) < 32


def test_factorize_app_rejects_finetuned_flag_without_head(tmp_path, capsys):
    write_tf1_checkpoint(tmp_path / "pre", CONFIG, random_weights(tf1_shapes(CONFIG)))
    with pytest.raises(SystemExit) as exit_info:
        factorize_app.main(["--bert_config_file", str(tmp_path / "pre" / "bert_config.json"),
                            "--checkpoint", str(tmp_path / "pre"), "--finetuned",
                            "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --finetuned was given") and error.count("\n") == 1


def test_prune_app_runs_end_to_end_and_reenters(tmp_path, capsys):
    from apps import prune as prune_app

    output = tmp_path / "run"
    args = ["--output_dir", str(output), "--max_train_examples", "512", "--train_batch_size",
            "16", "--finetune_epochs", "2", "--num_train_epochs", "4", "--final_epochs", "1"]
    prune_app.main(args)
    printed = capsys.readouterr().out
    assert "All outputs are in" in printed and "python -m apps.prune --task sst2" in printed
    for name in ("report.md", "hparams.json", "compact/info.txt", "compact/info.json",
                 "finetune/eval_results.txt", "prune/eval_results.txt",
                 "finetune_compact/test_results.tsv", "export/1/saved_model.pb",
                 "prune/checkpoints/checkpoint"):
        assert (output / name).exists(), name
    assert list((output / "prune" / "logs" / "train").glob("events.out.tfevents.*"))
    report = (output / "report.md").read_text()
    assert "| parameters |" in report
    # The report times --report_examples (256) of the toy dev set, and says so.
    assert re.search(r"\| latency, 256 of \d+ dev examples, padded to 32 \(s\) \|", report)
    assert re.search(r"\| latency, 256 of \d+ dev examples, length-bucketed batches \(s\) \|",
                     report)
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["pruned_total_params"] < info["total_params"]
    # The report's figures, for programs: the ratio in report.md is compact over dense time.
    figures = json.loads((output / "report.json").read_text())
    ratio = float(re.search(r"padded to 32 \(s\) \| [\d.]+ \| [\d.]+ \| ([\d.]+)",
                            report).group(1))
    assert figures["speedup_fixed"][0] == pytest.approx(1.0 / ratio, rel=2e-3)
    assert figures["speedup_fixed"][1] <= figures["speedup_fixed"][0] <= \
        figures["speedup_fixed"][2]
    assert figures["compact"]["parameters"] == info["pruned_total_params"]
    assert figures["method"] == "lagrangian"
    assert figures["structure"] == json.loads((output / "hparams.json").read_text())["structure"]
    compact_results = json.loads((output / "compact" / "eval_results.json").read_text())
    assert compact_results["parity_max_abs_diff"] <= 1e-4
    # The toy run is titled as such; sizes are of the weights alone.
    assert report.startswith("# Pruning report: the built-in toy sentiment task")
    assert "| weights (MB, without optimizer state) |" in report
    # Every pruning step's logs, and the report's figure of them.
    trace = keras_flop.training.callbacks.read_step_csv(output / "prune" / "trace.csv")
    assert trace["step"] == list(range(1, 129))
    assert trace["target_sparsity"][-1] == pytest.approx(0.5)
    assert "![Task loss, expected sparsity" in report
    assert (output / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    # Step outputs hold no optimizer state (resuming uses prune/checkpoints/).
    for step in ("finetune", "prune", "finetune_compact"):
        name = "pruning_model.keras" if step == "prune" else "model.keras"
        with zipfile.ZipFile(output / step / name) as archive:
            assert "optimizer" not in archive.read("model.weights.h5").decode("latin-1"), step
    # Checkpoints every tenth of the 128 pruning steps; TensorBoard for every training step,
    # the evaluations with their loss.
    saved = sorted(int(p.name.split("-")[1].split(".")[0])
                   for p in (output / "prune" / "checkpoints").glob("ckpt-*.index"))
    assert saved == [108, 120, 128]
    for step in ("finetune", "prune", "finetune_compact"):
        assert "eval_loss" in _summary_tags(output / step / "logs" / "eval"), step
        assert _summary_tags(output / step / "logs" / "train"), step
    # The same command again finds every step done; --start_from redoes the tail.
    prune_app.main(args)
    assert capsys.readouterr().out.count("done already") == 7
    prune_app.main(args + ["--start_from", "export"])
    printed = capsys.readouterr().out
    assert printed.count("done already") == 5 and (output / "export" / "1").exists()
    # Other settings are refused with the step they start from; that step redoes them and
    # keeps the finished steps before it.
    changed = args[:-2] + ["--final_epochs", "0"]  # no training: a quick redo
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(changed)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "other settings (final_epochs)" in error and "--start_from finetune_compact" in error
    assert error.count("\n") == 1
    prune_app.main(changed + ["--start_from", "finetune_compact", "--keep_intermediate",
                              "false"])
    printed = capsys.readouterr().out
    assert printed.count("done already") == 4 and "== finetune_compact" in printed
    assert json.loads((output / "hparams.json").read_text())["final_epochs"] == 0
    # --keep_intermediate false deleted what no step needs any more; the run stays complete.
    for name in ("factorize/pruning_model.keras", "prune/pruning_model.keras",
                 "prune/checkpoints", "compact/model.keras"):
        assert not (output / name).exists(), name
    assert (output / "prune" / "removed.txt").exists()
    assert (output / "finetune_compact" / "model.keras").exists()
    prune_app.main(changed)
    assert capsys.readouterr().out.count("done already") == 7
    # A run saved before a setting existed continues while the setting is at its default.
    saved = json.loads((output / "hparams.json").read_text())
    del saved["family_tolerance"]
    (output / "hparams.json").write_text(json.dumps(saved))
    prune_app.main(changed)
    assert capsys.readouterr().out.count("done already") == 7
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(changed + ["--family_tolerance", "0.05"])
    assert "other settings (family_tolerance)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prune_app.main(changed + ["--start_from", "compact"])
    assert "--start_from prune" in capsys.readouterr().err


def _summary_tags(directory):
    import tensorflow as tf

    return {value.tag for path in directory.glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}


def test_report_warns_of_a_dense_model_at_chance_and_a_missed_target():
    from types import SimpleNamespace
    from apps.prune.report import report_warnings

    examples = [SimpleNamespace(label=label) for label in ["1"] * 147 + ["0"] * 130]
    data = SimpleNamespace(evals={"dev": examples})
    args = SimpleNamespace(target_sparsity=0.5, sparsity_denominator="dense")
    info = {"dense_sparsity": 0.41}
    chance, short = report_warnings(args, data, "dev", {"eval_accuracy": 0.5307}, info)
    assert "chance level: dev accuracy 0.5307 against 0.5307" in chance
    assert "0.090 short of the target 0.5" in short
    assert report_warnings(args, data, "dev", {"eval_accuracy": 0.8},
                           {"dense_sparsity": 0.51}) == []
    past = report_warnings(args, data, "dev", {"eval_accuracy": 0.8}, {"dense_sparsity": 0.6})
    assert "0.100 past the target" in past[0]


def test_first_step_of_each_setting():
    from apps import prune as prune_app

    parser = prune_app.build_parser()
    flags = {a.dest for a in parser._actions} - {"help"}
    assert set(prune_app.FIRST_STEP_USING) <= flags  # no stale names
    assert prune_app.first_step_using("final_epochs", prune_app.STEPS) == "finetune_compact"
    assert prune_app.first_step_using("target_sparsity", prune_app.FISHER_STEPS) == "fisher"
    # A flag the table does not know is taken to change everything.
    assert prune_app.first_step_using("a_new_flag", prune_app.STEPS) == "finetune"


HELP_CHECK = r"""
import contextlib, io, json, runpy, sys
usages = {}
for module in ("apps.prune", "apps.glue_finetune", "apps.factorize"):
    sys.argv = [module, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(module, run_name="__main__")
        except SystemExit:
            pass
    usages[module] = out.getvalue()
print(json.dumps({"usages": usages, "tensorflow": "tensorflow" in sys.modules,
                  "keras": "keras" in sys.modules}))
"""


def test_help_is_complete_and_needs_no_tensorflow():
    import os
    import subprocess
    import sys
    from pathlib import Path

    from apps import common, glue_finetune, prune
    from keras_flop import glue

    result = subprocess.run([sys.executable, "-c", HELP_CHECK], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).resolve().parents[1],
                            env={k: v for k, v in os.environ.items()
                                 if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 0 and result.stderr == "", result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert not shown["tensorflow"] and not shown["keras"]
    for module, text in shown["usages"].items():
        assert text.startswith(f"usage: python -m {module} "), text[:80]
    assert "GLUE task: cola, sst2, mrpc" in shown["usages"]["apps.prune"]
    assert {name: task.directory for name, task in glue.TASKS.items()} == common.GLUE_TASKS
    # Every flag explains itself and states its default at most once.
    for build in (prune.build_parser, glue_finetune.build_parser, factorize_app.build_parser):
        parser = build()
        formatter = parser._get_formatter()
        for action in parser._actions:
            text = formatter._expand_help(action)
            assert text, action.dest
            assert text.lower().count("default") <= 1, (action.dest, text)


@pytest.mark.parametrize("reached, target, short", [(0.49, 0.5, False), (0.55, 0.5, False),
                                                    (0.41, 0.5, True)])
def test_prune_app_says_when_sparsity_fell_short(reached, target, short):
    from apps.prune.steps import sparsity_shortfall

    hint = sparsity_shortfall(reached, target)
    assert (hint is not None) == short
    if short:
        assert "0.090 short of the target 0.5" in hint and "--num_train_epochs" in hint


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_with_structured_gates_and_distillation(tmp_path, capsys):
    from apps import prune as prune_app
    from keras_flop.gates.structure import STRUCTURES

    assert prune_app.STRUCTURES == STRUCTURES
    output = tmp_path / "structured"
    prune_app.main(["--output_dir", str(output), "--structure", "heads+ffn+layers",
                    "--distillation_weight", "1", "--hidden_distillation_weight", "0.1",
                    "--learning_rate", "1e-4",
                    "--target_sparsity", "0.4", "--max_train_examples", "128",
                    "--train_batch_size", "16", "--finetune_epochs", "1",
                    # 12 steps, an epoch and a half: fewer than the schedules are sized for
                    "--pruning_steps", "12", "--final_epochs", "1", "--allow_short",
                    "--final_distillation_weight", "1",
                    "--final_hidden_distillation_weight", "0.1"])
    printed = capsys.readouterr().out
    assert "kept heads per layer" in printed and "kept FFN units per layer" in printed
    pruned = keras.saving.load_model(output / "prune" / "pruning_model.keras", compile=False)
    assert int(pruned.pruning_step.numpy()) == 12
    final = json.loads((output / "finetune_compact" / "eval_results.json").read_text())
    assert final["distillation_loss"] > 0 and final["hidden_distillation_loss"] > 0
    assert "distilled from the dense model (logit weight 1 at T=2, hidden-state weight 0.1)" \
        in (output / "report.md").read_text()
    info = json.loads((output / "compact" / "info.json").read_text())
    assert set(info["kept_heads"]) == {"layer_0", "layer_1"}
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-4
    assert (output / "export" / "1" / "saved_model.pb").exists()
    compact_model = keras.saving.load_model(output / "finetune_compact" / "model.keras")
    assert compact_model.count_params() == info["pruned_total_params"]


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_runs_of_one_teacher_share_its_outputs(tmp_path, capsys):
    """Logit distillation while pruning and in the final fine-tuning: the teacher's outputs
    are computed once for the run, and a second run whose dense model comes out the same
    (the same seeded fine-tuning) naming the same --teacher_outputs file computes none."""
    from apps import prune as prune_app

    shared = tmp_path / "teacher_outputs.npz"
    common = ["--distillation_weight", "1", "--final_distillation_weight", "1",
              "--teacher_outputs", str(shared), "--max_train_examples", "64",
              "--train_batch_size", "16", "--finetune_epochs", "1", "--pruning_steps", "4",
              "--final_epochs", "1", "--allow_short"]
    prune_app.main(["--output_dir", str(tmp_path / "first"), *common])
    assert capsys.readouterr().out.count("computed once") == 1 and shared.exists()
    prune_app.main(["--output_dir", str(tmp_path / "second"), *common])
    printed = capsys.readouterr().out
    assert "computed once" not in printed and f"teacher outputs read from {shared}" in printed


@pytest.mark.process
def test_prune_app_from_a_keras_hub_classifier_to_all_formats(tmp_path, capsys):
    import keras_hub
    import numpy as np
    from apps import prune as prune_app
    from apps import toy_task

    data_dir, _ = toy_task.write_toy_glue(tmp_path / "glue", train=64, dev=32, test=8)
    words = toy_task.vocabulary()
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=words, lowercase=True)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(words), num_layers=2,
                                             num_heads=2, hidden_dim=32, intermediate_dim=64,
                                             max_sequence_length=16)
    hub = keras_hub.models.BertTextClassifier(
        backbone, num_classes=2,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(tokenizer, 16))
    hub.save(tmp_path / "hub.keras")
    formats = ["saved_model"] + [fmt for fmt, package in (
        ("onnx", "onnxruntime"), ("litert", "ai_edge_litert"), ("onnx_int8", "onnxruntime"),
        ("litert_int8", "ai_edge_litert")) if __import__("importlib").util.find_spec(package)]
    output = tmp_path / "run"
    # A model trained for one epoch has predictions close to ties: the INT8 files are checked
    # to exist here, their agreement in tests/test_export_formats.py.
    prune_app.main(["--task", "sst2", "--data_dir", str(data_dir), "--keras_hub_model",
                    str(tmp_path / "hub.keras"), "--output_dir", str(output),
                    "--max_seq_length", "16", "--structure", "heads+ffn",
                    "--train_batch_size", "16", "--num_train_epochs", "1", "--allow_short",
                    "--final_epochs", "0", "--export_formats", ",".join(formats),
                    "--export_min_agreement", "0"])
    printed = capsys.readouterr().out
    assert "used as it is" in printed
    # The vocabulary came from the saved keras-hub preprocessor.
    assert (output / "keras_hub" / "vocab.txt").read_text().split() == words
    dense = keras.saving.load_model(output / "finetune" / "model.keras")
    batch = {"token_ids": np.arange(2, 10, dtype="int32")[None],
             "segment_ids": np.zeros((1, 8), "int32"), "padding_mask": np.ones((1, 8), bool)}
    np.testing.assert_allclose(dense(batch), hub({**batch, "padding_mask": batch[
        "padding_mask"].astype("int32")}), atol=1e-5)
    assert (output / "export" / "1" / "saved_model.pb").exists()
    for fmt, name in (("onnx", "model.onnx"), ("litert", "model.tflite"),
                      ("onnx_int8", "model_int8.onnx"), ("litert_int8", "model_int8.tflite")):
        assert (output / "export" / name).exists() == (fmt in formats)
    if "onnx_int8" in formats:  # measured on the 32 dev examples
        assert re.search(r"model_int8\.onnx \(int8 weights, .* of 32 dev examples in "
                         "onnxruntime", printed)


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_from_a_given_dense_model_and_its_errors(tmp_path, capsys):
    import shutil

    import numpy as np
    from apps import prune as prune_app
    from apps import toy_task

    data_dir, vocab = toy_task.write_toy_glue(tmp_path / "glue", train=64, dev=32, test=8)
    config = keras_flop.BertConfig(**dict(CONFIG, vocab_size=len(toy_task.vocabulary())))
    dense = keras_flop.build_bert_classifier(config, num_labels=2)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    dense.save(teacher / "model.keras")
    common = ["--task", "sst2", "--data_dir", str(data_dir), "--max_seq_length", "16"]

    def fails(flags, message):
        with pytest.raises(SystemExit) as exit_info:
            prune_app.main(common + flags + ["--output_dir", str(tmp_path / "bad")])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err

    fails(["--dense_model", str(teacher / "model.keras")], "pass --vocab_file")
    fails(["--dense_model", str(tmp_path / "none.keras")], "does not exist")
    fails(["--dense_model", "m.keras", "--init_checkpoint", "ckpt"],
          "Pass one of --init_checkpoint, --keras_hub_model and --dense_model")
    keras_flop.factorize(dense, structure="heads+ffn").network.save(tmp_path / "gated.keras")
    fails(["--dense_model", str(tmp_path / "gated.keras"), "--vocab_file", vocab],
          "has gates or factorized layers")
    shutil.copyfile(vocab, teacher / "vocab.txt")
    output = tmp_path / "run"
    prune_app.main(common + ["--dense_model", str(teacher / "model.keras"), "--output_dir",
                             str(output), "--structure", "heads+ffn", "--train_batch_size",
                             "16", "--num_train_epochs", "1", "--allow_short",
                             "--final_epochs", "0"])
    assert "used as it is" in capsys.readouterr().out
    copy = keras.saving.load_model(output / "finetune" / "model.keras")
    batch = {"token_ids": np.arange(2, 10, dtype="int32")[None],
             "segment_ids": np.zeros((1, 8), "int32"), "padding_mask": np.ones((1, 8), bool)}
    np.testing.assert_allclose(copy(batch), dense(batch), atol=1e-6)
    # The run's own dense model is, with its vocabulary, a --dense_model for the next run.
    assert (output / "finetune" / "vocab.txt").read_text() == open(vocab).read()
    assert (output / "report.md").exists()


def test_prune_app_export_format_flags_are_checked(tmp_path, capsys):
    from apps import prune as prune_app

    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(["--output_dir", str(tmp_path / "x"), "--export_formats", "onnx,pb"])
    assert exit_info.value.code == 2
    assert "--export_formats must be drawn from saved_model,onnx,litert,onnx_int8,litert_int8" \
        in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prune_app.main(["--output_dir", str(tmp_path / "x"), "--export_min_agreement", "90"])
    assert "--export_min_agreement must be in [0, 1] (a share of the dev examples); got 90.0" \
        in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prune_app.main(["--output_dir", str(tmp_path / "y"), "--keras_hub_model", "m.keras"])
    assert "need --task" in capsys.readouterr().err


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_fisher_method_and_fisher_initial_mask(tmp_path, capsys):
    from apps import prune as prune_app

    output = tmp_path / "fisher"
    common = ["--max_train_examples", "64", "--max_eval_examples", "32",
              "--train_batch_size", "16", "--finetune_epochs", "1", "--num_fisher_samples", "64",
              "--target_sparsity", "0.5"]
    prune_app.main(["--output_dir", str(output), "--method", "fisher"] + common)
    printed = capsys.readouterr().out
    assert "== fisher" in printed and "== factorize" not in printed
    assert "fisher: kept" in printed
    for name in ("fisher/pruning_model.keras", "compact/info.json", "export/1/saved_model.pb"):
        assert (output / name).exists(), name
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["dense_sparsity"] >= 0.5
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-5
    assert "Method `fisher` (retraining-free" in (output / "report.md").read_text()
    assert "train_time" not in json.loads(
        (output / "finetune_compact" / "eval_results.json").read_text())  # no fine-tuning
    # The Lagrangian path starts its gates from the Fisher mask (its first two steps), from
    # the dense model the first run fine-tuned (not fine-tuned again).
    common = ["--task", "sst2", "--data_dir", str(output / "data"), "--dense_model",
              str(output / "finetune" / "model.keras"), "--max_train_examples", "64",
              "--max_eval_examples", "32", "--train_batch_size", "16", "--num_fisher_samples",
              "64", "--max_seq_length", "32", "--target_sparsity", "0.5"]
    args = prune_app.resolve_args(prune_app.build_parser().parse_args(
        ["--output_dir", str(tmp_path / "init"), "--init_mask", "fisher",
         "--structure", "heads+ffn"] + common))
    pipeline = prune_app.Pipeline(args, prune_app.prepare_run(args))
    pipeline.finetune()
    pipeline.factorize()
    assert "gates start from the Fisher mask" in capsys.readouterr().out
    gated = pipeline.load("factorize", "pruning_model.keras").network
    masks = [gated.get_layer(f"layer_{i}_{kind}_mask") for i in range(2)
             for kind in ("head", "intermediate")]
    kept = sum(int((m.mask() > 0.5).numpy().sum()) for m in masks)
    assert 0 < kept < sum(m.size for m in masks)
    start = json.loads((tmp_path / "init" / "factorize" / prune_app.INIT_MASK).read_text())
    assert sum(start["kept_heads"]) + sum(start["kept_units"]) == kept
    assert start["seconds"] > 0
    # Under a speedup target the Fisher start fits the latency table's time (a hand-made
    # table: a block costs an overhead plus a time per unit).
    config = pipeline.config
    heads, units = config.num_attention_heads, config.intermediate_size
    table = keras_flop.LatencyTable(
        {f: getattr(config, f) for f in keras_flop.latency.table.MODEL_FIELDS}, batch_size=8,
        seq_length=32, attention_heads=list(range(heads + 1)),
        attention_seconds=[0.0] + [2.0 + h for h in range(1, heads + 1)],
        ffn_units=[0, 1, units], ffn_seconds=[0.0, 1.5, 1.5 + 0.25 * (units - 1)],
        fixed_seconds=1.0)
    table.save(tmp_path / "table.json")
    args = prune_app.resolve_args(prune_app.build_parser().parse_args(
        ["--output_dir", str(tmp_path / "init_speedup"), "--init_mask", "fisher",
         "--structure", "heads+ffn+layers", "--target_speedup", "1.5", "--latency_table",
         str(tmp_path / "table.json")] + common[:-2]))
    pipeline = prune_app.Pipeline(args, prune_app.prepare_run(args))
    pipeline.finetune()
    pipeline.factorize()
    gated = pipeline.load("factorize", "pruning_model.keras").network
    shapes = [tuple(int((gated.get_layer(f"layer_{i}_{kind}_mask").mask() > 0.5).numpy().sum())
                    for kind in ("head", "intermediate")) for i in range(2)]
    assert table.dense_seconds(shapes) <= table.dense_seconds() / 1.5
    # Retraining-free to a speed: the search keeps 1/S of the table's time, the table goes to
    # the fisher step, and the report predicts what the search found.
    output = tmp_path / "fisher_speedup"
    prune_app.main(["--output_dir", str(output), "--method", "fisher", "--target_speedup",
                    "1.5", "--latency_table", str(tmp_path / "table.json")] + common[:-2])
    printed = capsys.readouterr().out
    found = json.loads((output / "fisher" / "eval_results.json").read_text())
    info = json.loads((output / "compact" / "info.json").read_text())
    assert found["predicted_speedup"] >= 1.5
    assert info["predicted_speedup"] == pytest.approx(found["predicted_speedup"])
    assert info["latency_sparsity"] == pytest.approx(1.0 - 1.0 / found["predicted_speedup"])
    assert f"a predicted speedup of {found['predicted_speedup']:.2f}x (target 1.5x)" in printed
    assert keras_flop.LatencyTable.load(output / "fisher" / "latency_table.json").info == \
        table.info
    assert "target speedup 1.5x" in (output / "report.md").read_text()
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(["--output_dir", str(tmp_path / "bad"), "--init_mask", "fisher",
                        "--structure", "rank"])
    assert exit_info.value.code == 2
    assert "--structure heads+ffn" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--targets", "0.5,0.3"], "--targets must be in increasing order"),
    (["--targets", "0.3,0.3,0.5"], "--targets lists a value twice"),
    (["--targets", "0.3,1.2"], "--targets must be in [0, 1)"),
    (["--targets", "0.3"], "at least two values (one target: --target_sparsity)"),
    (["--targets", "0.3,half"], "--targets must be comma-separated numbers"),
    (["--targets", "0.3,0.5", "--target_sparsity", "0.5"],
     "either --targets (a family) or --target_sparsity"),
    (["--targets", "0.3,0.5", "--target_speedups", "2,3"], "either --targets (sparsities)"),
    (["--target_speedups", "0.5,2"], "--target_speedups must be >= 1"),
    (["--target_speedups", "1.5,2", "--structure", "rank"], "use --structure heads+ffn"),
    (["--targets", "0.3,0.5", "--method", "fisher"], "pruned by the Lagrangian"),
    (["--family_hold_steps", "3"], "read with --targets or --target_speedups only"),
    (["--targets", "0.3,0.5", "--target_start", "gates"],
     "--target_start gates is the single target's"),
    (["--latency_lengths", "train"], "--latency_lengths train measures the latency table of a "
                                     "--target_speedup run"),
    (["--latency_lengths", "train", "--target_speedup", "2", "--latency_table", "t.json"],
     "a given --latency_table keeps the lengths"),
])
def test_prune_app_refuses_bad_families(tmp_path, capsys, flags, message):
    from apps import prune as prune_app

    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(["--output_dir", str(tmp_path / "bad")] + flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1, error


def test_a_run_resumed_mid_epoch_finishes_that_epoch_first():
    from keras_flop.training.fine_tuning import epoch_segments

    assert epoch_segments(0, 48, 16) == [(0, 48)]
    assert epoch_segments(24, 48, 16) == [(24, 32), (32, 48)]
    assert epoch_segments(40, 48, 16) == [(40, 48)]
    assert epoch_segments(32, 48, 16) == [(32, 48)]
    assert epoch_segments(48, 48, 16) == []
    # A length that is not whole epochs ends with the part of an epoch it has.
    assert epoch_segments(0, 12, 8) == [(0, 8), (8, 12)]
    assert epoch_segments(0, 5, 8) == [(0, 5)]
    assert epoch_segments(3, 21, 8) == [(3, 8), (8, 16), (16, 21)]
    assert epoch_segments(17, 21, 8) == [(17, 21)]


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step, self.step = at_step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.at_step:
            raise KeyboardInterrupt


@pytest.mark.process  # a whole app run: the second tier
@pytest.mark.parametrize("distilled", [False, True])
def test_interrupted_fine_tuning_resumes_to_the_uninterrupted_weights(tmp_path, capsys,
                                                                      distilled):
    import numpy as np
    from apps import toy_task
    from keras_flop.training import fine_tuning
    from keras_flop.training import data as training_data

    data_dir, vocab = toy_task.write_toy_glue(tmp_path / "glue", train=80, dev=16, test=4)
    data = training_data.load_task_data(str(data_dir), "sst2", vocab, 16)
    config = keras_flop.BertConfig(**dict(CONFIG, vocab_size=len(toy_task.vocabulary())))

    def fresh(seed=7):
        keras.utils.set_random_seed(seed)
        return keras_flop.build_bert_classifier(config, num_labels=2)

    # Logit distillation from a teacher: its outputs are computed once and kept with the
    # checkpoints, so the resumed run reads them.
    distillation = dict(teacher=fresh(3), distillation_weight=1.0) if distilled else {}
    # 80 examples in batches of 16: 5 steps an epoch, 10 in all; killed in epoch 2.
    straight = fresh()
    history, _ = fine_tuning.fine_tune(straight, data, 1e-3, 2, 16, seed=1, **distillation)
    assert ("distillation_loss" in history.history) == distilled
    interrupted = fresh()
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(KeyboardInterrupt):
        fine_tuning.fine_tune(interrupted, data, 1e-3, 2, 16, seed=1,
                              callbacks=[_Interrupt(8)], checkpoint_dir=checkpoints,
                              checkpoint_every_n_steps=3, **distillation)
    assert (checkpoints / fine_tuning.TEACHER_OUTPUTS).exists() == distilled
    capsys.readouterr()
    resumed, counter = fresh(), _Interrupt(None)
    history, _ = fine_tuning.fine_tune(resumed, data, 1e-3, 2, 16, seed=1, callbacks=[counter],
                                       checkpoint_dir=checkpoints, checkpoint_every_n_steps=3,
                                       **distillation)
    assert "computed once" not in capsys.readouterr().out
    # It went on from the step-6 checkpoint (a restart from step 0 would end the same way).
    assert counter.step == 4
    assert np.isfinite(history.history["loss"][-1])
    for a, b in zip(straight.weights, resumed.weights):
        if "seed_generator" not in a.path:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=a.path)


def test_teacher_outputs_are_shared_by_runs_of_one_teacher_only(tmp_path, capsys):
    """A file of teacher outputs is read by a later run of the same teacher on the same
    examples, and recomputed (and replaced) for another teacher or other examples."""
    import numpy as np
    from apps import toy_task
    from keras_flop.training import fine_tuning
    from keras_flop.training import data as training_data

    data_dir, vocab = toy_task.write_toy_glue(tmp_path / "glue", train=40, dev=8, test=4)
    data = training_data.load_task_data(str(data_dir), "sst2", vocab, 16)
    fewer = training_data.load_task_data(str(data_dir), "sst2", vocab, 16, max_train_examples=30)
    config = keras_flop.BertConfig(**dict(CONFIG, vocab_size=len(toy_task.vocabulary())))

    def teacher(seed):
        keras.utils.set_random_seed(seed)
        return keras_flop.build_bert_classifier(config, num_labels=2)

    shared = str(tmp_path / "outputs.npz")
    first = fine_tuning.teacher_outputs(teacher(3), data, keep=[shared])
    assert "computed once" in capsys.readouterr().out
    again = fine_tuning.teacher_outputs(teacher(3), data, keep=[shared])
    assert "computed once" not in capsys.readouterr().out
    np.testing.assert_array_equal(first, again)
    reference = np.asarray(teacher(3).predict(data.tokenized("train").dataset(
        [np.arange(len(data.train))]).map(lambda x, y: x), verbose=0))
    np.testing.assert_allclose(first, reference, atol=1e-5)
    for other_teacher, other_data in ((teacher(4), data), (teacher(3), fewer)):
        outputs = fine_tuning.teacher_outputs(other_teacher, other_data, keep=[shared])
        assert "computed once" in capsys.readouterr().out
        assert len(outputs) == len(other_data.train)
        with np.load(shared) as kept:  # the file now holds the latest teacher's outputs
            np.testing.assert_array_equal(kept["outputs"], outputs)


def test_sweep_table_marks_the_best_rate_and_has_no_accuracy_for_a_regression(tmp_path):
    from apps import glue_finetune

    rows = [{"task": "stsb", "learning_rate": rate, "eval_score": score, "eval_loss": 0.6,
             "global_step": 540, "train_time": 195.2}
            for rate, score in ((5e-5, 0.84), (1e-4, 0.87))]
    rows.append({"task": "sst2", "learning_rate": 1e-4, "eval_score": 0.9, "eval_accuracy": 0.9,
                 "eval_loss": 0.26, "global_step": 2105, "train_time": 453.0})
    lines = open(glue_finetune.write_sweep_tables(str(tmp_path), rows)).read().splitlines()
    assert lines[2:] == ["| stsb | 5e-05 | 0.8400 | – | 0.6000 | 540 | 195 |  |",
                         "| stsb | 0.0001 | 0.8700 | – | 0.6000 | 540 | 195 | **best** |",
                         "| sst2 | 0.0001 | 0.9000 | 0.9000 | 0.2600 | 2105 | 453 | **best** |"]
    assert json.loads((tmp_path / "results.json").read_text()) == rows


def test_prune_app_takes_the_int8_formats_with_the_library_s_names_and_packages():
    from apps import prune as prune_app
    from apps.prune.parser import EXPORT_PACKAGES
    from keras_flop.export import requirements

    assert prune_app.parser.EXPORT_FORMATS == requirements.FORMATS
    assert EXPORT_PACKAGES == {fmt: (requirements._REQUIREMENTS[fmt], requirements.EXTRAS[fmt])
                               for fmt in requirements.FORMATS if fmt != "saved_model"}
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    args = prune_app.resolve_args(prune_app.build_parser().parse_args(
        ["--export_formats", "saved_model, onnx_int8,litert_int8"]))
    assert args.export_formats == "saved_model, onnx_int8,litert_int8"
    assert args.export_min_agreement == 0.9


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_exports_int8_checked_on_dev_examples(tmp_path, capsys):
    """The export step measures an INT8 file's agreement on the run's dev examples."""
    import types

    import numpy as np
    from apps.prune import steps

    pytest.importorskip("onnxruntime")
    keras.utils.set_random_seed(0)
    model = keras_flop.build_bert_classifier(keras_flop.BertConfig(**CONFIG))
    rng = np.random.default_rng(0)
    dev = {"token_ids": rng.integers(1, 64, (40, 16)).astype("int32"),
           "segment_ids": np.zeros((40, 16), "int32"), "padding_mask": np.ones((40, 16), bool)}
    asked = []

    def eval_dataset(split, batch_size):
        asked.append((split, batch_size))
        return iter([({k: v[:batch_size] for k, v in dev.items()}, np.zeros(40, "int32"))])

    run = types.SimpleNamespace(
        args=types.SimpleNamespace(export_formats="onnx_int8", export_min_agreement=0.0),
        data=types.SimpleNamespace(task=None, evals={"dev": None}, eval_dataset=eval_dataset))
    steps.export_one(run, model, None, str(tmp_path / "formats"))
    printed = capsys.readouterr().out
    assert asked == [("dev", steps.EXPORT_AGREEMENT_EXAMPLES)]
    assert re.search(r"model_int8\.onnx \(int8 weights, [0-9.]+ MB against [0-9.]+ MB in "
                     r"float32; agrees with the float model on [0-9.]+% of 40 dev examples in "
                     r"onnxruntime \(largest logit difference ", printed), printed
    assert [p.name for p in (tmp_path / "formats").iterdir()] == ["model_int8.onnx"]
