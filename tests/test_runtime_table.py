"""apps.prune's report step on a tiny run directory: the runtime table of the dense and the
compact model in each exported runtime, in report.md and report.json."""

import json

import keras
import numpy as np
import pytest

import keras_flop
from apps.prune.run_dir import RunDirectory

CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32)
FORMATS = ["onnx", "onnx_int8", "litert", "litert_int8"]
CONFIGS = ["batch_8_fixed", "batch_8_bucketed", "batch_1_fixed", "batch_1_bucketed"]


class TinyRun(RunDirectory):
    """What the report step reads of a run: its settings, its data and its directory."""

    def __init__(self, run_dir, args, data):
        super().__init__(str(run_dir), str(run_dir))
        self.args, self.data = args, data


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory as the steps before the report leave it: the dense and the compact
    model with their dev results, the parameter report, the compact model's files."""
    from apps import common, toy_task
    from apps.prune import build_parser, resolve_args
    from keras_flop.training.data import load_task_data

    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    root = tmp_path_factory.mktemp("report")
    data_dir, vocab = toy_task.write_toy_glue(root / "glue", train=8, dev=24, test=2)
    keras.utils.set_random_seed(0)
    config = keras_flop.BertConfig(vocab_size=len(toy_task.vocabulary()), **CONFIG)
    dense = keras_flop.build_bert_classifier(config)
    pruning_model = keras_flop.factorize(dense, structure="heads+ffn")
    pruning_model.network.get_layer("layer_0_head_mask").log_alpha.assign([-10.0, 10, 10, 10])
    pruning_model.network.get_layer("layer_1_intermediate_mask").log_alpha.assign(
        np.where(np.arange(64) % 2, 10.0, -10.0))
    compact = keras_flop.compact(pruning_model)
    run_dir = root / "run"
    for step, model in (("finetune", dense), ("finetune_compact", compact)):
        (run_dir / step).mkdir(parents=True)
        common.save_model(model, str(run_dir / step / "model.keras"))
        common.write_json(str(run_dir / step / "eval_results.json"),
                          {"eval_accuracy": 0.5, "eval_score": 0.5, "eval_loss": 0.7})
    keras_flop.write_parameter_report(keras_flop.parameter_report(pruning_model),
                                      str(run_dir / "compact"))
    keras_flop.export_formats(compact, run_dir / "export", FORMATS, min_agreement=0.0)
    args = resolve_args(build_parser().parse_args([
        "--task", "sst2", "--data_dir", str(data_dir), "--max_seq_length", "16",
        "--output_dir", str(run_dir), "--export_formats", "saved_model," + ",".join(FORMATS)]))
    data = load_task_data(str(data_dir), "sst2", vocab, 16)
    return TinyRun(run_dir, args, data), dense, compact


@pytest.mark.process  # the tiny run exports and times every runtime
def test_without_onnx_or_litert_there_is_no_runtime_table(tiny_run):
    from apps.prune import runtime_table

    run, dense, compact = tiny_run
    run.args.export_formats = "saved_model"
    try:
        assert runtime_table.measure(run, {"dense": dense, "compact": compact}) is None
    finally:
        run.args.export_formats = "saved_model," + ",".join(FORMATS)
    assert runtime_table.runtime_formats(run.args) == FORMATS  # in the table's order
    assert not (run_dir(run) / "report_scratch").exists()


@pytest.mark.process  # the tiny run exports and times every runtime
def test_a_missing_compact_file_names_the_step_to_redo(tiny_run):
    from apps import common
    from apps.prune import runtime_table

    run, dense, compact = tiny_run
    path = run_dir(run) / "export" / "model_int8.tflite"
    path.rename(path.with_suffix(".aside"))
    try:
        with pytest.raises(common.UsageError, match=r"runs the export step's files; missing: "
                                                    r".*export/model_int8.tflite. Pass "
                                                    "--start_from export."):
            runtime_table.measure(run, {"dense": dense, "compact": compact})
    finally:
        path.with_suffix(".aside").rename(path)
    assert not (run_dir(run) / "report_scratch").exists()  # nothing exported


def run_dir(run):
    from pathlib import Path

    return Path(run.run_dir)


