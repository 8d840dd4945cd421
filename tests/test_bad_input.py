"""Every app exits with status 2 and one line saying what is wrong and where."""

import json
import shutil
from pathlib import Path

import pytest

from apps import factorize as factorize_app
from apps import glue_finetune, prune
from tf1_bert import random_weights, tf1_shapes, write_tf1_checkpoint

CONFIG = dict(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
              intermediate_size=32, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1, max_position_embeddings=16, type_vocab_size=2,
              initializer_range=0.02)
SST2 = "sentence\tlabel\na good film\t1\na bad film\t0\n"
STSB_HEADER = ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
               "sentence2\tscore\n")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    write_tf1_checkpoint(root / "ckpt", CONFIG, random_weights(tf1_shapes(CONFIG)))
    (root / "glue" / "SST-2").mkdir(parents=True)
    (root / "glue" / "SST-2" / "train.tsv").write_text(SST2)
    (root / "glue" / "SST-2" / "dev.tsv").write_text(SST2)
    (root / "glue" / "STS-B").mkdir(parents=True)
    (root / "glue" / "STS-B" / "train.tsv").write_text(
        STSB_HEADER + "0\tg\tf\ty\t0\ts\ts\ta film\ta movie\t3.5\n")
    (root / "glue" / "STS-B" / "dev.tsv").write_text(
        STSB_HEADER + "0\tg\tf\ty\t0\ts\ts\ta film\ta movie\t3.5\n")
    return root


def _write(relative, text=None, data=None):
    def change(root):
        path = root / relative
        if data is not None:
            path.write_bytes(data)
        elif text is None:
            path.unlink()
        else:
            path.write_text(text)
    return change


def _config(**values):
    def change(root):
        path = root / "ckpt" / "bert_config.json"
        config = json.loads(path.read_text())
        config.update(values)
        for key, value in values.items():
            if value is None:
                del config[key]
        path.write_text(json.dumps(config))
    return change


def _truncate_shard(root):
    shard = next((root / "ckpt").glob("*.data-*"))
    shard.write_bytes(shard.read_bytes()[:64])


def _cut_keras(root):
    """A `.keras` archive cut in half, as an interrupted copy leaves it."""
    import zipfile

    path = root / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("metadata.json", "config.json"):
            archive.writestr(name, "{}")
        archive.writestr("model.weights.h5", bytes(range(256)) * 64)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _vocab_lines(count):
    return _write("ckpt/vocab.txt", "\n".join(f"t{i}" for i in range(count)) + "\n")


FINETUNE = ["--task", "sst2", "--learning_rates", "1e-4", "--max_seq_length", "8",
            "--num_train_epochs", "1"]

