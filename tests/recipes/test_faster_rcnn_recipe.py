"""The Faster R-CNN recipe: the whole path at a tiny budget, in this process, and its refusals."""

import csv
import json

import kapps.models

import keras
import pytest

from tests.recipes.conftest import assert_refused, invoke_recipe


@pytest.mark.parametrize("fpn", ["--fpn", "--no-fpn"])
def test_tiny_budget_writes_a_detector_run_folder(tmp_path, fpn):
    """The whole path at a tiny budget, with and without the pyramid: a run folder with the inference model, the
    trainer, metrics.json's fields and the test picture; and the training loss falls over 2 epochs of 4 steps.
    Without the pyramid the backbone starts from a classifier's .keras file instead of the crop pre-training."""
    out = tmp_path / "run"
    args = ["--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "4", "--scenes", "32,8,8"]
    if fpn == "--no-fpn":
        classifier = kapps.models.build("resnet10_narrow", input_shape=(48, 48, 3), num_classes=4)
        classifier.save(tmp_path / "classifier.keras")
        args += ["--backbone-weights", str(tmp_path / "classifier.keras")]
    result = invoke_recipe("faster_rcnn", *args, "--pretrain-epochs", "1", fpn, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "faster_rcnn on shapes: test mAP@0.5" in result.stdout
    assert ("backbone weights from" in result.stdout) is (fpn == "--no-fpn")
    assert (out / "pretrain").is_dir() is (fpn == "--fpn")
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0
    assert metrics["seconds_per_image"] > 0
    assert (out / "plots" / "test_detections.png").is_file()
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    losses = [float(row["loss"]) for row in rows]
    assert {"rpn_class_loss", "rpn_box_loss", "class_loss", "box_loss", "val_loss", "val_map50"} <= set(rows[0])
    assert len(losses) == 2 and losses[1] < losses[0], losses
    detector = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    assert set(detector.output) == {"boxes", "scores", "classes", "num_detections"}
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "detection" and config["model"]["name"] == "faster_rcnn"
    assert config["model"]["kwargs"]["fpn"] is (fpn == "--fpn")
    assert config["model"]["kwargs"]["anchor_sizes"]  # the sizes the run used, in pixels


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--roi-samples", "0"], "error: --roi-samples must be a positive whole number, not 0."),
        (["--backbone", "lenet9"], "error: --backbone must be one of "),
        (["--anchor-scale", "-1"], "error: --anchor-scale must be positive, not -1.0."),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
        (["--backbone-weights", "imagenet"], "error: --backbone-weights imagenet is not offered yet: ImageNet weights"),
        (["--backbone-weights", "nothing.keras"], "error: --backbone-weights 'nothing.keras' is not a file."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("faster_rcnn", *args, "--out", "run"), message, cwd=empty_cwd)
