"""The Faster R-CNN box coder: boxes as deltas from their anchors, and back."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from keras import ops

# Faster R-CNN's decoder clamps log-size deltas at log(1000 / 16), so that exp() never overflows (torchvision's
# bbox_xform_clip): decoded boxes are at most 62.5 times their anchor's width or height.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def _centre_size(boxes):
    """Centre `(x, y)` and size `(w, h)` of `(..., 4)` corner boxes, four tensors."""
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
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