@pytest.mark.process  # the tiny run exports and times every runtime
def test_the_runtime_table_in_report_json_and_report_md(tiny_run, capsys, monkeypatch):
    from apps.prune import report
    from keras_flop.export import runtimes
    from keras_flop.export.runtimes import tf_threads

    run, dense, compact = tiny_run
    # Every runner records its threads; LiteRT INT8's answers the other class, so that its
    # row's metric must be its own.
    made = []
    for fmt, runner in list(runtimes.RUNNERS.items()):
        def recording(path, threads=None, fmt=fmt, runner=runner):
            made.append((fmt, threads))
            run_file = runner(path, threads=threads)
            return (lambda batch: run_file(batch)[:, ::-1]) if fmt == "litert_int8" \
                else run_file
        monkeypatch.setitem(runtimes.RUNNERS, fmt, recording)
    report.write_report(run)
    printed = capsys.readouterr().out
    table = json.loads((run_dir(run) / "report.json").read_text())["runtimes"]
    markdown = (run_dir(run) / "report.md").read_text()
    # One row per model and runtime, the dense model's Keras row first.
    assert [(r["model"], r["runtime"]) for r in table["rows"]] == [
        (model, runtime) for model in ("dense", "compact") for runtime in ["keras"] + FORMATS]
    assert table["reference"] == "dense keras"
    assert [c["key"] for c in table["configs"]] == CONFIGS
    assert [(c["batches"], c["examples"]) for c in table["configs"]] == [(3, 24), (3, 24),
                                                                         (24, 24), (24, 24)]
    assert table["threads"] == tf_threads()
    assert (table["metric_examples"], table["split_examples"]) == (24, 24)
    # Every latency and speedup is the one the stored rounds give.
    for config in table["configs"]:
        rounds = {name: np.array(times) for name, times in table["rounds"][config["key"]].items()}
        reference = rounds["dense keras"]
        assert len(reference) == table["rounds_per_config"] == 3
        for row in table["rows"]:
            own = rounds[f"{row['model']} {row['runtime']}"]
            ratios = reference / own
            np.testing.assert_allclose(row["speedup"][config["key"]],
                                       [np.median(ratios), ratios.min(), ratios.max()])
            ms = 1e3 * own / config["batches"]
            np.testing.assert_allclose(row["latency_ms"][config["key"]],
                                       [np.median(ms), ms.min(), ms.max()])
    assert table["rows"][0]["speedup"]["batch_8_fixed"] == [1.0, 1.0, 1.0]
    # The dev metric is each runtime's own, on the whole dev set: Keras' is the model's.
    split = next(iter(run.data.evals))
    dataset = run.data.eval_dataset(split, 8)
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    rows = {(r["model"], r["runtime"]): r for r in table["rows"]}
    for model, name in ((dense, "dense"), (compact, "compact")):
        logits = np.concatenate([np.asarray(model(x, training=False)) for x, _ in dataset])
        accuracy = float(np.mean(np.argmax(logits, -1) == labels))
        assert rows[name, "keras"]["dev"] == {"eval_accuracy": pytest.approx(accuracy)}
        for runtime in ("onnx", "litert"):  # float32: the same predictions
            assert rows[name, runtime]["dev"] == rows[name, "keras"]["dev"]
            assert rows[name, runtime]["agreement"] == 1.0
        assert 0.0 <= rows[name, "onnx_int8"]["agreement"] <= 1.0
        assert rows[name, "litert_int8"]["dev"] == {"eval_accuracy": pytest.approx(1 - accuracy)}
        assert rows[name, "litert_int8"]["agreement"] == 0.0
    # The table's runners on TensorFlow's threads (the dense export's checks on the default).
    assert sorted(threads for _, threads in made if threads is not None) == [tf_threads()] * 8
    # Sizes on disk; the dense model's files were exported for the table and deleted.
    export = run_dir(run) / "export"
    assert rows["compact", "onnx"]["bytes"] == (export / "model.onnx").stat().st_size
    assert rows["compact", "litert_int8"]["bytes"] == \
        (export / "model_int8.tflite").stat().st_size
    assert rows["dense", "keras"]["bytes"] == \
        (run_dir(run) / "finetune" / "model.keras").stat().st_size
    assert rows["dense", "onnx_int8"]["bytes"] < rows["dense", "onnx"]["bytes"]
    assert rows["dense", "onnx"]["file"] == "report_scratch/model.onnx (deleted)"
    assert not (run_dir(run) / "report_scratch").exists()
    # report.md: the table with its thread count, what the metric was computed on, every row.
    assert "## Runtimes" in markdown
    assert "| model | runtime | file (MB) | dev accuracy, whole dev set | agrees with its Keras " \
           "model | batch 8, padded to 16: ms (min–max); speedup | batch 8, length-bucketed: " \
           "ms (min–max); speedup | batch 1, padded to 16: ms (min–max); speedup |" in markdown
    assert f"Every runtime on {tf_threads()} threads" in markdown
    assert "whole dev set (24 examples, batch 8)" in markdown
    dense_onnx_int8 = rows["dense", "onnx_int8"]
    speedup = dense_onnx_int8["speedup"]["batch_1_fixed"]
    assert (f"| dense (fine-tuned) | ONNX Runtime INT8 | {dense_onnx_int8['bytes'] / 2 ** 20:.2f}"
            f" | {dense_onnx_int8['dev']['eval_accuracy']:.4f} |") in markdown
    assert f"{speedup[0]:.2f}x ({speedup[1]:.2f}–{speedup[2]:.2f})" in markdown
    assert sum(line.startswith(("| dense (fine-tuned) |", "| compact (final) |"))
               for line in markdown.split("## Runtimes")[1].splitlines()) == 10
    # Progress while it measures.
    assert "report: runtime table of the dense and the compact model in Keras and onnx, " \
           "onnx_int8, litert, litert_int8" in printed
    assert "report: runtime table: latency in turn (3 rounds) at batch 8 and 1, up to 32 " \
        "batches of each drawn from the 24 dev examples" in printed
    assert "milliseconds per batch, at batch 8 on 24 and at batch 1 on 24 of the 24 dev " \
        "examples (drawn once)" in markdown


@pytest.mark.parametrize("report_examples, total, batch_size, timed", [
    (512, 872, 8, 256), (512, 872, 1, 32), (0, 9815, 8, 256), (100, 872, 8, 96),
    (20, 872, 1, 20), (512, 24, 8, 24), (512, 5, 8, 5), (0, 12, 8, 8)])
def test_latencies_are_timed_on_whole_batches_at_most_32(report_examples, total, batch_size,
                                                         timed):
    import types

    from apps.prune import runtime_table

    args = types.SimpleNamespace(report_examples=report_examples)
    assert runtime_table.timed_examples(args, total, batch_size) == timed
