"""The engine trains a model that compiles itself (its own train_step and test_step, two optimizers) with val and
test optional, and a training process killed with SIGKILL resumes to exactly the state of an uninterrupted run."""

import csv
import json
import os
import signal
import subprocess
import sys

import kapps.data
import kapps.train

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT
from tests.train import custom_step_model as csm


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> kapps.train.Run:
    """Five epochs of the two-optimizer model, no val, no test, the epoch of best training agreement kept."""
    return csm.train(tmp_path_factory.mktemp("custom_step") / "uninterrupted")


def test_a_model_with_its_own_train_step_trains_without_val_or_test(uninterrupted):
    run = uninterrupted
    assert set(run.metrics) == {"best_epoch", "epochs_run", "train_seconds_this_session"}
    assert run.metrics["epochs_run"] == 5
    assert set(run.history[0]) == {"epoch", "loss", "agreement"}  # what its train_step returns
    agreement = [row["agreement"] for row in run.history]
    assert run.metrics["best_epoch"] == int(np.argmax(agreement))
    # Chance is 0.5 (the labels are balanced): it learns, with dropout, noise and augmentation on.
    assert max(agreement) >= 0.75, agreement
    assert run.history[-1]["loss"] < 0.8 * run.history[0]["loss"]
    assert not (run.path / "backup").exists()
    loaded = keras.saving.load_model(run.path / "model.keras", compile=False, safe_mode=True)
    assert isinstance(loaded, csm.TwoOptimizerClassifier) and loaded.filters == 16
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_array_equal(loaded(images), run.model(images))


def _run(out, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.train.custom_step_model", str(out), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _epochs(out) -> list[int]:
    with (out / "history.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_a_killed_process_resumes_to_the_state_of_an_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    killed = _run(out, "--kill-epoch", "2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # Killed in the middle of the third epoch: the first two are logged and backed up, the third is lost.
    assert _epochs(out) == [0, 1]
    assert json.loads((out / "backup" / "state.json").read_text())["epochs"] == 2
    resumed = _run(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch 3/5" in resumed.stdout and "Epoch 2/5" not in resumed.stdout
    assert _epochs(out) == [0, 1, 2, 3, 4]
    expected = np.load(uninterrupted.path / csm.FINAL_STATE)
    got = np.load(out / csm.FINAL_STATE)
    assert sorted(got.files) == sorted(expected.files)
    groups = {key.split("/")[0] for key in got.files}
    assert groups == {"weights", "optimizer", "features_optimizer", "head_optimizer", "seeds"}, groups
    # Tolerance 0: with TensorFlow's op determinism on, both processes run the same ops on the same numbers, so a
    # resume that restores everything is bit-identical, while any state it loses (a dropout mask, a noise draw,
    # an augmentation draw, a batch) moves the weights by far more than rounding: any tolerance would only hide it.
    for key in expected.files:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    with (out / "history.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert losses == [row["loss"] for row in uninterrupted.history]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == uninterrupted.metrics["best_epoch"]  # the best checkpoint carried across
    best = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    for got_weight, expected_weight in zip(best.weights, uninterrupted.model.weights, strict=True):
        np.testing.assert_array_equal(got_weight, expected_weight)


def _split(seed: int) -> tuple[tf.data.Dataset, np.ndarray, np.ndarray]:
    images, labels = (np.stack([np.asarray(t) for t in column]) for column in zip(*csm.examples(seed), strict=True))
    return kapps.data.pipeline(csm.examples(seed), batch_size=32, training=False), images, labels


# monitor=None keeps the last epoch; "val_loss" with mode="max" keeps the worst, here the first: so the test
# metrics can only match if they are measured on the kept epoch, not on the weights training ended with.
@pytest.mark.parametrize(("monitor", "mode", "kept"), [(None, "min", 2), ("val_loss", "max", 0)])
def test_val_and_test_with_its_own_test_step(tmp_path, monitor, mode, kept):
    val, _, _ = _split(2)
    test, images, labels = _split(3)
    run = csm.train(tmp_path / "run", epochs=3, monitor=monitor, mode=mode, val=val, test=test)
    assert {"val_loss", "val_agreement"} <= set(run.history[0])
    assert run.metrics["best_epoch"] == kept
    final = np.load(run.path / csm.FINAL_STATE)
    same_as_last = [np.array_equal(w, final[f"weights/{i}"]) for i, w in enumerate(run.model.weights)]
    assert all(same_as_last) == (kept == 2)
    # test_step's agreement, counted here from the logits of the model.keras that was kept
    expected = float(np.mean(np.argmax(run.model.predict(images, verbose=0), -1) == labels))
    assert run.metrics["test_agreement"] == pytest.approx(expected, abs=1e-6)
    assert 0.0 < run.metrics["test_loss"] < 1.0


def test_a_validation_monitor_without_val_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"monitor='val_loss' needs a validation split: pass val, monitor"):
        csm.train(tmp_path / "run", monitor="val_loss")
    assert not (tmp_path / "run").exists()


def test_a_monitor_training_does_not_log_stops_the_first_epoch(tmp_path):
    with pytest.raises(ValueError, match=r"^monitor='accuracy' is not a quantity this training logs; it logs agree"):
        csm.train(tmp_path / "run", epochs=2, monitor="accuracy")
    assert not (tmp_path / "run" / "model.keras").exists()
    assert not (tmp_path / "run" / "backup").exists()


def _fit(out, **kwargs):
    opts = kapps.train.TrainOptions(epochs=1, batch_size=csm.BATCH, out=str(out))
    train = kapps.data.pipeline(csm.examples(1), batch_size=csm.BATCH, training=True)
    return kapps.train.fit(opts, train=train, train_steps=2, monitor="loss", **kwargs)


def test_a_compiled_model_with_a_loss_is_refused(tmp_path):
    with pytest.raises(ValueError, match="build_model returned a compiled model, and a loss was given"):
        _fit(tmp_path / "run", build_model=csm.build_compiled, loss="mse")


def test_an_uncompiled_model_without_a_loss_is_refused(tmp_path):
    with pytest.raises(ValueError, match="build_model returned a model that is not compiled, and no loss was given"):
        _fit(tmp_path / "run", build_model=csm.TwoOptimizerClassifier)


def test_metrics_without_a_loss_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"metrics is given without a loss.*Received: metrics=\['accuracy'\]"):
        _fit(tmp_path / "run", build_model=csm.build_compiled, metrics=["accuracy"])


def test_an_optimizer_left_unbuilt_by_compile_is_refused(tmp_path):
    def build_model():
        model = csm.build_compiled()
        model.head_optimizer = keras.optimizers.SGD(0.1)  # never built: its state could not be restored
        return model

    with pytest.raises(ValueError, match="optimizer 'head_optimizer' has no variables when training starts"):
        _fit(tmp_path / "run", build_model=build_model)
