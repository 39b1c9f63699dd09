"""The wheat localisation recipe: the whole path at a tiny budget, its counts, then export and predict."""

import csv
import json

import kapps.data
from kapps.cli import main
from kapps.keypoints import count_scores
from kapps.keypoints.ears import EarCounter
from kapps.kinds.keypoints import detected_points
from kapps.recipes.wheat_localisation import EAR_CANDIDATES
from kapps.train.keypoints import CANDIDATE_THRESHOLDS, rethresholded

import keras
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe

TINY = ["--image-size", "64", "--features", "16", "--depth", "2", "--images", "16,8,8", "--max-points", "48"]


def test_tiny_budget_locates_and_counts_wheat_points(tmp_path):
    """Two epochs of 2 steps on 64-pixel wheat images with a 16-feature, depth-2 hourglass. The loss must fall by
    more than a tenth (measured with the defaults' foreground weight 10: 2.994 then 2.498, seed 0; planted, at --lr
    1e-12, 3.072 then 2.980), the counting figures must be the per-type ones under their wheat names, the test
    scores must count every true point of the 8 test images, and the run must export and predict as a heatmap
    run."""
    out = tmp_path / "run"
    result = invoke_recipe("wheat_localisation", *TINY, "--epochs", "2", "--steps-per-epoch", "2", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "stacked_hourglass on wheat: spike_tip precision" in result.stdout
    assert (
        "spike counting accuracy" in result.stdout
        and "spike_by_tips counting accuracy" in result.stdout
        and "spikelet counting accuracy" in result.stdout
    )

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 8 and metrics["radius"] == 3.0
    assert set(metrics["per_type"]) == {"spike_tip", "spike_base", "spikelet"}
    assert metrics["spikes_counted_as"].startswith("ears: tip-base pairs joined by detected spikelets")
    names = {"spike_by_tips": "spike_tip", "spike_by_bases": "spike_base", "spikelet": "spikelet"}
    assert set(metrics["counting"]) == {"spike", *names}
    for what, name in names.items():
        for key in ("count_accuracy", "count_mae", "count_relative_error"):
            assert metrics["counting"][what][key] == metrics["per_type"][name][key]
    data = kapps.data.load_keypoints(
        "wheat", image_size=(64, 64), seed=0, sizes=(16, 8, 8), zoom=2.0, max_spikes=4
    )  # the recipe's scenes
    # the spikes counted as ears: the counter metrics.json names, its thresholds among the candidates and the
    # spikelets' the detector's, recounted here on every peak of model.keras above the lowest candidate
    settings = dict(metrics["ear_counter"])
    settings.pop("validation")
    counter = EarCounter(**settings)
    assert {counter.pair_threshold, counter.single_threshold} <= set(EAR_CANDIDATES)
    assert counter.spikelet_threshold == pytest.approx(metrics["thresholds"]["spikelet"], abs=1e-6)
    detector = keras.saving.load_model(out / "model.keras", compile=False)
    test = kapps.data.pipeline(data.test, batch_size=4, training=False)
    found, truths, _, _ = detected_points(rethresholded(detector, EAR_CANDIDATES[0]), test)
    expected = count_scores(counter.counts(found), [int((t["types"] == 0).sum()) for t in truths])
    assert metrics["counting"]["spike"] == pytest.approx(expected)
    truths = [targets["types"].numpy() for _, targets in data.test]
    tips, spikelets = sum(int((t == 0).sum()) for t in truths), sum(int((t == 2).sum()) for t in truths)
    assert tips >= 8 and spikelets > tips  # every image has an ear, every ear spikelets
    spikelet = metrics["per_type"]["spikelet"]
    assert spikelet["true_positives"] + spikelet["false_negatives"] == spikelets
    tip = metrics["per_type"]["spike_tip"]
    assert tip["true_positives"] + tip["false_negatives"] == tips
    # --score-threshold auto (the default): each type's threshold chosen on the validation split, kept in the model
    assert set(metrics["thresholds"]) == {"spike_tip", "spike_base", "spikelet"}
    assert set(metrics["thresholds"].values()) <= set(CANDIDATE_THRESHOLDS)
    assert "Score thresholds of best F1 on 8 validation images: spike_tip " in result.stdout
    detector = keras.saving.load_model(out / "model.keras", compile=False)
    assert detector.get_layer("peaks").score_threshold == list(metrics["thresholds"].values())
    assert (out / "plots" / "test_points.png").read_bytes().startswith(b"\x89PNG")
    with (out / "history.csv").open() as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and losses[1] < 0.9 * losses[0], losses
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "heatmap" and config["data"]["class_names"] == ["spike_tip", "spike_base", "spikelet"]

    exported = CliRunner().invoke(main, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "export")])
    assert exported.exit_code == 0, exported.output
    report = json.loads((tmp_path / "export" / "export_report.json").read_text())
    (artifact,) = report["artifacts"]
    assert report["task"] == "heatmap" and artifact["passed"] and artifact["point_agreement"] == 1.0, artifact
    image, _ = next(iter(data.test))
    Image.fromarray((image.numpy() * 255).round().astype("uint8")).save(tmp_path / "wheat.png")
    predicted = CliRunner().invoke(
        main,
        ["predict", str(tmp_path / "export" / "model.tflite"), str(tmp_path / "wheat.png"), "--out",
         str(tmp_path / "p"), "--score-threshold", "0"],
    )  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    entry = json.loads((tmp_path / "p" / "wheat.json").read_text())
    assert entry["task"] == "heatmap" and (entry["width"], entry["height"]) == (64, 64)
    assert entry["points"] and {p["type"] for p in entry["points"]} <= {"spike_tip", "spike_base", "spikelet"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "5,5"], "error: --images takes three positive counts such as 1200,100,200, not '5,5'."),
        (["--data", "shapes", "--images", "5,5,5"], "error: --images shapes the embedded wheat source, not 'shapes'."),
        (["--data", "shapes", "--zoom", "3"], "error: --zoom shapes the embedded wheat source, not 'shapes'."),
        (["--zoom", "0"], "error: These options do not make wheat images: zoom must be a number from 0.25 to 8."),
        (["--max-spikes", "0"], "error: These options do not make wheat images: max_spikes must be an integer from"),
        (["--depth", "8"], "error: These options do not make a stacked hourglass: input_shape's height and width"),
        (["--features", "30"], "error: These options do not make a stacked hourglass: features must be a positive"),
        (["--max-points", "0"], "error: --max-points must be from 1 to the 4096 heatmap pixels, not 0."),
        (["--sigma", "2,x"], "error: --sigma takes one number or one a point type, such as 2,2,1, not '2,x'."),
        (["--sigma", "2,0,1"], "error: --sigma must be positive, not 2,0,1."),
        (["--sigma", "2,1", *TINY], "error: --sigma takes one number or one for each of the 3 point types, not 2."),
        (
            ["--score-threshold", "0.3,0.4", *TINY],
            "error: --score-threshold takes one number or one for each of the 3 point types, not 2.",
        ),
        (["--score-threshold", "0.5,1,0.5"], "error: --score-threshold must be at least 0 and below 1, not 0.5,1,0.5."),
    ],
)
def test_bad_options_are_one_sentence(empty_cwd, args, message):
    assert_refused(invoke_recipe("wheat_localisation", *args, "--out", "run"), message, cwd=empty_cwd)
