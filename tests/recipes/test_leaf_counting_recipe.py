"""The leaf counting recipe: the whole path at a tiny budget (rosettes, the recurrent segmenter through its trainer,
the epoch of best validation SBD, the test scores with the issue's targets, a step strip per test plant), its export
with parity and `kapps predict`, a CVPPP folder, and its option errors."""

import csv
import json

import kapps.data
from kapps.cli import main
from kapps.instance_metrics import masks_to_labels
from kapps.viz import STRIP_HEADER

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = ["--image-size", "32", "--max-leaves", "4", "--lstm-filters", "4", "--images", "16,8,6"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaves") / "run"
    result = invoke_recipe("leaf_counting", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "recurrent_instance_segmenter on leaves: test SBD" in result.stdout
    assert "strips: 6 test plants drawn step by step" in result.stdout
    return out


def test_the_run_folder_holds_the_segmenter_its_scores_and_the_targets(run):
    for name in ("model.keras", "training_model.keras", "config.json", "history.csv", "metrics.json"):
        assert (run / name).is_file(), name
    segmenter = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert sorted(segmenter.output) == ["confidences", "count", "masks"]
    assert segmenter.get_layer("mask_decoder").kernel.shape == (3, 3, 4 + 16, 8)  # the stride-2 decoder
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "instance_sequence"
    kwargs = config["model"]["kwargs"]
    assert kwargs["max_instances"] == 4 and kwargs["mask_stride"] == 2 and kwargs["input_shape"] == [32, 32, 3]
    assert kwargs["context"] == 8 and kwargs["mask_bias"] == -3.0
    assert segmenter.get_layer("context_head").kernel.shape == (4, 8)
    assert config["trainer"]["foreground_weight"] == 1.0 and config["trainer"]["clipnorm"] == 1.0
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"match_loss", "foreground_loss", "val_sbd", "val_abs_dic"} <= set(rows[0])
    metrics = json.loads((run / "metrics.json").read_text())
    sbd = [float(row["val_sbd"]) for row in rows]
    assert metrics["best_epoch"] == int(np.argmax(sbd))  # the epoch of best validation SBD is kept
    assert metrics["test_count"] == 6
    assert metrics["targets"] == {"sbd": metrics["test_sbd"] >= 0.7, "abs_dic": metrics["test_abs_dic"] <= 0.8}
    # The test scores are model.keras's on the test rosettes, recomputed here.
    data = kapps.data.load_instances("leaves", image_size=(32, 32), seed=0, sizes=(16, 8, 6), leaves=(1, 20))
    images, labels = zip(*[(image, targets["labels"]) for image, targets in data.test.as_numpy_iterator()], strict=True)
    outputs = segmenter(np.stack(images))
    counts = np.asarray(outputs["count"])
    right = [
        len(np.unique(masks_to_labels(m, count=int(c)))) - 1 == len(np.unique(t)) - 1
        for m, c, t in zip(np.asarray(outputs["masks"]), counts, labels, strict=True)
    ]
    assert metrics["test_count_accuracy"] == pytest.approx(np.mean(right))


def test_each_test_plant_has_a_strip_of_its_steps(run):
    data = kapps.data.load_instances("leaves", image_size=(32, 32), seed=0, sizes=(16, 8, 6), leaves=(1, 20))
    images = np.stack([image for image, _ in data.test.as_numpy_iterator()])
    counts = np.asarray(keras.saving.load_model(run / "model.keras")(images)["count"]).astype(int)
    strips = sorted((run / "plots" / "steps").iterdir())
    assert [p.name for p in strips] == [f"plant_{i:03d}.png" for i in range(6)]
    for path, count in zip(strips, counts, strict=True):
        strip = np.asarray(Image.open(path))
        panels = 1 + max(count, 1) + 1  # the image, a panel per step (one "count 0" panel), the truth
        assert strip.shape == (STRIP_HEADER + 64, panels * 64 + (panels - 1) * 2, 3), path.name
        # the first panel is the image, enlarged twice by nearest neighbour
        image = (images[strips.index(path)] * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(strip[STRIP_HEADER::2, :64:2], image)


def test_the_run_exports_with_parity_and_predicts(run, tmp_path):
    exported = CliRunner().invoke(main, ["export", str(run), "--format", "all", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    assert report["task"] == "instance_sequence"
    assert {a["format"] for a in report["artifacts"]} == {"saved_model", "tflite", "onnx"}
    assert all(a["passed"] and a["count_agreement"] == 1.0 for a in report["artifacts"]), report["artifacts"]
    data = kapps.data.load_instances("leaves", image_size=(32, 32), seed=0, sizes=(16, 8, 6), leaves=(1, 20))
    image = next(data.test.as_numpy_iterator())[0]
    Image.fromarray((image * 255).round().astype(np.uint8)).save(tmp_path / "plant.png")
    plant = str(tmp_path / "plant.png")
    predicted = CliRunner().invoke(main, ["predict", str(run), plant, "--out", str(tmp_path / "p")])
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "plant.json").read_text())
    assert entry["task"] == "instance_sequence" and entry["count"] == len(entry["instances"])
    assert (tmp_path / "p" / "plant.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "30"], "error: --image-size must be a multiple of 4 of at least 32, not 30."),
        (["--max-leaves", "0"], "error: --max-leaves must be from 1 to 255, not 0."),
        (["--mask-stride", "1"], "error: --mask-stride must be 0 (the paper's 1x1 head at stride 4) or 2, not 1."),
        (["--images", "10,5"], "error: --images takes three positive counts such as 6000,200,200, not '10,5'."),
        (["--foreground-weight", "-1"], "error: --foreground-weight and --pixel-weight must not be negative."),
        (["--context", "-2"], "error: --context must not be negative, not -2."),
        (["--data", "folder:/nowhere/at/all"], "error: "),
        (["--data", "digits"], "error: Unknown instance source 'digits'"),
        (["--data", "folder:x", "--images", "1,1,1"], "error: --images sets the number of rosettes drawn, not of"),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("leaf_counting", *args, "--out", "run"), message, cwd=empty_cwd)


def test_a_cvppp_folder_trains_with_data_folder(tmp_path):
    """`--data folder:PATH` on ten plants in the CVPPP layout (A1 and A2), resized to 32x32: the splits are the
    folder's, carved by the seed, and a strip is drawn for every test plant."""
    from tests.data.test_leaves_folder import cvppp

    root = cvppp(tmp_path / "cvppp", count=10)
    out = tmp_path / "run"
    args = ["--image-size", "32", "--max-leaves", "4", "--lstm-filters", "4", "--epochs", "1", "--steps-per-epoch", "1"]
    result = invoke_recipe("leaf_counting", *args, "--data", f"folder:{root}", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"recurrent_instance_segmenter on folder:{root}: test SBD" in result.stdout
    data = kapps.data.load_instances(f"folder:{root}", image_size=(32, 32), seed=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_count"] == data.sizes["test"] >= 1
    assert len(list((out / "plots" / "steps").glob("plant_*.png"))) == data.sizes["test"]
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["spec"] == f"folder:{root}"
