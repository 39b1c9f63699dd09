"""The YOLO recipe: the whole path at a tiny budget, then export and predict on what it saved."""

import csv
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
    """The whole path at a tiny budget, and both trainings learn. The crop pre-training (15 epochs of 4 steps) must
    fit its training crops well above chance (a quarter); the detector's loss must fall by over 8% from its first
    epoch to its second (2 steps each), which an optimizer that does not step cannot give (planted: 126 then 129).
    --lr 2e-4 because at the recipe's 2e-3 the first steps throw the loss up (seed 0: 383 then 208, above the 126
    of the untrained head), so a fall would only be a recovery. Measured at 2e-4: crop training accuracy in the
    last epoch 0.883 with seed 0, 0.969 with seed 1; detector loss 115 then 97 (seed 0), 180 then 147 (seed 1). No
    bar on mAP or on the crops' test accuracy: at this budget mAP@0.5 is 0.0 and the crop classifier's test
    accuracy is near chance (0.256, 0.280), its batch norms' moving statistics behind its weights."""
    out = tmp_path / "run"
    args = ["--epochs", "2", "--steps-per-epoch", "4", "--scenes", "64,32,32", "--pretrain-epochs", "15"]
    args += ["--lr", "2e-4"]
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
    with (out / "pretrain" / "history.csv").open() as f:
        assert float(list(csv.DictReader(f))[-1]["accuracy"]) > 0.45
    with (out / "history.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and losses[1] < 0.92 * losses[0], losses

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
