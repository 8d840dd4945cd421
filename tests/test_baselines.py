"""apps.prune's baselines, the models a user would pick instead of pruning: `--method
drop_layers` and `--method student`, their flags and whole runs on the toy task."""

import json

import keras
import pytest

import keras_flop
from tf1_bert import random_weights, tf1_shapes, tiny_config, write_tf1_checkpoint


@pytest.mark.parametrize("flags, message", [
    (["--method", "drop_layers"], "--method drop_layers needs --keep_layers"),
    (["--keep_layers", "2"], "--keep_layers is read by --method drop_layers only"),
    (["--method", "student"], "--method student needs --student_checkpoint"),
    (["--method", "fisher", "--student_checkpoint", "c"], "read by --method student only"),
    (["--method", "drop_layers", "--keep_layers", "1", "--target_speedup", "2"],
     "prunes nothing: drop --target_speedup"),
    (["--method", "drop_layers", "--keep_layers", "1", "--pipeline", "paper"],
     "prunes nothing: drop --pipeline"),
    (["--method", "drop_layers", "--keep_layers", "0"], "--keep_layers must be >= 1"),
    (["--method", "drop_layers", "--keep_layers", "1", "--start_from", "prune"],
     "has the steps finetune, compact, finetune_compact, export, report"),
])
def test_baseline_flags_are_checked(tmp_path, capsys, flags, message):
    from apps import prune as prune_app

    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(flags + ["--output_dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_baseline_steps_and_the_first_step_of_their_settings():
    from apps import prune as prune_app
    from apps.prune.parser import BASELINE_STEPS, method_steps

    assert method_steps("drop_layers") == method_steps("student") == BASELINE_STEPS
    assert method_steps("fisher") == prune_app.FISHER_STEPS
    assert method_steps("lagrangian") == prune_app.STEPS
    for flag in ("keep_layers", "student_checkpoint", "method"):
        assert prune_app.first_step_using(flag, BASELINE_STEPS) == "compact"
    assert prune_app.first_step_using("final_epochs", BASELINE_STEPS) == "finetune_compact"
    assert prune_app.first_step_using("method", prune_app.FISHER_STEPS) == "fisher"


def _teacher(tmp_path, toy_task):
    """A toy 2-layer dense classifier saved with the toy vocabulary, and the toy GLUE folder."""
    import shutil

    data_dir, vocab = toy_task.write_toy_glue(tmp_path / "glue", train=64, dev=32, test=8)
    keras.utils.set_random_seed(0)
    dense = keras_flop.build_bert_classifier(toy_task.toy_config(), num_labels=2)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    dense.save(teacher / "model.keras")
    shutil.copyfile(vocab, teacher / "vocab.txt")
    return data_dir, teacher / "model.keras", dense


@pytest.mark.process  # whole app runs: the second tier
def test_baselines_are_fine_tuned_from_the_teacher_and_reported_against_it(tmp_path, capsys):
    from apps import prune as prune_app
    from apps import toy_task

    data_dir, teacher, dense = _teacher(tmp_path, toy_task)
    common = ["--task", "sst2", "--data_dir", str(data_dir), "--max_seq_length", "16",
              "--dense_model", str(teacher), "--train_batch_size", "16", "--final_epochs",
              "1", "--final_distillation_weight", "1", "--teacher_outputs",
              str(tmp_path / "teacher_outputs.npz")]
    dropped = tmp_path / "dropped"
    prune_app.main(common + ["--method", "drop_layers", "--keep_layers", "1", "--output_dir",
                             str(dropped)])
    out = capsys.readouterr().out
    assert "the bottom 1 of the dense model's 2 encoder layers" in out
    assert "== factorize" not in out and "== prune" not in out
    model = keras.saving.load_model(dropped / "finetune_compact" / "model.keras")
    assert model.bert_config.num_hidden_layers == 1
    report = json.loads((dropped / "report.json").read_text())
    assert report["method"] == "drop_layers" and report["structure"] == "layers"
    assert report["compact"]["parameters"] < report["dense"]["parameters"]
    assert report["speedup_fixed"][0] > 0
    text = (dropped / "report.md").read_text()
    # No target to miss (the toy teacher is untrained: that warning stays).
    assert "a baseline, not pruning" in text and "short of the target" not in text
    assert "distilled from the dense model (logit weight 1" in text

    # A smaller pre-trained encoder with the teacher's vocabulary: a fresh head, then the same
    # fine-tuning from the teacher.
    student = tmp_path / "student"
    config = tiny_config(len(toy_task.vocabulary()))
    write_tf1_checkpoint(student, config, random_weights(tf1_shapes(config)),
                         vocab=toy_task.vocabulary())
    run = tmp_path / "student_run"
    prune_app.main(common + ["--method", "student", "--student_checkpoint", str(student),
                             "--output_dir", str(run)])
    info = json.loads((run / "compact" / "info.json").read_text())
    assert info["num_hidden_layers"] == 1 and "fresh classifier head" in info["baseline"]
    model = keras.saving.load_model(run / "finetune_compact" / "model.keras")
    assert model.bert_config.hidden_size == 16
    assert json.loads((run / "report.json").read_text())["structure"] == "model"

    other = tmp_path / "other_vocab"
    write_tf1_checkpoint(other, config, random_weights(tf1_shapes(config)), vocab=True)
    with pytest.raises(SystemExit) as exit_info:
        prune_app.main(common + ["--method", "student", "--student_checkpoint", str(other),
                                 "--output_dir", str(tmp_path / "bad")])
    assert exit_info.value.code == 2
    assert "has another vocabulary" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        prune_app.main(common + ["--method", "drop_layers", "--keep_layers", "3",
                                 "--output_dir", str(tmp_path / "too_many")])
    assert "more than the dense model's 2 encoder layers" in capsys.readouterr().err
