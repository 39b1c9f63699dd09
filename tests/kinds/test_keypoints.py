"""The keypoint kind: points compared pair by pair in heatmap pixels (float and quantised criteria), predict JSON in
original-image pixels, drawing, and evaluation by precision / recall, PCK and counting."""

import io
import json

import kapps.data
from kapps.errors import ModelError
from kapps.kinds import PredictOptions, keypoints, kind_for
from kapps.layers import HeatmapPeaks

import keras
import numpy as np
import pytest
import tensorflow as tf

KIND = kind_for("heatmap")
SIZE = 16  # heatmap pixels
THRESHOLD = 0.2


def outputs(per_type, k=3):
    """One image's outputs from `[[(x, y, score), ...] per type]` in heatmap pixels, padded to k rows."""
    types = len(per_type)
    points = np.zeros((1, types, k, 2), "float32")
    scores = np.zeros((1, types, k), "float32")
    counts = np.zeros((1, types), "int32")
    for t, rows in enumerate(per_type):
        for r, (x, y, score) in enumerate(rows):
            points[0, t, r] = (x / SIZE, y / SIZE)
            scores[0, t, r] = score
        counts[0, t] = len(rows)
    return {"points": points, "scores": scores, "num_points": counts}


def batch(*images):
    return {k: np.concatenate([image[k] for image in images]) for k in images[0]}


def peaks_model():
    heatmaps = keras.Input((SIZE, SIZE, 2))
    return keras.Model(heatmaps, HeatmapPeaks(max_points=3, score_threshold=THRESHOLD)(heatmaps))


MODEL = peaks_model()
REFERENCE = outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5)]])


def compare(got, expected=REFERENCE, *, quantized=False):
    return KIND.compare(got, expected, quantized=quantized, model=MODEL)


def test_the_kind_is_recognised_by_its_task_and_checks_the_outputs():
    assert isinstance(KIND, keypoints.Keypoints)
    KIND.check({k: v.shape for k, v in REFERENCE.items()}, what="m")
    with pytest.raises(
        ModelError, match=r"^m is not a point detector: its outputs are heatmaps \(None, 2, 64, 64, 16\)"
    ):
        KIND.check({"heatmaps": (None, 2, 64, 64, 16)}, what="m")  # a training hourglass
    with pytest.raises(ModelError, match="hourglass_detector"):
        KIND.check({"points": (1, 2, 3, 2), "scores": (1, 2, 4), "num_points": (1, 2)}, what="m")
    with pytest.raises(ModelError, match="has no HeatmapPeaks layer"):
        KIND.compare(REFERENCE, REFERENCE, quantized=False, model=keras.Sequential(name="plain"))


def test_float_artifacts_pair_every_point_within_half_a_pixel():
    same = compare(REFERENCE)
    assert same["passed"] and same["point_agreement"] == 1.0 and same["max_abs_diff"] == 0.0
    # a quarter-pixel shift flipped (0.5 px), scores 5e-4 apart, the two type-0 rows in the other order
    near = outputs([[(10.5, 2.5, 0.6005), (3.0, 4.5, 0.9)], [(8.0, 8.0, 0.5)]])
    near["points"][0, 1, 2] = 0.7  # a padding row means nothing
    result = compare(near)
    assert result["passed"] and result["max_point_diff"] == pytest.approx(0.5)
    assert result["max_score_diff"] == pytest.approx(5e-4, abs=1e-6)
    far = outputs([[(3.5, 5.2, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5)]])  # 0.7 px
    assert not compare(far)["passed"]
    score = outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.602)], [(8.0, 8.0, 0.5)]])  # 2e-3
    assert not compare(score)["passed"]
    # a point within 1e-3 of the threshold may be missing, one above it may not
    borderline = outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5), (1.5, 1.5, THRESHOLD + 5e-4)]])
    assert compare(borderline)["passed"] and compare(REFERENCE, borderline)["passed"]
    assert compare(borderline)["count_agreement"] == 0.0
    extra = outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5), (1.5, 1.5, 0.3)]])
    assert not compare(extra)["passed"]
    # with all K rows full, a point cut by count (within 1e-3 of the other side's lowest) may differ
    full = outputs([[(1.5, 1.5, 0.9), (5.5, 5.5, 0.8), (9.5, 9.5, 0.7)]])
    cut = outputs([[(1.5, 1.5, 0.9), (5.5, 5.5, 0.8), (13.5, 13.5, 0.6995)]])
    assert compare(cut, full)["passed"]
    assert "within 0.5 heatmap pixels" in KIND.criterion(quantized=False)


