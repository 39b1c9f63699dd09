"""Non-maximum suppression that survives export: one image (`nms`) and a batch with class scores (`batched_nms`).

Non-maximum suppression inside an exported graph (measured here with TF 2.21, LiteRT 2.3, tf2onnx 1.17 opset 17,
onnxruntime 1.32):

- `tf.image.non_max_suppression_padded` is a pure-TensorFlow re-implementation (sorting and `while` loops), with
  or without a batch axis: it converts to TFLite builtins and to ONNX, but as ~200 loop and slice nodes, never as
  a NonMaxSuppression op. `tf.image.combined_non_max_suppression` needs Select TF ops in TFLite.
- The `NonMaxSuppressionV5` op (`tf.raw_ops`, the op behind `tf.image.non_max_suppression_with_scores`) with
  `pad_to_max_output_size=True` becomes the TFLite builtin NON_MAX_SUPPRESSION_V5 and the ONNX NonMaxSuppression
  node. It handles one image.
- Over a batch: `tf.map_fn` converts, but the TFLite interpreter then fails inside its WHILE (a SLICE on the
  TensorList, also with a fixed batch). A `tf.while_loop` over the images that concatenates each image's padded
  result (shape invariant `(None, K)`) works everywhere with a dynamic batch: TFLite WHILE around
  NON_MAX_SUPPRESSION_V5, ONNX Loop around NonMaxSuppression, with identical indices in TF, TFLite and onnxruntime.
  `batched_nms` is built that way.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def check_nms_settings(*, max_detections: int, iou_threshold: float) -> None:
    """Raise ValueError unless `max_detections` is a positive integer and `iou_threshold` is in [0, 1]."""
    if isinstance(max_detections, bool) or not isinstance(max_detections, (int, np.integer)) or max_detections < 1:
        raise ValueError(f"max_detections must be a positive integer. Received: max_detections={max_detections!r}")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1]. Received: iou_threshold={iou_threshold!r}")


def nms(
    boxes,
    scores,
    *,
    max_detections: int,
    iou_threshold: float = 0.5,
    score_threshold: float = float("-inf"),
) -> dict[str, tf.Tensor]:
    """Greedy non-maximum suppression for one image and one class, padded to a fixed size.

    Boxes are visited by descending score; a box is kept unless its IoU with a kept box is above `iou_threshold`,
    and only boxes whose score is above `score_threshold` are visited. The `NonMaxSuppressionV5` op, so it
    exports (see the module docstring). Any format with corners `(a1, b1, a2, b2)` works (IoU is the same for
    `xyxy` and `yxyx`).

    Args:
        boxes: `(N, 4)` boxes.
        scores: `(N,)` scores.
        max_detections: the most boxes kept, K.
        iou_threshold: a box overlapping a kept box by more than this is suppressed.
        score_threshold: boxes scoring at or below this are dropped.

    Returns:
        `{"indices": int32 (K,), "boxes": (K, 4), "scores": (K,), "num_detections": int32 ()}`: the kept boxes by
        descending score, then padding (index -1, box 0, score 0).
    """
    check_nms_settings(max_detections=max_detections, iou_threshold=iou_threshold)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)
    indices, kept_scores, count = tf.raw_ops.NonMaxSuppressionV5(
        boxes=boxes,
        scores=scores,
        max_output_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        soft_nms_sigma=0.0,
        pad_to_max_output_size=True,
    )
    valid = tf.range(max_detections) < count
    return {
        "indices": tf.where(valid, indices, -1),
        "boxes": _gather_or(boxes, tf.where(valid, indices, -1), 0.0),
        "scores": tf.where(valid, kept_scores, 0.0),
        "num_detections": count,
    }


def _gather_or(values, indices, padding):
    """`values[indices]` along axis 0, `padding` where an index is -1 (also from an empty `values`)."""
    filler = tf.fill(tf.concat([[1], tf.shape(values)[1:]], 0), tf.cast(padding, values.dtype))
    padded = tf.concat([values, filler], 0)
    return tf.gather(padded, tf.where(indices >= 0, indices, tf.shape(values)[0]))


def _candidates(class_scores, *, per_class: bool):
    """One image's NMS candidates from its `(N, C)` scores: box index, class and score of each, `(M,)` each."""
    num_boxes, num_classes = tf.shape(class_scores)[0], tf.shape(class_scores)[1]
    if per_class:
        # Every (box, class) pair is a candidate, row n * C + c; the score threshold sorts them out.
        box_index = tf.repeat(tf.range(num_boxes), num_classes)
        classes = tf.tile(tf.range(num_classes), [num_boxes])
        return box_index, classes, tf.reshape(class_scores, [-1])
    classes = tf.argmax(class_scores, axis=-1, output_type=tf.int32)
    return tf.range(num_boxes), classes, tf.reduce_max(class_scores, axis=-1)


