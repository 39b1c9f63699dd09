"""The training engine: run folder, precision policy, strategies, resume, option checks."""

import csv
import json
import math
import os
import subprocess
import sys

import kapps
import kapps.data
import kapps.train
from kapps.data.base import as_arrays
from kapps.errors import OptionError

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, git_commit_of_checkout, train_lenet
from tests.train import lenet_process
from tests.train.custom_step_model import FINAL_STATE


def test_run_folder_holds_everything(lenet_run):
    path = lenet_run.path
    for name in ("model.keras", "config.json", "history.csv", "metrics.json", "plots/curves.png", "logs"):
        assert (path / name).exists(), name
    assert not (path / "backup").exists()  # removed once training finished
    config = json.loads((path / "config.json").read_text())
    assert config["options"]["seed"] == 0 and config["options"]["epochs"] == 4
    assert config["data"]["spec"] == "digits" and config["precision_policy"] == "float32"
    assert set(config["versions"]) >= {"tensorflow", "keras", "numpy", "python"}
    assert config["versions"]["tensorflow"] == tf.__version__ and config["versions"]["keras"] == keras.__version__
    assert config["versions"]["kapps"] == kapps.__version__
    assert config["versions"]["kapps_commit"] == git_commit_of_checkout() and len(git_commit_of_checkout()) >= 40
    metrics = json.loads((path / "metrics.json").read_text())
    # Measured at this budget (4 epochs of 40 batches, seed 0): test accuracy 0.956, loss 0.191; chance is 0.1 and
    # ln 10 = 2.30. The bars leave room for another CPU's rounding, not for a run that learns less.
    assert metrics["test_accuracy"] >= 0.9 and metrics["test_loss"] <= 0.3
    assert metrics["epochs_run"] == 4
    with (path / "history.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean sparse categorical cross-entropy in NumPy, with Keras's clipping of probabilities to [1e-7, 1 - 1e-7]."""
    picked = np.clip(probabilities[np.arange(len(labels)), labels].astype("float64"), 1e-7, 1 - 1e-7)
    return float(np.mean(-np.log(picked)))


def assert_kept_model_is_tested(path, *, row: dict, metrics: dict) -> keras.Model:
    """model.keras in `path` scores `row`'s val_loss on the validation split and metrics' test numbers on the test
    split, both computed here from its predictions; returns it."""
    kept = keras.saving.load_model(path / "model.keras", compile=False, safe_mode=True)
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    for split, loss in ((data.val, row["val_loss"]), (data.test, metrics["test_loss"])):
        images, labels = as_arrays(split)
        probabilities = kept.predict(images, batch_size=256, verbose=0)
        assert cross_entropy(probabilities, labels) == pytest.approx(loss, rel=1e-5)
    accuracy = float(np.mean(np.argmax(probabilities, -1) == labels))
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    return kept


def test_best_model_is_the_one_tested(lenet_run):
    metrics = json.loads((lenet_run.path / "metrics.json").read_text())
    with (lenet_run.path / "history.csv").open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    best = min(rows, key=lambda r: r["val_loss"])
    assert metrics["best_epoch"] == int(best["epoch"])
    # The best row's weights, not just its number: a run that saved or tested another epoch's model scores
    # another validation loss.
    kept = assert_kept_model_is_tested(lenet_run.path, row=best, metrics=metrics)
    for got, expected in zip(lenet_run.model.weights, kept.weights, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_mixed_float16_step_on_cpu(tmp_path):
    run = train_lenet(tmp_path / "mixed", epochs=1, steps=1, precision="mixed_float16")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the run
    config = json.loads((tmp_path / "mixed" / "config.json").read_text())
    assert config["precision_policy"] == "mixed_float16"
    assert run.model.get_layer("c1").compute_dtype == "float16"
    out = run.model(np.zeros((2, 32, 32, 1), "float32"))
    assert out.dtype == "float32"
    assert math.isfinite(run.history[0]["loss"])
    assert math.isfinite(run.metrics["test_loss"])


def _final_weights(out) -> list[np.ndarray]:
    state = np.load(out / FINAL_STATE)
    return [state[key] for key in sorted(state.files, key=lambda k: int(k.split("/")[1])) if key.startswith("weights/")]


def _largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def test_mirrored_strategy_on_two_cpus_matches_one_device(tmp_path):
    """MirroredStrategy on two replicas splits each global batch of 32 in two and averages the replicas' gradients,
    so plain SGD takes the steps that one device takes on the whole batch."""
    # SGD, whose step is proportional to the gradient (Adam's is not): a gradient summed over the replicas would
    # take the steps of twice the learning rate. No dropout or augmentation: replicas draw masks of their own.
    budget = ["--epochs", "1", "--steps", "4", "--sgd", "--no-augment", "--dropout", "0", "--lr", "0.05"]
    # Its own process: the CPU is split into two logical devices before TensorFlow lists its devices.
    mirrored = subprocess.run(
        [sys.executable, "-m", "tests.train.lenet_process", str(tmp_path / "mirrored"), *budget]
        + ["--strategy", "mirrored", "--logical-cpus", "2"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    config = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert config["strategy"] == "MirroredStrategy" and config["replicas"] == 2
    settings = {"epochs": 1, "steps": 4, "sgd": True, "augment": False, "dropout": 0.0}
    default = lenet_process.train(tmp_path / "default", lr=0.05, **settings)
    lenet_process.train(tmp_path / "doubled", lr=0.1, **settings)
    weights = {name: _final_weights(tmp_path / name) for name in ("mirrored", "default", "doubled")}
    # The replicas' half-batch means, averaged, round differently from one mean over the batch: measured 3e-8 on
    # weights up to 0.25 after 4 steps. Twice the learning rate (a summed gradient), or replicas that each take
    # the global batch (other examples), moved them by 6e-3.
    assert _largest_difference(weights["mirrored"], weights["default"]) <= 1e-6
    assert _largest_difference(weights["doubled"], weights["default"]) >= 1e-3
    mirrored_metrics = json.loads((tmp_path / "mirrored" / "metrics.json").read_text())
    for key in ("test_loss", "test_accuracy"):
        assert mirrored_metrics[key] == pytest.approx(default.metrics[key], rel=1e-5, abs=1e-6)


class _Killed(Exception):
    pass


class _KillAfter(keras.callbacks.Callback):
    """Stands for a killed process: stops training with an exception once `epoch` has finished."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Killed


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def test_no_resume_starts_again(tmp_path):
    out = tmp_path / "fresh"
    with pytest.raises(_Killed):
        train_lenet(out, epochs=3, steps=2, callbacks=[_KillAfter(1)])
    # Killed before epoch 1 was backed up: the backup holds epoch 0, where a resumed run would go on from.
    assert json.loads((out / "backup" / "state.json").read_text())["epochs"] == 1
    epochs = _Epochs()
    run = train_lenet(out, epochs=2, steps=2, callbacks=[epochs], resume=False)
    assert epochs.seen == [0, 1]
    assert [int(r["epoch"]) for r in run.history] == [0, 1]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", -1, "--epochs must be a positive whole number"),
        ("epochs", 0, "--epochs must be a positive whole number"),
        ("batch_size", 0, "--batch-size"),
        ("lr", 0.0, "--lr must be positive"),
        ("precision", "float8", "Unknown precision 'float8'"),
        ("strategy", "magic", "Unknown strategy 'magic'"),
        ("steps_per_epoch", 0, "--steps-per-epoch"),
    ],
)
def test_options_out_of_range(field, value, message):
    with pytest.raises(OptionError, match=message):
        kapps.train.TrainOptions(**{field: value})


def test_precision_and_strategy_resolution_on_cpu():
    assert kapps.train.resolve_precision("auto") == "float32"
    assert kapps.train.resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert kapps.train.make_strategy("auto").num_replicas_in_sync == 1
    assert isinstance(kapps.train.make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(OptionError, match="No TPU was found"):
        kapps.train.make_strategy("tpu")


def test_unwritable_run_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OptionError, match="cannot be written"):
        train_lenet(blocker / "run", epochs=1, steps=1)
