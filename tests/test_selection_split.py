"""The selection split: training examples held out for choices, so that dev is not chosen on."""

import json
import re

import numpy as np
import pytest

from apps import glue_finetune, toy_task
from apps import prune as prune_app
from keras_flop.training import data as training_data
from tf1_bert import random_weights, tf1_shapes, tiny_config, write_tf1_checkpoint

CONFIG = tiny_config(len(toy_task.vocabulary()), max_position_embeddings=16)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    data_dir, vocab = toy_task.write_toy_glue(str(root / "glue"), train=60, dev=12, test=4)
    return data_dir, vocab


def _load(toy, **kwargs):
    data_dir, vocab = toy
    return training_data.load_task_data(data_dir, "sst2", vocab, 16, **kwargs)


def _ids(examples):
    return [example.guid for example in examples]  # a training example's line in train.tsv


def test_the_selection_split_is_held_out_and_shared_by_training_seeds(toy):
    runs = [_load(toy, max_train_examples=30, seed=seed, selection_examples=10)
            for seed in (0, 1)]
    selections = [_ids(run.evals["selection"]) for run in runs]
    assert len(selections[0]) == 10 and selections[0] == selections[1]
    assert _ids(runs[0].train) != _ids(runs[1].train)  # the training seed drew its subset
    for run in runs:
        assert len(run.train) == 30 and not set(_ids(run.train)) & set(selections[0])
        assert list(run.evals) == ["dev", "selection"]
    everything = _load(toy, selection_examples=10)
    assert sorted(_ids(everything.train) + _ids(everything.evals["selection"]), key=int) == \
        [str(i) for i in range(60)]
    # Its own seed draws another split.
    assert _ids(_load(toy, selection_examples=10, selection_seed=1).evals["selection"]) != \
        selections[0]


@pytest.mark.parametrize("limits", [{}, {"max_train_examples": 30, "max_eval_examples": 5}])
def test_no_selection_split_draws_the_subsets_it_always_drew(toy, limits):
    """At 0 the training and dev examples are those the documented draw gives: one generator
    of `seed`, the training subset first, then dev's."""
    data_dir, _ = toy
    from keras_flop import glue

    data = _load(toy, seed=3, selection_examples=0, **limits)
    train, dev = (glue.read_split(data_dir, "sst2", split) for split in ("train", "dev"))
    rng = np.random.default_rng(3)
    for examples, limit in ((train, limits.get("max_train_examples")),
                            (dev, limits.get("max_eval_examples"))):
        if limit:
            examples[:] = [examples[i] for i in np.sort(rng.choice(len(examples), limit,
                                                                   replace=False))]
    assert _ids(data.train) == _ids(train) and list(data.evals) == ["dev"]
    assert _ids(data.evals["dev"]) == _ids(dev)


def test_the_selection_split_is_evaluated_beside_dev(toy, tmp_path):
    import keras

    import keras_flop
    from apps import results
    from keras_flop.training.evaluation import evaluate

    data = _load(toy, selection_examples=8)
    labels = np.concatenate([np.asarray(y) for _, y in data.eval_dataset("selection", 4)])
    assert sorted(labels.tolist()) == sorted(int(e.label) for e in data.evals["selection"])
    keras.utils.set_random_seed(0)
    model = keras_flop.build_bert_classifier(keras_flop.BertConfig(**CONFIG), num_labels=2)
    scores = evaluate(model, data, 4)
    assert list(scores) == ["dev", "selection"]
    assert scores["selection"]["eval_examples"] == 8 and scores["dev"]["eval_examples"] == 12
    flat = results.write_eval_results(str(tmp_path), scores, {})
    assert flat["selection_eval_score"] == scores["selection"]["eval_score"]
    assert flat["eval_score"] == scores["dev"]["eval_score"]


