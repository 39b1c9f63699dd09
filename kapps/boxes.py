"""Box math for detectors: formats, area, IoU, the Faster R-CNN box coder, anchors and non-maximum suppression.

Boxes are tensors whose last axis holds 4 coordinates, by default in kapps' canonical format `"rel_xyxy"`
(normalised `[x1, y1, x2, y2]` of the image's width and height); NumPy arrays are accepted everywhere and the
results are tensors. Format names are keras-cv's (`FORMATS`), and conversion is keras-cv's own.

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

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from keras import ops

FORMATS = ("xyxy", "rel_xyxy", "yxyx", "rel_yxyx", "xywh", "rel_xywh", "center_xywh", "center_yxhw")

# Faster R-CNN's decoder clamps log-size deltas at log(1000 / 16), so that exp() never overflows (torchvision's
# bbox_xform_clip): decoded boxes are at most 62.5 times their anchor's width or height.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def convert_format(boxes, *, source: str, target: str, images=None, image_shape=None):
    """Convert boxes between keras-cv's formats with `keras_cv.bounding_box.convert_format`.

    Args:
        boxes: `(..., 4)` boxes in `source` format (keras-cv wants a rank of 2 or 3).
        source: one of `FORMATS`.
        target: one of `FORMATS`.
        images: images the boxes belong to, for conversions between relative and pixel formats.
        image_shape: `(height, width, channels)`, instead of `images`.

    Returns:
        The boxes in `target` format, float32.
    """
    for name, value in (("source", source), ("target", target)):
        if value.lower() not in FORMATS:
            raise ValueError(f"{name} must be one of {FORMATS}. Received: {name}={value!r}")
    import keras_cv  # 1.5 s to import: only where a conversion is asked for

    return keras_cv.bounding_box.convert_format(
        boxes, source=source, target=target, images=images, image_shape=image_shape
    )


def _corners(boxes, box_format: str):
    """`(x1, y1, x2, y2)` as four tensors, in the same unit (relative or pixels) as `boxes`."""
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    if box_format.lower() not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={box_format!r}")
    if box_format.lower() not in ("xyxy", "rel_xyxy"):
        corner_format = "rel_xyxy" if box_format.lower().startswith("rel_") else "xyxy"
        boxes = convert_format(boxes, source=box_format, target=corner_format)
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def area(boxes, *, format: str = "rel_xyxy"):
    """Area of each box, `(...)`; a box with zero or negative width or height has area 0."""
    x1, y1, x2, y2 = _corners(boxes, format)
    return ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)


def _iou(a, b):
    """IoU of broadcastable corner tuples; 0 where the union is empty (two degenerate boxes), never NaN."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    area_a = ops.maximum(ax2 - ax1, 0.0) * ops.maximum(ay2 - ay1, 0.0)
    area_b = ops.maximum(bx2 - bx1, 0.0) * ops.maximum(by2 - by1, 0.0)
    inter_w = ops.maximum(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1), 0.0)
    inter_h = ops.maximum(ops.minimum(ay2, by2) - ops.maximum(ay1, by1), 0.0)
    inter = inter_w * inter_h
    return ops.divide_no_nan(inter, area_a + area_b - inter)


def iou(boxes_a, boxes_b, *, format: str = "rel_xyxy"):
    """Pairwise intersection over union.

    Boxes are taken as they are (not clipped to the image). A degenerate box (zero or negative width or height)
    has IoU 0 with every box, itself included.

    Args:
        boxes_a: `(..., N, 4)` boxes.
        boxes_b: `(..., M, 4)` boxes, with the same leading axes.
        format: the format of both.

    Returns:
        `(..., N, M)` float32 IoU; empty when N or M is 0.
    """
    a = [c[..., :, None] for c in _corners(boxes_a, format)]
    b = [c[..., None, :] for c in _corners(boxes_b, format)]
    return _iou(a, b)


def elementwise_iou(boxes_a, boxes_b, *, format: str = "rel_xyxy"):
    """IoU of aligned boxes, `(..., 4)` and `(..., 4)` -> `(...)` (box i of `a` with box i of `b` only)."""
    return _iou(_corners(boxes_a, format), _corners(boxes_b, format))


def clip(boxes):
    """Clip `rel_xyxy` boxes to the image, `[0, 1]`; a box wholly outside the image becomes degenerate."""
    return ops.clip(ops.convert_to_tensor(boxes, dtype="float32"), 0.0, 1.0)


def _centre_size(boxes):
    x1, y1, x2, y2 = _corners(boxes, "xyxy")
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1


def _check_variances(variances: Sequence[float]) -> None:
    if len(variances) != 4 or min(variances) <= 0:
        raise ValueError(f"variances must be 4 positive numbers. Received: variances={variances!r}")


