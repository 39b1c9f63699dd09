"""Task losses and the target encodings they read.

YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016): `yolo_v1_targets`
puts each object into the grid cell that holds its centre, and `YoloV1Loss` is the paper's sum-squared error
(its equation 3).
"""

from __future__ import annotations

from kapps.boxes import elementwise_iou
from kapps.layers.yolo import cell_boxes_to_xyxy, split_cells

import keras
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


@keras.saving.register_keras_serializable(package="kapps")
class YoloV1Loss(keras.losses.Loss):
    """YOLO v1's loss, equation 3 of the paper, summed over the cells of an image and averaged over the batch.

        lambda_coord * sum_ij 1obj_ij [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
        + sum_ij 1obj_ij (C - C^)^2 + lambda_noobj * sum_ij 1noobj_ij (C - C^)^2
        + sum_i 1obj_i sum_c (p(c) - p^(c))^2

    1obj_ij marks predictor j of a cell i that holds an object, the one "responsible" for it: of the cell's B
    predictions, the one with the highest IoU with the object (the first on a tie). Its confidence target C^ is
    that IoU, held constant; every other predictor, in that cell or another, is pushed to confidence 0
    (1noobj_ij = 1 - 1obj_ij). The class term counts only cells with an object, once per cell.

    `y_true` is `yolo_v1_targets(...)`, `y_pred` the model's grid `(batch, S, S, B * 5 + C)`.

    Args:
        grid_size: S.
        boxes_per_cell: B.
        num_classes: C.
        lambda_coord: weight of the coordinate terms (5 in the paper).
        lambda_noobj: weight of the confidence of predictors without an object (0.5 in the paper).
    """

    def __init__(
        self,
        grid_size: int = 7,
        boxes_per_cell: int = 2,
        num_classes: int = 20,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        reduction: str = "sum_over_batch_size",
        name: str = "yolo_v1_loss",
        dtype=None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.grid_size = grid_size
        self.boxes_per_cell = boxes_per_cell
        self.num_classes = num_classes
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        pred_boxes, confidence, probabilities = split_cells(
            y_pred, boxes_per_cell=self.boxes_per_cell, num_classes=self.num_classes
        )
        obj = y_true[..., 4]  # (batch, S, S)
        truth = ops.concatenate([y_true[..., 0:2], ops.sqrt(y_true[..., 2:4])], axis=-1)[..., None, :]  # (b,S,S,1,4)
        iou = ops.stop_gradient(
            elementwise_iou(
                cell_boxes_to_xyxy(pred_boxes, grid_size=self.grid_size),
                cell_boxes_to_xyxy(truth, grid_size=self.grid_size),
            )
        )  # (batch, S, S, B)
        responsible = ops.one_hot(ops.argmax(iou, axis=-1), self.boxes_per_cell) * obj[..., None]
        coordinates = ops.sum(ops.square(pred_boxes - truth), axis=-1)
        loss = (
            self.lambda_coord * ops.sum(responsible * coordinates, axis=(1, 2, 3))
            + ops.sum(responsible * ops.square(confidence - iou), axis=(1, 2, 3))
            + self.lambda_noobj * ops.sum((1 - responsible) * ops.square(confidence), axis=(1, 2, 3))
            + ops.sum(obj * ops.sum(ops.square(probabilities - y_true[..., 5:]), axis=-1), axis=(1, 2))
        )
        return loss

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            boxes_per_cell=self.boxes_per_cell,
            num_classes=self.num_classes,
            lambda_coord=self.lambda_coord,
            lambda_noobj=self.lambda_noobj,
        )
        return config
