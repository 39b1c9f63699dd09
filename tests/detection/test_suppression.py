"""kapps.detection.suppression: nms and batched_nms against hand-picked survivors and against a greedy NMS written
here, on crowded pixel scenes with 80 classes."""

import re

from kapps.detection import suppression

import numpy as np
import pytest
import tensorflow as tf


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
    with pytest.raises(
        ValueError, match=re.escape("expects boxes (B, N, 4) or (B, N, C, 4) and class_scores (B, N, C)")
    ):
        suppression.batched_nms(CLUSTERS, SCORES)
    with pytest.raises(ValueError, match=re.escape("max_detections must be a positive integer")):
        suppression.batched_nms(CLUSTERS[None], SCORES[None, :, None], max_detections=0)


def pixel_scene(rng, *, boxes=480, classes=80, per_cluster=12, size=640.0):
    """One image's `(boxes, 4)` pixel boxes and `(boxes, classes)` scores: clusters of `per_cluster` jittered boxes
    of one size each, sizes log-uniform from 1.5 to 320 pixels, in a `size` x `size` image; every score distinct
    (no ties for the order to hide behind), half of the (box, class) pairs 0."""
    clusters = boxes // per_cluster
    side = np.exp(rng.uniform(np.log(1.5), np.log(320.0), (clusters, 1)))
    centres = rng.uniform(side, size - side, (clusters, 2))
    sides = np.repeat(side, per_cluster, axis=0)
    xy = np.repeat(centres, per_cluster, axis=0) + rng.normal(0.0, 0.15, (boxes, 2)) * sides
    wh = sides * rng.uniform(0.8, 1.25, (boxes, 2))
    corners = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).clip(0.0, size).astype("float32")
    scores = (rng.permutation(boxes * classes).reshape(boxes, classes) + 1).astype("float32") / (boxes * classes)
    scores[rng.random((boxes, classes)) < 0.5] = 0.0
    return corners, scores


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Every pair's IoU of `[x1, y1, x2, y2]` boxes, in float64."""
    b = boxes.astype("float64")
    inter = np.prod(
        np.clip(np.minimum(b[:, None, 2:], b[None, :, 2:]) - np.maximum(b[:, None, :2], b[None, :, :2]), 0, None), -1
    )
    area = np.prod(b[:, 2:] - b[:, :2], -1)
    return inter / (area[:, None] + area[None] - inter)


def greedy_nms(boxes, class_scores, *, iou_threshold, score_threshold, max_detections, per_class):
    """The definition, class by class: visit the candidates above `score_threshold` by descending score and keep
    each one whose IoU with every kept one of its class is at most `iou_threshold`; then the best
    `max_detections` of all classes. Returns `[(score, class, box index)]` by descending score."""
    overlaps = iou_matrix(boxes)
    if per_class:
        columns = [(c, class_scores[:, c]) for c in range(class_scores.shape[1])]
    else:
        columns = [(None, class_scores.max(axis=1))]
    found = []
    for c, scores in columns:
        kept = []
        for i in sorted(np.flatnonzero(scores > score_threshold), key=lambda i: -scores[i]):
            if overlaps[i, kept].max(initial=0.0) <= iou_threshold:
                kept.append(i)
        found += [(scores[i], int(class_scores[i].argmax()) if c is None else c, i) for i in kept]
    return sorted(found, key=lambda f: -f[0])[:max_detections]


@pytest.mark.parametrize("per_class", [True, False], ids=["per_class", "agnostic"])
def test_crowded_pixel_scenes_match_a_greedy_nms_exactly(per_class):
    """480 boxes from 1.5 to 320 pixels, 80 classes, two images: the kept boxes, scores and classes, in order, are
    the definition's, eagerly and traced (the two run different loops). The class-offset trick (boxes shifted by
    class * 641 pixels, one NMS) kept 4 detections too many of the ~7,500 per class here: at class 79 float32
    steps by 0.004 pixel, enough to move a 3-pixel box's IoU by 1e-3."""
    rng = np.random.default_rng(2)
    images = [pixel_scene(rng) for _ in range(2)]
    boxes, scores = (np.stack(parts) for parts in zip(*images, strict=True))
    for corners in boxes:
        overlaps = iou_matrix(corners)
        np.fill_diagonal(overlaps, 0.0)
        assert (corners[:, 2:] > corners[:, :2]).all()  # no box without area (batched_nms drops those)
        # float32 IoUs are off by a few 1e-7: no pair is that near the threshold, so a difference is the method's
        assert np.abs(overlaps - 0.5).min() > 2e-6
        assert ((overlaps > 0.4) & (overlaps < 0.6)).sum() > 1000  # crowded: many pairs near the threshold
    settings = dict(iou_threshold=0.5, score_threshold=0.05, per_class=per_class)
    for k in (8000, 100):  # every detection, then only the best 100 of all classes
        expected = [greedy_nms(boxes[i], scores[i], max_detections=k, **settings) for i in range(2)]
        for run in (suppression.batched_nms, tf.function(suppression.batched_nms)):
            out = {key: numpy(v) for key, v in run(boxes, scores, max_detections=k, **settings).items()}
            for i, kept in enumerate(expected):
                n = len(kept)
                assert n == k if k == 100 else 100 < n < k
                assert out["num_detections"][i] == n
                np.testing.assert_array_equal(out["boxes"][i, :n], boxes[i][[index for *_, index in kept]])
                np.testing.assert_array_equal(out["scores"][i, :n], [score for score, *_ in kept])
                np.testing.assert_array_equal(out["classes"][i, :n], [c for _, c, _ in kept])
                assert (out["classes"][i, n:] == -1).all() and (out["scores"][i, n:] == 0).all()


