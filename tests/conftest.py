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


def random_inputs(n=6, seq=10, seed=0, vocab_size=50):
    """A batch of `n` random model inputs, each padded after a random length of 3 to `seq`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    mask = np.arange(seq)[None, :] < rng.integers(3, seq + 1, n)[:, None]
    return {"token_ids": (rng.integers(1, vocab_size, (n, seq)) * mask).astype("int32"),
            "segment_ids": np.zeros((n, seq), "int32"), "padding_mask": mask}


def shared_data_dir():
    """The real data for `-m data` tests: $KERAS_FLOP_DATA, or ../shared/data."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("KERAS_FLOP_DATA", default))


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    """The apps turn TensorFlow's op determinism on for their process; tests that run an app
    in this process leave the setting as they found it for the tests after them."""
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    yield
    if not was_on and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
