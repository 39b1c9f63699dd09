"""Task losses.

YOLO v1 (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection", CVPR 2016): `YoloV1Loss` is the
paper's sum-squared error (its equation 3), on the targets `kapps.detection.yolo_v1_targets` encodes.

Faster R-CNN (Ren et al., NeurIPS 2015) and Fast R-CNN (Girshick, ICCV 2015): `rpn_losses` and `box_head_losses`,
the two stages' multitask losses (log loss + smooth L1), on the targets of `kapps.detection.rpn_targets` and
`kapps.detection.roi_targets`.

Mask R-CNN (He et al., ICCV 2017): `mask_loss`, the mask branch's per-pixel sigmoid cross-entropy on the true
class's mask, on the targets of `kapps.detection.mask_targets`.

Recurrent instance segmentation (Romera-Paredes & Torr, ECCV 2016): `recurrent_instance_losses`, the soft IoU of
the predicted masks matched to the true instances by the Hungarian algorithm, and the stopping loss.

Stacked hourglass (Newell et al., ECCV 2016): `HeatmapLoss` (`heatmap_mse`), the mean squared error between
predicted heatmaps and the Gaussian targets of `kapps.keypoints.heatmap_targets`, on every stack's heatmaps
(intermediate supervision).
"""

from __future__ import annotations

from kapps.detection import elementwise_iou
from kapps.instance_metrics import matched_soft_iou
from kapps.layers.yolo import cell_boxes_to_xyxy, split_cells

import keras
import numpy as np
import tensorflow as tf
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


def smooth_l1(difference, *, beta: float = 1.0):
    """Smooth L1 of each element (Girshick 2015, eq. 3): `0.5 x^2 / beta` below `beta`, `|x| - 0.5 beta` above."""
    absolute = ops.abs(difference)
    return ops.where(absolute < beta, 0.5 * ops.square(absolute) / beta, absolute - 0.5 * beta)


def rpn_losses(labels, target_deltas, objectness, deltas, *, beta: float = 1.0 / 9.0):
    """The RPN's loss terms (Ren et al. 2015, eq. 1): log loss over the sampled anchors, smooth L1 over the
    positive ones, each divided by the number of sampled anchors (the mini-batch normalisation of the released
    code, which the paper's lambda = 10 with N_reg ~ 2,400 locations approximates).

    Args:
        labels: `(B, A)` int: 1 positive, 0 negative, -1 not sampled (`kapps.detection.rpn_targets`).
        target_deltas: `(B, A, 4)` encoded boxes of the positives.
        objectness: `(B, A)` logits.
        deltas: `(B, A, 4)` predicted deltas.
        beta: smooth L1's switch point (1/9, as in Detectron, for the unnormalised RPN deltas).

    Returns:
        `(class_loss, box_loss)`, two scalars.
    """
    labels = ops.cast(labels, "int32")
    sampled = ops.cast(labels >= 0, "float32")
    positive = ops.cast(labels == 1, "float32")
    count = ops.maximum(ops.sum(sampled), 1.0)
    log_loss = keras.losses.binary_crossentropy(
        positive[..., None], ops.cast(objectness, "float32")[..., None], from_logits=True
    )
    class_loss = ops.sum(log_loss * sampled) / count
    box = ops.sum(smooth_l1(ops.cast(deltas, "float32") - target_deltas, beta=beta), axis=-1)
    return class_loss, ops.sum(box * positive) / count


def box_head_losses(labels, target_deltas, class_logits, deltas, *, beta: float = 1.0):
    """The RoI head's multitask loss (Girshick 2015, eq. 1, lambda = 1): log loss over the sampled RoIs and smooth
    L1 of the true class's deltas over the foreground ones, each divided by the number of sampled RoIs.

    Args:
        labels: `(B, S)` int: class + 1 for foreground, 0 background, -1 padding (`kapps.detection.roi_targets`).
        target_deltas: `(B, S, 4)` encoded boxes of the foreground RoIs.
        class_logits: `(B, S, C + 1)`, background first.
        deltas: `(B, S, 4 C)`, one box per class.
        beta: smooth L1's switch point.

    Returns:
        `(class_loss, box_loss)`, two scalars.
    """
    labels = ops.cast(labels, "int32")
    sampled = ops.cast(labels >= 0, "float32")
    count = ops.maximum(ops.sum(sampled), 1.0)
    log_loss = keras.losses.sparse_categorical_crossentropy(
        ops.maximum(labels, 0), ops.cast(class_logits, "float32"), from_logits=True
    )
    class_loss = ops.sum(log_loss * sampled) / count
    num_classes = class_logits.shape[-1] - 1
    per_class = ops.reshape(ops.cast(deltas, "float32"), (ops.shape(deltas)[0], ops.shape(deltas)[1], num_classes, 4))
    true_class = ops.one_hot(ops.maximum(labels - 1, 0), num_classes)[..., None]  # (B, S, C, 1)
    predicted = ops.sum(per_class * true_class, axis=2)  # (B, S, 4)
    foreground = ops.cast(labels > 0, "float32")
    box = ops.sum(smooth_l1(predicted - target_deltas, beta=beta), axis=-1)
    return class_loss, ops.sum(box * foreground) / count


