"""The stacked hourglass recipe: the whole path at a tiny budget, then export and predict on what it saved."""

import csv
import json

import kapps.data
from kapps.cli import main

import keras
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = ["--image-size", "64", "--features", "16", "--depth", "2", "--scenes", "48,16,16", "--max-points", "24"]


def test_tiny_budget_writes_a_point_detector_run_folder(tmp_path):
    """Two epochs of 3 steps on 64-pixel scenes with a 16-feature, depth-2 hourglass. The loss must fall by more
    than a tenth from the first epoch to the second (measured with the defaults' foreground weight 10: 3.146 then
    2.539, seed 0; planted, at --lr 1e-12, 3.407 then 3.324), the test scores must be of the 16 test scenes and
    count every true point of them, and the run folder must export and predict as a heatmap run."""
    out = tmp_path / "run"
    result = invoke_recipe("hourglass", *TINY, "--epochs", "2", "--steps-per-epoch", "3", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "stacked_hourglass (2 stacks) on shapes: test PCK@0.05" in result.stdout

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 16 and metrics["radius"] == 3.0 and metrics["pck_reference"] == 64
    assert set(metrics["per_type"]) == {"centre", "corner"}
    for scores in metrics["per_type"].values():
        assert {"precision", "recall", "f1", "pck", "count_accuracy", "count_mae"} <= set(scores)
    data = kapps.data.load_keypoints("shapes", image_size=(64, 64), seed=0, sizes=(48, 16, 16))
    true_points = sum(int((targets["types"].numpy() >= 0).sum()) for _, targets in data.test)
    assert metrics["true_positives"] + metrics["false_negatives"] == true_points > 16
    assert metrics["true_positives"] + metrics["false_positives"] > 0  # the detector finds points to export
    assert 0.0 <= metrics["pck@0.05"] <= 1.0
    assert (out / "plots" / "test_points.png").read_bytes().startswith(b"\x89PNG")
    with (out / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"loss", "val_loss", "val_pck", "val_f1", "val_precision", "val_recall"} <= set(rows[0])
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 2 and losses[1] < 0.9 * losses[0], losses

    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "heatmap" and config["data"]["class_names"] == ["centre", "corner"]
    assert config["model"]["name"] == "stacked_hourglass" and config["model"]["kwargs"]["num_stacks"] == 2
    assert config["peaks"] == {"max_points": 24, "score_threshold": 0.3, "window": 3}
    detector = keras.saving.load_model(out / "model.keras", compile=False)
    assert set(detector.output) == {"points", "scores", "num_points"}
    assert detector.output["points"].shape == (None, 2, 24, 2)
    trained = keras.saving.load_model(out / "training_model.keras", compile=False)
    assert trained.output.shape == (None, 2, 16, 16, 2)

    # The run folder exports as is (verified on the run's own test scenes) and predicts from a plain image file.
    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    (artifact,) = report["artifacts"]
    assert report["task"] == "heatmap" and artifact["passed"] and artifact["point_agreement"] == 1.0, artifact
    image, _ = next(iter(data.test))
    Image.fromarray((image.numpy() * 255).round().astype("uint8")).resize((96, 80)).save(tmp_path / "scene.png")
    predicted = CliRunner().invoke(
        main,
        ["predict", str(tmp_path / "export" / "model.tflite"), str(tmp_path / "scene.png"), "--out",
         str(tmp_path / "p"), "--score-threshold", "0"],
    )  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "scene.json").read_text())
    assert entry["task"] == "heatmap" and (entry["width"], entry["height"]) == (96, 80)
    assert entry["points"] and {p["type"] for p in entry["points"]} <= {"centre", "corner"}
    assert all(0 <= p["x"] <= 96 and 0 <= p["y"] <= 80 for p in entry["points"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image-size", "100"], "error: These options do not make a stacked hourglass: input_shape's height"),
        (["--stacks", "0"], "error: These options do not make a stacked hourglass: num_stacks must be a positive"),
        (["--sigma", "0"], "error: --sigma must be positive, not 0."),
        (["--score-threshold", "1"], "error: --score-threshold must be at least 0 and below 1, not 1."),
        (["--score-threshold", "often"], "error: --score-threshold takes one number or one a point type, such as 0.3"),
        (["--max-points", "5000"], "error: --max-points must be from 1 to the 2304 heatmap pixels, not 5000."),
        (["--scenes", "10,10"], "error: --scenes takes three positive counts such as 4000,500,500, not '10,10'."),
        (["--data", "wheat", "--scenes", "1,1,1"], "error: --scenes sets the size of the shapes source, not of"),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("hourglass", *args, "--out", "run"), message, cwd=empty_cwd)
