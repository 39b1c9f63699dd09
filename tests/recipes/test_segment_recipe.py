"""The segmentation recipe: each of the six models at a tiny budget in this process, the run folder exported and
predicted with, the valid-padding U-Net's cropped masks, and the refusals."""

import csv
import json

import kapps.data
import kapps.models
from kapps.cli import main
from kapps.segmentation_metrics import confusion_matrix, segmentation_scores

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = ["--image-size", "32", "--scenes", "48,8,8", "--batch-size", "8", "--epochs", "2", "--steps-per-epoch", "3"]
# The recipe's CPU sizes, which the run's config.json records and its model.keras must be built at.
CPU_SIZES = {
    "fcn32s": {"width": 1 / 16},
    "fcn16s": {"width": 1 / 16},
    "fcn8s": {"width": 1 / 16},
    "segnet": {"width": 1 / 8},
    "encoder_decoder": {"width": 1 / 8},
    "unet": {"base_filters": 16, "padding": "same"},
}


def _test_masks_scores(model, *, image_size: int, scenes=(48, 8, 8)) -> dict:
    """The test split's scores recomputed here: the model's class map against the shapes source's own masks."""
    test = kapps.data.load_segmentation("shapes", image_size=(image_size, image_size), seed=0, sizes=scenes).test
    images, masks = (np.stack(a) for a in zip(*test.as_numpy_iterator(), strict=True))
    predicted = np.argmax(np.asarray(model(images, training=False)), axis=-1)
    top = (masks.shape[1] - predicted.shape[1]) // 2
    masks = masks[:, top : top + predicted.shape[1], top : top + predicted.shape[2]]
    return segmentation_scores(confusion_matrix(masks, predicted, num_classes=5))


@pytest.mark.parametrize("model_name", list(CPU_SIZES))
def test_tiny_budget_writes_a_segmenter_run_folder(tmp_path, model_name):
    """The whole path at a tiny budget for every model: the model kept is the registered builder at the recipe's
    CPU size, metrics.json's scores are the kept model's on the test scenes (recomputed here from model.keras and
    the source's masks), its parameter count is model.keras's, the picture is written, and the training loss falls
    over 2 epochs of 3 steps."""
    out = tmp_path / "run"
    result = invoke_recipe("segment", "--model", model_name, *TINY, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"{model_name} on shapes: test mean IoU" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "segmentation" and config["model"]["name"] == model_name
    assert config["model"]["kwargs"] == {"input_shape": [32, 32, 3], "num_classes": 5, **CPU_SIZES[model_name]}
    model = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    assert model.output.shape == (None, 32, 32, 5)
    built = kapps.models.build(model_name, input_shape=(32, 32, 3), num_classes=5, **CPU_SIZES[model_name])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == model.count_params() == built.count_params()
    expected = _test_masks_scores(model, image_size=32)
    assert metrics["count"] == 8 and metrics["pixels"] == 8 * 32 * 32
    for key in ("mean_iou", "pixel_accuracy", "mean_dice"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    assert metrics["class_iou"] == pytest.approx(expected["class_iou"], abs=1e-6)
    assert 0.0 <= metrics["boundary_f_score"] <= 1.0 and len(metrics["class_boundary_f_score"]) == 5
    assert metrics["ms_per_image"] > 0
    assert metrics["class_names"] == ["background", "circle", "square", "triangle", "cross"]
    assert (out / "plots" / "test_masks.png").is_file()
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"mean_iou", "pixel_accuracy", "val_mean_iou"} <= set(rows[0])
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 2 and losses[1] < losses[0], losses


def test_the_run_folder_exports_and_predicts(tmp_path):
    """`kapps export` of the run folder verifies the TFLite file as class maps (every decisive pixel Keras's), and
    `kapps predict` with it writes the DESIGN's JSON: one RLE a class present, covering the image once."""
    out = tmp_path / "run"
    result = invoke_recipe("segment", "--model", "fcn8s", *TINY, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    export = tmp_path / "export"
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(export)])
    assert exported.exit_code == 0, exported.output
    (artifact,) = json.loads((export / "export_report.json").read_text())["artifacts"]
    assert artifact["passed"] and artifact["decisive_pixel_agreement"] == 1.0, artifact
    scene = np.zeros((40, 48, 3), np.uint8)
    scene[8:30, 10:34] = (220, 40, 40)
    Image.fromarray(scene).save(tmp_path / "scene.png")
    predicted = CliRunner().invoke(
        main, ["predict", str(export / "model.tflite"), str(tmp_path / "scene.png"), "--out", str(tmp_path / "p")]
    )
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "scene.json").read_text())
    assert entry["task"] == "segmentation" and (entry["width"], entry["height"]) == (48, 40)
    assert sum(m["pixels"] for m in entry["mask"]) == 40 * 48
    assert all(m["rle"]["size"] == [40, 48] for m in entry["mask"])


def test_valid_padding_unet_is_scored_on_the_centre_it_predicts(tmp_path):
    """With the paper's valid convolutions a 188-pixel input gives the 4x4 map of its centre: the masks are cut to
    it, so the test scores count 4x4 pixels an image, and they are the model's on the masks' centres."""
    out = tmp_path / "run"
    args = ["--image-size", "188", "--scenes", "8,4,4", "--batch-size", "4", "--epochs", "1", "--steps-per-epoch", "1"]
    result = invoke_recipe("segment", *args, "--padding", "valid", "--base-filters", "4", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    model = keras.saving.load_model(out / "model.keras", compile=False, safe_mode=True)
    assert model.output.shape == (None, 4, 4, 5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pixels"] == 4 * 4 * 4
    expected = _test_masks_scores(model, image_size=188, scenes=(8, 4, 4))
    assert metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "fcn8s", "--width", "0"], "error: --width must be above 0 and at most 1, not 0.0."),
        (["--width", "0.5"], "error: --width is for the FCNs, SegNet and encoder_decoder; U-Net takes --base-filters."),
        (["--base-filters", "0"], "error: --base-filters must be a positive whole number, not 0."),
        (["--model", "segnet", "--padding", "valid"], "error: --padding is for U-Net, not 'segnet'."),
        (["--padding", "valid"], "error: --image-size 96 does not fit a valid-padding U-Net"),
        (["--image-size", "16"], "error: --image-size must be at least 32, not 16."),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
        (["--data", "folder:x", "--scenes", "1,1,1"], "error: --scenes sets the size of the shapes source"),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("segment", *args, "--out", "run"), message, cwd=empty_cwd)


def test_an_unknown_model_is_a_usage_error(empty_cwd):
    message = "error: Invalid value for '--model': 'resnet20' is not one of 'fcn32s', 'fcn16s', 'fcn8s'"
    assert_refused(invoke_recipe("segment", "--model", "resnet20"), message, cwd=empty_cwd, exit_code=2)
