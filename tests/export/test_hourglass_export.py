"""A tiny stacked hourglass with peak extraction inside, exported through `kapps.export` and verified by the keypoint
kind in every runtime, then run by `kapps predict` on an image file."""

import json

import kapps.export
import kapps.models
from kapps.export import keras_runner, tflite_runner
from kapps.predict import predict

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tflite_ops
from tests.models.parity import randomise_weights, varied_images


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 2-stack hourglass (64 x 64 in, 16 x 16 heatmaps, 2 types) with random weights and batch-norm statistics,
    its threshold at the 97th percentile of its last stack's heatmaps on random images (so that peaks are neither
    none nor everywhere), saved as a bare .keras file and exported to SavedModel, TFLite (float and dynamic) and
    ONNX. A bare file of a registered name takes the registry's task: heatmap."""
    folder = tmp_path_factory.mktemp("hourglass")
    model = kapps.models.stacked_hourglass(input_shape=(64, 64, 3), num_types=2, num_stacks=2, features=16, depth=2)
    randomise_weights(model, varied_images(np.random.default_rng(0), 8, 64), seed=0)
    probe = np.random.default_rng(0).uniform(0, 1, (16, 64, 64, 3)).astype("float32")
    thresholds = np.quantile(np.asarray(model(probe))[:, -1], 0.97, axis=(0, 1, 2))  # one a type
    last = model.get_layer("stack2_heatmaps")  # shifted so that each type's threshold is 0.5
    last.bias.assign(last.bias.numpy() + 0.5 - thresholds)
    detector = kapps.models.hourglass_detector(model, max_points=4, score_threshold=0.5)
    detector.save(folder / "stacked_hourglass.keras")
    report = kapps.export.export(
        folder / "stacked_hourglass.keras", formats="all", quantize="dynamic", out=folder / "out", latency_runs=2
    )
    return folder, detector, report


def test_every_artifact_gives_the_points_of_keras(exported):
    folder, detector, report = exported
    assert report["task"] == "heatmap"
    by_path = {a["path"]: a for a in report["artifacts"]}
    assert sorted(by_path) == ["model.onnx", "model.tflite", "model_dynamic.tflite", "saved_model"]
    for path in ("saved_model", "model.tflite", "model.onnx"):
        entry = by_path[path]
        assert entry["passed"] and entry["point_agreement"] == 1.0, entry
        assert entry["max_point_diff"] <= 1e-3 and entry["max_score_diff"] <= 1e-4, entry
        assert "within 0.5 heatmap pixels" in entry["criterion"]
    dynamic = by_path["model_dynamic.tflite"]
    assert dynamic["passed"] and dynamic["point_agreement"] >= 0.9 and "1.5 heatmap pixels" in dynamic["criterion"]
    # the inputs had points, not too few nor all rows full: the comparison compared something
    images = np.random.default_rng(0).uniform(0, 1, (64, 64, 64, 3)).astype("float32")
    counts = keras_runner(detector)(images)["num_points"]
    assert 0 < counts[:, 0].mean() < 4 and 0 < counts[:, 1].mean() < 4
    assert "TOPK_V2" in tflite_ops(folder / "out" / "model.tflite")
    got = tflite_runner(folder / "out" / "model.tflite")(images[:3])
    np.testing.assert_array_equal(got["num_points"], counts[:3])


def test_predict_writes_points_in_image_pixels(exported, tmp_path):
    """A 128 x 128 image that is a 64 x 64 one with every pixel doubled: resized back to 64 x 64 it is that image
    again, so its points are the artifact's on it, in pixels of the 128 x 128 file."""
    folder, _, _ = exported
    small = (np.random.default_rng(1).uniform(0, 1, (64, 64, 3)) * 255).astype("uint8")
    Image.fromarray(small.repeat(2, axis=0).repeat(2, axis=1)).save(tmp_path / "field.png")
    artifact = folder / "out" / "model.tflite"
    (result,) = predict(artifact, [tmp_path / "field.png"], out=tmp_path / "out", score_threshold=0)
    written = json.loads((tmp_path / "out" / "field.json").read_text())
    assert written == json.loads(json.dumps(result)) and written["task"] == "heatmap"
    assert (written["width"], written["height"]) == (128, 128)
    direct = tflite_runner(artifact)((small / 255.0).astype("float32")[None])
    expected = sorted(
        (round(float(x) * 128, 2), round(float(y) * 128, 2), t)
        for t in range(2)
        for x, y in direct["points"][0, t, : direct["num_points"][0, t]]
    )
    assert len(expected) >= 1
    got = sorted((p["x"], p["y"], p["type_id"]) for p in written["points"])
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=0.011)
    scores = [p["score"] for p in written["points"]]
    assert scores == sorted(scores, reverse=True)
    assert (tmp_path / "out" / "field.png").read_bytes().startswith(b"\x89PNG")
