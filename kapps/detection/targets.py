"""Training targets from ground truth: which prediction answers for which object.

YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016) assigns each object
to the grid cell that holds its centre: `yolo_v1_targets`, which `kapps.losses.YoloV1Loss` reads.
"""

from __future__ import annotations

from keras import ops


def yolo_v1_targets(boxes, classes, *, grid_size: int, num_classes: int):
    """Encode padded ground truth as YOLO v1's grid of targets.

    Each object goes to the cell holding its centre; when two centres fall in one cell (YOLO v1 predicts one
    class per cell), the larger object is kept. Padding rows (class -1) are ignored.

    Args:
        boxes: `(batch, N, 4)` normalised `[x1, y1, x2, y2]`.
        classes: `(batch, N)` integer classes, -1 for padding.
        grid_size: S.
        num_classes: C.

    Returns:
        `(batch, S, S, 5 + C)` float32: per cell the centre `x, y` as an offset within the cell, the width and
        height as fractions of the image, 1 where an object is, and the one-hot class; all zero elsewhere.
    """
    boxes = ops.cast(boxes, "float32")
    classes = ops.cast(classes, "int32")
    cx = (boxes[..., 0] + boxes[..., 2]) / 2
    cy = (boxes[..., 1] + boxes[..., 3]) / 2
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    column = ops.clip(ops.cast(ops.floor(cx * grid_size), "int32"), 0, grid_size - 1)
    row = ops.clip(ops.cast(ops.floor(cy * grid_size), "int32"), 0, grid_size - 1)
    valid = (classes >= 0) & (w > 0) & (h > 0)
    # (batch, N, S*S): an object's claim on its cell, strongest for the largest object, 0 for padding.
    claim = ops.one_hot(row * grid_size + column, grid_size * grid_size) * ops.where(valid, 1.0 + w * h, 0.0)[..., None]
    winner = ops.argmax(claim, axis=1)  # (batch, S*S)
    occupied = ops.max(claim, axis=1) > 0
    per_object = ops.concatenate(
        [
            ops.stack(
                [cx * grid_size - ops.cast(column, "float32"), cy * grid_size - ops.cast(row, "float32"), w, h], -1
            ),
            ops.ones_like(w)[..., None],
            ops.one_hot(ops.maximum(classes, 0), num_classes),
        ],
        axis=-1,
    )  # (batch, N, 5 + C)
    cells = ops.take_along_axis(per_object, winner[..., None], axis=1)  # (batch, S*S, 5 + C)
    cells = ops.where(occupied[..., None], cells, 0.0)
    return ops.reshape(cells, (-1, grid_size, grid_size, 5 + num_classes))
