"""kapps.detection.regions: R-CNN's warp against hand-computed samples, selective search's recall on shapes scenes,
and the region table that labels proposals."""

import re

from kapps.data.regions import scene_arrays
from kapps.data.scenes import load_shapes
from kapps.detection import regions

import numpy as np
import pytest

# A 10x10 image whose pixel (row, column) holds 10 * row + column.
RAMP = np.repeat(np.arange(100, dtype="float32").reshape(10, 10, 1), 3, axis=-1)


def test_warp_keeps_context_pixels_around_the_box():
    # Box over pixels 2..7 (edges 2 and 8, 6 wide) warped to 8 with 1 pixel of context: the box must fill output
    # pixels 1..6, so one output pixel is one input pixel and the dilated box spans edges 1..9; the output pixel
    # centres land on input pixel centres 1..8: the warp is exactly RAMP[1:9, 1:9].
    warped = regions.warp(RAMP, [[0.2, 0.2, 0.8, 0.8]], size=(8, 8), context=1)
    np.testing.assert_allclose(np.asarray(warped)[0], RAMP[1:9, 1:9], atol=1e-4)


def test_warp_pads_with_the_image_mean_and_stretches_each_axis_on_its_own():
    # Box over columns 0..3 and rows 0..1 (4 x 2 pixels) warped to 6 x 6 with context 1: the box spans output pixels
    # 1..4 each way, so a sample is 1 input pixel across and 0.5 down. Across: edges -1..5, sample centres -1 (its
    # centre, edge -0.5, is outside the image: the mean) then 0..4. Down: edges -0.5..2.5, centres -0.75 (edge
    # -0.25: outside), -0.25 (edge 0.25: inside, before pixel 0's centre, so pixel 0), then 0.25, 0.75, 1.25, 1.75
    # (bilinear between rows).
    warped = np.asarray(regions.warp(RAMP, [[0.0, 0.0, 0.4, 0.2]], size=(6, 6), context=1))[0, ..., 0]
    rows = np.array([0.0, 0.25, 0.75, 1.25, 1.75])
    expected = np.full((6, 6), RAMP.mean())
    expected[1:, 1:] = 10 * rows[:, None] + np.arange(5)[None, :]
    np.testing.assert_allclose(warped, expected, atol=1e-4)


def test_warp_of_a_batch_follows_the_box_indices():
    images = np.stack([RAMP, RAMP + 1000])
    warped = np.asarray(regions.warp(images, [[0.2, 0.2, 0.8, 0.8]] * 2, size=(8, 8), context=1, box_indices=[1, 0]))
    np.testing.assert_allclose(warped[0], RAMP[1:9, 1:9] + 1000, atol=1e-3)
    np.testing.assert_allclose(warped[1], RAMP[1:9, 1:9], atol=1e-3)
    with pytest.raises(ValueError, match=re.escape("context must be in [0, 4.0) pixels. Received: context=4")):
        regions.warp(RAMP, [[0.2, 0.2, 0.8, 0.8]], size=(8, 8), context=4)


@pytest.fixture(scope="module")
def scenes():
    return scene_arrays(load_shapes(image_size=(128, 128), sizes=(0, 0, 4), seed=0).test)


def test_selective_search_finds_every_object_of_shapes_scenes(scenes):
    images, boxes, classes = scenes
    proposals = [regions.selective_search(image) for image in images]
    for found in proposals:
        assert 1 <= len(found) <= 2000 and found.dtype == np.float32
        assert np.all((found >= 0) & (found <= 1)) and np.all(found[:, 2:] > found[:, :2])
        assert len(np.unique(found, axis=0)) == len(found)
    table = regions.label_regions(proposals, boxes, classes, num_classes=4)
    # Measured: every object of 40 such scenes has a proposal at IoU >= 0.5 (mean best IoU 0.915).
    assert regions.proposal_recall(table) == 1.0
    # The same proposals, in the same order, every time (OpenCV's ranking draws from C's rand(), seeded).
    np.testing.assert_array_equal(regions.selective_search(images[0].astype(np.float32) / 255.0), proposals[0])
    np.testing.assert_array_equal(regions.selective_search(images[0], max_proposals=5), proposals[0][:5])


def test_label_regions_puts_true_boxes_first_and_labels_by_overlap():
    gt_boxes = np.array([[[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0], [0, 0, 0, 0]]], "float32")
    gt_classes = np.array([[2, 0, -1]])
    proposals = [
        np.array(
            [
                [0.0, 0.0, 0.4, 0.3],  # IoU 0.75 with the class-2 box
                [0.0, 0.0, 0.4, 0.16],  # IoU 0.4: background for fine-tuning
                [0.5, 0.5, 1.0, 0.9],  # IoU 0.8 with the class-0 box
            ],
            "float32",
        )
    ]
    table = regions.label_regions(proposals, gt_boxes, gt_classes, num_classes=3)
    np.testing.assert_array_equal(table["is_gt"], [True, True, False, False, False])
    np.testing.assert_array_equal(table["label"], [2, 0, 2, 3, 0])
    np.testing.assert_array_equal(table["gt"], [0, 1, 0, 0, 1])
    np.testing.assert_allclose(table["iou"], [1.0, 1.0, 0.75, 0.4, 0.8], atol=1e-6)
    np.testing.assert_allclose(table["class_iou"][2], [0.0, 0.0, 0.75], atol=1e-6)
    np.testing.assert_allclose(table["gt_boxes"][4], gt_boxes[0, 1])
    assert regions.proposal_recall(table) == 1.0
    assert regions.proposal_recall(table, min_iou=0.78) == 0.5