def test_quantised_artifacts_pair_the_confident_points_within_one_and_a_half_pixels():
    moved = outputs([[(4.5, 5.5, 0.85), (10.5, 2.5, 0.58)], [(8.0, 8.0, 0.52)]])  # 1.41 px
    result = compare(moved, quantized=True)
    assert result["passed"] and result["max_point_diff"] == pytest.approx(2**0.5, rel=1e-5)
    # a point below threshold + 0.1 (0.3) may come and go; a confident one may not, nor move 2 px
    assert compare(
        batch(outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5), (1, 1, 0.25)]])), quantized=True
    )["passed"]
    lost = outputs([[(3.5, 4.5, 0.9)], [(8.0, 8.0, 0.5)]])
    jumped = outputs([[(3.5, 6.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5)]])
    for wrong in (lost, jumped):
        assert not compare(wrong, quantized=True)["passed"]
    # 90% of the images: 9 of 10 agreeing passes, 8 of 10 does not
    nine = compare(batch(*[REFERENCE] * 9, lost), batch(*[REFERENCE] * 10), quantized=True)
    eight = compare(batch(*[REFERENCE] * 8, lost, lost), batch(*[REFERENCE] * 10), quantized=True)
    assert nine["point_agreement"] == pytest.approx(0.9) and nine["passed"]
    assert eight["point_agreement"] == pytest.approx(0.8) and not eight["passed"]
    assert "within 1.5 heatmap pixels" in KIND.criterion(quantized=True)


def test_predict_json_lists_points_in_original_image_pixels():
    entry = KIND.result(
        REFERENCE,
        class_name=lambda t: ["spike", "spikelet"][t],
        width=320,
        height=160,
        options=PredictOptions(score_threshold=0.55),
    )
    entry = json.loads(json.dumps(entry))
    assert entry == {
        "points": [
            {"type": "spike", "type_id": 0, "x": 70.0, "y": 45.0, "score": pytest.approx(0.9)},  # 3.5/16 * 320
            {"type": "spike", "type_id": 0, "x": 210.0, "y": 25.0, "score": pytest.approx(0.6)},
        ]
    }
    everything = KIND.result(
        REFERENCE, class_name=str, width=320, height=160, options=PredictOptions(score_threshold=0)
    )
    assert [p["type"] for p in everything["points"]] == ["0", "0", "1"]
    assert KIND.summary(everything) == "3 points, 2 0, 1 1"
    file = io.BytesIO()
    KIND.draw(np.zeros((160, 320, 3), "uint8"), everything, file)
    assert file.getvalue().startswith(b"\x89PNG")
    empty = io.BytesIO()
    KIND.draw(np.zeros((160, 320, 3), "uint8"), {"points": []}, empty)
    assert empty.getvalue().startswith(b"\x89PNG")


class Fixed:
    """A stand-in point detector answering with fixed outputs for every batch."""

    def __init__(self, answer):
        self.answer = answer

    def __call__(self, images, training=False):
        return {k: np.repeat(v, len(images), axis=0) for k, v in self.answer.items()}


def test_evaluation_counts_precision_recall_pck_and_counting():
    # images of 64 x 32 px; found: type 0 at (14, 9) and (42, 5) px, type 1 at (32, 16) px
    answer = outputs([[(3.5, 4.5, 0.9), (10.5, 2.5, 0.6)], [(8.0, 8.0, 0.5)]])
    truth_points = np.array([[[14 / 64, 10 / 32], [50 / 64, 20 / 32], [0, 0]]] * 2, "float32")  # (2, 3, 2)
    truth_types = np.array([[0, 1, -1], [0, 0, -1]], "int32")
    images = np.zeros((2, 32, 64, 3), "float32")
    dataset = tf.data.Dataset.from_tensor_slices((images, {"points": truth_points, "types": truth_types})).batch(2)
    result = KIND.evaluate(Fixed(answer), dataset, class_names=["tip", "base"])
    # image 1: type 0 (14, 10) found 1 px away, (42, 5) false; type 1 (50, 20) missed (18.4 px), (32, 16) false
    # image 2: type 0 (14, 10) found, (50, 20) missed (17 px from (42, 5)); type 1 (32, 16) false
    assert (result["true_positives"], result["false_positives"], result["false_negatives"]) == (2, 4, 2)
    assert result["precision"] == pytest.approx(2 / 6) and result["recall"] == pytest.approx(2 / 4)
    assert result["pck@0.05"] == pytest.approx(2 / 4)  # within 0.05 * 64 = 3.2 px
    tip, base = result["per_type"]["tip"], result["per_type"]["base"]
    assert tip["count_accuracy"] == 0.5 and tip["count_mae"] == 0.5  # 2 found; 1 and 2 true
    assert base["count_accuracy"] == 0.5 and base["count_mae"] == 0.5 and base["recall"] == 0.0  # 1 found; 1, 0
    assert result["images"] == 2 and KIND.evaluate(Fixed(answer), dataset, limit=1)["images"] == 1


def test_export_data_of_an_embedded_source_is_the_runs_first_images():
    """An export reads at most 256 images of a split: the kind draws those of the embedded sources, and they are
    the images and points a run with any split sizes had first."""
    data = kind_for("heatmap").load_data("shapes", image_size=(64, 64), seed=3, data_dir=None)
    assert data.sizes == {"train": keypoints.EMBEDDED_IMAGES, "val": 0, "test": keypoints.EMBEDDED_IMAGES}
    run = kapps.data.load_keypoints("shapes", image_size=(64, 64), seed=3, sizes=(2, 2, 2))
    for split in ("train", "test"):
        for (image, targets), (same, expected) in zip(getattr(data, split).take(2), getattr(run, split), strict=True):
            np.testing.assert_array_equal(image, same)
            np.testing.assert_array_equal(targets["types"], expected["types"])
            np.testing.assert_array_equal(targets["points"], expected["points"])
