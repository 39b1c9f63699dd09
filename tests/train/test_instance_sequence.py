"""The recurrent instance segmentation preset trains through the engine into a run folder whose `model.keras` is the
segmenter with its stop, scored by the CVPPP metrics on the test split, and which `kapps export` verifies."""

import json

import kapps.export
from kapps.data import load_instances
from kapps.train import TrainOptions
from kapps.train.instance_sequence import fit_instance_segmenter

import keras
import numpy as np
import pytest

TINY = {"max_instances": 4, "encoder_filters": (4, 8), "lstm_filters": 4}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "leaves"
    opts = TrainOptions(epochs=2, batch_size=4, lr=3e-3, out=str(out), steps_per_epoch=3, data="leaves")
    data = load_instances("leaves", image_size=(32, 32), seed=0, sizes=(12, 8, 8), leaves=(1, 4))
    return fit_instance_segmenter(opts, data=data, model_kwargs=TINY)


def test_the_run_folder_holds_the_segmenter_and_its_leaf_scores(run):
    assert {"config.json", "metrics.json", "model.keras", "training_model.keras"} <= {
        p.name for p in run.path.iterdir()
    }
    model = keras.saving.load_model(run.path / "model.keras", safe_mode=True)
    assert sorted(model.output) == ["confidences", "count", "masks"]
    assert model.get_layer("stop").threshold == 0.5
    trainer = keras.saving.load_model(run.path / "training_model.keras", compile=False, safe_mode=True)
    assert trainer.segmenter.count_params() == model.count_params()
    config = json.loads((run.path / "config.json").read_text())
    assert config["task"] == "instance_sequence" and config["model"]["kwargs"]["max_instances"] == 4
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["test_count"] == 8 and metrics["epochs_run"] == 2
    for name in ("test_sbd", "test_fbd", "test_dic", "test_abs_dic", "test_count_accuracy"):
        assert np.isfinite(metrics[name]), name
    assert 0 <= metrics["test_sbd"] <= 1 and metrics["test_abs_dic"] >= 0
    history = [line.split(",") for line in (run.path / "history.csv").read_text().splitlines()]
    assert {"loss", "match_loss", "stop_loss", "pixel_loss", "val_loss"} <= set(history[0])


def test_the_run_exports_with_parity(run, tmp_path):
    report = kapps.export.export(run.path, formats="all", out=tmp_path / "export", latency_runs=1, samples=8)
    assert report["task"] == "instance_sequence" and report["inputs"]["count"] == 8
    assert all(entry["passed"] and entry["count_agreement"] == 1.0 for entry in report["artifacts"])
