"""The YOLO recipe: the whole path at a tiny budget, then export and predict on what it saved."""

import json

from kapps.cli import main

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conftest import ROOT, run_cli
from tests.recipes.conftest import assert_no_chatter, assert_refused, invoke_recipe

RECIPE = str(ROOT / "recipes" / "yolo.py")


def test_tiny_budget_writes_a_detector_run_folder(tmp_path):
    out = tmp_path / "run"
    args = ["--epochs", "1", "--steps-per-epoch", "2", "--scenes", "64,32,32", "--pretrain-epochs", "1"]
    result = run_cli(RECIPE, *args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_no_chatter(result.stderr)  # the recipe's one real process
    assert "yolo_v1 on shapes: test mAP@0.5" in result.stdout
    assert "backbone pre-training on object crops: test accuracy" in result.stdout
    assert (out / "pretrain" / "model.keras").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map50"] <= 1.0 and 0.0 <= metrics["map"] <= metrics["map50"]
    assert set(metrics["per_class_ap50"]) == {"circle", "square", "triangle", "cross"}
    assert (out / "plots" / "test_detections.png").is_file()
    history = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss", "val_loss", "val_map", "val_map50"} <= set(history)

    detector = keras.saving.load_model(out / "model.keras", compile=False)
    assert set(detector.output) == {"boxes", "scores", "classes", "num_detections"}
    trained = keras.saving.load_model(out / "training_model.keras", compile=False)
    assert trained.output.shape == (None, 7, 7, 14)
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "detection" and config["data"]["class_names"][0] == "circle"

    # The run folder exports as is (verified on the run's own test scenes) and predicts from a plain image file.
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["task"] == "detection" and report["artifacts"][0]["detection_agreement"] == 1.0
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((90, 160, 3)) * 255).astype("uint8")).save(image)
    predicted = CliRunner().invoke(
        main, ["predict", str(tmp_path / "export" / "model.tflite"), str(image), "--out", str(tmp_path / "p")]
    )
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "scene.json").read_text())
    assert entry["task"] == "detection" and (entry["width"], entry["height"]) == (160, 90)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid-size", "0"], "error: --grid-size must be a positive whole number, not 0."),
        (["--image-size", "128"], "error: These options do not make a YOLO v1: head='conv' needs an input of"),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("yolo", *args, "--out", "run"), message, cwd=empty_cwd)
