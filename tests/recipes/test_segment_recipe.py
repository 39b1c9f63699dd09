"""The segmentation recipe: each of the six models at a tiny budget in this process, the run folder exported and
predicted with, the valid-padding U-Net's cropped masks, U-Net's border-weighted loss, and the refusals."""

import csv
import json

import kapps.data
import kapps.models
from kapps.cli import main
from kapps.losses import weighted_pixel_crossentropy
from kapps.segmentation_metrics import confusion_matrix, segmentation_scores
from kapps.train.segmentation import border_weighted, class_weighted, crop_masks, median_frequency_weights

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
    over 2 epochs of 3 steps; over 4 for SegNet and its twin, whose class-balanced loss first rises as the rare
    classes' heavy pixels start to count (measured: 0.423, 0.468, 0.459, 0.399 for SegNet)."""
    out = tmp_path / "run"
    epochs = 4 if model_name in ("segnet", "encoder_decoder") else 2
    result = invoke_recipe("segment", "--model", model_name, *TINY, "--epochs", epochs, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"{model_name} on shapes: test mean IoU" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "segmentation" and config["model"]["name"] == model_name
    assert config["model"]["kwargs"] == {"input_shape": [32, 32, 3], "num_classes": 5, **CPU_SIZES[model_name]}
    assert config["border_weights"] is None  # no border term, as config.json says
    if model_name in ("segnet", "encoder_decoder"):  # SegNet's loss: median frequency balancing, for both twins
        assert list(config["class_weights"]) == ["background", "circle", "square", "triangle", "cross"]
        assert config["class_weights"]["background"] < 0.2 < config["class_weights"]["circle"]
    else:
        assert config["class_weights"] is None  # the plain cross-entropy
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
    assert len(losses) == epochs and losses[-1] < losses[0], losses


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


@pytest.mark.parametrize(("padding", "image_size", "output_size"), [("same", 32, 32), ("valid", 188, 4)])
def test_border_weights_are_the_loss_the_run_trains_on(tmp_path, padding, image_size, output_size):
    """`--border-weights`: the logged loss of the run's one step is `weighted_pixel_crossentropy` of its first
    batch, rebuilt here (the shapes scenes' instance maps through eq. 2 with w0 = 10, sigma = 5 and balanced w_c,
    flipped and rescaled with their masks, cut to a valid-padding U-Net's centre) on the seeded initial model, and
    not the unweighted loss, 1% or more away (100 times the tolerance); config.json says how the run was trained."""
    out = tmp_path / "run"
    size, scenes = (image_size, image_size), (8, 4, 4)
    args = ["--image-size", image_size, "--scenes", "8,4,4", "--batch-size", "4", "--epochs", "1"]
    args += ["--steps-per-epoch", "1", "--base-filters", "4", "--padding", padding, "--border-weights"]
    result = invoke_recipe("segment", *args, "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((out / "config.json").read_text())
    assert config["border_weights"] == {"w0": 10.0, "sigma": 5.0, "class_weights": "balanced"}
    with (out / "history.csv").open() as f:
        (row,) = list(csv.DictReader(f))

    data = border_weighted(kapps.data.load_segmentation_instances("shapes", image_size=size, seed=0, sizes=scenes))
    augment = kapps.data.segmentation_augment(image_size=size, seed=0)
    train = kapps.data.splits(data, batch_size=4, seed=0, augment=augment).train
    if output_size != image_size:
        train = crop_masks(train, (output_size, output_size))
    images, masks, weights = next(iter(train))
    assert weights.shape == masks.shape == (4, output_size, output_size)
    keras.utils.set_random_seed(0)  # as the engine seeds before building
    model = kapps.models.build("unet", input_shape=(*size, 3), num_classes=5, base_filters=4, padding=padding)
    scores = model(images, training=True)
    expected = float(weighted_pixel_crossentropy(masks, scores, weights))
    unweighted = float(weighted_pixel_crossentropy(masks, scores))
    assert float(row["loss"]) == pytest.approx(expected, rel=1e-4)
    assert abs(expected - unweighted) > 0.01 * unweighted


def test_class_weights_are_the_loss_the_run_trains_on(tmp_path):
    """SegNet's default `--class-weights median`: config.json holds the median frequency weights of the training
    masks, and the logged loss of the run's one step is the class-weighted cross-entropy of its first batch,
    rebuilt here on the seeded initial model, 1% or more away from the unweighted one."""
    out = tmp_path / "run"
    size, scenes = (32, 32), (8, 4, 4)
    args = ["--model", "segnet", "--image-size", "32", "--scenes", "8,4,4", "--batch-size", "4", "--epochs", "1"]
    result = invoke_recipe("segment", *args, "--steps-per-epoch", "1", "--width", "0.0625", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    config = json.loads((out / "config.json").read_text())
    data = kapps.data.load_segmentation("shapes", image_size=size, seed=0, sizes=scenes)
    balance = median_frequency_weights(data.train, 5)
    assert list(config["class_weights"].values()) == pytest.approx(balance.tolist(), rel=1e-6)
    with (out / "history.csv").open() as f:
        (row,) = list(csv.DictReader(f))

    augment = kapps.data.segmentation_augment(image_size=size, seed=0)
    train = kapps.data.splits(class_weighted(data, balance), batch_size=4, seed=0, augment=augment).train
    images, masks, weights = next(iter(train))
    labelled = masks.numpy() != 255
    np.testing.assert_allclose(weights.numpy()[labelled], balance[masks.numpy()[labelled]])
    keras.utils.set_random_seed(0)  # as the engine seeds before building
    model = kapps.models.build("segnet", input_shape=(*size, 3), num_classes=5, width=0.0625)
    scores = model(images, training=True)
    expected = float(weighted_pixel_crossentropy(masks, scores, weights))
    unweighted = float(weighted_pixel_crossentropy(masks, scores))
    assert float(row["loss"]) == pytest.approx(expected, rel=1e-4)
    assert abs(expected - unweighted) > 0.01 * unweighted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--border-weights", "--class-weights", "median"],
            "error: --border-weights has its own class balance: leave out --class-weights or set it to none.",
        ),
        (["--border-weights", "--border-w0", "0"], "error: --border-w0 must be a finite number above 0, not 0."),
        (
            ["--border-weights", "--border-sigma", "-2"],
            "error: --border-sigma must be a finite number of pixels above 0, not -2.",
        ),
        (
            ["--border-sigma", "3"],
            "error: --border-sigma sets the border weights, which only --border-weights turns on.",
        ),
        (
            ["--border-weights", "--data", "tfds:oxford_iiit_pet"],
            "error: 'tfds:oxford_iiit_pet' has no instance labels: its trimaps mark one pet and its background, not "
            "separate objects.",
        ),
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
