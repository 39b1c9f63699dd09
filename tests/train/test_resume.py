"""A LeNet-5 training process killed with SIGKILL between epochs and started again with the same run folder ends
exactly where an uninterrupted run ends: weights, Adam's step count and moments, seed states, one history row per
epoch, the kept epoch's model and its test metrics. It trains as recipes/lenet5.py does, with the digit
augmentation and dropout on: the random draws a resume most easily loses."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.train import lenet_process
from tests.train.custom_step_model import FINAL_STATE

EPOCHS, STEPS = 4, 4
KILL_AFTER = 2  # backed-up epochs before the kill
# mode="max" keeps the epoch of highest validation loss, the first (the loss falls every epoch at this budget): it
# is kept before the kill and every epoch after the restart is worse, so the resumed run's model.keras and
# best_epoch are right only if the kept model and its score carried across the restart.
MODE = "max"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return lenet_process.train(
        tmp_path_factory.mktemp("resume") / "uninterrupted", epochs=EPOCHS, steps=STEPS, mode=MODE
    )


def _start(out, log):
    command = [sys.executable, "-m", "tests.train.lenet_process", str(out), "--epochs", str(EPOCHS)]
    command += ["--steps", str(STEPS), "--mode", MODE]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Output to a file: a pipe nobody reads while polling could fill and stall the process.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _backed_up(out) -> int:
    state = out / "backup" / "state.json"  # replaced in one step, so never read half-written
    return json.loads(state.read_text())["epochs"] if state.exists() else 0


def _history(out) -> list[dict]:
    with (out / "history.csv").open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_a_killed_lenet_process_resumes_to_the_uninterrupted_state(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    with (tmp_path / "killed.log").open("w") as log:
        process = _start(out, log)
        deadline = time.monotonic() + 300
        while _backed_up(out) < KILL_AFTER:
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Lands in the next epoch: in a training step, its validation, or between its logging and its backup.
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    backed_up = _backed_up(out)
    assert KILL_AFTER <= backed_up < EPOCHS
    # A kill after the CSV logger wrote an epoch and before the backup kept it leaves one row more than the backup
    # holds; that window is narrow, so the row is written here when the kill missed it (the resumed run must drop
    # it and log that epoch once).
    lines = (out / "history.csv").read_text().splitlines(keepends=True)
    assert len(lines) - 1 in (backed_up, backed_up + 1)
    if len(lines) - 1 == backed_up:
        with (out / "history.csv").open("a", newline="") as f:
            f.write(f"{backed_up},{lines[-1].split(',', 1)[1]}")
    with (tmp_path / "resumed.log").open("w") as log:
        assert _start(out, log).wait(timeout=300) == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    resumed_log = (tmp_path / "resumed.log").read_text()
    assert f"Epoch {backed_up + 1}/{EPOCHS}" in resumed_log and f"Epoch {backed_up}/{EPOCHS}" not in resumed_log

    expected = np.load(uninterrupted.path / FINAL_STATE)
    got = np.load(out / FINAL_STATE)
    assert sorted(got.files) == sorted(expected.files)
    assert {key.split("/")[0] for key in got.files} == {"weights", "optimizer", "seeds"}
    # Tolerance 0: with TensorFlow's op determinism on, both processes run the same ops on the same numbers, so a
    # resume that restores everything is bit-identical, and any lost state (a dropout mask, an augmentation draw,
    # a batch, Adam's step in the cosine decay) moves the weights by far more than rounding.
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert int(got["optimizer/0"]) == EPOCHS * STEPS  # Adam's iterations: no step lost or taken twice

    history = _history(out)
    assert [int(row["epoch"]) for row in history] == list(range(EPOCHS))
    for got_row, expected_row in zip(history, uninterrupted.history, strict=True):
        assert got_row == expected_row

    best_epoch = uninterrupted.metrics["best_epoch"]
    assert best_epoch < KILL_AFTER  # kept before the kill, as MODE arranges
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == best_epoch and metrics["epochs_run"] == EPOCHS
    for key in ("test_loss", "test_accuracy"):
        assert metrics[key] == uninterrupted.metrics[key], key
    kept = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    for got_weight, expected_weight in zip(kept.weights, uninterrupted.model.weights, strict=True):
        np.testing.assert_array_equal(got_weight, expected_weight)
