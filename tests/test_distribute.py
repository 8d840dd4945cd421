"""The pruning train_step under MirroredStrategy on two logical CPU devices, and what a
worker of a two-worker cluster finds it is."""

import json
import os
import subprocess
import sys

import pytest

from test_multi_worker import ROOT, env, finish, read, start_workers

SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import keras
import numpy as np
import keras_flop

def run(strategy):
    keras.utils.set_random_seed(0)
    config = keras_flop.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=4, intermediate_size=64,
                                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    rng = np.random.default_rng(0)
    # A bool padding_mask in a dataset fails inside MirroredStrategy's input handling (an
    # AddN over bools); the model casts a 0/1 int32 mask to bool itself.
    x = {"token_ids": rng.integers(1, 50, (32, 8)).astype("int32"),
         "segment_ids": np.zeros((32, 8), "int32"),
         "padding_mask": (np.arange(8)[None] < rng.integers(3, 9, (32, 1))).astype("int32")}
    y = (x["token_ids"][:, 1] > 25).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    with strategy.scope():
        model = keras_flop.factorize(keras_flop.build_bert_classifier(config),
                                     target_sparsity=0.5, regularization_scale=1e-3)
        model.compile(optimizer=keras_flop.optimizers.model_optimizer(1e-3, 8),
                      alpha_optimizer=keras.optimizers.Adam(0.05),
                      lambda_optimizer=keras.optimizers.Adam(0.05))
    history = model.fit(dataset, epochs=2, verbose=0).history
    return {k: [float(v) for v in history[k]] for k in ("loss", "task_loss", "lambda_1",
                                                       "expected_sparsity")}

devices = [d.name for d in tf.config.list_logical_devices("CPU")]
mirrored = tf.distribute.MirroredStrategy(devices)
print(json.dumps({"replicas": mirrored.num_replicas_in_sync,
                  "one": run(tf.distribute.get_strategy()), "two": run(mirrored)}))
"""


@pytest.mark.process  # a new process with two logical devices
def test_mirrored_strategy_matches_one_device():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["replicas"] == 2
    for key in ("loss", "task_loss", "lambda_1", "expected_sparsity"):
        one, two = found["one"][key], found["two"][key]
        assert all(abs(a - b) <= 1e-4 * max(1.0, abs(a)) for a, b in zip(one, two)), \
            (key, one, two)


WORKER_SCRIPT = r"""
import json
import tensorflow as tf
from apps.workers import Workers
from keras_flop.distribute import is_multi_worker
strategy = tf.distribute.MultiWorkerMirroredStrategy()
workers = Workers(strategy)
print(json.dumps({"multi_worker": is_multi_worker(strategy), "count": workers.count,
                  "chief": workers.chief, "index": workers.index}))
"""


@pytest.mark.process  # two worker processes, then one alone
def test_a_worker_knows_it_is_one_of_two_and_a_process_alone_that_it_is_not(tmp_path):
    script = tmp_path / "worker.py"  # a file: start_workers formats {index} in its arguments
    script.write_text(WORKER_SCRIPT)
    processes = start_workers([sys.executable, str(script)], tmp_path / "logs")
    assert finish(processes, timeout=300) == [0, 0], read(tmp_path / "logs", 0, "err")[-3000:]
    found = [json.loads(read(tmp_path / "logs", i).strip().splitlines()[-1]) for i in (0, 1)]
    assert found == [{"multi_worker": True, "count": 2, "chief": True, "index": 0},
                     {"multi_worker": True, "count": 2, "chief": False, "index": 1}]
    alone = subprocess.run([sys.executable, str(script)], capture_output=True,
                           text=True, cwd=ROOT, env=env(), timeout=300)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert json.loads(alone.stdout.strip().splitlines()[-1]) == \
        {"multi_worker": False, "count": 1, "chief": True, "index": 0}
