"""Kill -9 apps.prune in the middle of pruning, rerun it, and get the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import keras_flop  # noqa: F401 -- registers the layers the saved models use

# A second tier (`python -m pytest -m process`): whole processes, started and stopped.
pytestmark = pytest.mark.process

ARGS = ["--max_train_examples", "256", "--train_batch_size", "16", "--finetune_epochs", "1",
        "--num_train_epochs", "4", "--checkpoint_every_n_steps", "8", "--final_epochs", "0",
        "--seed", "3", "--allow_short"]  # 64 steps: fewer than the schedules are sized for
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command(output):
    return [sys.executable, "-m", "apps.prune", "--output_dir", str(output)] + ARGS


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_DETERMINISTIC_OPS="1",
                PYTHONPATH=ROOT)


def _run(output):
    done = subprocess.run(_command(output), cwd=ROOT, env=_env(), check=True,
                          capture_output=True, text=True, timeout=900)
    # Keras warns when an epoch asks for more batches than the stream has left.
    assert "ran out of data" not in done.stderr
    return done.stdout


def _latest_checkpoint_step(checkpoints):
    state = checkpoints / "checkpoint"
    try:
        first_line = state.read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return 0
    return int(first_line.rsplit("ckpt-", 1)[1].rstrip('"'))


def test_killed_pruning_run_resumes_to_the_uninterrupted_result(tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(killed), cwd=ROOT, env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = killed / "prune" / "checkpoints"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and process.poll() is None:
            # The state file names a checkpoint only once all its files are written.
            if _latest_checkpoint_step(checkpoints) >= 24:  # mid-epoch (16 steps each)
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert not (killed / "prune" / "pruning_model.keras").exists()
    printed = _run(killed)  # the same command again
    # It continued from the checkpoint (a restart from step 0 would end the same way).
    assert "== finetune: done already" in printed and "resuming from" in printed
    resumed_at = int(printed.split("resuming from")[1].split(" at step ")[1].split()[0])
    assert 24 <= resumed_at < 64
    _run(tmp_path / "straight")

    weights = {}
    for name in ("killed", "straight"):
        model = keras.saving.load_model(tmp_path / name / "prune" / "pruning_model.keras")
        # Random-generator states are not part of a .keras file; everything else is.
        weights[name] = [np.asarray(v) for v in model.variables
                         if not v.path.endswith("seed_generator_state")]
    assert len(weights["killed"]) == len(weights["straight"])
    for a, b in zip(weights["killed"], weights["straight"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    results = [json.loads((tmp_path / name / "prune" / "eval_results.json").read_text())
               for name in ("killed", "straight")]
    for key in ("eval_accuracy", "eval_loss", "expected_sparsity", "lambda_1", "lambda_2"):
        assert abs(results[0][key] - results[1][key]) <= 1e-5, key
