"""Task losses.

YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016): `YoloV1Loss` is the
paper's sum-squared error (its equation 3), on the targets `kapps.detection.yolo_v1_targets` encodes.
"""

from __future__ import annotations

from kapps.detection import elementwise_iou
from kapps.layers.yolo import cell_boxes_to_xyxy, split_cells

import keras
from keras import ops


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

    `y_true` is `kapps.detection.yolo_v1_targets(...)`, `y_pred` the model's grid `(batch, S, S, B * 5 + C)`.

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
