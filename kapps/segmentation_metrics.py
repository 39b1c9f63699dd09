"""Semantic segmentation metrics: pixel accuracy, per-class and mean IoU and Dice from one confusion matrix, as Keras
metrics that stream over batches and as NumPy functions, and the boundary F-score (Csurka et al. 2013).

Pixels whose truth is the ignore label (255, `kapps.data.IGNORE_LABEL`) or outside 0..C-1 are not counted. A class
absent from both the truth and the predictions of everything counted has no IoU or Dice (0 / 0): it is left out of
the means, as in the PASCAL VOC evaluation, rather than counted as 0 (which would punish a model for classes the
data never showed) or 1.

    >>> model.compile(loss=..., metrics=[MeanIoU(num_classes=5), PixelAccuracy(num_classes=5)])
    >>> metric = MeanIoU(num_classes=5); metric.update_state(masks, logits); metric.scores()["class_iou"]
"""

from __future__ import annotations

from kapps.data.segmentation import IGNORE_LABEL

import keras
import numpy as np
import tensorflow as tf


def confusion_matrix(truth, predicted, *, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """Counts of (true class, predicted class) pixels, `(num_classes, num_classes)` int64, rows the truth.

    Args:
        truth: class indices of any shape; `ignore_label` and values outside 0..num_classes-1 are not counted.
        predicted: class indices of the same shape (take the argmax of scores first).
        num_classes: C.
        ignore_label: the truth's label of pixels not to count.
    """
    truth, predicted = np.asarray(truth).astype(np.int64).ravel(), np.asarray(predicted).astype(np.int64).ravel()
    if truth.shape != predicted.shape:
        raise ValueError(f"truth and predicted must have one size. Received: {truth.size} and {predicted.size}")
    valid = (truth >= 0) & (truth < num_classes) & (truth != ignore_label) & (predicted >= 0)
    valid &= predicted < num_classes
    index = truth[valid] * num_classes + predicted[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict:
    """Pixel accuracy, per-class and mean IoU and Dice of a confusion matrix (rows the truth).

    IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN) per class; a class with no pixel in the truth or
    the predictions has neither (None) and is left out of the means.

    Returns:
        JSON-ready `{"pixel_accuracy", "mean_iou", "mean_dice": float, None when nothing was counted;
        "class_iou", "class_dice": one float or None a class; "pixels": the pixels counted}`.
    """
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diag(confusion)
    either = confusion.sum(0) + confusion.sum(1)  # 2 TP + FP + FN
    present = either > 0
    iou = np.where(present, true_positive / np.maximum(either - true_positive, 1.0), np.nan)
    dice = np.where(present, 2.0 * true_positive / np.maximum(either, 1.0), np.nan)
    pixels = confusion.sum()

    def listed(values):
        return [None if np.isnan(v) else float(v) for v in values]

    return {
        "pixel_accuracy": float(true_positive.sum() / pixels) if pixels else None,
        "mean_iou": float(np.mean(iou[present])) if present.any() else None,
        "mean_dice": float(np.mean(dice[present])) if present.any() else None,
        "class_iou": listed(iou),
        "class_dice": listed(dice),
        "pixels": int(pixels),
    }


class _ConfusionMetric(keras.metrics.Metric):
    """A streaming confusion matrix over batches of masks; subclasses say which number `result` is."""

    def __init__(self, num_classes: int, *, ignore_label: int = IGNORE_LABEL, name: str | None = None, dtype=None):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer of at least 2. Received: num_classes={num_classes!r}")
        if not isinstance(ignore_label, int) or isinstance(ignore_label, bool):
            raise ValueError(f"ignore_label must be an integer. Received: ignore_label={ignore_label!r}")
        super().__init__(name=name, dtype=dtype)
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        # float64 counts are exact up to 2**53 pixels; float32 would stop counting at 2**24 (VOC val has 2**28)
        self.confusion_counts = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float64", name="confusion_counts"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch.

        Args:
            y_true: class indices (B, H, W) or (B, H, W, 1).
            y_pred: scores (B, H, W, C), logits or probabilities (their argmax is the class), or class indices
                (B, H, W).
            sample_weight: optional weights broadcastable to (B, H, W) after trailing axes are added ((B,) per
                image, (B, H, W) per pixel).
        """
        truth = tf.convert_to_tensor(y_true)
        predicted = tf.convert_to_tensor(y_pred)
        if truth.shape.rank == 4 and truth.shape[-1] == 1:
            truth = truth[..., 0]
        if predicted.shape.rank == truth.shape.rank + 1:
            predicted = tf.argmax(predicted, axis=-1)
        elif predicted.shape.rank != truth.shape.rank:
            raise ValueError(
                f"y_pred must be scores (B, H, W, C) or class indices (B, H, W) for masks y_true (B, H, W). "
                f"Received: y_true {tuple(truth.shape)}, y_pred {tuple(predicted.shape)}"
            )
        truth, predicted = tf.cast(truth, tf.int64), tf.cast(predicted, tf.int64)
        classes = self.num_classes
        valid = (truth >= 0) & (truth < classes) & (truth != self.ignore_label) & (predicted >= 0)
        valid &= predicted < classes
        weights = tf.cast(valid, tf.float64)
        if sample_weight is not None:
            sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float64)
            while sample_weight.shape.rank < weights.shape.rank:
                sample_weight = sample_weight[..., None]
            weights *= tf.broadcast_to(sample_weight, tf.shape(weights))
        index = tf.where(valid, truth * classes + predicted, 0)
        counts = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), tf.reshape(index, [-1]), classes * classes)
        self.confusion_counts.assign_add(tf.reshape(counts, (classes, classes)))

    def reset_state(self):
        self.confusion_counts.assign(tf.zeros((self.num_classes, self.num_classes), tf.float64))

    def confusion(self) -> np.ndarray:
        """The counts so far as a NumPy `(C, C)` array, rows the truth."""
        return np.asarray(keras.ops.convert_to_numpy(self.confusion_counts))

    def scores(self) -> dict:
        """`segmentation_scores` of the counts so far: pixel accuracy, per-class and mean IoU and Dice."""
        return segmentation_scores(self.confusion())

    def _ratios(self) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(TP, 2 TP + FP + FN, present) per class, float64."""
        confusion = tf.convert_to_tensor(self.confusion_counts)
        true_positive = tf.linalg.diag_part(confusion)
        either = tf.reduce_sum(confusion, 0) + tf.reduce_sum(confusion, 1)
        return true_positive, either, either > 0

    @staticmethod
    def _mean_present(values: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
        """The mean of `values` over the present classes; 0 before any pixel is counted."""
        total = tf.reduce_sum(tf.where(present, values, 0.0))
        return tf.cast(tf.math.divide_no_nan(total, tf.reduce_sum(tf.cast(present, tf.float64))), tf.float32)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_label": self.ignore_label}


@keras.saving.register_keras_serializable(package="kapps")
class PixelAccuracy(_ConfusionMetric):
    """The share of counted pixels whose predicted class is the true one.

    Args:
        num_classes: C, the classes of the masks and the scores' last axis.
        ignore_label: truth label of the pixels not counted.
        name: the metric's name in logs.
    """

    def __init__(self, num_classes: int, *, ignore_label: int = IGNORE_LABEL, name: str = "pixel_accuracy", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positive, either, _ = self._ratios()
        total = tf.reduce_sum(either) / 2.0
        return tf.cast(tf.math.divide_no_nan(tf.reduce_sum(true_positive), total), tf.float32)


@keras.saving.register_keras_serializable(package="kapps")
class MeanIoU(_ConfusionMetric):
    """Mean intersection over union (Jaccard index) of the classes present in the truth or the predictions, the
    measure of FCN (Long et al. 2015) and the PASCAL VOC challenge (Everingham et al. 2010).

    Unlike `keras.metrics.MeanIoU`, it takes scores or class indices alike (by the rank of `y_pred`), ignores 255
    by default, and `scores()` gives the per-class IoU and Dice beside it.

    Args:
        num_classes: C, the classes of the masks and the scores' last axis.
        ignore_label: truth label of the pixels not counted.
        name: the metric's name in logs.
    """

    def __init__(self, num_classes: int, *, ignore_label: int = IGNORE_LABEL, name: str = "mean_iou", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positive, either, present = self._ratios()
        return self._mean_present(tf.math.divide_no_nan(true_positive, either - true_positive), present)


@keras.saving.register_keras_serializable(package="kapps")
class MeanDice(_ConfusionMetric):
    """Mean Dice coefficient (the F1 score of pixels, 2 TP / (2 TP + FP + FN); Dice 1945) of the classes present in
    the truth or the predictions.

    Args:
        num_classes: C, the classes of the masks and the scores' last axis.
        ignore_label: truth label of the pixels not counted.
        name: the metric's name in logs.
    """

    def __init__(self, num_classes: int, *, ignore_label: int = IGNORE_LABEL, name: str = "mean_dice", dtype=None):
        super().__init__(num_classes, ignore_label=ignore_label, name=name, dtype=dtype)

    def result(self):
        true_positive, either, present = self._ratios()
        return self._mean_present(tf.math.divide_no_nan(2.0 * true_positive, either), present)


def boundary_f_score(
    truth, predicted, *, num_classes: int, tolerance: float = 2.0, ignore_label: int = IGNORE_LABEL
) -> dict:
    """The boundary F1 score (BF) of Csurka, Larlus and Perronnin (2013), "What is a good evaluation measure for
    semantic segmentation?", which SegNet (Badrinarayanan et al. 2017) reports beside mean IoU.

    For each image and each class present in its truth or its prediction, the class's boundary pixels are the
    pixels of its mask with a 4-neighbour outside it (the image's edge is not a boundary; an ignored truth pixel is
    outside every class, so a VOC object's boundary runs along its ignored border band). Precision is the share of
    the predicted boundary within `tolerance` pixels (Euclidean) of the true boundary, predicted boundary pixels on
    ignored truth pixels left out; recall is the share of the true boundary within `tolerance` of the predicted one.
    Either is 1 when it has no pixel to count (0 / 0: nothing wrong was drawn, or nothing was to be found), and F1
    is their harmonic mean: a class only one side has scores 0, a class filling the image on both sides 1. An
    image's score is the mean F1 of its classes; `mean_bf` is the mean over images. SegNet measured with a tolerance
    of 0.75% of the image diagonal (about 4.5 pixels at 360 x 480); 2 pixels suits small images.

    Args:
        truth: class indices (H, W) or (N, H, W), `ignore_label` for pixels not to count.
        predicted: predicted class indices of the same shape.
        num_classes: C.
        tolerance: the largest distance in pixels at which two boundary pixels match.
        ignore_label: the truth's label of pixels not to count.

    Returns:
        `{"mean_bf": mean over images (None without any class), "class_bf": per class the mean over the images
        where it is present (None where it never is), "images": N}`.
    """
    from scipy import ndimage

    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape or truth.ndim not in (2, 3):
        raise ValueError(
            f"truth and predicted must both be (H, W) or (N, H, W). Received: {truth.shape} and {predicted.shape}"
        )
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be a non-negative number of pixels. Received: tolerance={tolerance!r}")
    if truth.ndim == 2:
        truth, predicted = truth[None], predicted[None]
    cross = ndimage.generate_binary_structure(2, 1)

    def boundary(mask):
        return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=1)

    def share_matched(points, other) -> float:
        """The share of the pixels of `points` within `tolerance` of a pixel of `other`; 1 without any point."""
        if not points.any():
            return 1.0
        if not other.any():
            return 0.0
        return float(np.mean(ndimage.distance_transform_edt(~other)[points] <= tolerance))

    per_class = [[] for _ in range(num_classes)]
    per_image = []
    for true_map, predicted_map in zip(truth, predicted, strict=True):
        ignored = true_map == ignore_label
        scores = []
        for c in range(num_classes):
            true_mask, predicted_mask = true_map == c, predicted_map == c
            if not (true_mask.any() or (predicted_mask & ~ignored).any()):
                continue
            true_edge, predicted_edge = boundary(true_mask), boundary(predicted_mask)
            precision = share_matched(predicted_edge & ~ignored, true_edge)
            recall = share_matched(true_edge, predicted_edge)
            if true_mask.any() != (predicted_mask & ~ignored).any():
                precision = recall = 0.0  # a class on one side only, whatever its edges
            score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            scores.append(score)
            per_class[c].append(score)
        if scores:
            per_image.append(float(np.mean(scores)))
    return {
        "mean_bf": float(np.mean(per_image)) if per_image else None,
        "class_bf": [float(np.mean(s)) if s else None for s in per_class],
        "images": len(truth),
    }


__all__ = [
    "IGNORE_LABEL",
    "MeanDice",
    "MeanIoU",
    "PixelAccuracy",
    "boundary_f_score",
    "confusion_matrix",
    "segmentation_scores",
]
