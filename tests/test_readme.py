"""README's "The library" section runs as written, in order, on a tiny checkpoint."""

import os
import re
import warnings

import numpy as np
import pytest
import tensorflow as tf

from tf1_bert import random_weights, tf1_shapes, write_tf1_checkpoint

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
# The words of the section's texts, so that they tokenize to real ids.
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "charming", "and", "moving",
         "journey", "the", "plot", "is", "thin", "jokes", "fall", "flat", "film"]
TINY = dict(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=128, type_vocab_size=2,
            hidden_act="gelu", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            initializer_range=0.02)


def library_blocks(text):
    """The python code blocks of the section `## The library`, up to its next heading."""
    section = text.split("\n## The library\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_a_block_per_stage():
    with open(README) as f:
        blocks = library_blocks(f.read())
    calls = ["load_checkpoint", "BertPreprocessor", ".fit(", "factorize", "compact(",
             "Distiller", "export_saved_model", "measure_latency_table", "targets=",
             "prune_post_training"]
    joined = "\n".join(blocks)
    assert len(blocks) >= 8 and [c for c in calls if c not in joined] == []


@pytest.mark.process  # every stage in turn, about a minute and a half: the second tier
def test_the_library_section_runs_as_written(tmp_path, monkeypatch):
    write_tf1_checkpoint(str(tmp_path / "BERT_DIR"), TINY, random_weights(tf1_shapes(TINY)),
                         adam_slots=False, vocab=WORDS)
    monkeypatch.chdir(tmp_path)
    with open(README) as f:
        blocks = library_blocks(f.read())
    namespace = {}
    with warnings.catch_warnings():
        # A run that ends off its target, or a family member never met, fails the test.
        warnings.filterwarnings("error", message=r"The run ended")
        for number, block in enumerate(blocks):
            exec(compile(block, f"README.md, library block {number + 1}", "exec"), namespace)

    dense, compact_model = namespace["dense"], namespace["compact_model"]
    features, label = namespace["features"], namespace["label"]
    assert features["token_ids"].shape == (8, 128) and label.shape == (8,)
    assert int(features["token_ids"][0, 1]) > 4  # a word of the vocabulary, not [UNK]
    history = namespace["history"].history
    assert abs(history["expected_sparsity"][-1] - 0.5) <= 0.02
    assert compact_model.count_params() < dense.count_params()
    assert sum(h for h, _ in compact_model.layer_shapes) < 4
    assert os.path.exists("compact.keras") and os.path.isdir("export/1")
    assert len(namespace["members"]) == 3
    assert [m.count_params() for m in namespace["members"]] == \
        sorted((m.count_params() for m in namespace["members"]), reverse=True)
    assert namespace["fast_model"].count_params() < dense.count_params()
    served = namespace["served"].signatures["predict_text"]
    logits = served(text=tf.constant(["a charming film"]))["logits"]
    np.testing.assert_allclose(np.asarray(logits), np.asarray(
        compact_model(namespace["preprocessor"](["a charming film"]))), atol=1e-4)