@pytest.mark.parametrize("kwargs, error, words", [
    ({"selection_examples": -1}, ValueError, "`selection_examples` must be >= 0"),
    ({"selection_examples": 60}, ValueError, "smaller than the 60 training examples of sst2: "
                                             "60 would leave none to train on"),
    ({"selection_examples": 61}, ValueError, "61 would exceed them; pass fewer"),
    ({"selection_examples": 2.5}, TypeError, "`selection_examples` must be an integer"),
    ({"selection_examples": 5, "selection_seed": -2}, ValueError,
     "`selection_seed` must be >= 0"),
])
def test_bad_selection_sizes_are_one_line_errors(toy, kwargs, error, words):
    with pytest.raises(error) as info:
        _load(toy, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def _sweep_rows(selection):
    rows = []
    for rate, dev, held in ((1e-4, 0.90, 0.80), (5e-5, 0.85, 0.86)):
        row = {"task": "sst2", "learning_rate": rate, "eval_score": dev, "eval_accuracy": dev,
               "eval_loss": 0.3, "global_step": 10, "train_time": 5.0}
        if selection:
            row.update(selection_eval_score=held, selection_eval_examples=8)
        rows.append(row)
    return rows


def test_the_sweep_chooses_by_the_selection_split_when_it_was_held_out(tmp_path):
    lines = open(glue_finetune.write_sweep_tables(str(tmp_path), _sweep_rows(True))).read()
    lines = lines.splitlines()
    assert lines[0].startswith("| task | learning rate | selection score | dev score |")
    assert lines[2:4] == ["| sst2 | 0.0001 | 0.8000 | 0.9000 | 0.9000 | 0.3000 | 10 | 5 |  |",
                          "| sst2 | 5e-05 | 0.8600 | 0.8500 | 0.8500 | 0.3000 | 10 | 5 | "
                          "**best** |"]
    assert "chosen by the selection split's score (8 training examples held out" in lines[-1]
    assert glue_finetune.best_runs(_sweep_rows(True))["sst2"]["learning_rate"] == 5e-5
    # Without one, dev chooses, as the table always did.
    assert glue_finetune.best_runs(_sweep_rows(False))["sst2"]["learning_rate"] == 1e-4
    plain = open(glue_finetune.write_sweep_tables(str(tmp_path), _sweep_rows(False))).read()
    assert "selection" not in plain and plain.splitlines()[2].endswith("| **best** |")


@pytest.mark.process  # a whole apps.glue_finetune sweep
def test_glue_finetune_scores_and_chooses_on_the_selection_split(toy, tmp_path, capsys):
    data_dir, vocab = toy
    write_tf1_checkpoint(tmp_path / "ckpt", CONFIG, random_weights(tf1_shapes(CONFIG)),
                         vocab=toy_task.vocabulary())
    rows = glue_finetune.main(["--task", "sst2", "--data_dir", data_dir, "--init_checkpoint",
                               str(tmp_path / "ckpt"), "--output_dir", str(tmp_path / "sweep"),
                               "--learning_rates", "1e-3,1e-4", "--num_train_epochs", "1",
                               "--max_seq_length", "16", "--train_batch_size", "16",
                               "--selection_examples", "12", "--selection_seed", "4"])
    printed = capsys.readouterr().out
    assert "48 training examples, 12 held out for selection" in printed
    assert "chosen by the selection split's score (12 training examples" in printed
    run = json.loads((tmp_path / "sweep" / "sst2" / "lr_0.001" / "eval_results.json")
                     .read_text())
    assert run["train_examples"] == 48 and run["selection_eval_examples"] == 12
    assert run["selection_seed"] == 4 and "selection_eval_score" in run
    assert [row["selection_eval_score"] for row in rows] == [
        json.loads((tmp_path / "sweep" / "sst2" / f"lr_{rate}" / "eval_results.json")
                   .read_text())["selection_eval_score"] for rate in ("0.001", "0.0001")]


@pytest.mark.parametrize("app", ["prune", "finetune"])
def test_apps_refuse_a_negative_selection_size_in_one_line(toy, tmp_path, capsys, app):
    if app == "prune":
        module, argv = prune_app, ["--output_dir", str(tmp_path / "out")]
    else:
        module, argv = glue_finetune, ["--task", "sst2", "--data_dir", toy[0],
                                       "--init_checkpoint", str(tmp_path / "none"),
                                       "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        module.main(argv + ["--selection_examples", "-3"])
    error = capsys.readouterr().err
    assert info.value.code == 2 and error.count("\n") == 1
    assert error.startswith("error: --selection_examples must be >= 0; got -3.")


def test_a_pruning_run_records_its_selection_split_and_refuses_another(tmp_path, capsys):
    output = tmp_path / "run"

    def prepared(*flags):
        args = prune_app.build_parser().parse_args(["--output_dir", str(output), *flags])
        return prune_app.prepare_run(prune_app.resolve_args(args))

    prepared("--selection_examples", "100", "--selection_seed", "2")
    saved = json.loads((output / "hparams.json").read_text())
    assert (saved["selection_examples"], saved["selection_seed"]) == (100, 2)
    (output / "finetune").mkdir()  # a step has finished: the settings are the run's
    for flags, changed in ((["--selection_examples", "50", "--selection_seed", "2"],
                            "selection_examples"),
                           (["--selection_examples", "100"], "selection_seed")):
        with pytest.raises(ValueError, match=rf"other settings \({changed}\), used from the "
                                             r"step finetune on"):
            prepared(*flags)
    prepared("--selection_examples", "100", "--selection_seed", "2")  # the same: continued
    # A run recorded before the setting existed held nothing out: it continues without one.
    del saved["selection_examples"], saved["selection_seed"]
    (output / "hparams.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"other settings \(selection_examples, "
                                         r"selection_seed\)"):
        prepared("--selection_examples", "100", "--selection_seed", "2")
    assert prepared() == str(output)


def test_a_pruning_run_trains_without_the_selection_split_and_scores_it(tmp_path, capsys):
    from apps.prune.context import PruningRun

    args = prune_app.resolve_args(prune_app.build_parser().parse_args(
        ["--output_dir", str(tmp_path / "run"), "--selection_examples", "40",
         "--max_eval_examples", "24", "--seed", "1"]))
    run = PruningRun(args, str(tmp_path / "run"))
    held = _ids(run.data.evals["selection"])
    assert len(held) == 40 and len(run.data.train) == 2000 - 40
    assert not set(held) & set(_ids(run.data.train))
    model, _ = run.source.dense_model(run.config, 2)
    flat = run.evaluate_to(model, "finetune")
    saved = json.loads((tmp_path / "run" / "finetune" / "eval_results.json").read_text())
    assert saved == json.loads(json.dumps(flat))
    assert saved["selection_eval_examples"] == 40 and saved["eval_examples"] == 24
    assert "selection_eval_score" in saved
    printed = capsys.readouterr().out
    assert re.search(r"finetune: dev eval_accuracy [\d.]+, .*; selection eval_accuracy", printed)
