"""kapps.detection.suppression: nms and batched_nms against hand-picked survivors."""

import re

from kapps.detection import suppression

import numpy as np
import pytest


def numpy(x) -> np.ndarray:
    return np.asarray(x)


# Two tight pairs, a box inside box 0 with IoU 0.25, and a loner.
CLUSTERS = np.array(
    [
        [0.0, 0.0, 0.4, 0.4],  # 0: 0.9
        [0.02, 0.0, 0.42, 0.4],  # 1: 0.8, IoU 0.905 with 0
        [0.5, 0.5, 0.9, 0.9],  # 2: 0.7
        [0.5, 0.52, 0.9, 0.92],  # 3: 0.6, IoU 0.905 with 2
        [0.0, 0.6, 0.3, 0.9],  # 4: 0.3, alone
        [0.1, 0.1, 0.3, 0.3],  # 5: 0.5, IoU 0.25 with 0
    ],
    "float32",
)
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.5], "float32")


@pytest.mark.parametrize(
    ("settings", "kept"),
    [
        ({}, [0, 2, 5, 4]),
        ({"score_threshold": 0.4}, [0, 2, 5]),
        ({"iou_threshold": 0.2}, [0, 2, 4]),
        ({"iou_threshold": 0.95}, [0, 1, 2, 3, 5, 4]),
        ({"max_detections": 2}, [0, 2]),
    ],
)
def test_nms_survivors(settings, kept):
    k = settings.pop("max_detections", 6)
    out = {key: numpy(v) for key, v in suppression.nms(CLUSTERS, SCORES, max_detections=k, **settings).items()}
    pad = k - len(kept)
    assert out["num_detections"] == len(kept)
    np.testing.assert_array_equal(out["indices"], kept + [-1] * pad)
    np.testing.assert_allclose(out["scores"], np.concatenate([SCORES[kept], np.zeros(pad)]))
    np.testing.assert_allclose(out["boxes"], np.concatenate([CLUSTERS[kept], np.zeros((pad, 4))]))


@pytest.mark.parametrize("count", [6, 0])
def test_nms_with_nothing_to_keep(count):
    out = suppression.nms(CLUSTERS[:count], SCORES[:count], max_detections=3, score_threshold=0.95)
    assert numpy(out["num_detections"]) == 0
    np.testing.assert_array_equal(numpy(out["indices"]), [-1, -1, -1])
    np.testing.assert_array_equal(numpy(out["boxes"]), np.zeros((3, 4)))
    np.testing.assert_array_equal(numpy(out["scores"]), np.zeros(3))


def batched(box_rows, class_scores, **settings) -> dict[str, np.ndarray]:
    out = suppression.batched_nms(np.asarray(box_rows, "float32"), np.asarray(class_scores, "float32"), **settings)
    return {k: numpy(v) for k, v in out.items()}


PAIR = [[0.0, 0.0, 0.4, 0.4], [0.02, 0.0, 0.42, 0.4]]  # IoU 0.905


def test_per_class_keeps_overlapping_boxes_of_different_classes():
    scores = [[[0.9, 0.0], [0.0, 0.8]]]
    out = batched([PAIR], scores, max_detections=3)
    assert out["num_detections"].tolist() == [2]
    np.testing.assert_array_equal(out["classes"], [[0, 1, -1]])
    np.testing.assert_allclose(out["scores"], [[0.9, 0.8, 0.0]])
    np.testing.assert_allclose(out["boxes"][0], [PAIR[0], PAIR[1], [0, 0, 0, 0]])
    # Across classes the second box is suppressed.
    agnostic = batched([PAIR], scores, max_detections=3, per_class=False)
    assert agnostic["num_detections"].tolist() == [1]
    np.testing.assert_array_equal(agnostic["classes"], [[0, -1, -1]])


