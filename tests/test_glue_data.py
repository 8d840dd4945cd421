"""GLUE readers, tokenization and packing, the tf.data pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from keras_flop import glue
from conftest import shared_data_dir
from keras_flop import BertPreprocessor, BertTokenizer

FILES = {
    "CoLA/train.tsv": "gj04\t1\t\tThe sailors rode.\ngj04\t0\t*\tRode the sailors the.\n",
    "CoLA/test.tsv": "index\tsentence\n0\tBill whistled.\n",
    "SST-2/train.tsv": "sentence\tlabel\na charming journey \t1\ndull \t0\n",
    "SST-2/test.tsv": "index\tsentence\n0\tuneasy mishmash .\n",
    "MRPC/train.tsv": "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
                      "1\t11\t12\tHe said.\tHe says.\n0\t13\t14\tA \"quote.\tB.\n",
    "MRPC/test.tsv": "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tA.\tB.\n",
    "STS-B/train.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                       "sentence2\tscore\n0\tm\tf\t2012\t0\tn\tn\tA man.\tA guy.\t4.750\n",
    "STS-B/test.tsv": "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\t"
                      "sentence2\n0\tm\tf\t2012\t0\tn\tn\tA girl.\tA kid.\n",
    "QQP/train.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                     "7\t1\t2\tHow?\tWhy?\t0\n",
    "QQP/test.tsv": "id\tquestion1\tquestion2\n0\tHow?\tWhy?\n",
    "MNLI/train.tsv": "index\tpromptID\tpairID\tgenre\tb1\tb2\tp1\tp2\tsentence1\tsentence2\t"
                      "label1\tgold_label\n0\t1\t1\tg\tx\tx\tx\tx\tA cat.\tAn animal.\t"
                      "entailment\tentailment\n",
    "MNLI/dev_mismatched.tsv": "index\tpromptID\tpairID\tgenre\tb1\tb2\tp1\tp2\tsentence1\t"
                               "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
                               "0\t1\t1\tg\tx\tx\tx\tx\tA.\tB.\tneutral\tneutral\tneutral\t"
                               "neutral\tneutral\tneutral\n",
    "QNLI/dev.tsv": "index\tquestion\tsentence\tlabel\n0\tWhat?\tThat.\tnot_entailment\n",
    "RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n",
    "WNLI/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\t1\n",
}

EXPECTED = [  # task, split, number of examples, first (guid, text_a, text_b, label)
    ("cola", "train", 2, ("0", "The sailors rode.", None, "1")),
    ("cola", "test", 1, ("0", "Bill whistled.", None, None)),
    ("sst2", "train", 2, ("0", "a charming journey ", None, "1")),
    ("sst2", "test", 1, ("0", "uneasy mishmash .", None, None)),
    ("mrpc", "train", 2, ("0", "He said.", "He says.", "1")),
    ("mrpc", "test", 1, ("0", "A.", "B.", None)),
    ("stsb", "train", 1, ("0", "A man.", "A guy.", 4.75)),
    ("stsb", "test", 1, ("0", "A girl.", "A kid.", None)),
    ("qqp", "train", 1, ("7", "How?", "Why?", "0")),
    ("qqp", "test", 1, ("0", "How?", "Why?", None)),
    ("mnli", "train", 1, ("0", "A cat.", "An animal.", "entailment")),
    ("mnli", "dev_mismatched", 1, ("0", "A.", "B.", "neutral")),
    ("qnli", "dev", 1, ("0", "What?", "That.", "not_entailment")),
    ("rte", "train", 1, ("0", "A.", "B.", "entailment")),
    ("wnli", "train", 1, ("0", "A.", "B.", "1")),
]


@pytest.fixture()
def glue_dir(tmp_path):
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("task, split, count, first", EXPECTED,
                         ids=[f"{case[0]}-{case[1]}" for case in EXPECTED])
def test_readers_parse_every_task_format(glue_dir, task, split, count, first):
    examples = glue.read_split(glue_dir, task, split)
    assert len(examples) == count
    e = examples[0]
    assert (e.guid, e.text_a, e.text_b, e.label) == first


def test_task_names():
    assert glue.get_task("SST-2").name == "sst2" and glue.get_task("sts-b").num_labels == 1
    assert glue.get_task("MNLI").eval_splits == ("dev_matched", "dev_mismatched")
    with pytest.raises(ValueError, match="Unknown GLUE task 'sst3'; expected one of"):
        glue.get_task("sst3")


BAD_ROWS = [
    ("SST-2/train.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\tcolumns\n", "sst2", "train",
     "train.tsv:3: expected 2 tab-separated columns"),
    ("SST-2/train.tsv", "sentence\tlabel\nok\t2\n", "sst2", "train",
     "train.tsv:2: unknown sst2 label '2'"),
    ("STS-B/dev.tsv", FILES["STS-B/train.tsv"].replace("4.750", "high"), "stsb", "dev",
     "dev.tsv:2: cannot parse the stsb score 'high'"),
    ("STS-B/dev.tsv", FILES["STS-B/train.tsv"].replace("4.750", "5.5"), "stsb", "dev",
     "dev.tsv:2: stsb score 5.5 is outside [0.0, 5.0]"),
    ("SST-2/dev.tsv", "sentence\tlabel\n", "sst2", "dev", "dev.tsv: no examples"),
    ("SST-2/dev.tsv", "", "sst2", "dev", "dev.tsv: no examples"),
    ("RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tmaybe\n", "rte", "dev",
     "unknown rte label 'maybe'"),
]


@pytest.mark.parametrize("name, text, task, split, message", BAD_ROWS)
def test_malformed_files_name_file_and_line(tmp_path, name, text, task, split, message):
    path = tmp_path / name
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(glue.GlueDataError) as error:
        glue.read_split(tmp_path, task, split)
    assert message in str(error.value) and str(path.parent) in str(error.value)


def test_non_utf8_and_missing_files(tmp_path):
    path = tmp_path / "CoLA" / "train.tsv"
    path.parent.mkdir()
    path.write_bytes(b"gj04\t1\t\tfine\ngj04\t1\t\tbad \xff byte\n")
    with pytest.raises(glue.GlueDataError, match=r"train.tsv:2: not valid UTF-8"):
        glue.read_split(tmp_path, "cola", "train")
    with pytest.raises(glue.GlueDataError, match=r"GLUE file not found: .*CoLA.dev.tsv"):
        glue.read_split(tmp_path, "cola", "dev")
    with pytest.raises(ValueError, match="Unknown split 'validation'"):
        glue.read_split(tmp_path, "cola", "validation")


def test_mrpc_from_microsoft_source_files(tmp_path):
    directory = tmp_path / "MRPC"
    directory.mkdir()
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    (directory / "msr_paraphrase_train.txt").write_text(
        header + "1\t1\t2\tA.\tB.\n0\t3\t4\tC.\tD.\n1\t5\t6\tE.\tF.\n")
    (directory / "msr_paraphrase_test.txt").write_text(header + "1\t7\t8\tG.\tH.\n")
    (directory / "dev_ids.tsv").write_text("3\t4\n")
    assert [e.text_a for e in glue.read_split(tmp_path, "mrpc", "train")] == ["A.", "E."]
    assert [e.text_a for e in glue.read_split(tmp_path, "mrpc", "dev")] == ["C."]
    assert [e.text_a for e in glue.read_split(tmp_path, "mrpc", "test")] == ["G."]
    assert glue.available_splits(tmp_path, "mrpc") == ["train", "dev", "test"]


def test_preprocessor_gives_hand_worked_ids(vocab_file):
    encode = BertPreprocessor(vocab_file, 10)
    single = encode(tf.constant(["The movie was GREAT!", "films zzz"]))
    np.testing.assert_array_equal(single["token_ids"].numpy(), [
        [2, 5, 6, 7, 8, 15, 3, 0, 0, 0],
        [2, 12, 13, 1, 3, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(single["padding_mask"].numpy()[1], [1] * 5 + [0] * 5)
    # a has 9 tokens, b 2, room for 7: the longer segment is cut first (5 + 2).
    pair = encode(tf.constant(["the movie was not a good film , bad"]), tf.constant(["fun plot"]))
    np.testing.assert_array_equal(pair["token_ids"].numpy()[0],
                                  [2, 5, 6, 7, 10, 11, 3, 19, 18, 3])
    np.testing.assert_array_equal(pair["segment_ids"].numpy()[0], [0] * 7 + [1] * 3)


def test_lowercase_follows_the_vocabulary(tmp_path, vocab_file):
    from conftest import WORDS

    assert BertTokenizer(vocab_file).lowercase
    cased = tmp_path / "cased.txt"
    cased.write_text("\n".join(WORDS + ["The"]) + "\n")
    assert not BertTokenizer(cased).lowercase
    assert BertTokenizer(cased, lowercase=True).lowercase


def test_dataset_shapes_dtypes_and_shuffling(glue_dir, vocab_file):
    preprocessor = BertPreprocessor(vocab_file, max_seq_length=8)
    examples = glue.read_split(glue_dir, "mrpc", "train") * 5
    dataset = glue.make_dataset(examples, "mrpc", preprocessor, batch_size=4, training=True)
    features, labels = next(iter(dataset))
    assert features["token_ids"].shape == (4, 8) and features["token_ids"].dtype == tf.int32
    assert features["padding_mask"].dtype == tf.bool and labels.dtype == tf.int32
    epochs = [np.concatenate([y.numpy() for _, y in dataset]) for _ in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs) and len(epochs[0]) == 10
    stsb = glue.make_dataset(glue.read_split(glue_dir, "stsb", "train"), "stsb", preprocessor, 2)
    assert next(iter(stsb))[1].dtype == tf.float32
    test = glue.make_dataset(glue.read_split(glue_dir, "sst2", "test"), "sst2", preprocessor, 2,
                             labeled=False)
    assert set(next(iter(test))) == {"token_ids", "segment_ids", "padding_mask"}


def test_training_stream_resumes_with_the_same_batches(glue_dir, vocab_file):
    preprocessor = BertPreprocessor(vocab_file, max_seq_length=8)
    examples = glue.read_split(glue_dir, "mrpc", "train") * 5  # 10 examples, 4 batches/epoch

    def labels(start):
        stream = glue.make_training_stream(examples, "mrpc", preprocessor, 3, seed=1,
                                           total_steps=11, start_step=start)
        return [tuple(y.numpy()) for _, y in stream]

    full = labels(0)
    assert len(full) == 11 and full[:4] != full[4:8]  # epochs are shuffled differently
    for start in (1, 4, 6, 10):
        assert labels(start) == full[start:]
    with pytest.raises(ValueError, match="start_step < total_steps"):
        labels(11)


def test_write_test_predictions(tmp_path, glue_dir):
    examples = glue.read_split(glue_dir, "rte", "train") * 2
    path = glue.write_test_predictions(str(tmp_path / "test_results.tsv"), "rte", examples,
                                       [[0.1, 0.9], [2.0, 1.0]])
    assert open(path).read() == "index\tprediction\n0\tnot_entailment\n0\tentailment\n"
    path = glue.write_test_predictions(str(tmp_path / "stsb.tsv"), "stsb", examples[:2],
                                       [[6.2], [-0.3]])
    assert open(path).read().splitlines()[1:] == ["0\t5.000", "0\t0.000"]


def test_tfds_source_offline_with_mock_data():
    import tensorflow_datasets as tfds  # a dependency: its mock data needs no network

    with tfds.testing.mock_data(num_examples=5):
        examples = glue.load_tfds("rte", "dev")
    assert len(examples) == 5
    assert all(e.label in ("entailment", "not_entailment") for e in examples)
    assert all(isinstance(e.text_a, str) and isinstance(e.text_b, str) for e in examples)


@pytest.mark.data
def test_real_glue_files_read_completely():
    directory = shared_data_dir() / "glue"
    if not directory.is_dir():
        pytest.skip(f"no GLUE data in {directory}")
    counts = {(t, s): len(glue.read_split(directory, t, s)) for t in glue.TASKS
              for s in glue.available_splits(directory, t)}
    assert counts[("sst2", "dev")] == 872 and counts[("cola", "train")] == 8551
    assert counts[("stsb", "dev")] == 1500 and counts[("mrpc", "train")] == 3668