def mask_loss(labels, target_masks, mask_logits):
    """Mask R-CNN's mask loss L_mask (He et al. 2017, sec. 3): the average binary cross-entropy, over the pixels of
    the foreground RoIs, of the sigmoid of the true class's mask logits; the other classes' masks add nothing, so
    classes do not compete for a pixel. 0 when a batch has no foreground RoI.

    Args:
        labels: `(B, R)` int: class + 1 for foreground, 0 background, -1 padding (`kapps.detection.roi_targets`).
        target_masks: `(B, R, M, M)` of 0 and 1 (`kapps.detection.mask_targets`).
        mask_logits: `(B, R, M, M, C)`, one mask per class.

    Returns:
        A scalar.
    """
    labels = ops.cast(labels, "int32")
    logits = ops.cast(mask_logits, "float32")
    true_class = ops.one_hot(ops.maximum(labels - 1, 0), logits.shape[-1])[:, :, None, None, :]  # (B, R, 1, 1, C)
    chosen = ops.sum(logits * true_class, axis=-1)  # (B, R, M, M)
    targets = ops.cast(target_masks, "float32")
    # the numerically stable form of -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))
    entropy = ops.relu(chosen) - chosen * targets + ops.log1p(ops.exp(-ops.abs(chosen)))
    foreground = ops.cast(labels > 0, "float32")[:, :, None, None]
    pixels = ops.sum(foreground) * chosen.shape[-1] * chosen.shape[-2]
    return ops.sum(entropy * foreground) / ops.maximum(pixels, 1.0)


def weighted_pixel_crossentropy(labels, scores, weights=None, *, from_logits: bool = False, ignore_label=255):
    """Per-pixel cross-entropy, each pixel's term multiplied by its weight, averaged over the labelled pixels:
    U-Net's energy (Ronneberger et al. 2015, eq. 1) with the border weights of
    `kapps.models.segmentation.unet_weight_map` (eq. 2).

    Args:
        labels: `(B, H, W)` class indices; pixels labelled `ignore_label` (VOC's 255) add nothing and are not
            counted.
        scores: `(B, H, W, C)` per-pixel probabilities (a softmax), or logits with `from_logits=True`.
        weights: `(B, H, W)` per-pixel weights; None weighs every pixel 1.
        from_logits: whether `scores` are logits.
        ignore_label: the label of unlabelled pixels, or None.

    Returns:
        A scalar: sum over the labelled pixels of weight x cross-entropy, over their number (0 without any).
    """
    labels = ops.cast(labels, "int32")
    scores = ops.cast(scores, "float32")
    labelled = ops.ones_like(labels, "float32") if ignore_label is None else ops.cast(labels != ignore_label, "float32")
    safe = ops.where(labelled > 0, labels, 0)
    entropy = keras.losses.sparse_categorical_crossentropy(safe, scores, from_logits=from_logits)
    if weights is not None:
        entropy = entropy * ops.cast(weights, "float32")
    return ops.sum(entropy * labelled) / ops.maximum(ops.sum(labelled), 1.0)


def heatmap_mse(y_true, y_pred, *, foreground_weight=0.0):
    """Newell et al. (2016)'s heatmap loss: the squared error against the target heatmaps, averaged over pixels and
    point types, and over the stacks when `y_pred` has every stack's heatmaps (intermediate supervision; the
    authors' code sums the stacks' losses, which is this times the number of stacks).

    With `foreground_weight` w > 0 each pixel's squared error is weighed `1 + w * target`: the few pixels under a
    point's Gaussian count up to 1 + w times a background pixel. Plain MSE over heatmaps that are nearly all
    background first learns to predict zero everywhere and raises the peaks slowly; the weight makes the peaks
    the larger part of the loss from the start (the foreground weighting of heatmap losses in later keypoint
    work; Newell et al. use none). A weight a type balances types of unequal numbers: one spike tip an ear
    against some twenty spikelets.

    Args:
        y_true: `(B, H, W, T)` target heatmaps (`kapps.keypoints.heatmap_targets`).
        y_pred: `(B, H, W, T)`, or `(B, S, H, W, T)` for S stacks, each compared with the same targets.
        foreground_weight: w, at least 0; 0 is the paper's plain MSE. One number, or a sequence of one a type.

    Returns:
        `(B,)`: each example's loss.
    """
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    if len(y_pred.shape) == len(y_true.shape) + 1:
        y_true = ops.expand_dims(y_true, 1)
    error = ops.square(y_pred - y_true)
    weights = np.asarray(foreground_weight, "float32").reshape(-1)
    if weights.any():
        error = error * (1.0 + (weights if len(weights) > 1 else weights[0]) * y_true)
    return ops.mean(error, axis=tuple(range(1, len(y_pred.shape))))


