"""Mask targets and mask pasting against loop references written from Detectron2's conventions (RoIAlign's bilinear
sampling of a bitmap, `grid_sample` with zero padding), and the mask loss against its formula."""

import kapps.layers
from kapps.detection import mask_targets, paste_masks
from kapps.losses import mask_loss

import numpy as np
import pytest


def bilinear(image: np.ndarray, y: float, x: float) -> float:
    """Detectron2's RoIAlign `bilinear_interpolate`: 0 beyond one cell outside, the edge cells within it."""
    height, width = image.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * image[y0, x0]
        + (1 - ly) * lx * image[y0, x1]
        + ly * (1 - lx) * image[y1, x0]
        + ly * lx * image[y1, x1]
    )


def crop_reference(mask: np.ndarray, box, size: int, ratio: int = 2) -> np.ndarray:
    height, width = mask.shape
    x1, y1, x2, y2 = box[0] * width - 0.5, box[1] * height - 0.5, box[2] * width - 0.5, box[3] * height - 0.5
    bin_h, bin_w = (y2 - y1) / size, (x2 - x1) / size
    out = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            samples = [
                bilinear(mask, y1 + (i + (a + 0.5) / ratio) * bin_h, x1 + (j + (b + 0.5) / ratio) * bin_w)
                for a in range(ratio)
                for b in range(ratio)
            ]
            out[i, j] = np.mean(samples)
    return (out >= 0.5).astype("float32")


def test_mask_targets_crop_the_matched_mask_of_foreground_rois_only():
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 3, 20, 24), "uint8")
    masks[0, 0, 3:12, 4:15] = 1
    masks[0, 1] = rng.uniform(size=(20, 24)) > 0.5
    masks[1, 0, 10:20, 0:9] = 1  # touches the border
    masks[1, 1, 0:8, 0:6] = 1
    masks[1, 2, 2:5, 18:24] = 1
    rois = np.array(
        [
            [[0.1, 0.1, 0.7, 0.65], [0.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.25, 0.34], [0.5, 0.5, 0.9, 0.9]],
            [[0.0, 0.45, 0.4, 1.0], [0.7, 0.05, 1.0, 0.3], [-0.3, -0.3, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]],
        ],
        "float32",
    )
    matched = np.array([[0, 1, 1, -1], [0, 2, 1, -1]], "int32")
    got = np.asarray(mask_targets(masks, rois, matched, size=7))
    assert got.shape == (2, 4, 7, 7)
    for b in range(2):
        for r in range(4):
            expected = np.zeros((7, 7)) if matched[b, r] < 0 else crop_reference(masks[b, matched[b, r]], rois[b, r], 7)
            np.testing.assert_array_equal(got[b, r], expected, err_msg=f"image {b}, RoI {r}")
    assert got[0, 0].sum() > 10 and got[1, 0].sum() > 10  # not trivially empty


def paste_reference(mask: np.ndarray, box, height: int, width: int) -> np.ndarray:
    size = mask.shape[0]
    x1, y1, x2, y2 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            cy, cx = i + 0.5, j + 0.5
            if not (x1 <= cx < x2 and y1 <= cy < y2):
                continue
            v, u = (cy - y1) / (y2 - y1) * size - 0.5, (cx - x1) / (x2 - x1) * size - 0.5
            v0, u0 = int(np.floor(v)), int(np.floor(u))
            total = 0.0
            for yy, wy in ((v0, 1 - (v - v0)), (v0 + 1, v - v0)):
                for xx, wx in ((u0, 1 - (u - u0)), (u0 + 1, u - u0)):
                    if 0 <= yy < size and 0 <= xx < size:  # zero padding beyond the grid
                        total += wy * wx * mask[yy, xx]
            out[i, j] = total
    return out


def test_paste_masks_match_grid_sample_with_zeros_outside_the_box():
    rng = np.random.default_rng(1)
    masks = rng.uniform(size=(2, 3, 6, 6)).astype("float32")
    boxes = np.array(
        [
            [[0.1, 0.2, 0.6, 0.9], [0.0, 0.5, 0.35, 1.0], [0.3, 0.3, 0.36, 0.36]],  # inside, at the border, tiny
            [[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.8], [0.0, 0.0, 0.0, 0.0]],  # whole image, no width, padding
        ],
        "float32",
    )
    got = np.asarray(kapps.layers.PasteMasks((18, 22))(masks, boxes))
    assert got.shape == (2, 3, 18, 22)
    for b in range(2):
        for k in range(3):
            np.testing.assert_allclose(got[b, k], paste_reference(masks[b, k], boxes[b, k], 18, 22), atol=1e-5)
    assert got[0, 2].any() and not got[1, 1:].any()  # the tiny box still pastes a pixel; empty boxes paste nothing


def test_a_blank_batch_pastes_nothing():
    got = np.asarray(paste_masks(np.ones((2, 5, 28, 28), "float32"), np.zeros((2, 5, 4), "float32"), image_size=(8, 8)))
    assert got.shape == (2, 5, 8, 8) and not got.any()


def test_class_masks_pick_the_detections_class_and_zero_padding():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1, 3, 4, 4, 2)).astype("float32")
    got = np.asarray(kapps.layers.ClassMasks()(logits, np.array([[1, 0, -1]], "int32")))
    sigmoid = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(got[0, 0], sigmoid[0, 0, ..., 1], atol=1e-6)
    np.testing.assert_allclose(got[0, 1], sigmoid[0, 1, ..., 0], atol=1e-6)
    assert not got[0, 2].any()


def test_mask_loss_is_the_true_class_cross_entropy_over_foreground_pixels():
    rng = np.random.default_rng(3)
    labels = np.array([[2, 0, 1, -1], [0, 0, 0, 0]], "int32")
    targets = (rng.uniform(size=(2, 4, 5, 5)) > 0.5).astype("float32")
    logits = rng.normal(scale=2.0, size=(2, 4, 5, 5, 2)).astype("float32")
    p = 1 / (1 + np.exp(-logits))
    entropy = -(targets[..., None] * np.log(p) + (1 - targets[..., None]) * np.log(1 - p))
    expected = (entropy[0, 0, ..., 1].sum() + entropy[0, 2, ..., 0].sum()) / (2 * 25)
    assert float(mask_loss(labels, targets, logits)) == pytest.approx(expected, rel=1e-5)
    assert float(mask_loss(np.zeros((1, 2), "int32"), targets[:1, :2], logits[:1, :2])) == 0.0
