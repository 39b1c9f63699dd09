"""Gaussian heatmap targets for heatmap regression (Newell et al., "Stacked Hourglass Networks for Human Pose
Estimation", ECCV 2016; Tompson et al. 2014 before them): one channel per point type, a 2D Gaussian on each point.

Coordinates. Points are relative `[x, y]`, x across the width and y down the height, 0 to 1 over the image, as
kapps' boxes are (`rel_xyxy`): heatmap pixel `i` covers `[i / W, (i + 1) / W)`, so a point at relative `x` sits at
pixel coordinate `x * W - 0.5`, where pixel centres are integers. `kapps.keypoints.peaks` reads peaks back with the
same convention, so a target's peak decodes to its own point.

Written with TensorFlow ops so that it runs inside a `tf.data` map; NumPy arrays are accepted too.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_SIGMA = 1.0  # output pixels: Newell et al.'s Gaussians have a standard deviation of 1 px at 64x64


def heatmap_targets(points, types, *, num_types: int, size: tuple[int, int], sigma: float = DEFAULT_SIGMA):
    """Heatmaps with a Gaussian of peak 1 on every point, one channel per point type.

    Channel `t` at pixel `(row, col)` is the largest over the points of type `t` of
    `exp(-((col - cx)**2 + (row - cy)**2) / (2 * sigma**2))`, with `cx = x * W - 0.5`, `cy = y * H - 0.5` (not
    truncated, where Newell et al.'s code pastes a 6-sigma window: beyond 3 sigma the values are below 0.012).
    Several points of one type overlap by their maximum, so each keeps its own peak of 1.

    Args:
        points: float `(..., N, 2)` relative `[x, y]` points; leading axes (a batch) are optional.
        types: int `(..., N)` each point's type in `[0, num_types)`; padding rows have type -1 and are ignored,
            and so are points outside the image (x or y outside [0, 1], as a crop leaves them).
        num_types: the number of channels.
        size: `(H, W)` of the heatmaps, the network's output resolution (64 x 64 for a 256 x 256 hourglass).
        sigma: the Gaussian's standard deviation in heatmap pixels, one for every type or a sequence of
            `num_types`, one a type (a larger one for rarer, larger structures, such as the tips of wheat ears
            beside their many spikelets, gives their channel more foreground to learn from).

    Returns:
        float32 `(..., H, W, num_types)` heatmaps in [0, 1].

    Raises:
        ValueError: `num_types`, `size` or `sigma` is not positive.
    """
    if not isinstance(num_types, int) or num_types < 1:
        raise ValueError(f"num_types must be a positive integer. Received: num_types={num_types!r}")
    if len(tuple(size)) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"size must be (height, width), two positive integers. Received: size={size!r}")
    sigmas = np.atleast_1d(np.asarray(sigma, np.float64))
    if sigmas.ndim != 1 or len(sigmas) not in (1, num_types) or not np.all(sigmas > 0):
        raise ValueError(f"sigma must be positive, one number or one a type. Received: sigma={sigma!r}")
    height, width = size
    points = tf.convert_to_tensor(points, tf.float32)
    types = tf.cast(types, tf.int32)
    inside = tf.reduce_all((points >= 0.0) & (points <= 1.0), axis=-1)
    types = tf.where(inside, types, -1)
    cx = points[..., 0:1] * width - 0.5  # (..., N, 1)
    cy = points[..., 1:2] * height - 0.5
    cols = tf.range(width, dtype=tf.float32)
    rows = tf.range(height, dtype=tf.float32)
    if len(sigmas) == 1:
        spread = 2.0 * float(sigmas[0]) ** 2
    else:  # each point's own type's
        spread = tf.gather(tf.constant(2.0 * sigmas**2, tf.float32), tf.maximum(types, 0))[..., None]  # (..., N, 1)
    across = tf.exp(-tf.square(cols - cx) / spread)  # (..., N, W)
    down = tf.exp(-tf.square(rows - cy) / spread)  # (..., N, H)
    gaussians = down[..., :, None] * across[..., None, :]  # (..., N, H, W)
    owners = tf.one_hot(types, num_types, dtype=tf.float32)  # (..., N, T); type -1 is all zeros
    per_type = gaussians[..., None] * owners[..., None, None, :]  # (..., N, H, W, T)
    return tf.maximum(tf.reduce_max(per_type, axis=-4), 0.0)  # no points at all: zeros, not reduce_max's lowest
