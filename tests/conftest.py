"""Test set-up: quiet TensorFlow, and test helpers importable from this folder."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# A tiny WordPiece vocabulary for hand-worked tokenization examples.
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "great",
         "terrible", "not", "a", "film", "##s", ",", "!", "good", "bad", "plot", "fun"]


@pytest.fixture()
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(WORDS) + "\n")
    return path


def shared_data_dir():
    """The real data for `-m data` tests: $KERAS_FLOP_DATA, or ../shared/data."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("KERAS_FLOP_DATA", default))
