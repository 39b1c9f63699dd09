"""Training targets from ground truth: which prediction answers for which object.

YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016) assigns each object
to the grid cell that holds its centre: `yolo_v1_targets`, which `kapps.losses.YoloV1Loss` reads.

Faster R-CNN (Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks", NeurIPS
2015) matches by IoU and trains on a random, balanced sample: `rpn_targets` labels anchors for the region proposal
network, `roi_targets` picks the proposals the box head learns from (Girshick, "Fast R-CNN", ICCV 2015). Both run
in a `train_step` under `tf.function`: outputs have static shapes, and the random sample is a ranking of keys from
`tf.random.stateless_uniform`, the same for the same `seed`.
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.detection.boxes import iou
from kapps.detection.coder import encode

import tensorflow as tf
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


def _check_sampling(*, num_samples: int, positive_fraction: float, positive_iou: float) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer. Received: num_samples={num_samples!r}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1]. Received: positive_fraction={positive_fraction!r}")
    if not 0.0 < positive_iou <= 1.0:
        raise ValueError(f"positive_iou must be in (0, 1]. Received: positive_iou={positive_iou!r}")


def _ground_truth(boxes, classes):
    """Padded ground truth as tensors, with one more padding row: with it, a batch padded to no rows at all
    (G = 0) still has a best IoU and a row to gather."""
    boxes = tf.pad(tf.convert_to_tensor(boxes, tf.float32), [[0, 0], [0, 1], [0, 0]])
    classes = tf.pad(tf.convert_to_tensor(classes, tf.int32), [[0, 0], [0, 1]], constant_values=-1)
    return boxes, classes


def _match(candidates, boxes, classes):
    """IoU of every candidate with the real ground truth: `(B or 1, N, 4)`, `(B, G, 4)`, `(B, G)` -> the
    `(B, N, G)` IoUs (0 with padding rows), each candidate's best IoU `(B, N)` and its argmax `(B, N)` int32."""
    overlaps = tf.where(classes[:, None, :] >= 0, iou(candidates, boxes), 0.0)
    return overlaps, tf.reduce_max(overlaps, axis=-1), tf.argmax(overlaps, axis=-1, output_type=tf.int32)


def _balanced_order(positive, negative, *, num_samples: int, positive_fraction: float, seed):
    """Draw a balanced sample of `(B, N)` boolean masks: up to `int(num_samples * positive_fraction)` positives
    at random, then negatives at random up to `num_samples` in all, as Faster R-CNN samples (sec. 3.1.3).

    Returns `order`, `(B, N)` int32: every image's candidates, positives first, then negatives, then the rest,
    each group in random order; and `(B, 1)` int32 `num_positive` (all of them), `take_positive` and
    `take_negative` (the sampled counts): the sample is `order[:take_positive]` and
    `order[num_positive:num_positive + take_negative]`.
    """
    # Integer keys below 2**29 with the group in the bits above, so one sort ranks groups and keys exactly.
    keys = tf.random.stateless_uniform(tf.shape(positive), seed, minval=0, maxval=2**29, dtype=tf.int32)
    priority = keys + tf.where(positive, 2**30, tf.where(negative, 2**29, 0))
    order = tf.argsort(priority, axis=-1, direction="DESCENDING", stable=True)
    num_positive = tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True)
    num_negative = tf.reduce_sum(tf.cast(negative, tf.int32), axis=-1, keepdims=True)
    take_positive = tf.minimum(num_positive, int(num_samples * positive_fraction))
    take_negative = tf.minimum(num_negative, num_samples - take_positive)
    return order, num_positive, take_positive, take_negative


