"""kapps.detection.boxes against hand-computed cases: formats, area, IoU and clipping."""

import re

from kapps.detection import boxes

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