def _image_nms(boxes, class_scores, *, max_detections, iou_threshold, score_threshold, per_class):
    """`batched_nms` for one image: `(N, 4)`, `(N, C)` -> the four outputs without the batch axis."""
    box_index, classes, scores = _candidates(class_scores, per_class=per_class)
    candidates = tf.gather(boxes, box_index)
    if per_class:
        # Shift each class's boxes by class * span, span wider than all boxes: no two classes can overlap.
        span = tf.reduce_max(boxes) - tf.reduce_min(boxes) + 1.0
        candidates = candidates + (tf.cast(classes, tf.float32) * span)[:, None]
    kept = nms(
        candidates, scores, max_detections=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold
    )
    box_rows = _gather_or(box_index, kept["indices"], -1)
    return (
        _gather_or(boxes, box_rows, 0.0),
        kept["scores"],
        _gather_or(classes, kept["indices"], -1),
        kept["num_detections"],
    )


def batched_nms(
    boxes,
    class_scores,
    *,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.05,
    per_class: bool = True,
) -> dict[str, tf.Tensor]:
    """Non-maximum suppression of every image of a batch, with class scores, padded to `max_detections` rows.

    With `per_class=True`, every (box, class) pair whose class score is above `score_threshold` is a candidate,
    so one box can be detected as two classes, and boxes suppress each other only within a class: each class's
    candidates are shifted by `class_id * span` (span = the coordinate range of the image's boxes + 1), so that
    boxes of different classes never overlap, and one NMS runs over all candidates (the "coordinate offset" trick
    of torchvision's `batched_nms`). With `per_class=False`, each box is one candidate, of its best class and that
    class's score, and boxes suppress each other whatever their class. Either way an image keeps at most
    `max_detections` detections in all, the best ones. The images go through a `tf.while_loop` around the
    `NonMaxSuppressionV5` op, which exports with a dynamic batch (see the module docstring). Per class, NMS sees
    N * C candidates; the shift moves coordinates to at most C * span, so with many classes float32 rounds the
    shifted IoUs by about 1e-7 * C * span, which matters only for IoUs within that of `iou_threshold`.

    Args:
        boxes: `(B, N, 4)` boxes (`rel_xyxy`, or any corner format).
        class_scores: `(B, N, C)` per-class scores (probabilities, not logits, for `score_threshold` to mean
            something).
        max_detections: K, the rows of each image's result.
        iou_threshold: a candidate overlapping a kept one (of its class when `per_class`) by more is suppressed.
        score_threshold: candidates scoring at or below this are dropped; boxes of zero width or height score 0.
        per_class: suppress within each class (True) or across classes (False).

    Returns:
        `{"boxes": float32 (B, K, 4), "scores": float32 (B, K), "classes": int32 (B, K), "num_detections": int32
        (B,)}`, each image's rows by descending score, then padding (box 0, score 0, class -1).
    """
    check_nms_settings(max_detections=max_detections, iou_threshold=iou_threshold)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    class_scores = tf.convert_to_tensor(class_scores, tf.float32)
    if boxes.shape.rank != 3 or class_scores.shape.rank != 3:
        raise ValueError(
            "batched_nms expects boxes (B, N, 4) and class_scores (B, N, C). "
            f"Received: boxes.shape={boxes.shape}, class_scores.shape={class_scores.shape}"
        )
    settings = dict(
        max_detections=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold, per_class=per_class
    )
    k = max_detections
    # A box without area (one beyond the image, clipped to its edge) is no detection. Left in, TFLite's NMS kernel
    # returned one such box over and over, where TensorFlow returns it once.
    has_area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    class_scores = tf.where(has_area[..., None], class_scores, tf.zeros_like(class_scores))

    def body(i, *outputs):
        image = _image_nms(boxes[i], class_scores[i], **settings)
        return (i + 1, *(tf.concat([acc, row[None]], 0) for acc, row in zip(outputs, image, strict=True)))

    initial = (
        tf.constant(0),
        tf.zeros((0, k, 4), tf.float32),
        tf.zeros((0, k), tf.float32),
        tf.zeros((0, k), tf.int32),
        tf.zeros((0,), tf.int32),
    )
    invariants = (
        tf.TensorShape([]),
        tf.TensorShape([None, k, 4]),
        tf.TensorShape([None, k]),
        tf.TensorShape([None, k]),
        tf.TensorShape([None]),
    )
    _, out_boxes, out_scores, out_classes, out_counts = tf.while_loop(
        lambda i, *_: i < tf.shape(boxes)[0], body, initial, shape_invariants=invariants
    )
    return {"boxes": out_boxes, "scores": out_scores, "classes": out_classes, "num_detections": out_counts}
