"""--init_checkpoint of both apps: a Hugging Face BERT directory and a keras-hub preset as well
as a TF1 checkpoint (TF1 runs are in test_apps.py and test_bad_input.py)."""

import json

import keras_hub
import numpy as np
import pytest

from apps import glue_finetune
from apps import prune as prune_app
from apps import toy_task
from tf1_bert import random_weights, tf1_shapes, tiny_config, write_hf_checkpoint

WORDS = toy_task.vocabulary()
CONFIG = tiny_config(len(WORDS))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    data_dir, _ = toy_task.write_toy_glue(root / "glue", train=64, dev=32, test=8)
    # A pre-trained Hugging Face BERT (no classifier) over the toy task's vocabulary.
    write_hf_checkpoint(root / "hf", CONFIG, random_weights(tf1_shapes(CONFIG), std=0.05),
                        vocab=WORDS)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(WORDS), num_layers=1,
                                             num_heads=2, hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=32)
    backbone.save_to_preset(root / "hub")
    keras_hub.models.BertTokenizer(vocabulary=WORDS, lowercase=True).save_to_preset(root / "hub")
    return root, data_dir


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_runs_end_to_end_from_a_hugging_face_directory(toy, tmp_path, capsys):
    root, data_dir = toy
    output = tmp_path / "run"
    prune_app.main(["--task", "sst2", "--data_dir", str(data_dir), "--init_checkpoint",
                    str(root / "hf"), "--output_dir", str(output), "--max_seq_length", "16",
                    "--max_train_examples", "64", "--train_batch_size", "16",
                    "--finetune_epochs", "1", "--pruning_steps", "20", "--final_epochs", "0",
                    "--eval_every_n_steps", "20", "--checkpoint_every_n_steps", "20",
                    "--allow_short"])
    printed = capsys.readouterr().out
    assert "used as it is" not in printed  # pre-trained: the finetune step fine-tuned it
    assert (output / "finetune" / "vocab.txt").read_text().split() == WORDS
    assert json.loads((output / "finetune" / "eval_results.json").read_text())["eval_accuracy"]
    assert (output / "export" / "1" / "saved_model.pb").exists()
    assert (output / "report.md").exists()


def test_glue_finetune_from_a_keras_hub_preset(toy, tmp_path):
    root, data_dir = toy
    output = tmp_path / "sweep"
    rows = glue_finetune.main(["--task", "sst2", "--data_dir", str(data_dir),
                               "--init_checkpoint", str(root / "hub"), "--output_dir",
                               str(output), "--learning_rates", "1e-3", "--num_train_epochs",
                               "1", "--max_seq_length", "16", "--train_batch_size", "16"])
    assert len(rows) == 1 and np.isfinite(rows[0]["eval_loss"])
    run = output / "sst2" / "lr_0.001"
    assert (run / "vocab.txt").read_text().split() == WORDS
    assert (run / "model.keras").exists()


@pytest.mark.parametrize("app", ["prune", "finetune"])
def test_init_checkpoint_of_neither_kind_names_what_it_found(toy, tmp_path, capsys, app):
    root, data_dir = toy
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "pytorch_model.bin").write_bytes(b"torch")
    module = prune_app if app == "prune" else glue_finetune
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--task", "sst2", "--data_dir", str(data_dir), "--init_checkpoint",
                     str(tmp_path / "ckpt"), "--output_dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "holds no BERT checkpoint (found " \
        "pytorch_model.bin); expected one of: a TF1 checkpoint" in error, error
