"""Detection post-processing as a Keras layer: batched, per-class non-maximum suppression inside the graph."""

from __future__ import annotations

from kapps.detection import batched_nms, check_nms_settings

import keras


@keras.saving.register_keras_serializable(package="kapps")
class NonMaxSuppression(keras.layers.Layer):
    """The end of a detector's inference model: scored boxes in, kapps' padded detections out.

    Calls `kapps.detection.batched_nms`: boxes `(B, N, 4)` `rel_xyxy` (or `(B, N, C, 4)`, a box for each class, as
    Fast and Faster R-CNN's box heads regress them; only with `per_class`) and class scores `(B, N, C)` in, a dict
    `{"boxes": float32 (B, K, 4), "scores": float32 (B, K), "classes": int32 (B, K), "num_detections": int32
    (B,)}` out, each image's detections by descending score, then padding rows (box 0, score 0, class -1). It
    exports with a free batch axis: TFLite builtins (NON_MAX_SUPPRESSION_V5) and ONNX (NonMaxSuppression). The
    layer computes in float32 whatever the dtype policy, so a mixed-precision model still outputs float32.

    Args:
        max_detections: K, the rows of each image's result.
        iou_threshold: a box overlapping a kept box (of the same class when `per_class`) by more is suppressed.
        score_threshold: class scores at or below this are never detections.
        per_class: suppress only among boxes of the same class (True), or among all boxes, each taking its best
            class (False).

    Reference: the greedy NMS of R. Girshick et al., "Rich feature hierarchies for accurate object detection and
    semantic segmentation", CVPR 2014, applied per class as in Faster R-CNN (Ren et al. 2015).
    """

    def __init__(
        self,
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        score_threshold: float = 0.05,
        per_class: bool = True,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        check_nms_settings(max_detections=max_detections, iou_threshold=iou_threshold)
        self.max_detections = int(max_detections)
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.per_class = bool(per_class)

    def call(self, boxes, class_scores):
        return batched_nms(
            boxes,
            class_scores,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            per_class=self.per_class,
        )

    def compute_output_spec(self, boxes, class_scores):
        if len(boxes.shape) not in (3, 4) or boxes.shape[-1] != 4 or len(class_scores.shape) != 3:
            raise ValueError(
                "NonMaxSuppression expects boxes (batch, N, 4) or (batch, N, classes, 4) and class_scores "
                f"(batch, N, classes). Received: boxes.shape={boxes.shape}, class_scores.shape={class_scores.shape}"
            )
        if len(boxes.shape) == 4 and not self.per_class:
            raise ValueError(
                "NonMaxSuppression takes boxes (batch, N, classes, 4), one per class, only with per_class=True. "
                f"Received: boxes.shape={boxes.shape}, per_class=False"
            )
        batch, k = boxes.shape[0], self.max_detections
        return {
            "boxes": keras.KerasTensor((batch, k, 4), dtype="float32"),
            "scores": keras.KerasTensor((batch, k), dtype="float32"),
            "classes": keras.KerasTensor((batch, k), dtype="int32"),
            "num_detections": keras.KerasTensor((batch,), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            per_class=self.per_class,
        )
        return config