@keras.saving.register_keras_serializable(package="kapps")
class HeatmapLoss(keras.losses.Loss):
    """`heatmap_mse` as a Keras loss: targets `(B, H, W, T)` against a hourglass's `(B, S, H, W, T)` heatmaps of
    every stack (or one stack's `(B, H, W, T)`). A class, not a function, because Keras squeezes a function loss's
    last axis when the ranks differ by one and that axis is 1, which one point type would hit.

    Args:
        foreground_weight: `heatmap_mse`'s weight of the pixels under the targets' Gaussians (0: the paper's MSE),
            one number or a list of one a point type.
        name: the loss's name.
    """

    def __init__(self, foreground_weight=0.0, name: str = "heatmap_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        per_type = isinstance(foreground_weight, (list, tuple))
        values = list(foreground_weight) if per_type else [foreground_weight]
        if not values or not all(isinstance(v, (int, float)) and v >= 0 for v in values):
            raise ValueError(
                "foreground_weight must be at least 0, one or one a type. "
                f"Received: foreground_weight={foreground_weight!r}"
            )
        self.foreground_weight = [float(v) for v in values] if per_type else float(foreground_weight)

    def call(self, y_true, y_pred):
        return heatmap_mse(y_true, y_pred, foreground_weight=self.foreground_weight)

    def get_config(self):
        return {**super().get_config(), "foreground_weight": self.foreground_weight}


def recurrent_instance_losses(target_masks, counts, masks, confidence_logits) -> dict:
    """The loss of recurrent instance segmentation (Romera-Paredes & Torr 2016, sec. 3.3), per image then averaged
    over the batch.

    Matching: the true instances of an image are matched to its first `count` predicted masks by the Hungarian
    algorithm on soft IoU (`kapps.instance_metrics.matched_soft_iou`, scipy's `linear_sum_assignment`), so the
    loss does not depend on the order of the true instances. `match_loss` is the mean over the matched pairs of
    1 - soft IoU (0 for an image with no instance); the paper maximises the sum of the matched IoUs, and the mean
    weighs an image of 3 leaves as one of 20. `stop_loss` is the binary cross-entropy of each step's confidence
    against "an instance remains", t < count, averaged over the T steps (the paper sums it). `pixel_loss` is not
    the paper's: the per-pixel binary cross-entropy of each matched step's mask against its leaf, averaged over the
    pixels and the matched pairs, which `RecurrentInstanceTrainer` can add (its `pixel_weight`). `foreground_loss`
    is not the paper's either: 1 - the soft Dice of the union of the first `count` steps' masks (their pixel-wise
    maximum) with the true foreground (the union of the leaves), 2 sum(u f) / (sum u + sum f), per image (0 for an
    image with neither); it tells every step's pixels from the start which pixels are plant at all, whatever the
    matching (`RecurrentInstanceTrainer`'s `foreground_weight`).

    Args:
        target_masks: (B, N, H, W) true masks (uint8 or float), rows at and past each image's count zero.
        counts: (B,) true instances of each image.
        masks: (B, T, H, W) predicted mask probabilities.
        confidence_logits: (B, T) the confidences' logits.

    Returns:
        {"match_loss", "stop_loss", "pixel_loss", "foreground_loss"}: float32 scalars, differentiable in `masks`
        and `confidence_logits`.
    """
    counts = tf.cast(tf.reshape(counts, [-1]), tf.int32)
    iou, steps = matched_soft_iou(tf.cast(masks, tf.float32), target_masks, counts)
    matched = tf.cast(steps >= 0, tf.float32)
    pairs = tf.reduce_sum(matched, axis=1)
    match = tf.reduce_sum((1.0 - iou) * matched, axis=1) / tf.maximum(pairs, 1.0)
    picked = tf.gather(tf.cast(masks, tf.float32), tf.maximum(steps, 0), batch_dims=1)  # (B, N, H, W)
    crossentropy = tf.reduce_mean(
        keras.losses.binary_crossentropy(tf.cast(target_masks, tf.float32)[..., None], picked[..., None]), axis=[2, 3]
    )
    pixel = tf.reduce_sum(crossentropy * matched, axis=1) / tf.maximum(pairs, 1.0)
    logits = tf.cast(confidence_logits, tf.float32)
    remains = tf.cast(tf.range(tf.shape(logits)[1])[None, :] < counts[:, None], tf.float32)
    stop = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=remains, logits=logits), axis=1)
    union = tf.reduce_max(tf.cast(masks, tf.float32) * remains[:, :, None, None], axis=1)  # (B, H, W)
    plant = tf.reduce_max(tf.cast(target_masks, tf.float32), axis=1)
    both = tf.reduce_sum(union, axis=[1, 2]) + tf.reduce_sum(plant, axis=[1, 2])
    dice = tf.where(both > 0, 2.0 * tf.reduce_sum(union * plant, axis=[1, 2]) / tf.maximum(both, 1e-7), 1.0)
    return {
        "match_loss": tf.reduce_mean(match),
        "stop_loss": tf.reduce_mean(stop),
        "pixel_loss": tf.reduce_mean(pixel),
        "foreground_loss": tf.reduce_mean(1.0 - dice),
    }