def rpn_targets(
    anchors,
    boxes,
    classes,
    *,
    seed,
    positive_iou: float = 0.7,
    negative_iou: float = 0.3,
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    variances: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> dict[str, tf.Tensor]:
    """Label and encode anchors for the region proposal network, Faster R-CNN's rules (Ren et al. 2015, sec. 3.1.2).

    An anchor is positive if its IoU with some ground-truth box is at least `positive_iou`, or if it has the
    highest IoU of all anchors with some box (every anchor tied for it, when that IoU is above 0); negative if it
    is not positive and its IoU with every box is below `negative_iou`; ignored otherwise. A positive anchor
    matches the box it overlaps most (the reference implementation's rule, also torchvision's), which for an anchor
    positive by the highest-IoU rule alone may be another box than the one it is best for. Padding rows (class -1,
    whatever their box) never match, so an image without ground truth has only negatives. Then each image samples
    `num_samples` anchors (sec. 3.1.3): up to `num_samples * positive_fraction` positives at random, negatives at
    random for the rest.

    Args:
        anchors: `(A, 4)` `rel_xyxy` anchors, of positive size.
        boxes: `(B, G, 4)` `rel_xyxy` ground truth, zero rows for padding.
        classes: `(B, G)` integer classes, -1 for padding.
        seed: `(2,)` int32 or int64 tensor for `tf.random.stateless_uniform`; the same seed draws the same sample.
        positive_iou: the IoU from which an anchor is positive.
        negative_iou: the IoU below which an anchor is negative.
        num_samples: anchors sampled per image.
        positive_fraction: the largest share of positives in the sample.
        variances: divisors of the deltas, as for `encode` (Faster R-CNN's RPN uses none, all 1).

    Returns:
        `{"labels": int32 (B, A), "deltas": float32 (B, A, 4), "matched": int32 (B, A)}`: 1 for a sampled positive,
        0 for a sampled negative, -1 for an anchor ignored or not sampled; `encode(matched box, anchor)` for
        positive anchors (sampled or not) and 0 elsewhere; the row of the matched box for positive anchors, -1
        elsewhere.
    """
    _check_sampling(num_samples=num_samples, positive_fraction=positive_fraction, positive_iou=positive_iou)
    if not 0.0 <= negative_iou <= positive_iou:
        raise ValueError(
            f"negative_iou must be in [0, positive_iou={positive_iou!r}]. Received: negative_iou={negative_iou!r}"
        )
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    boxes, classes = _ground_truth(boxes, classes)
    overlaps, best, matched = _match(anchors[None], boxes, classes)  # (B, A, G), (B, A), (B, A)
    # Each box's best anchors, ties included: the rule that gives every box at least one positive anchor.
    best_for_a_box = (overlaps == tf.reduce_max(overlaps, axis=1, keepdims=True)) & (overlaps > 0.0)
    positive = (best >= positive_iou) | tf.reduce_any(best_for_a_box, axis=-1)
    negative = (best < negative_iou) & ~positive
    order, num_positive, take_positive, take_negative = _balanced_order(
        positive, negative, num_samples=num_samples, positive_fraction=positive_fraction, seed=seed
    )
    rank = tf.argsort(order, axis=-1, stable=True)  # each anchor's place in `order`
    sampled_positive = positive & (rank < take_positive)
    sampled_negative = negative & (rank >= num_positive) & (rank < num_positive + take_negative)
    labels = tf.where(sampled_positive, 1, tf.where(sampled_negative, 0, -1))
    matched = tf.where(positive, matched, -1)
    matched_boxes = tf.gather(boxes, tf.maximum(matched, 0), batch_dims=1)  # (B, A, 4)
    deltas = tf.where(positive[..., None], encode(matched_boxes, anchors[None], variances=variances), 0.0)
    return {"labels": labels, "deltas": deltas, "matched": matched}


def roi_targets(
    proposals,
    boxes,
    classes,
    *,
    seed,
    num_samples: int = 128,
    positive_fraction: float = 0.25,
    positive_iou: float = 0.5,
    background_iou: tuple[float, float] = (0.0, 0.5),
    add_ground_truth: bool = True,
    variances: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
) -> dict[str, tf.Tensor]:
    """Sample the regions of interest the box head trains on, with their classes and box targets (Girshick 2015,
    "Fast R-CNN", sec. 2.3; Ren et al. 2015, "Faster R-CNN", sec. 3.2).

    The candidates are an image's proposals that have an area (all-zero padding rows have none) and, with
    `add_ground_truth`, its ground-truth boxes too, as the Fast and Faster R-CNN implementations add them. A
    candidate whose best IoU with the ground truth is at least `positive_iou` is foreground, of the class of that
    box; one whose best IoU is in `[background_iou[0], background_iou[1])` is background (Fast R-CNN uses
    `(0.1, 0.5)`, torchvision's Faster R-CNN `(0.0, 0.5)`). Each image samples up to
    `num_samples * positive_fraction` foreground candidates at random, then background ones at random for the rest,
    then pads. The regions are constants (`tf.stop_gradient`): Faster R-CNN's approximate joint training
    (sec. 3.2) lets no gradient reach the proposals' coordinates, nor their regression targets.

    Args:
        proposals: `(B, P, 4)` `rel_xyxy` proposals, P >= 1, all-zero rows for padding.
        boxes: `(B, G, 4)` `rel_xyxy` ground truth, zero rows for padding.
        classes: `(B, G)` integer classes from 0, -1 for padding.
        seed: `(2,)` int32 or int64 tensor for `tf.random.stateless_uniform`; the same seed draws the same sample.
        num_samples: R, the regions sampled per image.
        positive_fraction: the largest share of foreground in the sample.
        positive_iou: the IoU from which a candidate is foreground.
        background_iou: `(low, high)`, the range of best IoUs of background candidates, `low` included.
        add_ground_truth: whether the ground-truth boxes are candidates too.
        variances: divisors of the deltas, as for `encode`.

    Returns:
        `{"rois": float32 (B, R, 4), "labels": int32 (B, R), "deltas": float32 (B, R, 4), "matched": int32 (B, R)}`,
        each image's rows foreground first, then background, then padding: the region (0 for padding); its class
        + 1, 0 for background, -1 for padding; `encode(matched box, region)` for foreground, 0 elsewhere; the row
        of the matched box for foreground, -1 elsewhere.
    """
    _check_sampling(num_samples=num_samples, positive_fraction=positive_fraction, positive_iou=positive_iou)
    if len(background_iou) != 2 or not 0.0 <= background_iou[0] <= background_iou[1] <= positive_iou:
        raise ValueError(
            f"background_iou must be (low, high) with 0 <= low <= high <= positive_iou={positive_iou!r}. "
            f"Received: background_iou={background_iou!r}"
        )
    proposals = tf.stop_gradient(tf.convert_to_tensor(proposals, tf.float32))
    boxes, classes = _ground_truth(boxes, classes)
    candidates = tf.concat([proposals, boxes], axis=1) if add_ground_truth else proposals  # (B, N, 4)
    has_area = (candidates[..., 2] > candidates[..., 0]) & (candidates[..., 3] > candidates[..., 1])
    if add_ground_truth:
        has_area &= tf.concat([tf.ones_like(proposals[..., 0], tf.bool), classes >= 0], axis=1)
    _, best, matched = _match(candidates, boxes, classes)  # (B, N), (B, N)
    foreground = has_area & (best >= positive_iou)
    background = has_area & (best >= background_iou[0]) & (best < background_iou[1]) & ~foreground
    order, num_foreground, take_foreground, take_background = _balanced_order(
        foreground, background, num_samples=num_samples, positive_fraction=positive_fraction, seed=seed
    )
    # (B, R): the sample's candidates, foreground from the start of `order`, background from its negatives.
    slot = tf.range(num_samples)[None]
    is_foreground = slot < take_foreground
    is_sampled = slot < take_foreground + take_background
    place = tf.where(is_foreground, slot, slot - take_foreground + num_foreground)
    picked = tf.gather(order, tf.minimum(place, tf.shape(order)[1] - 1), batch_dims=1)
    rois = tf.where(is_sampled[..., None], tf.gather(candidates, picked, batch_dims=1), 0.0)
    matched = tf.where(is_foreground, tf.gather(matched, picked, batch_dims=1), -1)
    labels = tf.where(is_foreground, tf.gather(classes, tf.maximum(matched, 0), batch_dims=1) + 1, 0)
    labels = tf.where(is_sampled, labels, -1)
    matched_boxes = tf.gather(boxes, tf.maximum(matched, 0), batch_dims=1)
    # Padding regions have no size, and encode divides by it: a unit box in their place keeps masked deltas finite.
    regions = tf.where(is_foreground[..., None], rois, tf.constant([0.0, 0.0, 1.0, 1.0]))
    deltas = tf.where(is_foreground[..., None], encode(matched_boxes, regions, variances=variances), 0.0)
    return {"rois": rois, "labels": labels, "deltas": deltas, "matched": matched}
