"""The Mask R-CNN recipe: the whole path at a tiny budget, in this process, and its refusals."""

import csv
import json

from kapps.cli import main

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe


def test_tiny_budget_writes_an_instance_segmenter_run_folder(tmp_path):
    """The whole path at a tiny budget: a run folder whose model gives detections and masks, metrics.json with box
    and mask mAP, the test picture, and a training loss (mask loss included) that falls over 2 epochs of 4 steps."""
    out = tmp_path / "run"
    args = ["--epochs", "2", "--steps-per-epoch", "4", "--batch-size", "4", "--scenes", "32,8,8"]
    result = invoke_recipe("mask_rcnn", *args, "--pretrain-epochs", "1", "--max-detections", "5", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "mask_rcnn on shapes: test box mAP@0.5" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0
    assert 0.0 <= metrics["mask_map"] <= metrics["mask_map50"] <= 1.0
    assert metrics["seconds_per_image"] > 0
    assert (out / "plots" / "test_masks.png").is_file()
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"mask_loss", "class_loss", "val_map50"} <= set(rows[0])
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    model = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    assert set(model.output) == {"boxes", "scores", "classes", "num_detections", "masks"}
    assert model.output["masks"].shape == (None, 5, 128, 128)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "mask_rcnn" and config["model"]["kwargs"]["max_detections"] == 5

    # The run folder exports and verifies as a user runs it (masks compared pixel by pixel), and the TFLite file
    # predicts on an image file: boxes and masks drawn, each mask in the JSON as COCO RLE.
    export = tmp_path / "export"
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(export)])
    assert exported.exit_code == 0, exported.output
    report = json.loads((export / "export_report.json").read_text())
    (artifact,) = report["artifacts"]
    assert artifact["passed"] and artifact["min_mask_iou"] >= 0.99, artifact
    scene = np.zeros((128, 128, 3), np.uint8)
    scene[30:70, 40:90] = (220, 40, 40)
    Image.fromarray(scene).save(tmp_path / "scene.png")
    predicted = CliRunner().invoke(
        main,
        [
            "predict",
            str(export / "model.tflite"),
            str(tmp_path / "scene.png"),
            "--score-threshold",
            "0",
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "scene.json").read_text())
    assert entry["detections"] and all(d["mask"]["size"] == [128, 128] for d in entry["detections"])
    assert all(isinstance(d["mask"]["counts"], str) for d in entry["detections"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mask-width", "0"], "error: --mask-width must be a positive whole number, not 0."),
        (["--fpn-channels", "0"], "error: --fpn-channels must be a positive whole number, not 0."),
        (["--data", "tfds:voc/2007"], "error: Only the 'shapes' source and COCO-layout folders have masks"),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("mask_rcnn", *args, "--out", "run"), message, cwd=empty_cwd)
