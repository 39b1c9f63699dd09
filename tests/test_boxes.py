"""kapps.boxes against hand-computed cases: formats, IoU, the box coder, anchors and NMS."""

import re

from kapps import boxes

import numpy as np
import pytest


def numpy(x) -> np.ndarray:
    return np.asarray(x)


def test_convert_format_is_keras_cv():
    rel = np.array([[0.1, 0.2, 0.5, 0.6]], "float32")
    pixels = boxes.convert_format(rel, source="rel_xyxy", target="xyxy", image_shape=(10, 20, 3))
    np.testing.assert_allclose(numpy(pixels), [[2.0, 2.0, 10.0, 6.0]], atol=1e-6)  # x times width 20, y height 10
    centre = boxes.convert_format(pixels, source="xyxy", target="center_xywh")
    np.testing.assert_allclose(numpy(centre), [[6.0, 4.0, 8.0, 4.0]], atol=1e-6)
    swapped = boxes.convert_format(rel, source="rel_xyxy", target="rel_yxyx")
    np.testing.assert_allclose(numpy(swapped), rel[:, [1, 0, 3, 2]])
    with pytest.raises(ValueError, match=re.escape("target must be one of")):
        boxes.convert_format(rel, source="rel_xyxy", target="corners")


UNIT = [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (UNIT, UNIT, 1.0),  # identical
        ([0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], 0.0),  # touching corners: disjoint
        ([0.0, 0.0, 0.5, 0.5], [0.25, 0.0, 0.75, 0.5], 1 / 3),  # half of each overlaps: 0.125 / 0.375
        (UNIT, [0.25, 0.25, 0.75, 0.75], 0.25),  # contained: its area over the outer one's
        ([-0.5, 0.0, 0.5, 1.0], UNIT, 1 / 3),  # half outside the image, taken as it is: 0.5 / 1.5
        ([0.2, 0.2, 0.2, 0.6], UNIT, 0.0),  # zero width
        ([0.2, 0.2, 0.2, 0.6], [0.2, 0.2, 0.2, 0.6], 0.0),  # a degenerate box with itself: 0, not NaN
        ([0.6, 0.2, 0.4, 0.6], UNIT, 0.0),  # negative width
        ([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], 0.0),  # padding rows
    ],
)
def test_iou_hand_computed(a, b, expected):
    assert numpy(boxes.iou([a], [b])).shape == (1, 1)
    assert numpy(boxes.iou([a], [b]))[0, 0] == pytest.approx(expected, abs=1e-6)
    assert numpy(boxes.iou([b], [a]))[0, 0] == pytest.approx(expected, abs=1e-6)
    assert numpy(boxes.elementwise_iou(a, b)) == pytest.approx(expected, abs=1e-6)


def test_iou_is_pairwise_over_leading_axes():
    a = np.array([UNIT, [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], "float32")
    b = np.array([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]], "float32")
    expected = np.array([[0.25, 0.25], [1.0, 0.0625 / 0.4375], [0.0, 0.0625 / 0.4375]])
    np.testing.assert_allclose(numpy(boxes.iou(a, b)), expected, atol=1e-6)
    batched = boxes.iou(np.stack([a, a[::-1]]), np.stack([b, b]))
    assert numpy(batched).shape == (2, 3, 2)
    np.testing.assert_allclose(numpy(batched)[1], expected[::-1], atol=1e-6)
    np.testing.assert_allclose(numpy(boxes.elementwise_iou(a[:2], b)), [0.25, 0.0625 / 0.4375], atol=1e-6)


def test_iou_of_empty_sets_is_empty():
    assert numpy(boxes.iou(np.zeros((0, 4)), np.ones((2, 4)))).shape == (0, 2)
    assert numpy(boxes.iou(np.ones((3, 4)), np.zeros((0, 4)))).shape == (3, 0)


def test_iou_and_area_in_other_formats():
    # xywh pixels: 2x2 squares at x=0 and x=1 share a 1x2 strip, IoU 2 / (4 + 4 - 2).
    assert numpy(boxes.iou([[0.0, 0.0, 2.0, 2.0]], [[1.0, 0.0, 2.0, 2.0]], format="xywh"))[0, 0] == pytest.approx(1 / 3)
    np.testing.assert_allclose(numpy(boxes.area([[0.1, 0.2, 0.5, 0.4], [0.5, 0.5, 0.4, 0.9]])), [0.08, 0.0], atol=1e-7)
    assert numpy(boxes.area([[0.2, 0.1, 0.4, 0.5]], format="rel_yxyx")) == pytest.approx(0.08)  # h 0.2, w 0.4
    with pytest.raises(ValueError, match=re.escape("format must be one of")):
        boxes.area([UNIT], format="ltrb")


def test_clip():
    np.testing.assert_allclose(numpy(boxes.clip([[-0.1, 0.5, 1.2, 0.7]])), [[0.0, 0.5, 1.0, 0.7]])


ANCHOR = [0.2, 0.2, 0.6, 0.4]  # centre (0.4, 0.3), size 0.4 x 0.2
BOX = [0.3, 0.2, 0.7, 0.6]  # centre (0.5, 0.4), size 0.4 x 0.4