def test_one_box_can_be_two_classes_and_same_class_boxes_suppress():
    out = batched([PAIR], [[[0.9, 0.6], [0.8, 0.7]]], max_detections=4)
    # Class 0: box 0 (0.9) suppresses box 1 (0.8); class 1: box 1 (0.7) suppresses box 0 (0.6).
    np.testing.assert_array_equal(out["classes"], [[0, 1, -1, -1]])
    np.testing.assert_allclose(out["scores"], [[0.9, 0.7, 0.0, 0.0]])
    np.testing.assert_allclose(out["boxes"][0, :2], [PAIR[0], PAIR[1]])
    only_best = batched([PAIR], [[[0.9, 0.6], [0.8, 0.7]]], max_detections=4, score_threshold=0.75)
    np.testing.assert_array_equal(only_best["classes"], [[0, -1, -1, -1]])


def test_per_class_offset_works_in_pixels_too():
    pixels = np.asarray(PAIR) * 100.0
    out = batched([pixels], [[[0.9, 0.0], [0.0, 0.8]]], max_detections=2)
    assert out["num_detections"].tolist() == [2]
    np.testing.assert_allclose(out["boxes"][0], pixels, atol=1e-4)


def test_a_batch_of_images_with_different_counts():
    # Image 0: the six CLUSTERS boxes of one class (4 survive); image 1: one box above the threshold.
    box_rows = np.stack([CLUSTERS, np.roll(CLUSTERS, 1, axis=0)])
    class_scores = np.zeros((2, 6, 2), "float32")
    class_scores[0, :, 1] = SCORES
    class_scores[1, 3, 0] = 0.6
    out = batched(box_rows, class_scores, max_detections=5, score_threshold=0.05)
    assert out["num_detections"].tolist() == [4, 1]
    assert out["classes"].dtype == np.int32 and out["num_detections"].dtype == np.int32
    np.testing.assert_array_equal(out["classes"], [[1, 1, 1, 1, -1], [0, -1, -1, -1, -1]])
    np.testing.assert_allclose(out["scores"], [[0.9, 0.7, 0.5, 0.3, 0.0], [0.6, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(out["boxes"][0, :4], CLUSTERS[[0, 2, 5, 4]])
    np.testing.assert_allclose(out["boxes"][1], [CLUSTERS[2]] + [[0, 0, 0, 0]] * 4)
    empty = batched(box_rows, class_scores, max_detections=5, score_threshold=0.95)
    assert empty["num_detections"].tolist() == [0, 0]
    np.testing.assert_array_equal(empty["classes"], -np.ones((2, 5)))
    np.testing.assert_array_equal(empty["boxes"], np.zeros((2, 5, 4)))
    np.testing.assert_array_equal(empty["scores"], np.zeros((2, 5)))


def test_boxes_without_area_are_never_detections():
    # a box clipped flat against the bottom edge (repeated, as a decoder can give it) and a point, both scoring high
    flat, point = [0.3, 1.0, 0.4, 1.0], [0.5, 0.5, 0.5, 0.5]
    out = batched([[flat, flat, point, PAIR[0]]], [[[0.9], [0.9], [0.8], [0.3]]], max_detections=4)
    assert out["num_detections"].tolist() == [1]
    np.testing.assert_allclose(out["boxes"][0, 0], PAIR[0])


@pytest.mark.parametrize("per_class", [True, False])
def test_batched_nms_of_images_without_boxes(per_class):
    out = batched(np.zeros((2, 0, 4)), np.zeros((2, 0, 3)), max_detections=2, per_class=per_class)
    assert out["num_detections"].tolist() == [0, 0]
    np.testing.assert_array_equal(out["classes"], [[-1, -1], [-1, -1]])
    np.testing.assert_array_equal(out["boxes"], np.zeros((2, 2, 4)))


def test_batched_nms_bad_arguments():
    with pytest.raises(ValueError, match=re.escape("expects boxes (B, N, 4) and class_scores (B, N, C)")):
        suppression.batched_nms(CLUSTERS, SCORES)
    with pytest.raises(ValueError, match=re.escape("max_detections must be a positive integer")):
        suppression.batched_nms(CLUSTERS[None], SCORES[None, :, None], max_detections=0)
