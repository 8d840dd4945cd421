"""`apps.prune` end to end from a Hugging Face DistilBERT directory (a WordPiece `vocab.txt`)
and an XLM-RoBERTa one (a `sentencepiece.bpe.model` trained here on the toy task with
sentencepiece's trainer): each family's tokenizer feeds fine-tuning and the Lagrangian pruning,
is kept beside the fine-tuned model, and tokenizes in the exported text signature as the
family's reference tokenizer does; the ONNX and LiteRT files are written beside it."""

import json

import pytest
import tensorflow as tf

from apps import prune as prune_app
from apps import toy_task
from hf_families import (DISTILBERT_CONFIG, ROBERTA_CONFIG, TOY_PRUNE_FLAGS, distilbert_names,
                         fairseq_ids, random_hf_weights, roberta_names, train_sentencepiece,
                         write_hf_directory)


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    """Toy SST-2 data, its WordPiece vocabulary and its training sentences."""
    root = tmp_path_factory.mktemp("glue")
    data_dir, vocab_file = toy_task.write_toy_glue(root, train=64, dev=32, test=8)
    lines = (data_dir / "SST-2" / "train.tsv").read_text().splitlines()[1:]
    return data_dir, vocab_file, [line.split("\t")[0] for line in lines]


@pytest.fixture(scope="module")
def distilbert(glue, tmp_path_factory):
    """A pre-trained `DistilBertModel` directory (no classifier) with the toy task's
    `vocab.txt`; Hugging Face's WordPiece tokenizer of it (the reference)."""
    from tokenizers import BertWordPieceTokenizer

    _, vocab_file, _ = glue
    directory = tmp_path_factory.mktemp("distilbert")
    words = open(vocab_file, encoding="utf-8").read()
    (directory / "vocab.txt").write_text(words, encoding="utf-8")
    config = dict(DISTILBERT_CONFIG, architectures=["DistilBertModel"],
                  vocab_size=len(words.split()))
    write_hf_directory(directory, config,
                       random_hf_weights(distilbert_names(config, head=None), std=0.05))
    return directory, BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)


@pytest.fixture(scope="module")
def xlm_r(glue, tmp_path_factory):
    """A pre-trained `XLMRobertaModel` directory (no classifier) with a
    `sentencepiece.bpe.model` trained on the toy task; sentencepiece's processor of it (the
    reference, with fairseq's ids)."""
    import sentencepiece as spm

    _, _, texts = glue
    directory = tmp_path_factory.mktemp("xlmr")
    path = train_sentencepiece(directory / "sentencepiece.bpe.model", vocab_size=80,
                               texts=texts)
    processor = spm.SentencePieceProcessor(model_file=str(path))
    # fairseq's offset and <mask>: two ids beyond SentencePiece's pieces.
    config = dict(ROBERTA_CONFIG, model_type="xlm-roberta", architectures=["XLMRobertaModel"],
                  max_position_embeddings=34, vocab_size=processor.get_piece_size() + 2)
    write_hf_directory(directory, config,
                       random_hf_weights(roberta_names(config, head=None), std=0.05))
    return directory, processor


def _prune(directory, data_dir, output, capsys):
    prune_app.main(TOY_PRUNE_FLAGS + ["--data_dir", str(data_dir), "--init_checkpoint",
                                      str(directory), "--output_dir", str(output),
                                      "--export_formats", "saved_model,onnx,litert"])
    assert "used as it is" not in capsys.readouterr().out  # pre-trained: fine-tuned here
    info = json.loads((output / "compact" / "info.json").read_text())
    assert info["dense_sparsity"] > 0
    for name in ("model.onnx", "model.tflite"):
        assert (output / "export" / name).stat().st_size > 0


def _exported_ids(export_dir, text, packing):
    loaded = tf.saved_model.load(str(export_dir))
    tokens = loaded.signatures["tokenize_text"](text=tf.constant([text]))
    with open(export_dir / "assets.extra" / "keras_flop_export.json") as f:
        assert json.load(f)["packing"] == packing
    return tokens["token_ids"].numpy()[0][tokens["padding_mask"].numpy()[0]].tolist()


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_lagrangian_from_a_distilbert_directory(glue, distilbert, tmp_path, capsys):
    directory, reference = distilbert
    output = tmp_path / "run"
    _prune(directory, glue[0], output, capsys)
    # The fine-tuned model keeps its tokenizer beside it, under Hugging Face's name.
    assert (output / "finetune" / "vocab.txt").read_text() == \
        (directory / "vocab.txt").read_text()
    assert not (output / "finetune" / "vocab.json").exists()
    for text in ("The movie was not really charming, overall.", "an excellent film!"):
        # `[CLS] text [SEP]`, lowercased; "an", "excellent" and "!" are [UNK].
        assert _exported_ids(output / "export" / "1", text, "bert") == \
            reference.encode(text).ids, text


@pytest.mark.process  # a whole app run: the second tier
def test_prune_app_lagrangian_from_an_xlm_r_directory(glue, xlm_r, tmp_path, capsys):
    directory, processor = xlm_r
    output = tmp_path / "run"
    _prune(directory, glue[0], output, capsys)
    # The fine-tuned model keeps its tokenizer beside it, under Hugging Face's name.
    assert (output / "finetune" / "sentencepiece.bpe.model").read_bytes() == \
        (directory / "sentencepiece.bpe.model").read_bytes()
    assert not (output / "finetune" / "vocab.txt").exists()
    for text in ("the movie was charming", "a charming film!"):  # "!" is <unk>: 3
        # `<s> text </s>`, SentencePiece's ids moved up one past fairseq's specials.
        assert _exported_ids(output / "export" / "1", text, "roberta") == \
            [0] + fairseq_ids(processor, text) + [2], text
