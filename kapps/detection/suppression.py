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
- Per class, the "coordinate offset" trick (shift each class's boxes by class * span, one NMS over all) rounds in
  float32: at class 79 of a 640-pixel image the shifted coordinates are near 50,000, where float32 steps by
  0.004 pixel, which moves the IoU of two 3-pixel boxes by 1e-3. On six random 640x640 scenes of 480 boxes (1.5
  to 320 pixels) and 80 classes it kept or dropped 0 to 16 of ~7,500 detections against an exact greedy NMS.
  `batched_nms` runs one NMS per class instead, on the boxes as they are, in a second `tf.while_loop` inside the
  first (WHILE in WHILE in TFLite, Loop in Loop in ONNX), and ranks the classes' survivors with `tf.math.top_k`
  (TOPK_V2, TopK): identical to the greedy reference on those scenes, in TF, TFLite and onnxruntime. Traced, it
  costs more than the one NMS (64 images of 98 boxes: 14 ms against 10 ms with 3 classes, 140 ms against 18 ms
  with 80); eagerly it is a Python loop of one op per class with candidates (32 ms against 450 ms, 3 classes).
- Boxes one per class, `(B, N, C, 4)` (Fast and Faster R-CNN's box heads), take the same loops: the class loop
  slices its class's boxes from `(B, C, N, 4)` beside its scores, and the same builtins and ONNX nodes come out.
- Equal scores: TFLite's NON_MAX_SUPPRESSION_V5 visits boxes of equal score in an order of its own (200 boxes
  of one score: indices 0, 2, 6, 14, 30, ...), where TensorFlow and onnxruntime take the lower index first. On a
  blank image a network's scores tie by the hundred, and a Faster R-CNN's proposals, then detections, differed in
  TFLite. `batched_nms` sorts each row with `tf.math.top_k` (TOPK_V2, TopK: equal values by index in all three
  runtimes) and gives the NMS op ranks, which never tie, in place of scores.
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
    indices, kept_scores, count = _nms_op(
        boxes, scores, max_detections=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold
    )
    valid = tf.range(max_detections) < count
    return {
        "indices": tf.where(valid, indices, -1),
        "boxes": _gather_or(boxes, tf.where(valid, indices, -1), 0.0),
        "scores": tf.where(valid, kept_scores, 0.0),
        "num_detections": count,
    }


def _gather_or(values, indices, padding, *, batch_dims: int = 0):
    """`values[indices]` along axis `batch_dims`, `padding` where an index is -1 (also from an empty `values`)."""
    shape = tf.shape(values)
    filler = tf.fill(tf.concat([shape[:batch_dims], [1], shape[batch_dims + 1 :]], 0), tf.cast(padding, values.dtype))
    padded = tf.concat([values, filler], batch_dims)
    indices = tf.where(indices >= 0, indices, shape[batch_dims])
    return tf.gather(padded, indices, batch_dims=batch_dims)


def _nms_op(boxes, scores, *, max_detections, iou_threshold, score_threshold):
    """The bare `NonMaxSuppressionV5` op: kept indices `(K,)` (0 past the count), their scores `(K,)`, the count."""
    return tf.raw_ops.NonMaxSuppressionV5(
        boxes=boxes,
        scores=scores,
        max_output_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        soft_nms_sigma=0.0,
        pad_to_max_output_size=True,
    )


def _kept_per_row(boxes, rows, **settings):
    """NMS of each image's `(N, 4)` boxes under each of its R rows of scores: boxes `(B, R, N, 4)`, one set a row,
    scores `(B, R, N)` -> kept box indices `(B, R, K)` (0 past the count), their scores `(B, R, K)` and the counts
    `(B, R)`."""
    if tf.executing_eagerly():
        return _kept_per_row_eagerly(boxes, rows, **settings)
    k = settings["max_detections"]

    def image(i, kept_rows, kept_scores, kept_counts):
        def row(r, found_rows, found_scores, found_counts):
            indices, scores, count = _nms_op(boxes[i, r], rows[i, r], **settings)
            return (
                r + 1,
                tf.concat([found_rows, indices[None]], 0),
                tf.concat([found_scores, scores[None]], 0),
                tf.concat([found_counts, count[None]], 0),
            )

        start = (tf.constant(0), tf.zeros((0, k), tf.int32), tf.zeros((0, k), tf.float32), tf.zeros((0,), tf.int32))
        shapes = (tf.TensorShape([]), tf.TensorShape([None, k]), tf.TensorShape([None, k]), tf.TensorShape([None]))
        _, *found = tf.while_loop(lambda r, *_: r < tf.shape(rows)[1], row, start, shape_invariants=shapes)
        accumulated = (kept_rows, kept_scores, kept_counts)
        return (i + 1, *(tf.concat([acc, new[None]], 0) for acc, new in zip(accumulated, found, strict=True)))

    num_rows = tf.shape(rows)[1]
    start = (
        tf.constant(0),
        tf.zeros((0, num_rows, k), tf.int32),
        tf.zeros((0, num_rows, k), tf.float32),
        tf.zeros((0, num_rows), tf.int32),
    )
    shapes = (
        tf.TensorShape([]),
        tf.TensorShape([None, None, k]),
        tf.TensorShape([None, None, k]),
        tf.TensorShape([None, None]),
    )
    _, *kept = tf.while_loop(lambda i, *_: i < tf.shape(boxes)[0], image, start, shape_invariants=shapes)
    return kept


def _kept_per_row_eagerly(boxes, rows, **settings):
    """`_kept_per_row` as a Python loop of one op per (image, row) with candidates. Eagerly, the `tf.while_loop`s
    would run in Python too, at ten ops an iteration: 9.6 s of CPU for 64 images of 98 boxes and 80 classes, where
    this takes 0.3 s."""
    boxes, rows = boxes.numpy(), rows.numpy()
    batch, num_rows, _ = rows.shape
    k = settings["max_detections"]
    kept_rows = np.zeros((batch, num_rows, k), np.int32)
    kept_scores = np.zeros((batch, num_rows, k), np.float32)
    kept_counts = np.zeros((batch, num_rows), np.int32)
    for i, r in zip(*np.nonzero(np.max(rows, axis=-1, initial=-np.inf) > settings["score_threshold"]), strict=True):
        indices, scores, count = _nms_op(boxes[i, r], rows[i, r], **settings)
        kept_rows[i, r], kept_scores[i, r], kept_counts[i, r] = indices, scores, count
    return tf.constant(kept_rows), tf.constant(kept_scores), tf.constant(kept_counts)


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
    so one box can be detected as two classes, and boxes suppress each other only within a class: one NMS runs
    per class on the unshifted boxes (not the class-offset trick, whose float32 rounding changes results at pixel
    coordinates; see the module docstring). With `per_class=False`, each box is one candidate, of its best class
    and that class's score, and boxes suppress each other whatever their class. Boxes may also come one per class,
    `(B, N, C, 4)`, as Fast R-CNN's box head regresses them (Girshick 2015, "Fast R-CNN", sec. 2.3): class c's NMS
    then runs on `boxes[:, :, c]`, and only with `per_class=True`. Either way an image keeps at most
    `max_detections` detections in all, the best ones; equal scores rank by class, then by rank within the class.
    The images, and in each the classes, go through `tf.while_loop`s around the `NonMaxSuppressionV5` op, which
    export with a dynamic batch (see the module docstring).

    Args:
        boxes: `(B, N, 4)` boxes (`rel_xyxy`, or any corner format), or `(B, N, C, 4)`, a box for each class.
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
    if boxes.shape.rank not in (3, 4) or class_scores.shape.rank != 3:
        raise ValueError(
            "batched_nms expects boxes (B, N, 4) or (B, N, C, 4) and class_scores (B, N, C). "
            f"Received: boxes.shape={boxes.shape}, class_scores.shape={class_scores.shape}"
        )
    if boxes.shape.rank == 4 and not per_class:
        raise ValueError(
            "batched_nms takes boxes of one per class, (B, N, C, 4), only with per_class=True. "
            f"Received: boxes.shape={boxes.shape}, per_class=False"
        )
    if boxes.shape.rank == 4 and not boxes.shape[2:].is_compatible_with([class_scores.shape[2], 4]):
        raise ValueError(
            "batched_nms expects boxes (B, N, C, 4) with the C of class_scores (B, N, C). "
            f"Received: boxes.shape={boxes.shape}, class_scores.shape={class_scores.shape}"
        )
    settings = dict(
        max_detections=max_detections, iou_threshold=iou_threshold, score_threshold=score_threshold, per_class=per_class
    )
    return _batched_nms(boxes, class_scores, **settings)


def _batched_nms(boxes, class_scores, *, max_detections, iou_threshold, score_threshold, per_class):
    """`batched_nms` after its checks."""
    k = max_detections
    # A box without area (one beyond the image, clipped to its edge) is no detection. Left in, TFLite's NMS kernel
    # returned one such box over and over, where TensorFlow returns it once.
    has_area = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])  # (B, N), or (B, N, C)
    one_per_class = boxes.shape.rank == 4
    has_area = has_area if one_per_class else has_area[..., None]
    class_scores = tf.where(has_area, class_scores, tf.zeros_like(class_scores))
    # (B, C, N), one NMS per class, row r is class r; or (B, 1, N), every box by its best class
    rows = tf.transpose(class_scores, [0, 2, 1]) if per_class else tf.reduce_max(class_scores, axis=-1)[:, None]
    row_boxes = tf.transpose(boxes, [0, 2, 1, 3]) if one_per_class else boxes  # (B, C, N, 4), or (B, N, 4)
    # The NMS ops see each row's candidates sorted (`top_k`: equal scores by index in every runtime), scored by rank,
    # N for the first down to 1, 0 at or below the threshold. With equal scores, TFLite's NMS kernel visits boxes
    # in an order of its own, where TensorFlow's and onnxruntime's take the lower index first: a blank image made
    # a Faster R-CNN's proposals differ; distinct ranks leave no tie to break.
    n = rows.shape[-1] if rows.shape[-1] is not None else tf.shape(rows)[-1]
    sorted_scores, by_score = tf.math.top_k(rows, k=n)  # (B, R, N)
    ranks = tf.cast(n - tf.range(n), tf.float32)
    ranks = tf.where(sorted_scores > score_threshold, ranks, tf.zeros_like(sorted_scores))
    sorted_boxes = tf.gather(row_boxes, by_score, batch_dims=2 if one_per_class else 1)  # (B, R, N, 4)
    kept, _, kept_counts = _kept_per_row(
        sorted_boxes, ranks, max_detections=k, iou_threshold=iou_threshold, score_threshold=0.0
    )
    valid = tf.range(k) < tf.expand_dims(kept_counts, -1)  # `[..., None]`: a StridedSlice TFLite refuses
    kept = tf.where(valid, kept, -1)
    kept_rows = _gather_or(by_score, kept, -1, batch_dims=2)  # (B, R, K) box indices, -1 past the count
    kept_scores = _gather_or(sorted_scores, kept, 0.0, batch_dims=2)
    # (B, R, K) -> each image's best K of its R * K: padding ranks last, equal scores keep the lower (row, rank)
    # first. Padding is the lowest finite float, not -inf: tf2onnx turns `tf.where(kept, scores, 0.0)` into
    # `scores * kept + ...`, and -inf * 0 is NaN.
    batch = tf.shape(boxes)[0]
    lowest = tf.float32.min
    ranked = tf.reshape(tf.where(valid, kept_scores, lowest), [batch, -1])
    ranked = tf.concat([ranked, tf.fill([batch, k], lowest)], 1)  # at least K entries, also with no rows at all
    scores, order = tf.math.top_k(ranked, k=k)
    counts = tf.minimum(tf.reduce_sum(kept_counts, axis=1), k)
    kept = tf.range(k) < counts[:, None]
    order = tf.where(kept, order, -1)
    box_rows = _gather_or(tf.reshape(kept_rows, [batch, -1]), order, -1, batch_dims=1)
    if per_class:
        classes = order // k
    else:
        classes = _gather_or(tf.argmax(class_scores, axis=-1, output_type=tf.int32), box_rows, -1, batch_dims=1)
    if one_per_class:
        # (B, N * C, 4): box n of class c is row n * C + c
        num_classes = tf.shape(boxes)[2]
        boxes = tf.reshape(boxes, [batch, tf.shape(boxes)[1] * num_classes, 4])
        box_rows = tf.where(box_rows >= 0, box_rows * num_classes + classes, -1)
    return {
        "boxes": _gather_or(boxes, box_rows, 0.0, batch_dims=1),
        "scores": tf.where(kept, scores, 0.0),
        "classes": tf.where(kept, classes, -1),
        "num_detections": counts,
    }
