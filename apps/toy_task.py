"""The built-in default of `apps.prune`: a small sentiment task in SST-2's tsv format and a
tiny BERT for it, so the whole pipeline runs offline in minutes on a laptop CPU."""

import os

import numpy as np

from keras_flop import BertConfig

POSITIVE = ["good", "great", "fine", "charming", "brilliant", "lovely", "moving", "funny",
            "superb", "warm"]
NEGATIVE = ["bad", "dull", "awful", "boring", "weak", "flat", "tedious", "poor", "clumsy",
            "bland"]
SUBJECTS = ["the movie", "the film", "this story", "the plot", "the cast", "the ending",
            "the script", "the music", "the acting", "the director"]
LINKS = ["was", "is", "felt", "seemed", "looked"]
FILLERS = ["really", "quite", "rather", "very", "so", "truly", "a bit", "mostly"]
EXTRAS = ["overall", "today", "again", "at times", "in the end", "for once", ",", "."]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary():
    words = set()
    for group in (POSITIVE, NEGATIVE, SUBJECTS, LINKS, FILLERS, EXTRAS, ["not", "but", "and"]):
        for phrase in group:
            words.update(phrase.split())
    return SPECIAL + sorted(words)


def sentence(rng):
    """A sentence and its label: the sentiment word decides, `not` flips it."""
    positive = rng.random() < 0.5
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.3
    parts = [rng.choice(SUBJECTS), rng.choice(LINKS)]
    if negated:
        parts.append("not")
    if rng.random() < 0.6:
        parts.append(rng.choice(FILLERS))
    parts.append(word)
    if rng.random() < 0.5:
        parts.append(rng.choice(EXTRAS))
    return " ".join(parts), int(positive != negated)


def write_toy_glue(directory, seed=0, train=2000, dev=300, test=100):
    """Writes `<directory>/SST-2/{train,dev,test}.tsv` and `<directory>/vocab.txt`."""
    rng = np.random.default_rng(seed)
    task_dir = os.path.join(directory, "SST-2")
    os.makedirs(task_dir, exist_ok=True)
    for name, count in (("train", train), ("dev", dev), ("test", test)):
        rows = [sentence(rng) for _ in range(count)]
        if name == "test":
            lines = ["index\tsentence"] + [f"{i}\t{text}" for i, (text, _) in enumerate(rows)]
        else:
            lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
        with open(os.path.join(task_dir, f"{name}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary()) + "\n")
    return directory, vocab_file


def toy_config():
    return BertConfig(vocab_size=len(vocabulary()), hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=256,
                      max_position_embeddings=64)
