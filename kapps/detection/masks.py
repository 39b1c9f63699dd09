"""Instance masks between image resolution and a box's small grid, for Mask R-CNN (He et al. 2017).

Both directions are separable bilinear resampling written as two batched matrix products, `rows @ mask @ cols^T`,
where each axis' weight matrix holds the triangle kernel `max(0, 1 - |u - k|)` between sample coordinates `u` and
cells `k`: no `crop_and_resize` (not a TFLite builtin), no `ScatterNd`, no gathers of pixels, so the same code runs
in training and exports to TFLite builtins (BATCH_MATMUL) and ONNX (MatMul) with static shapes.

* `mask_targets` crops each foreground RoI's matched ground-truth mask to a `size x size` grid as RoIAlign does
  (aligned, half-pixel: the RoI spans `x1 * W .. x2 * W`, each bin averages `sampling_ratio**2` bilinear samples,
  samples within one cell outside the image are clamped to the edge), then thresholds at 0.5, as Detectron2's
  `ROIMasks.crop_and_resize` does for its bitmap masks.
* `paste_masks` puts each box's `M x M` mask back at image resolution, as Detectron2's `paste_masks_in_image`
  does (`grid_sample` with `align_corners=False` and zero padding): output pixel centre `x + 0.5` sits at cell
  coordinate `(x + 0.5 - X1) / (X2 - X1) * M - 0.5` of the box's grid, sampled bilinearly with zeros beyond the
  grid. Pixels whose centre lies outside the box are 0.
"""

from __future__ import annotations

import tensorflow as tf


def _triangle(coordinates, cells: int):
    """`(..., S)` sample coordinates -> `(..., S, cells)` bilinear weights on the cells (0 beyond the grid)."""
    k = tf.range(cells, dtype=coordinates.dtype)
    return tf.nn.relu(1.0 - tf.abs(coordinates[..., None] - k))


def _crop_weights(start, end, *, bins: int, cells: int, ratio: int):
    """`(..., bins, cells)`: each bin's average bilinear weight on the cells, RoIAlign's samples of one axis.

    `start` and `end` are `(...)` relative coordinates; the axis has `cells` cells. A sample within one cell beyond
    the map is clamped to the edge cell (RoIAlign's rule); one further out reads nothing.
    """
    start = start * cells - 0.5
    length = end * cells - 0.5 - start
    steps = tf.constant([(i + (s + 0.5) / ratio) / bins for i in range(bins) for s in range(ratio)], start.dtype)
    at = start[..., None] + length[..., None] * steps  # (..., bins * ratio)
    inside = tf.cast((at >= -1.0) & (at <= cells), at.dtype)
    weights = _triangle(tf.clip_by_value(at, 0.0, cells - 1.0), cells) * inside[..., None]
    shape = tf.concat([tf.shape(weights)[:-2], [bins, ratio, cells]], 0)
    return tf.reduce_mean(tf.reshape(weights, shape), axis=-2)


def mask_targets(masks, rois, matched, *, size: int = 28, sampling_ratio: int = 2):
    """Mask R-CNN's mask targets: each foreground RoI's matched ground-truth mask on the RoI's `size x size` grid.

    Args:
        masks: `(B, G, H, W)` ground-truth instance masks (any numeric dtype, nonzero inside), rows as the boxes'.
        rois: `(B, R, 4)` `rel_xyxy` regions (`kapps.detection.roi_targets`' "rois").
        matched: `(B, R)` int, the ground-truth row of each foreground region, -1 elsewhere (its "matched").
        size: M, the grid's side (28 in the paper).
        sampling_ratio: bilinear samples per bin along each axis.

    Returns:
        float32 `(B, R, M, M)` of 0 and 1: the mask resampled by RoIAlign and thresholded at 0.5; all zeros for
        regions that are not foreground.

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017, section 3 ("the intersection
    between an RoI and its associated ground-truth mask").
    """
    if not isinstance(size, int) or size < 1 or not isinstance(sampling_ratio, int) or sampling_ratio < 1:
        raise ValueError(
            f"size and sampling_ratio must be positive integers. Received: size={size!r}, "
            f"sampling_ratio={sampling_ratio!r}"
        )
    rois = tf.stop_gradient(tf.cast(rois, tf.float32))
    matched = tf.cast(matched, tf.int32)
    height, width = masks.shape[2], masks.shape[3]
    chosen = tf.cast(tf.gather(masks, tf.maximum(matched, 0), batch_dims=1) > 0, tf.float32)  # (B, R, H, W)
    rows = _crop_weights(rois[..., 1], rois[..., 3], bins=size, cells=height, ratio=sampling_ratio)  # (B, R, M, H)
    cols = _crop_weights(rois[..., 0], rois[..., 2], bins=size, cells=width, ratio=sampling_ratio)  # (B, R, M, W)
    sampled = tf.matmul(tf.matmul(rows, chosen), cols, transpose_b=True)  # (B, R, M, M)
    return tf.where((matched >= 0)[..., None, None], tf.cast(sampled >= 0.5, tf.float32), 0.0)


def _paste_weights(start, end, *, pixels: int, cells: int):
    """`(..., pixels, cells)`: each output pixel's bilinear weights on a box's grid of `cells`, 0 outside the box."""
    start, end = start * pixels, end * pixels
    centres = tf.range(pixels, dtype=start.dtype) + 0.5
    extent = tf.maximum(end - start, 1e-6)[..., None]
    at = (centres - start[..., None]) / extent * cells - 0.5  # (..., pixels)
    inside = tf.cast((centres >= start[..., None]) & (centres < end[..., None]), at.dtype)
    return _triangle(at, cells) * inside[..., None]


def paste_masks(masks, boxes, *, image_size):
    """Paste each box's `M x M` mask into an image-sized canvas (Detectron2's `paste_masks_in_image`).

    Args:
        masks: `(B, K, M, M)` mask probabilities (or logits: the resampling is linear).
        boxes: `(B, K, 4)` `rel_xyxy` boxes; a box without area pastes nothing.
        image_size: `(H, W)` of the canvas in pixels.

    Returns:
        float32 `(B, K, H, W)`: the masks resampled bilinearly into their boxes, 0 outside them.
    """
    height, width = (int(s) for s in image_size)
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    rows = _paste_weights(boxes[..., 1], boxes[..., 3], pixels=height, cells=masks.shape[2])  # (B, K, H, M)
    cols = _paste_weights(boxes[..., 0], boxes[..., 2], pixels=width, cells=masks.shape[3])  # (B, K, W, M)
    return tf.matmul(tf.matmul(rows, masks), cols, transpose_b=True)
