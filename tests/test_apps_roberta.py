"""Both apps end to end from a Hugging Face RoBERTa directory: its byte-level BPE tokenizer (a
vocabulary trained here on the toy task with Hugging Face's trainer) feeds fine-tuning, the
Lagrangian and the Fisher pruning, and the exported text signatures."""

import json

import numpy as np
import pytest
import tensorflow as tf

from apps import glue_finetune
from apps import prune as prune_app
from apps import toy_task
from hf_families import (ROBERTA_CONFIG, TOY_PRUNE_FLAGS, random_hf_weights, roberta_names,
                         write_hf_directory)

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@pytest.fixture(scope="module")
def roberta(tmp_path_factory):
    """Toy GLUE data and a pre-trained `RobertaModel` directory (no classifier) with
    `vocab.json` and `merges.txt`; the reference BPE tokenizer."""
    from tokenizers import ByteLevelBPETokenizer

    root = tmp_path_factory.mktemp("roberta")
    data_dir, _ = toy_task.write_toy_glue(root / "glue", train=64, dev=32, test=8)
    lines = (data_dir / "SST-2" / "train.tsv").read_text().splitlines()[1:]
    reference = ByteLevelBPETokenizer()
    reference.train_from_iterator([line.split("\t")[0] for line in lines], vocab_size=300,
                                  min_frequency=1, special_tokens=SPECIALS)
    directory = root / "hf"
    directory.mkdir()
    reference.save_model(str(directory))
    config = dict(ROBERTA_CONFIG, architectures=["RobertaModel"], max_position_embeddings=34,
                  vocab_size=reference.get_vocab_size())
    write_hf_directory(directory, config,
                       random_hf_weights(roberta_names(config, head=None), std=0.05))
    return directory, data_dir, reference


def _check_export(export_dir, reference, text):
    """The SavedModel's text signature tokenizes as RoBERTa does: `<s> text </s>`."""
    loaded = tf.saved_model.load(str(export_dir))
    ids = loaded.signatures["tokenize_text"](text=tf.constant([text]))["token_ids"]
    assert ids.numpy()[0].tolist() == \
        [0] + reference.encode(text, add_special_tokens=False).ids + [2]
    with open(export_dir / "assets.extra" / "keras_flop_export.json") as f:
        assert json.load(f)["packing"] == "roberta"


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_lagrangian_from_a_roberta_directory(roberta, tmp_path, capsys):
    directory, data_dir, reference = roberta
    output = tmp_path / "run"
    prune_app.main(TOY_PRUNE_FLAGS + ["--data_dir", str(data_dir), "--init_checkpoint",
                                      str(directory), "--output_dir", str(output)])
    assert "used as it is" not in capsys.readouterr().out  # pre-trained: fine-tuned here
    # The fine-tuned model keeps its tokenizer beside it, under Hugging Face's names.
    assert (output / "finetune" / "vocab.json").read_text() == \
        (directory / "vocab.json").read_text()
    assert (output / "finetune" / "merges.txt").exists()
    assert not (output / "finetune" / "vocab.txt").exists()
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["dense_sparsity"] > 0
    _check_export(output / "export" / "1", reference, "a charming film")
    assert (output / "report.md").exists()


@pytest.mark.process  # two whole app runs: the second tier
def test_glue_finetune_then_fisher_pruning_of_a_roberta_model(roberta, tmp_path):
    directory, data_dir, reference = roberta
    sweep = tmp_path / "sweep"
    rows = glue_finetune.main(["--task", "sst2", "--data_dir", str(data_dir),
                               "--init_checkpoint", str(directory), "--output_dir", str(sweep),
                               "--learning_rates", "1e-3", "--num_train_epochs", "1",
                               "--max_seq_length", "16", "--train_batch_size", "16"])
    assert len(rows) == 1 and np.isfinite(rows[0]["eval_loss"])
    run = sweep / "sst2" / "lr_0.001"
    assert (run / "vocab.json").exists() and (run / "merges.txt").exists()
    # The fine-tuned model is a --dense_model: its tokenizer is found beside it.
    output = tmp_path / "fisher"
    prune_app.main(["--task", "sst2", "--data_dir", str(data_dir), "--dense_model",
                    str(run / "model.keras"), "--output_dir", str(output), "--method",
                    "fisher", "--target_sparsity", "0.5", "--max_seq_length", "16",
                    "--max_train_examples", "64", "--max_eval_examples", "32",
                    "--num_fisher_samples", "64", "--train_batch_size", "16"])
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["dense_sparsity"] >= 0.5
    assert json.loads((output / "compact" / "eval_results.json").read_text())[
        "parity_max_abs_diff"] <= 1e-5
    _check_export(output / "export" / "1", reference, "the plot is thin")
