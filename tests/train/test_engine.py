"""The training engine: run folder, precision policy, strategies, resume, option checks."""

import csv
import json
import math

import kapps.train
from kapps.errors import OptionError

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import train_lenet


def test_run_folder_holds_everything(lenet_run):
    path = lenet_run.path
    for name in ("model.keras", "config.json", "history.csv", "metrics.json", "plots/curves.png", "logs"):
        assert (path / name).exists(), name
    assert not (path / "backup").exists()  # removed once training finished
    config = json.loads((path / "config.json").read_text())
    assert config["options"]["seed"] == 0 and config["options"]["epochs"] == 4
    assert config["data"]["spec"] == "digits" and config["precision_policy"] == "float32"
    assert set(config["versions"]) >= {"tensorflow", "keras", "kapps"}
    metrics = json.loads((path / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and math.isfinite(metrics["test_loss"])
    assert metrics["epochs_run"] == 4
    with (path / "history.csv").open() as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]


def test_best_model_is_the_one_tested(lenet_run):
    metrics = json.loads((lenet_run.path / "metrics.json").read_text())
    with (lenet_run.path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert metrics["best_epoch"] == int(best["epoch"])


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


def test_mirrored_and_default_strategies_agree(tmp_path):
    default = train_lenet(tmp_path / "default", epochs=1, steps=5, strategy="default")
    mirrored = train_lenet(tmp_path / "mirrored", epochs=1, steps=5, strategy="mirrored")
    config = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert config["strategy"] == "MirroredStrategy" and config["replicas"] == 1
    for key in ("test_loss", "test_accuracy"):
        assert mirrored.metrics[key] == pytest.approx(default.metrics[key], rel=1e-5, abs=1e-6)


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


def test_a_killed_run_resumes_from_its_last_finished_epoch(tmp_path):
    out = tmp_path / "resumed"
    with pytest.raises(_Killed):
        train_lenet(out, epochs=4, steps=3, callbacks=[_KillAfter(1)])
    assert (out / "backup").exists()
    epochs = _Epochs()
    run = train_lenet(out, epochs=4, steps=3, callbacks=[epochs])
    # Killed at the end of epoch 1, before it was logged and backed up: epoch 0 is not trained again, epoch 1 is.
    assert epochs.seen == [1, 2, 3]
    assert [int(r["epoch"]) for r in run.history] == [0, 1, 2, 3]
    assert run.metrics["epochs_run"] == 4


def test_no_resume_starts_again(tmp_path):
    out = tmp_path / "fresh"
    with pytest.raises(_Killed):
        train_lenet(out, epochs=3, steps=2, callbacks=[_KillAfter(0)])
    epochs = _Epochs()
    train_lenet(out, epochs=2, steps=2, callbacks=[epochs], resume=False)
    assert epochs.seen == [0, 1]


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