def per_class_scene(rng, *, boxes=64, classes=4):
    """One image's `(boxes, classes, 4)` pixel boxes, each class's copy of a box jittered on its own (as a box head
    regresses one box per class), and `(boxes, classes)` distinct scores, half of them 0."""
    corners, scores = pixel_scene(rng, boxes=boxes, classes=classes, per_cluster=8)
    sides = corners[:, None, 2:] - corners[:, None, :2]
    shift = rng.normal(0.0, 0.05, (boxes, classes, 4)) * np.concatenate([sides, sides], -1)
    per_class = (corners[:, None] + shift).astype("float32")
    per_class[..., 2:] = np.maximum(per_class[..., 2:], per_class[..., :2] + 0.5)  # every box keeps an area
    return per_class, scores


def greedy_nms_per_class_boxes(boxes, class_scores, **settings):
    """`greedy_nms` of each class on that class's boxes, then the best `max_detections` of all classes; returns
    `[(score, class, box index)]` by descending score."""
    found = []
    for c in range(class_scores.shape[1]):
        kept = greedy_nms(boxes[:, c], class_scores[:, [c]], per_class=True, **settings)
        found += [(score, c, index) for score, _, index in kept]
    return sorted(found, key=lambda f: -f[0])[: settings["max_detections"]]


def test_boxes_one_per_class_match_a_greedy_nms_per_class():
    """Two images of 64 boxes with a box for each of 4 classes: the kept boxes (each of its class), scores and
    classes, in order, are those of a greedy NMS run class by class on that class's boxes, eagerly and traced."""
    rng = np.random.default_rng(5)
    boxes, scores = (np.stack(parts) for parts in zip(*[per_class_scene(rng) for _ in range(2)], strict=True))
    for image in boxes:
        for c in range(boxes.shape[2]):
            overlaps = iou_matrix(image[:, c])
            np.fill_diagonal(overlaps, 0.0)
            assert np.abs(overlaps - 0.5).min() > 2e-6
    settings = dict(iou_threshold=0.5, score_threshold=0.05)
    # The classes' boxes differ enough that suppressing with class 0's boxes for every class keeps others.
    kept = greedy_nms_per_class_boxes(boxes[0], scores[0], max_detections=256, **settings)
    first_class_boxes = greedy_nms(boxes[0, :, 0], scores[0], max_detections=256, per_class=True, **settings)
    assert {(c, i) for _, c, i in kept} != {(c, i) for _, c, i in first_class_boxes}
    for k in (256, 20):
        expected = [greedy_nms_per_class_boxes(boxes[i], scores[i], max_detections=k, **settings) for i in range(2)]
        for run in (suppression.batched_nms, tf.function(suppression.batched_nms)):
            out = {key: numpy(v) for key, v in run(boxes, scores, max_detections=k, **settings).items()}
            for i, kept in enumerate(expected):
                n = len(kept)
                assert n == k if k == 20 else 20 < n < k
                assert out["num_detections"][i] == n
                np.testing.assert_array_equal(out["scores"][i, :n], [score for score, *_ in kept])
                np.testing.assert_array_equal(out["classes"][i, :n], [c for _, c, _ in kept])
                np.testing.assert_array_equal(out["boxes"][i, :n], [boxes[i, index, c] for _, c, index in kept])
                assert (out["classes"][i, n:] == -1).all() and not out["boxes"][i, n:].any()


def test_boxes_one_per_class_equal_one_run_per_class():
    """Per-class boxes are the (B, N, 4) path run once per class on that class's boxes (its scores only), merged."""
    rng = np.random.default_rng(6)
    boxes, scores = (np.stack(parts) for parts in zip(*[per_class_scene(rng) for _ in range(2)], strict=True))
    k = 24
    out = batched(boxes, scores, max_detections=k)
    for i in range(2):
        merged = []
        for c in range(scores.shape[2]):
            alone = np.zeros_like(scores[i : i + 1])
            alone[..., c] = scores[i : i + 1, :, c]
            one = batched(boxes[i : i + 1, :, c], alone, max_detections=k)
            merged += [(s, c, tuple(b)) for s, b in zip(one["scores"][0], one["boxes"][0], strict=True) if s > 0]
        merged = sorted(merged, key=lambda m: (-m[0], m[1]))[:k]
        np.testing.assert_array_equal(out["scores"][i], [s for s, _, _ in merged])
        np.testing.assert_array_equal(out["classes"][i], [c for _, c, _ in merged])
        np.testing.assert_array_equal(out["boxes"][i], [b for _, _, b in merged])


def test_a_box_of_one_class_without_area_is_no_detection_of_that_class():
    # box 0 is flat as class 0, fine as class 1
    boxes = np.array([[[[0.3, 1.0, 0.4, 1.0], [0.1, 0.1, 0.4, 0.4]], [[0.5, 0.5, 0.9, 0.9], [0.5, 0.5, 0.9, 0.9]]]])
    out = batched(boxes, [[[0.9, 0.8], [0.7, 0.1]]], max_detections=3)
    np.testing.assert_array_equal(out["classes"], [[1, 0, 1]])
    np.testing.assert_allclose(out["boxes"][0], [[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.5, 0.5, 0.9, 0.9]])


def test_boxes_one_per_class_bad_arguments():
    boxes, scores = np.zeros((1, 3, 2, 4), "float32"), np.zeros((1, 3, 2), "float32")
    with pytest.raises(ValueError, match=re.escape("only with per_class=True. Received: boxes.shape=(1, 3, 2, 4)")):
        suppression.batched_nms(boxes, scores, per_class=False)
    with pytest.raises(ValueError, match=re.escape("with the C of class_scores (B, N, C)")):
        suppression.batched_nms(boxes, np.zeros((1, 3, 5), "float32"))