# (id, app, extra args, change to the good fixture, words the message must contain: a string
# or a tuple of strings)
CASES = [
    ("missing tsv", "finetune", [], _write("glue/SST-2/train.tsv"), "No train split"),
    ("empty tsv", "finetune", [], _write("glue/SST-2/train.tsv", ""), "train.tsv: no examples"),
    ("truncated tsv", "finetune", [], _write("glue/SST-2/dev.tsv", SST2 + "a cut-off line"),
     "dev.tsv:4: expected 2 tab-separated columns"),
    ("wrong column count", "finetune", [], _write("glue/SST-2/train.tsv", SST2 + "a\t1\tx\n"),
     "train.tsv:4: expected 2"),
    ("non-utf8 bytes", "finetune", [],
     _write("glue/SST-2/train.tsv", data=SST2.encode() + b"caf\xe9\t1\n"),
     "train.tsv:4: not valid UTF-8"),
    ("unknown label", "finetune", [], _write("glue/SST-2/train.tsv", SST2 + "ok\tyes\n"),
     "train.tsv:4: unknown sst2 label 'yes'"),
    ("stsb score out of range", "finetune", ["--task", "stsb"],
     _write("glue/STS-B/train.tsv", STSB_HEADER + "0\tg\tf\ty\t0\ts\ts\ta\tb\t7.5\n"),
     "train.tsv:2: stsb score 7.5 is outside [0.0, 5.0]"),
    ("missing vocab", "finetune", [], _write("ckpt/vocab.txt"), "Vocabulary file not found"),
    ("vocab longer than vocab_size", "finetune", [], _vocab_lines(50),
     "has 50 tokens but the BERT config says vocab_size=40"),
    ("vocab longer, via prune", "prune", ["--task", "sst2", "--data_dir", "GLUE",
                                          "--init_checkpoint", "CKPT"], _vocab_lines(41),
     "has 41 tokens but the BERT config says vocab_size=40"),
    ("config key that changes the model", "finetune", [], _config(layer_norm_eps=1e-6),
     "bert_config.json: layer_norm_eps=1e-06 is not supported"),
    ("truncated data shard", "finetune", [], _truncate_shard, "Cannot read variable"),
    ("missing index", "finetune", [], lambda root: (root / "ckpt" / "bert_model.ckpt.index")
     .unlink(), "expected one TF1 checkpoint"),
    ("config field missing", "finetune", [], _config(vocab_size=None),
     "'vocab_size' is missing"),
    ("config field wrong type", "finetune", [], _config(hidden_size="16"),
     "BertConfig.hidden_size must be a positive integer"),
    ("heads do not divide hidden", "finetune", [], _config(num_attention_heads=3),
     "num_attention_heads (3) must divide hidden_size (16)"),
    ("seq longer than positions", "finetune", ["--max_seq_length", "64"], None,
     "--max_seq_length 64 exceeds the model's longest sequence, 16"),
    ("unknown task", "finetune", ["--task", "sst3"], None, "Unknown GLUE task 'sst3'"),
    ("negative learning rate", "finetune", ["--learning_rates=-1e-5"], None,
     "--learning_rates must be positive"),
    ("missing data dir", "finetune", ["--data_dir", "/nonexistent/glue"], None,
     "GLUE data directory not found"),
    ("output dir not writable", "finetune", ["--output_dir", "FILE/out"], None,
     "Cannot create output directory"),
    ("zero batch size", "finetune", ["--train_batch_size", "0"], None,
     "--train_batch_size must be >= 1"),
    ("loss becomes nan", "finetune", ["--learning_rates", "1e12", "--num_train_epochs", "3"],
     None, "Non-finite loss at fine-tuning step"),
    ("target sparsity 1", "prune", ["--target_sparsity", "1.0"], None,
     "--target_sparsity must be in [0, 1)"),
    ("target sparsity negative", "prune", ["--target_sparsity=-0.2"], None,
     "--target_sparsity must be in [0, 1)"),
    ("negative model lr", "prune", ["--learning_rate=-1"], None, "--learning_rate must be >= 0"),
    ("negative alpha lr", "prune", ["--alpha_learning_rate=-5"], None,
     "--alpha_learning_rate must be >= 0"),
    ("unknown structure", "prune", ["--structure", "heads"], None, "invalid choice: 'heads'"),
    ("negative distillation weight", "prune", ["--distillation_weight=-1"], None,
     "--distillation_weight must be >= 0"),
    ("negative final distillation", "prune", ["--final_hidden_distillation_weight=-1"], None,
     "--final_hidden_distillation_weight must be >= 0"),
    ("two prune lengths", "prune", ["--pruning_steps", "10", "--num_train_epochs", "2"], None,
     "Pass either --pruning_steps or --num_train_epochs"),
    ("zero pruning steps", "prune", ["--pruning_steps", "0"], None,
     "--pruning_steps must be >= 1"),
    ("negative last-layer heads", "prune", ["--last_layer_heads=-1"], None,
     "--last_layer_heads must be >= 0"),
    ("distillation temperature 0", "prune", ["--distillation_temperature", "0"], None,
     "--distillation_temperature must be > 0"),
    ("dropout out of range", "prune", ["--hidden_dropout_prob", "1.5"], None,
     "--hidden_dropout_prob must be in [0, 1)"),
    ("task without data", "prune", ["--task", "sst2"], None, "--task needs --data_dir"),
    ("task without checkpoint", "prune", ["--task", "sst2", "--data_dir", "GLUE"], None,
     "--init_checkpoint is required"),
    ("start_from without run", "prune", ["--start_from", "compact"], None,
     "--start_from needs an existing run"),
    ("truncated dense model", "prune", ["--task", "sst2", "--data_dir", "GLUE",
                                        "--dense_model", "KERAS"], _cut_keras,
     ("--dense_model ", "model.keras is not a valid .keras file (truncated or corrupt: not a "
                        "zip archive")),
    ("truncated keras-hub model", "prune", ["--task", "sst2", "--data_dir", "GLUE",
                                            "--keras_hub_model", "KERAS"], _cut_keras,
     ("--keras_hub_model ", "model.keras is not a valid .keras file (truncated or corrupt")),
    ("missing checkpoint", "factorize", ["--checkpoint", "/nonexistent/bert_model.ckpt"], None,
     "Checkpoint index not found"),
    ("missing bert config", "factorize", ["--bert_config_file", "/nonexistent.json"], None,
     "BERT config file not found"),
]


