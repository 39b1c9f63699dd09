"""YOLO v1's grid output read as boxes: the cell geometry the loss and the decoding layer share.

Each of the S x S cells predicts B boxes and one set of C class probabilities. kapps lays a cell's
`B * 5 + C` numbers out as B groups of `(x, y, sqrt_w, sqrt_h, confidence)` followed by the C class
probabilities (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016, Sec. 2):
`x, y` are the box centre as an offset within its cell (0 to 1), `sqrt_w, sqrt_h` the square roots of its width
and height as fractions of the image (the paper regresses the roots "to reflect that small deviations in large
boxes matter less than in small boxes"), `confidence` stands for Pr(object) * IoU(pred, truth).
"""

from __future__ import annotations

import keras
from keras import ops


def split_cells(grid, *, boxes_per_cell: int, num_classes: int):
    """Split a grid output `(batch, S, S, B * 5 + C)` into boxes `(batch, S, S, B, 4)` as (x, y, sqrt_w, sqrt_h),
    confidences `(batch, S, S, B)` and class probabilities `(batch, S, S, C)`."""
    depth = boxes_per_cell * 5
    if len(grid.shape) != 4 or grid.shape[1] is None or grid.shape[-1] != depth + num_classes:
        raise ValueError(
            f"a grid of {boxes_per_cell} boxes and {num_classes} classes is (batch, S, S, {depth + num_classes}). "
            f"Received: shape={tuple(grid.shape)}"
        )
    per_box = ops.reshape(grid[..., :depth], (-1, grid.shape[1], grid.shape[2], boxes_per_cell, 5))
    return per_box[..., :4], per_box[..., 4], grid[..., depth:]


def cell_boxes_to_xyxy(boxes, *, grid_size: int):
    """Cell-relative `(x, y, sqrt_w, sqrt_h)` boxes `(..., S, S, B, 4)` as normalised `[x1, y1, x2, y2]` of the image.

    Cell (row i, column j) spans `[j/S, (j+1)/S]` across and `[i/S, (i+1)/S]` down; width and height are the
    squares of the predicted roots, so a negative root means the same box as its absolute value.
    """
    cells = ops.cast(ops.arange(grid_size), boxes.dtype)
    column = ops.reshape(cells, (1, grid_size, 1))  # broadcasts over (S rows, S columns, B boxes)
    row = ops.reshape(cells, (grid_size, 1, 1))
    cx = (boxes[..., 0] + column) / grid_size
    cy = (boxes[..., 1] + row) / grid_size
    half_w = ops.square(boxes[..., 2]) / 2
    half_h = ops.square(boxes[..., 3]) / 2
    return ops.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


@keras.saving.register_keras_serializable(package="kapps")
class YoloV1Decode(keras.layers.Layer):
    """Read a YOLO v1 grid `(batch, S, S, B * 5 + C)` as `S * S * B` candidate boxes with class-specific scores.

    Outputs `boxes` `(batch, S*S*B, 4)`, normalised `[x1, y1, x2, y2]` clipped to the image, and `class_scores`
    `(batch, S*S*B, C)`: the paper's test-time score Pr(class | object) * Pr(object) * IoU, that is each box's
    confidence times its cell's class probabilities, both clipped to [0, 1] because the paper's linear output
    layer can leave that range. Candidates are ordered by row, column, then box. Feed them to
    `kapps.layers.NonMaxSuppression`.

    Args:
        grid_size: S, cells along each side.
        boxes_per_cell: B, boxes each cell predicts.
        num_classes: C.
    """

    def __init__(self, grid_size: int, boxes_per_cell: int, num_classes: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for arg, value in (("grid_size", grid_size), ("boxes_per_cell", boxes_per_cell), ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
        self.grid_size = grid_size
        self.boxes_per_cell = boxes_per_cell
        self.num_classes = num_classes

    def call(self, grid):
        grid = ops.cast(grid, "float32")
        boxes, confidence, classes = split_cells(grid, boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes)
        boxes = ops.clip(cell_boxes_to_xyxy(boxes, grid_size=self.grid_size), 0.0, 1.0)
        # (batch, S, S, B, 1) * (batch, S, S, 1, C)
        scores = ops.clip(confidence, 0.0, 1.0)[..., None] * ops.clip(classes, 0.0, 1.0)[..., None, :]
        count = self.grid_size * self.grid_size * self.boxes_per_cell
        return {
            "boxes": ops.reshape(boxes, (-1, count, 4)),
            "class_scores": ops.reshape(scores, (-1, count, self.num_classes)),
        }

    def compute_output_shape(self, input_shape):
        count = self.grid_size * self.grid_size * self.boxes_per_cell
        return {"boxes": (input_shape[0], count, 4), "class_scores": (input_shape[0], count, self.num_classes)}

    def get_config(self):
        config = super().get_config()
        config.update(grid_size=self.grid_size, boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes)
        return config
