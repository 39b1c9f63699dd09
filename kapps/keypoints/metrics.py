"""Metrics of detected points, in NumPy: PCK@alpha, precision / recall / F1 within r pixels, and counting.

Points of an image are a dict `{"points": (N, 2) [x, y] in pixels, "types": (N,) int}` (predictions may carry
`"scores"`, unused here); `points_from_outputs` turns `kapps.layers.HeatmapPeaks` outputs into that form.

Matching. Predicted and true points of one image and one type are paired one-to-one by the Hungarian algorithm
(`scipy.optimize.linear_sum_assignment`) on their distances: as many pairs within the radius as possible, and
among those the smallest total distance. A greedy nearest-first pairing can lose a pair when two true points
compete for one prediction; the Hungarian pairing cannot.

PCK. Newell et al. (2016) report PCKh@0.5 on MPII: a joint is correct within half the head segment's length, one
person and one predicted point per joint. kapps' points come from peaks (any number per type, none below the
threshold), so PCK here is the share of true points paired within `alpha * reference` of a detected point, a
missed point counting as wrong; with one true and one detected point per type it is the usual PCK. The reference
size is given per image (kapps uses the image's longer side for the shapes keypoints, so PCK@0.05 means within
5% of the image) or per true point (an object's bounding box size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

Points = Mapping[str, np.ndarray]


def match_points(predicted: np.ndarray, truth: np.ndarray, *, radius) -> list[tuple[int, int]]:
    """Pairs `(i, j)` of predicted point i and true point j within `radius` pixels, one-to-one.

    Args:
        predicted: `(N, 2)` points.
        truth: `(M, 2)` points.
        radius: a number, or `(M,)` one per true point (PCK's per-object reference).

    Returns:
        The most pairs within the radius there can be, of the least total distance among such pairings.
    """
    predicted = np.asarray(predicted, "float64").reshape(-1, 2)
    truth = np.asarray(truth, "float64").reshape(-1, 2)
    if not len(predicted) or not len(truth):
        return []
    limit = np.broadcast_to(np.asarray(radius, "float64"), (len(truth),))
    distance = np.linalg.norm(predicted[:, None] - truth[None], axis=-1)
    within = distance <= limit[None]
    # a pair beyond the radius costs more than all pairs within it together: the pairing first keeps the most pairs
    far = (min(len(predicted), len(truth)) + 1) * (float(limit.max()) + 1.0)
    rows, cols = linear_sum_assignment(np.where(within, distance, far))
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if within[i, j]]


def point_scores(predictions: Sequence[Points], truths: Sequence[Points], *, radius: float, num_types: int) -> dict:
    """Precision, recall and F1 of detected points within `radius` pixels, per type and over all types.

    A true point is found when it is paired (`match_points`) with a predicted point of its type; a predicted point
    unpaired is a false positive. Counts are summed over the images before dividing. With nothing predicted the
    precision is 1 (nothing is wrong), with nothing to find the recall is 1; F1 is 0 when both are 0.

    Args:
        predictions, truths: one dict a image, in the same order.
        radius: in pixels.
        num_types: the point types, `0 .. num_types - 1`.

    Returns:
        `{"precision", "recall", "f1", "true_positives", "false_positives", "false_negatives", "per_type": [the
        same for each type]}`.

    Raises:
        ValueError: the two lists differ in length, or `radius` is negative.
    """
    _check_pairs(predictions, truths)
    if not radius >= 0:
        raise ValueError(f"radius must be a non-negative number of pixels. Received: radius={radius!r}")
    counts = np.zeros((num_types, 3), "int64")  # true positives, false positives, false negatives
    for predicted, true in zip(predictions, truths, strict=True):
        for t in range(num_types):
            mine, theirs = _of_type(predicted, t), _of_type(true, t)
            paired = len(match_points(mine, theirs, radius=radius))
            counts[t] += (paired, len(mine) - paired, len(theirs) - paired)
    per_type = [_scores(*row) for row in counts]
    return {**_scores(*counts.sum(axis=0)), "per_type": per_type}


def choose_thresholds(
    predictions: Sequence[Points], truths: Sequence[Points], *, radius: float, num_types: int, candidates
) -> list[dict]:
    """Each type's score threshold of best F1 within `radius` pixels, among `candidates`, on one split.

    `predictions` carry `"scores"` and hold every peak above the lowest candidate (a detector run at a low
    threshold); a threshold keeps the points scoring strictly more. Ties of F1 go to the lowest threshold. A
    detector's peaks do not depend on its threshold, only which are kept, so one run of it serves every candidate.

    Returns:
        One dict a type: `{"threshold", "precision", "recall", "f1"}` at its chosen threshold.
    """
    candidates = sorted(float(c) for c in candidates)
    if not candidates:
        raise ValueError("candidates must hold at least one threshold.")
    chosen: list[dict | None] = [None] * num_types
    for threshold in candidates:
        kept = [_above(predicted, threshold) for predicted in predictions]
        for t, scores in enumerate(point_scores(kept, truths, radius=radius, num_types=num_types)["per_type"]):
            if chosen[t] is None or scores["f1"] > chosen[t]["f1"]:
                chosen[t] = {"threshold": threshold, **{k: scores[k] for k in ("precision", "recall", "f1")}}
    return chosen


def pck(predictions: Sequence[Points], truths: Sequence[Points], *, alpha: float, reference) -> dict:
    """PCK@alpha: the share of true points with a detected point of their type within `alpha * reference` pixels,
    paired one-to-one (`match_points`).

    Args:
        predictions, truths: one dict a image, in the same order.
        alpha: the fraction of the reference size, e.g. 0.05.
        reference: the reference size in pixels: one number for every image (the image's longer side for
            images of one size), a sequence with one per image, or a sequence of `(M,)` arrays, one size per
            true point (each point's object's bounding box size).

    Returns:
        `{"pck": share over all true points, "per_type": [share or None (no true points) for each type],
        "points": the number of true points}`; `pck` is None when there are no true points.

    Raises:
        ValueError: the lists differ in length, `alpha` is not positive, or `reference` does not fit them.
    """
    _check_pairs(predictions, truths)
    if not alpha > 0:
        raise ValueError(f"alpha must be positive. Received: alpha={alpha!r}")
    one_size = isinstance(reference, (int, float, np.integer, np.floating))
    references = [reference] * len(truths) if one_size else list(reference)
    if len(references) != len(truths):
        raise ValueError(f"reference must be one size, or one per image ({len(truths)}). Received: {len(references)}")
    types = max([int(np.max(t["types"], initial=-1)) for t in truths], default=-1) + 1
    found, total = np.zeros(types, "int64"), np.zeros(types, "int64")
    for predicted, true, size in zip(predictions, truths, references, strict=True):
        size = np.asarray(size, "float64")
        for t in range(types):
            of_type = np.asarray(true["types"]) == t
            radius = alpha * (size[of_type] if size.ndim else size)
            found[t] += len(match_points(_of_type(predicted, t), np.asarray(true["points"])[of_type], radius=radius))
            total[t] += int(of_type.sum())
    return {
        "pck": float(found.sum() / total.sum()) if total.sum() else None,
        "per_type": [float(f / n) if n else None for f, n in zip(found, total, strict=True)],
        "points": int(total.sum()),
    }


def count_scores(predicted_counts, true_counts) -> dict:
    """Counting: how often an image's detected count is its true count, and by how much it misses.

    Args:
        predicted_counts, true_counts: `(num_images,)` or `(num_images, num_types)` counts.

    Returns:
        `{"count_accuracy": share of images counted exactly, "count_mae": mean absolute count error,
        "count_relative_error": total absolute error / total true count (None when there is nothing to count)}`,
        per type (lists) when the counts are per type.

    Raises:
        ValueError: the two arrays differ in shape.
    """
    predicted = np.asarray(predicted_counts, "int64")
    true = np.asarray(true_counts, "int64")
    if predicted.shape != true.shape:
        raise ValueError(
            f"predicted_counts and true_counts must have one shape. Received: {predicted.shape}, {true.shape}"
        )
    error = np.abs(predicted - true)
    totals = true.sum(axis=0)
    relative = np.where(totals > 0, error.sum(axis=0) / np.maximum(totals, 1), np.nan)
    result = {
        "count_accuracy": (predicted == true).mean(axis=0),
        "count_mae": error.mean(axis=0),
        "count_relative_error": relative,
    }
    return {k: _plain(v) for k, v in result.items()}


def points_from_outputs(outputs: Mapping[str, np.ndarray], *, width: int, height: int) -> list[dict]:
    """`HeatmapPeaks` outputs (relative points) as one dict a image of points in pixels of a `width` x `height`
    image: `{"points": (N, 2), "types": (N,), "scores": (N,)}`, the valid rows of every type."""
    points = np.asarray(outputs["points"], "float64") * [width, height]  # (B, T, K, 2)
    scores = np.asarray(outputs["scores"], "float64")
    counts = np.asarray(outputs["num_points"]).astype(int)
    images = []
    for b in range(len(counts)):
        rows = [(t, k) for t in range(counts.shape[1]) for k in range(counts[b, t])]
        images.append(
            {
                "points": np.array([points[b, t, k] for t, k in rows]).reshape(-1, 2),
                "types": np.array([t for t, _ in rows], "int64"),
                "scores": np.array([scores[b, t, k] for t, k in rows]),
            }
        )
    return images


def _above(points: Points, threshold: float) -> dict:
    """The points of one image scoring strictly more than `threshold`."""
    above = np.asarray(points["scores"], "float64").reshape(-1) > threshold
    return {
        "points": np.asarray(points["points"], "float64").reshape(-1, 2)[above],
        "types": np.asarray(points["types"])[above],
    }


def _of_type(points: Points, t: int) -> np.ndarray:
    return np.asarray(points["points"], "float64").reshape(-1, 2)[np.asarray(points["types"]) == t]


def _scores(tp, fp, fn) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "true_positives": int(tp),
        "false_positives": int(fp),
        "false_negatives": int(fn),
    }


def _check_pairs(predictions, truths) -> None:
    if len(predictions) != len(truths):
        raise ValueError(
            f"predictions and truths must have one entry per image each. Received: {len(predictions)} and {len(truths)}"
        )


def _plain(value):
    """A NumPy scalar or array as a JSON-ready float, list of floats, or None for NaN."""
    if np.ndim(value) == 0:
        return None if np.isnan(value) else float(value)
    return [_plain(v) for v in value]
