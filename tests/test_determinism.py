"""A repeated command gives the same digits: the apps' seeding with op determinism, checked on
a tiny model in two fresh processes."""

import os
import subprocess
import sys

import numpy as np
import pytest

# A second tier (`python -m pytest -m process`): whole processes, started and stopped.
pytestmark = pytest.mark.process

SCRIPT = r"""
import sys
import numpy as np
from apps import common
common.set_seed(7, deterministic=sys.argv[1] == "1")
import keras
import keras_flop
from keras_flop import BertConfig, build_bert_classifier
from keras_flop.training import optimizers
config = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=16)
model = keras_flop.factorize(build_bert_classifier(config), structure="heads+ffn",
                             target_sparsity=0.5)
model.compile(optimizer=optimizers.model_optimizer(1e-3, 8))
rng = np.random.default_rng(0)
x = {"token_ids": rng.integers(1, 40, (64, 12)).astype("int32"),
     "segment_ids": np.zeros((64, 12), "int32"), "padding_mask": np.ones((64, 12), bool)}
y = (x["token_ids"][:, 1] > 20).astype("int32")
model.fit(x, y, batch_size=8, epochs=1, shuffle=True, verbose=0)
np.save(sys.argv[2], np.concatenate([np.ravel(w) for w in model.get_weights()]))
"""


def _run(tmp_path, name, deterministic):
    out = tmp_path / f"{name}.npy"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", SCRIPT, "1" if deterministic else "0", str(out)],
                   check=True, cwd=root, capture_output=True,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return np.load(out)


def test_two_seeded_runs_give_identical_weights(tmp_path):
    first, second = _run(tmp_path, "a", True), _run(tmp_path, "b", True)
    np.testing.assert_array_equal(first, second)
