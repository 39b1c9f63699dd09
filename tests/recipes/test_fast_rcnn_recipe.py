"""The Fast R-CNN recipe: the whole path at a tiny budget, in this process, the detector it leaves, and its
refusals."""

import csv
import json

from kapps.cli import main
from kapps.models.detection.fast import FastRCNN

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe


def test_tiny_budget_writes_a_run_folder_that_detects_and_predicts(tmp_path):
    """Selective search on the scenes, pre-training, training and evaluation: a run folder with the network,
    metrics.json's fields, the picture and the search's settings, from which `FastRCNN.load` and `kapps predict`
    run the search and the network on new images; `kapps export` refuses the network in one sentence."""
    out = tmp_path / "run"
    args = ["--epochs", "2", "--steps-per-epoch", "4", "--scenes", "24,8,8", "--proposal-mode", "single"]
    result = invoke_recipe("fast_rcnn", *args, "--max-proposals", "60", "--pretrain-epochs", "1", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "fast_rcnn on shapes: test mAP@0.5" in result.stdout
    assert "of the objects covered at IoU 0.5" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0 and metrics["seconds_per_image"] > 0
    assert (out / "plots" / "test_detections.png").is_file()
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"class_loss", "box_loss", "val_loss", "val_map50"} <= set(rows[0]) and len(rows) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["name"] == "fast_rcnn" and config["model"]["kwargs"]["pooler"] == "max"
    assert config["proposals"] == {"mode": "single", "max_proposals": 60, "scale": 1.0}
    assert config["trainer"]["roi_samples"] == 64 and config["options"]["batch_size"] == 2

    detector = FastRCNN.load(out)
    assert detector.search.settings() == config["proposals"]
    found = detector(np.zeros((1, 128, 128, 3), "float32"))
    assert found["boxes"].shape == (1, 100, 4)

    scene = np.zeros((128, 128, 3), np.uint8)
    scene[30:70, 40:90] = (220, 40, 40)
    Image.fromarray(scene).save(tmp_path / "scene.png")
    predicted = CliRunner().invoke(
        main, ["predict", str(out), str(tmp_path / "scene.png"), "--out", str(tmp_path / "predictions")]
    )
    assert predicted.exit_code == 0, predicted.output
    assert (tmp_path / "predictions" / "scene.json").is_file()

    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 1 and "holds Fast R-CNN's network, which takes selective search's" in exported.output
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--roi-samples", "0"], "error: --roi-samples must be a positive whole number, not 0."),
        (["--backbone", "lenet9"], "error: --backbone must be one of "),
        (
            ["--feature-map", "C9"],
            "error: The backbone of 'resnet10_narrow' has the maps C1, C2, C3, C4, C5 and no map",
        ),
        (["--image-size", "32"], "error: --image-size must be at least 64, not 32."),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("fast_rcnn", *args, "--out", "run"), message, cwd=empty_cwd)
