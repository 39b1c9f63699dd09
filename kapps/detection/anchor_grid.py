"""Anchor boxes laid over a feature map's grid of cells."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops


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