def encode(boxes, anchors, *, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)):
    """Encode boxes as deltas from their anchors, Faster R-CNN's parameterisation.

    `tx = (x - xa) / wa`, `ty = (y - ya) / ha`, `tw = log(w / wa)`, `th = log(h / ha)` (Ren et al. 2015, "Faster
    R-CNN", eq. 2), with `(x, y)` a box's centre and `(w, h)` its size, each then divided by its variance (the
    usual rescaling that gives the regression targets a spread near 1). Widths and heights are floored at 1e-8,
    so padding rows (all 0) give finite, meaningless deltas instead of -inf.

    Args:
        boxes: `(..., 4)` `rel_xyxy` boxes.
        anchors: `(..., 4)` `rel_xyxy` anchors, broadcastable with `boxes`, of positive size.
        variances: divisors of `(tx, ty, tw, th)`.

    Returns:
        `(..., 4)` deltas `(tx, ty, tw, th)`.
    """
    _check_variances(variances)
    x, y, w, h = _centre_size(boxes)
    xa, ya, wa, ha = _centre_size(anchors)
    w, h = ops.maximum(w, 1e-8), ops.maximum(h, 1e-8)
    deltas = ops.stack([(x - xa) / wa, (y - ya) / ha, ops.log(w / wa), ops.log(h / ha)], axis=-1)
    return deltas / ops.convert_to_tensor(variances, dtype="float32")


def decode(deltas, anchors, *, variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2)):
    """Boxes from deltas and anchors: the inverse of `encode` (Ren et al. 2015, eq. 2).

    The log-size deltas are clamped at log(1000 / 16) before `exp`, so no decoded box overflows; within that
    range `decode(encode(b, a), a) == b` up to float rounding.

    Args:
        deltas: `(..., 4)` `(tx, ty, tw, th)` as `encode` makes them.
        anchors: `(..., 4)` `rel_xyxy` anchors, broadcastable with `deltas`.
        variances: the ones given to `encode`.

    Returns:
        `(..., 4)` `rel_xyxy` boxes (not clipped; see `clip`).
    """
    _check_variances(variances)
    deltas = ops.convert_to_tensor(deltas, dtype="float32") * ops.convert_to_tensor(variances, dtype="float32")
    xa, ya, wa, ha = _centre_size(anchors)
    x = xa + deltas[..., 0] * wa
    y = ya + deltas[..., 1] * ha
    w = wa * ops.exp(ops.minimum(deltas[..., 2], MAX_LOG_SCALE))
    h = ha * ops.exp(ops.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return ops.stack([x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0], axis=-1)


def anchors(
    *,
    feature_size: tuple[int, int],
    image_size: tuple[int, int],
    sizes: Sequence[float],
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
):
    """Anchor boxes centred on every cell of a feature map, as in Faster R-CNN's RPN (Ren et al. 2015, sec. 3.1.1).

    Cell `(i, j)` of an `(h, w)` map has its centre at pixel `((j + 0.5) * W / w, (i + 0.5) * H / h)`. Each cell
    gets `A = len(sizes) * len(aspect_ratios)` anchors of area `size**2` pixels and `width / height = ratio`
    (`width = size * sqrt(ratio)`, `height = size / sqrt(ratio)`). Anchors are not clipped to the image.

    Order: cell-major, row by row (`i`, then `j`), then anchor within the cell, sizes outer and ratios inner, so
    row `(i * w + j) * A + s * len(aspect_ratios) + r` is size `s`, ratio `r` at cell `(i, j)`: the order of a
    head's `(B, h, w, A * k)` output reshaped to `(B, h * w * A, k)`.

    Args:
        feature_size: `(h, w)` of the feature map.
        image_size: `(H, W)` of the image, in pixels.
        sizes: anchor side lengths in pixels (the square root of the area).
        aspect_ratios: widths divided by heights.

    Returns:
        `(h * w * A, 4)` float32 `rel_xyxy` anchors.
    """
    for name, value in (("feature_size", feature_size), ("image_size", image_size)):
        if len(value) != 2 or min(value) <= 0:
            raise ValueError(f"{name} must be 2 positive numbers (height, width). Received: {name}={value!r}")
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"sizes must be positive numbers. Received: sizes={sizes!r}")
    if not aspect_ratios or min(aspect_ratios) <= 0:
        raise ValueError(f"aspect_ratios must be positive numbers. Received: aspect_ratios={aspect_ratios!r}")
    (h, w), (height, width) = feature_size, image_size
    ratios = np.sqrt(np.asarray(aspect_ratios, "float64"))
    half_w = (np.asarray(sizes, "float64")[:, None] * ratios[None, :]).ravel() / 2.0  # (A,)
    half_h = (np.asarray(sizes, "float64")[:, None] / ratios[None, :]).ravel() / 2.0
    cy, cx = np.meshgrid((np.arange(h) + 0.5) * height / h, (np.arange(w) + 0.5) * width / w, indexing="ij")
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)  # (h * w, 1)
    corners = np.stack([(cx - half_w) / width, (cy - half_h) / height, (cx + half_w) / width, (cy + half_h) / height])
    return ops.convert_to_tensor(corners.reshape(4, -1).T.astype("float32"))


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
