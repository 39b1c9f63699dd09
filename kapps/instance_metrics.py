"""Instance segmentation metrics of the CVPPP leaf segmentation challenge (Scharr et al. 2016, "Leaf segmentation in
plant phenotyping: a collation study", Machine Vision and Applications), and the soft-IoU Hungarian matching of
recurrent instance segmentation (Romera-Paredes & Torr 2016, "Recurrent instance segmentation", ECCV).

The metrics compare label images (H, W) of integers: 0 the background, every other value one leaf (any values, not
necessarily consecutive; the CVPPP evaluation code assumes consecutive ones, and gives the same numbers on them).

* Dice(A, B) = 2 |A n B| / (|A| + |B|).
* Best Dice, BD(La, Lb) = the mean over the leaves a of La of the largest Dice of a with any leaf of Lb.
* Symmetric Best Dice, SBD(Lgt, Lpred) = min(BD(Lpred, Lgt), BD(Lgt, Lpred)): the MINIMUM of the two directions,
  as the paper defines it (some public code takes the maximum, which forgives a segmenter that merges leaves, or
  one that splits them, whichever direction it is kind to).
* Foreground-background Dice, FBD = Dice of the foregrounds (the union of the leaves of each).
* Difference in count, DiC = predicted leaves - true leaves, and |DiC|.

Empty label images: BD(La, Lb) is 0 when La has no leaf, and a leaf of La has best Dice 0 when Lb has none (the
CVPPP evaluation code's conventions), so SBD is 0 when either image has no leaf, both included. FBD is 1 when
neither image has foreground (the paper's ratio is 0 / 0 there; nothing was to be found and nothing was) and 0
when only one has.

    >>> scores = leaf_scores(true_labels, predicted_labels)  # {"sbd": ..., "fbd": ..., "dic": ..., "abs_dic": ...}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

_EPSILON = 1e-7  # keeps a soft IoU of two empty masks at 0 rather than 0 / 0


def dice_matrix(first, second) -> np.ndarray:
    """Dice of every leaf of label image `first` (rows, by increasing value) with every leaf of `second`
    (columns), float64 (n_first, n_second)."""
    first, second = _labels(first, "first"), _labels(second, "second")
    if first.shape != second.shape:
        raise ValueError(f"The label images must have one shape. Received: {first.shape} and {second.shape}")
    a_values, a_index = np.unique(first, return_inverse=True)
    b_values, b_index = np.unique(second, return_inverse=True)
    joint = np.bincount(a_index.ravel() * len(b_values) + b_index.ravel(), minlength=len(a_values) * len(b_values))
    joint = joint.reshape(len(a_values), len(b_values)).astype(np.float64)
    joint = joint[a_values != 0][:, b_values != 0]  # (leaves of first, leaves of second)
    a_area = np.bincount(a_index.ravel())[a_values != 0].astype(np.float64)
    b_area = np.bincount(b_index.ravel())[b_values != 0].astype(np.float64)
    return 2.0 * joint / (a_area[:, None] + b_area[None, :])


def best_dice(first, second) -> float:
    """BD(first, second): the mean over the leaves of `first` of the best Dice with a leaf of `second` (0 when
    `first` has no leaf; a leaf scores 0 when `second` has none)."""
    dice = dice_matrix(first, second)
    if dice.shape[0] == 0:
        return 0.0
    best = dice.max(axis=1) if dice.shape[1] else np.zeros(dice.shape[0])
    return float(best.mean())


def symmetric_best_dice(truth, predicted) -> float:
    """SBD: the smaller of BD(predicted, truth) and BD(truth, predicted) (Scharr et al. 2016)."""
    return min(best_dice(predicted, truth), best_dice(truth, predicted))


def foreground_dice(truth, predicted) -> float:
    """FBD: the Dice of the two foregrounds (every non-zero pixel); 1 when neither has any."""
    truth, predicted = _labels(truth, "truth") != 0, _labels(predicted, "predicted") != 0
    if truth.shape != predicted.shape:
        raise ValueError(f"The label images must have one shape. Received: {truth.shape} and {predicted.shape}")
    total = int(truth.sum()) + int(predicted.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(truth & predicted)) / total


def count_difference(truth, predicted) -> int:
    """DiC: the leaves of `predicted` minus the leaves of `truth` (distinct non-zero values of each)."""
    return _count(_labels(predicted, "predicted")) - _count(_labels(truth, "truth"))


def leaf_scores(truths: Sequence, predictions: Sequence) -> dict:
    """The CVPPP scores of pairs of label images: each metric's mean and standard deviation over the images,
    as the challenge reports them ("mean (std)").

    Args:
        truths: true label images (H, W), one per image.
        predictions: predicted label images, one per true one, each of its truth's shape.

    Returns:
        JSON-ready {"sbd", "sbd_std", "fbd", "fbd_std", "dic", "dic_std", "abs_dic", "abs_dic_std": float,
        "images": int}; the means are None (and the deviations too) when there are no images.
    """
    if len(truths) != len(predictions):
        raise ValueError(f"truths and predictions must pair up. Received: {len(truths)} and {len(predictions)}")
    per_image = {
        "sbd": [symmetric_best_dice(t, p) for t, p in zip(truths, predictions, strict=True)],
        "fbd": [foreground_dice(t, p) for t, p in zip(truths, predictions, strict=True)],
        "dic": [count_difference(t, p) for t, p in zip(truths, predictions, strict=True)],
    }
    per_image["abs_dic"] = [abs(d) for d in per_image["dic"]]
    scores: dict = {"images": len(truths)}
    for name, values in per_image.items():
        scores[name] = float(np.mean(values)) if values else None
        scores[f"{name}_std"] = float(np.std(values)) if values else None
    return scores


def masks_to_labels(masks, *, threshold: float = 0.5, count: int | None = None) -> np.ndarray:
    """A label image (H, W) int32 from a sequence of instance masks (T, H, W), such as a recurrent segmenter's
    steps: each pixel takes 1 + the step whose mask is largest there, if that value is at least `threshold`, else
    0. Only the first `count` steps take part (all when None); a step whose mask wins no pixel is not in the image,
    so it is not counted as a leaf."""
    masks = np.asarray(masks, np.float32)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (steps, height, width). Received shape {masks.shape}")
    if count is not None:
        masks = masks[: max(int(count), 0)]
    if masks.shape[0] == 0:
        return np.zeros(masks.shape[1:], np.int32)
    best = masks.argmax(axis=0)
    return np.where(masks.max(axis=0) >= threshold, best + 1, 0).astype(np.int32)


def soft_iou_matrix(predicted, truth) -> np.ndarray:
    """Soft IoU of every predicted mask with every true mask, float64 (T, N):
    sum(p y) / sum(p + y - p y) over the pixels (Romera-Paredes & Torr 2016), p in [0, 1], y in {0, 1} (or
    [0, 1]); 0 for two empty masks.

    Args:
        predicted: (T, H, W) masks in [0, 1].
        truth: (N, H, W) masks.
    """
    predicted = np.asarray(predicted, np.float64)
    truth = np.asarray(truth, np.float64)
    if predicted.ndim != 3 or truth.ndim != 3 or predicted.shape[1:] != truth.shape[1:]:
        shapes = f"{predicted.shape} and {truth.shape}"
        raise ValueError(f"predicted and truth must be (T, H, W) and (N, H, W). Received: {shapes}")
    p, y = predicted.reshape(len(predicted), -1), truth.reshape(len(truth), -1)
    overlap = p @ y.T
    union = p.sum(1)[:, None] + y.sum(1)[None, :] - overlap
    return overlap / np.maximum(union, _EPSILON)


def match_instances(predicted, truth) -> tuple[np.ndarray, np.ndarray]:
    """The pairing of predicted and true masks with the largest total soft IoU (the Hungarian algorithm, scipy's
    `linear_sum_assignment` on 1 - soft IoU): (steps, leaves), two int64 arrays of min(T, N) indices, leaf
    `leaves[i]` matched to predicted mask `steps[i]`, sorted by step."""
    from scipy.optimize import linear_sum_assignment

    steps, leaves = linear_sum_assignment(1.0 - soft_iou_matrix(predicted, truth))
    return steps.astype(np.int64), leaves.astype(np.int64)


def matched_soft_iou(predicted: tf.Tensor, truth: tf.Tensor, counts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The soft IoU of each true leaf with the step matched to it, for a recurrent segmenter's loss (TensorFlow;
    gradients flow through the IoUs, the matching itself is a constant, found with scipy in `tf.numpy_function`).

    Leaf n of an image is matched among the image's first `count` steps: the steps whose confidence target says a
    leaf remains (Romera-Paredes & Torr 2016 end the sequence there). When the image has more leaves than the
    model has steps, every step is matched to one leaf and the other leaves get no step.

    Args:
        predicted: (B, T, H, W) masks in [0, 1].
        truth: (B, N, H, W) true masks, rows at and past each image's count being padding.
        counts: (B,) leaves of each image.

    Returns:
        (iou, steps): iou float32 (B, N), the soft IoU of each leaf with its step, 0 for padding and unmatched
        leaves; steps int32 (B, N), the step matched to each leaf, -1 for padding and unmatched leaves.
    """
    predicted = tf.convert_to_tensor(predicted, tf.float32)
    truth = tf.cast(truth, tf.float32)
    overlap = tf.einsum("bthw,bnhw->btn", predicted, truth)
    union = tf.reduce_sum(predicted, [2, 3])[:, :, None] + tf.reduce_sum(truth, [2, 3])[:, None, :] - overlap
    iou = overlap / tf.maximum(union, _EPSILON)  # (B, T, N)
    steps = tf.numpy_function(_assign, [tf.stop_gradient(iou), tf.cast(counts, tf.int32)], tf.int32, stateful=False)
    steps = tf.reshape(steps, tf.shape(truth)[:2])
    matched = tf.gather(tf.transpose(iou, [0, 2, 1]), tf.maximum(steps, 0), batch_dims=2)  # (B, N)
    return tf.where(steps >= 0, matched, tf.zeros_like(matched)), steps


def _assign(iou: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For `matched_soft_iou`: the step of each leaf (B, N) int32, -1 where none."""
    from scipy.optimize import linear_sum_assignment

    batch, steps, leaves = iou.shape
    assigned = np.full((batch, leaves), -1, np.int32)
    for b in range(batch):
        n = int(min(max(counts[b], 0), leaves))
        usable = min(n, steps)
        if usable == 0:
            continue
        rows, cols = linear_sum_assignment(1.0 - iou[b, :usable, :n])
        assigned[b, cols] = rows
    return assigned


def _labels(labels, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be a label image (H, W) of integers. Received {labels.dtype} {labels.shape}")
    return labels


def _count(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels)))


__all__ = [
    "best_dice",
    "count_difference",
    "dice_matrix",
    "foreground_dice",
    "leaf_scores",
    "masks_to_labels",
    "match_instances",
    "matched_soft_iou",
    "soft_iou_matrix",
    "symmetric_best_dice",
]