def _argv(app, root, extra, output):
    if app == "finetune":
        base = FINETUNE + ["--data_dir", str(root / "glue"), "--init_checkpoint",
                           str(root / "ckpt"), "--output_dir", str(output)]
        module = glue_finetune
    elif app == "prune":
        base = ["--output_dir", str(output)]
        module = prune
    else:
        base = ["--bert_config_file", str(root / "ckpt" / "bert_config.json"),
                "--checkpoint", str(root / "ckpt"), "--output_dir", str(output)]
        module = factorize_app
    named = {"GLUE": str(root / "glue"), "CKPT": str(root / "ckpt"),
             "KERAS": str(root / "model.keras")}
    extra = [named.get(a, a.replace("FILE", str(root / "afile"))) for a in extra]
    return module, base + extra


@pytest.mark.parametrize("app, extra, change, message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line(good, tmp_path, capsys, app, extra, change, message):
    root = tmp_path / "root"
    shutil.copytree(good, root)
    (root / "afile").write_text("not a directory")
    if change:
        change(root)
    module, argv = _argv(app, root, extra, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    words = message if isinstance(message, tuple) else (message,)
    assert error[-1].startswith("error: ") and all(w in error[-1] for w in words), error
    assert "Traceback" not in "\n".join(error)


def test_verbose_shows_the_traceback(good, tmp_path):
    module, argv = _argv("prune", Path(good), ["--target_sparsity", "2", "--verbose"],
                         tmp_path / "out")
    with pytest.raises(ValueError, match="--target_sparsity must be in"):
        module.main(argv)


def test_existing_output_dir_is_not_overwritten(good, tmp_path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("precious")
    module, argv = _argv("finetune", Path(good), [], output)
    with pytest.raises(SystemExit):
        module.main(argv)
    assert "is not empty: pass --overwrite" in capsys.readouterr().err
    assert (output / "keep.txt").read_text() == "precious"


def test_vocabulary_shorter_than_vocab_size_is_accepted(good, tmp_path):
    # Released checkpoints often pad the embedding table past the vocabulary.
    root = tmp_path / "root"
    shutil.copytree(good, root)
    _vocab_lines(30)(root)
    args = glue_finetune.build_parser().parse_args(
        _argv("finetune", root, [], tmp_path / "out")[1])
    config, vocab = glue_finetune.checkpoint_files(args)
    assert config.vocab_size == 40 and vocab == str(root / "ckpt" / "vocab.txt")


def test_a_failed_start_does_not_block_the_corrected_command(good, tmp_path, capsys):
    output = tmp_path / "out"
    base = ["--data_dir", str(good / "glue"), "--output_dir", str(output)]
    with pytest.raises(SystemExit):
        prune.main(base + ["--task", "SST-2", "--init_checkpoint", str(good / "typo")])
    assert capsys.readouterr().err.startswith("error: ")
    assert (output / "hparams.json").exists()  # written before the checkpoint was read
    # The corrected command (task spelled otherwise, checkpoint fixed) starts the run afresh.
    args = prune.resolve_args(prune.build_parser().parse_args(
        base + ["--task", "sst2", "--init_checkpoint", str(good / "ckpt")]))
    assert prune.prepare_run(args) == str(output)
    assert json.loads((output / "hparams.json").read_text())["init_checkpoint"] == \
        str(good / "ckpt")
    # Once a step has finished, other settings are refused as before.
    (output / "finetune").mkdir()
    args = prune.resolve_args(prune.build_parser().parse_args(
        base + ["--task", "SST-2", "--init_checkpoint", str(good / "ckpt"), "--seed", "3"]))
    assert args.task == "sst2"
    with pytest.raises(ValueError, match=r"holds a run with other settings \(seed\)"):
        prune.prepare_run(args)


@pytest.mark.process  # a whole app run: the second tier
def test_a_fine_tuned_model_is_the_dense_model_of_a_pruning_run(good, tmp_path, capsys):
    module, argv = _argv("finetune", Path(good), [], tmp_path / "sweep")
    module.main(argv)
    run = tmp_path / "sweep" / "sst2" / "lr_0.0001"
    assert (run / "vocab.txt").read_text() == (good / "ckpt" / "vocab.txt").read_text()
    assert not (run / "checkpoints").exists()  # removed once model.keras is written
    module.main(argv)  # the same command again: the finished run is kept
    assert "done already" in capsys.readouterr().out
    output = tmp_path / "pruned"
    prune.main(["--task", "sst2", "--data_dir", str(good / "glue"), "--dense_model",
                str(run / "model.keras"), "--output_dir", str(output), "--max_seq_length", "8",
                "--structure", "heads+ffn", "--num_train_epochs", "1", "--allow_short",
                "--final_epochs", "0"])
    assert "used as it is" in capsys.readouterr().out
    finetuned = json.loads((run / "eval_results.json").read_text())
    reused = json.loads((output / "finetune" / "eval_results.json").read_text())
    assert abs(finetuned["eval_accuracy"] - reused["eval_accuracy"]) < 1e-6