def test_encode_hand_computed():
    # tx = 0.1 / 0.4, ty = 0.1 / 0.2, tw = log(0.4 / 0.4), th = log(0.4 / 0.2) (Ren et al. 2015, eq. 2).
    plain = boxes.encode([BOX], [ANCHOR], variances=(1.0, 1.0, 1.0, 1.0))
    np.testing.assert_allclose(numpy(plain), [[0.25, 0.5, 0.0, np.log(2.0)]], atol=1e-6)
    scaled = boxes.encode([BOX], [ANCHOR])
    np.testing.assert_allclose(numpy(scaled), [[2.5, 5.0, 0.0, np.log(2.0) / 0.2]], atol=1e-5)
    np.testing.assert_allclose(numpy(boxes.decode(scaled, [ANCHOR])), [BOX], atol=1e-6)


def test_encode_and_decode_are_inverses():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0.0, 0.6, (2, 50, 2))
    sizes = rng.uniform(0.02, 0.4, (2, 50, 2))
    gt, priors = np.concatenate([corners, corners + sizes], -1).astype("float32")
    np.testing.assert_allclose(numpy(boxes.decode(boxes.encode(gt, priors), priors)), gt, atol=1e-6)
    deltas = rng.normal(0.0, 1.0, (50, 4)).astype("float32")
    np.testing.assert_allclose(numpy(boxes.encode(boxes.decode(deltas, priors), priors)), deltas, atol=1e-4)


def test_decode_clamps_huge_sizes_and_encode_survives_padding():
    decoded = numpy(boxes.decode([[0.0, 0.0, 1000.0, 1000.0]], [ANCHOR]))
    np.testing.assert_allclose(decoded[0, 2] - decoded[0, 0], 0.4 * 62.5, rtol=1e-5)  # exp(log(1000 / 16)) wide
    assert np.all(np.isfinite(numpy(boxes.encode([[0.0, 0.0, 0.0, 0.0]], [ANCHOR]))))
    with pytest.raises(ValueError, match=re.escape("variances must be 4 positive numbers. Received: variances=(1, 1)")):
        boxes.encode([BOX], [ANCHOR], variances=(1, 1))


def test_anchors_on_a_2x2_map():
    # A 64 x 32 image (W x H) seen as a 2 x 2 map: cell centres at x 16 / 48 px, y 8 / 24 px.
    grid = numpy(boxes.anchors(feature_size=(2, 2), image_size=(32, 64), sizes=(8, 16), aspect_ratios=(0.5, 1, 2)))
    assert grid.shape == (2 * 2 * 6, 4) and grid.dtype == np.float32
    centres = (grid[:, :2] + grid[:, 2:]) / 2
    cells = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]  # cell-major, row by row
    np.testing.assert_allclose(centres, np.repeat(cells, 6, axis=0), atol=1e-6)
    width, height = (grid[:, 2] - grid[:, 0]) * 64, (grid[:, 3] - grid[:, 1]) * 32  # pixels
    np.testing.assert_allclose(width * height, np.tile([64.0] * 3 + [256.0] * 3, 4), rtol=1e-5)  # size ** 2
    np.testing.assert_allclose(width / height, np.tile([0.5, 1.0, 2.0], 8), rtol=1e-5)  # ratios inner
    np.testing.assert_allclose(grid[1], [0.25 - 4 / 64, 0.25 - 4 / 32, 0.25 + 4 / 64, 0.25 + 4 / 32], atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("Received: sizes=()")):
        boxes.anchors(feature_size=(2, 2), image_size=(32, 32), sizes=())


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
    out = {key: numpy(v) for key, v in boxes.nms(CLUSTERS, SCORES, max_detections=k, **settings).items()}
    pad = k - len(kept)
    assert out["num_detections"] == len(kept)
    np.testing.assert_array_equal(out["indices"], kept + [-1] * pad)
    np.testing.assert_allclose(out["scores"], np.concatenate([SCORES[kept], np.zeros(pad)]))
    np.testing.assert_allclose(out["boxes"], np.concatenate([CLUSTERS[kept], np.zeros((pad, 4))]))


@pytest.mark.parametrize("count", [6, 0])
def test_nms_with_nothing_to_keep(count):
    out = boxes.nms(CLUSTERS[:count], SCORES[:count], max_detections=3, score_threshold=0.95)
    assert numpy(out["num_detections"]) == 0
    np.testing.assert_array_equal(numpy(out["indices"]), [-1, -1, -1])
    np.testing.assert_array_equal(numpy(out["boxes"]), np.zeros((3, 4)))
    np.testing.assert_array_equal(numpy(out["scores"]), np.zeros(3))


def batched(box_rows, class_scores, **settings) -> dict[str, np.ndarray]:
    out = boxes.batched_nms(np.asarray(box_rows, "float32"), np.asarray(class_scores, "float32"), **settings)
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
        boxes.batched_nms(CLUSTERS, SCORES)
    with pytest.raises(ValueError, match=re.escape("max_detections must be a positive integer")):
        boxes.batched_nms(CLUSTERS[None], SCORES[None, :, None], max_detections=0)
