"""Points from heatmaps inside the inference graph: non-maximum suppression by 3x3 max pooling, a score threshold,
Newell et al.'s quarter-pixel refinement and a fixed number of points per type, from TFLite builtin ops only.

What the graph holds (TF 2.21, tf2onnx 1.17 opset 17; `tests/layers/test_heatmap_peaks.py` checks the TFLite list):
TFLite ADD, CAST, FLOOR_DIV, FLOOR_MOD, GATHER, GREATER, GREATER_EQUAL, LOGICAL_AND, MAX_POOL_2D, MUL, PACK, PADV2,
RANGE, RESHAPE, SELECT_V2, SHAPE, SIGN, STRIDED_SLICE, SUB, SUM, TOPK_V2 and TRANSPOSE; ONNX the like, with TopK and
one Gather on axis 0 (the int32 floor division and modulo become Div, Mul and Sub). The one gather takes a
flattened tensor and global indices, so no batch_dims form is needed; there is no `tf.where` with one argument (a
dynamic shape) and no loop.

Ties. A pixel is a peak when it is the maximum of its 3x3 window (max pooling) and strictly greater than the four
neighbours that come before it in raster order (up-left, up, up-right, left), so an exact plateau of two or more
equal maxima gives one peak, its first pixel in raster order, where max pooling alone would give one per pixel.
Among peaks of equal score, top-k keeps the lower flat index (row-major per type) in TensorFlow, TFLite and
onnxruntime alike.

Refinement (Newell et al.'s evaluation code): a peak moves a quarter pixel along each axis towards its higher
neighbour (`0.25 * sign(right - left)`), and not at all along an axis where it lies on the border (it has one
neighbour there) or where its two neighbours are equal. It bounds the rounding error of the grid's 1 px steps
at 0.25 px for a peak between two pixels, without the sensitivity to noise of a fitted parabola.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

LOWEST = float(np.finfo(np.float32).min)  # never a peak: below every threshold


def check_peak_settings(*, max_points, score_threshold, num_types: int | None = None, window=3) -> None:
    """Raise `ValueError` naming the setting when `max_points` is not a positive integer, `score_threshold` is
    neither a finite number nor a non-empty sequence of them, or `window` neither an odd integer of at least 3 nor a
    sequence of them (a sequence: one a point type, `num_types` of them when given)."""
    if not isinstance(max_points, (int, np.integer)) or isinstance(max_points, bool) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer. Received: max_points={max_points!r}")
    values = list(score_threshold) if isinstance(score_threshold, (list, tuple, np.ndarray)) else [score_threshold]
    if not values or not all(
        isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and np.isfinite(v) for v in values
    ):
        raise ValueError(
            "score_threshold must be a finite number or one a point type. "
            f"Received: score_threshold={score_threshold!r}"
        )
    if num_types is not None and len(values) not in (1, num_types):
        raise ValueError(
            f"score_threshold must be one number or {num_types}, one a point type. Received: {len(values)} thresholds"
        )
    sides = list(window) if isinstance(window, (list, tuple, np.ndarray)) else [window]
    if not sides or not all(
        isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 3 and w % 2 == 1 for w in sides
    ):
        raise ValueError(
            f"window must be an odd integer of at least 3, or one a point type. Received: window={window!r}"
        )
    if num_types is not None and len(sides) not in (1, num_types):
        raise ValueError(f"window must be one side or {num_types}, one a point type. Received: {len(sides)} sides")


def thresholds(score_threshold, num_types: int) -> np.ndarray:
    """`score_threshold` (a number, or one a type) as float32 `(num_types,)`."""
    return np.broadcast_to(np.asarray(score_threshold, "float32").reshape(-1), (num_types,)).copy()


def heatmap_peaks(heatmaps, *, max_points: int, score_threshold, refine: bool = True, window=3) -> dict:
    """The highest local maxima of each heatmap channel as points.

    Args:
        heatmaps: float `(B, H, W, T)`, one channel per point type; H, W and T must be static.
        max_points: K, the points kept per image and type, by descending score.
        score_threshold: a peak must score strictly more: one number, or a sequence of one a type (T of them).
        refine: move each point a quarter pixel towards its higher neighbour along each axis.
        window: the side of the square a peak is the maximum of (3: its 8 neighbours), one or one a type. A wider
            window suppresses a second peak within (window - 1) / 2 pixels, for a type whose points lie farther
            apart than that (one tip an ear) and whose maps may show two bumps for one point.

    Returns:
        `{"points": float32 (B, T, K, 2) relative [x, y] (pixel i of W covers [i / W, (i + 1) / W), so a peak at
        pixel (row, col) is at ((col + 0.5) / W, (row + 0.5) / H) before refinement), "scores": float32 (B, T, K)
        the heatmap values at the peaks, "num_points": int32 (B, T)}`; each type's points come first by
        descending score, then padding rows (point 0, score 0).

    Raises:
        ValueError: a bad setting, heatmaps that are not 4-D with static H, W and T, or `max_points > H * W`.
    """
    shape = tuple(heatmaps.shape)
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"heatmaps must be (batch, H, W, types) with static H, W and types. Received: {shape}")
    height, width, types = shape[1:]
    check_peak_settings(max_points=max_points, score_threshold=score_threshold, num_types=types, window=window)
    least = thresholds(score_threshold, types)  # (T,): a constant, broadcast along the channels
    sides = np.broadcast_to(np.asarray(window, "int64").reshape(-1), (types,))
    if max_points > height * width:
        raise ValueError(f"max_points must be at most H * W = {height * width}. Received: max_points={max_points}")
    x = tf.cast(heatmaps, tf.float32)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=LOWEST)

    def neighbour(dy: int, dx: int):  # the value at (row + dy, col + dx), LOWEST outside
        return padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width, :]

    pooled = None
    for side in sorted(set(sides.tolist())):  # one max pooling a side, each type taking its own
        maxima = tf.nn.max_pool2d(x, int(side), 1, "SAME")
        pooled = maxima if pooled is None else tf.where(sides == side, maxima, pooled)
    peak = (x >= pooled) & (x > least)
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1)):  # ties go to the first pixel in raster order
        peak &= x > neighbour(dy, dx)
    candidates = tf.where(peak, x, LOWEST)
    flat = tf.reshape(tf.transpose(candidates, [0, 3, 1, 2]), [-1, types, height * width])  # (B, T, H*W)
    values, indices = tf.math.top_k(flat, k=max_points, sorted=True)  # (B, T, K)
    valid = values > least[:, None]
    rows = tf.cast(indices // width, tf.float32)
    cols = tf.cast(indices % width, tf.float32)
    xy = tf.stack([cols + 0.5, rows + 0.5], axis=-1)  # (B, T, K, 2) in heatmap pixels
    if refine:
        inside_x = np.zeros((1, 1, width, 1), "float32")
        inside_x[:, :, 1:-1] = 1.0
        inside_y = np.zeros((1, height, 1, 1), "float32")
        inside_y[:, 1:-1] = 1.0
        shift = tf.stack(
            [
                0.25 * tf.sign(neighbour(0, 1) - neighbour(0, -1)) * inside_x,
                0.25 * tf.sign(neighbour(1, 0) - neighbour(-1, 0)) * inside_y,
            ],
            axis=-1,
        )  # (B, H, W, T, 2)
        shift = tf.reshape(tf.transpose(shift, [0, 3, 1, 2, 4]), [-1, 2])  # (B*T*H*W, 2)
        # one GATHER on axis 0 of the flattened shifts, with each (image, type)'s offset added to top-k's indices
        offsets = tf.reshape(tf.range(tf.shape(flat)[0] * types) * (height * width), [-1, types, 1])
        xy += tf.gather(shift, indices + offsets)
    points = xy / np.array([width, height], "float32")
    return {
        "points": tf.where(valid[..., None], points, 0.0),
        "scores": tf.where(valid, values, 0.0),
        "num_points": tf.reduce_sum(tf.cast(valid, tf.int32), axis=-1),
    }
