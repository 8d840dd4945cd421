"""The command-line apps, run in-process on fixtures the tests build."""

import json

import keras
import pytest

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
    assert "| latency, whole dev set, padded to 32 (s) |" in report
    assert "| latency, whole dev set, length-bucketed batches (s) |" in report
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["pruned_total_params"] < info["total_params"]
    compact_results = json.loads((output / "compact" / "eval_results.json").read_text())
    assert compact_results["parity_max_abs_diff"] <= 1e-4
    # The same command again finds every step done; --start_from redoes the tail.
    prune_app.main(args)
    assert capsys.readouterr().out.count("done already") == 7
    prune_app.main(args + ["--start_from", "export"])
    printed = capsys.readouterr().out
    assert printed.count("done already") == 5 and (output / "export" / "1").exists()
    # Other settings in the same directory are refused.
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(args[:-2] + ["--final_epochs", "2"])
    assert exit_info.value.code == 2
    assert "other settings (final_epochs)" in capsys.readouterr().err


@pytest.mark.parametrize("reached, target, short", [(0.49, 0.5, False), (0.55, 0.5, False),
                                                    (0.41, 0.5, True)])
def test_prune_app_says_when_sparsity_fell_short(reached, target, short):
    from apps.prune import sparsity_shortfall

    hint = sparsity_shortfall(reached, target)
    assert (hint is not None) == short
    if short:
        assert "0.090 short of the target 0.5" in hint and "--num_train_epochs" in hint


def test_prune_app_under_mirrored_strategy_and_the_exit_status_of_a_short_run(tmp_path, capsys):
    from apps import prune as prune_app

    output = tmp_path / "mirrored"
    # The original recipe's noam schedules cannot move the gates in 8 steps: the run writes
    # everything, then fails with its own exit status; --allow_short accepts it.
    args = ["--output_dir", str(output), "--strategy", "mirrored", "--schedule", "noam",
            "--max_train_examples", "128", "--train_batch_size", "16",
            "--finetune_epochs", "1", "--num_train_epochs", "1", "--final_epochs", "1"]
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(args)
    assert exit_info.value.code == prune_app.EXIT_SHORT == 3
    assert "short of the target 0.5" in capsys.readouterr().err
    assert (output / "report.md").exists() and (output / "export" / "1").exists()
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-4
    assert prune_app.main(args + ["--allow_short"]) == str(output)


def test_prune_app_with_structured_gates_and_distillation(tmp_path, capsys):
    from apps import prune as prune_app
    from keras_flop.structure import STRUCTURES

    assert prune_app.STRUCTURES == STRUCTURES
    output = tmp_path / "structured"
    prune_app.main(["--output_dir", str(output), "--structure", "heads+ffn+layers",
                    "--distillation_weight", "1", "--hidden_distillation_weight", "0.1",
                    "--learning_rate", "1e-4",
                    "--target_sparsity", "0.6", "--max_train_examples", "128",
                    "--train_batch_size", "16", "--finetune_epochs", "1",
                    # 16 steps: fewer than the schedules are sized for (about 100)
                    "--num_train_epochs", "2", "--final_epochs", "1", "--allow_short"])
    printed = capsys.readouterr().out
    assert "kept heads per layer" in printed and "kept FFN units per layer" in printed
    info = json.loads((output / "compact" / "info.json").read_text())
    assert set(info["kept_heads"]) == {"layer_0", "layer_1"}
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-4
    assert (output / "export" / "1" / "saved_model.pb").exists()
    compact_model = keras.saving.load_model(output / "finetune_compact" / "model.keras")
    assert compact_model.count_params() == info["pruned_total_params"]


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
    formats = ["saved_model"] + [fmt for fmt, package in (("onnx", "onnxruntime"),
                                                         ("litert", "ai_edge_litert"))
                                 if __import__("importlib").util.find_spec(package)]
    output = tmp_path / "run"
    prune_app.main(["--task", "sst2", "--data_dir", str(data_dir), "--keras_hub_model",
                    str(tmp_path / "hub.keras"), "--output_dir", str(output),
                    "--max_seq_length", "16", "--structure", "heads+ffn",
                    "--train_batch_size", "16", "--num_train_epochs", "1",
                    "--final_epochs", "0", "--export_formats", ",".join(formats)])
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
    for fmt, name in (("onnx", "model.onnx"), ("litert", "model.tflite")):
        assert (output / "export" / name).exists() == (fmt in formats)


def test_prune_app_export_format_flags_are_checked(tmp_path, capsys):
    from apps import prune as prune_app

    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(["--output_dir", str(tmp_path / "x"), "--export_formats", "onnx,pb"])
    assert exit_info.value.code == 2
    assert "--export_formats must be drawn from saved_model,onnx,litert" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        prune_app.main(["--output_dir", str(tmp_path / "y"), "--keras_hub_model", "m.keras"])
    assert "need --task" in capsys.readouterr().err


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
    # The Lagrangian path starts its gates from the Fisher mask (its first two steps).
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
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(["--output_dir", str(tmp_path / "bad"), "--init_mask", "fisher"])
    assert exit_info.value.code == 2
    assert "--structure heads+ffn" in capsys.readouterr().err
