"""Box formats, area, IoU and clipping.

Boxes are tensors whose last axis holds 4 coordinates, by default in kapps' canonical format `"rel_xyxy"`
(normalised `[x1, y1, x2, y2]` of the image's width and height); NumPy arrays are accepted everywhere and the
results are tensors. Format names are keras-cv's (`FORMATS`), and conversion is keras-cv's own.
"""

from __future__ import annotations

from keras import ops

FORMATS = ("xyxy", "rel_xyxy", "yxyx", "rel_yxyx", "xywh", "rel_xywh", "center_xywh", "center_yxhw")


def convert_format(boxes, *, source: str, target: str, images=None, image_shape=None):
    """Convert boxes between keras-cv's formats with `keras_cv.bounding_box.convert_format`.

    Args:
        boxes: `(..., 4)` boxes in `source` format (keras-cv wants a rank of 2 or 3).
        source: one of `FORMATS`.
        target: one of `FORMATS`.
        images: images the boxes belong to, for conversions between relative and pixel formats.
        image_shape: `(height, width, channels)`, instead of `images`.

    Returns:
        The boxes in `target` format, float32.
    """
    for name, value in (("source", source), ("target", target)):
        if value.lower() not in FORMATS:
            raise ValueError(f"{name} must be one of {FORMATS}. Received: {name}={value!r}")
    import keras_cv  # 1.5 s to import: only where a conversion is asked for

    return keras_cv.bounding_box.convert_format(
        boxes, source=source, target=target, images=images, image_shape=image_shape
    )


def _corners(boxes, box_format: str):
    """`(x1, y1, x2, y2)` as four tensors, in the same unit (relative or pixels) as `boxes`."""
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    if box_format.lower() not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={box_format!r}")
    if box_format.lower() not in ("xyxy", "rel_xyxy"):
        corner_format = "rel_xyxy" if box_format.lower().startswith("rel_") else "xyxy"
        boxes = convert_format(boxes, source=box_format, target=corner_format)
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def area(boxes, *, format: str = "rel_xyxy"):
    """Area of each box, `(...)`; a box with zero or negative width or height has area 0."""
    x1, y1, x2, y2 = _corners(boxes, format)
    return ops.maximum(x2 - x1, 0.0) * ops.maximum(y2 - y1, 0.0)


def _iou(a, b):
    """IoU of broadcastable corner tuples; 0 where the union is empty (two degenerate boxes), never NaN."""
    ax1, ay1, ax2, ay2 = a
    bx1, by1, bx2, by2 = b
    area_a = ops.maximum(ax2 - ax1, 0.0) * ops.maximum(ay2 - ay1, 0.0)
    area_b = ops.maximum(bx2 - bx1, 0.0) * ops.maximum(by2 - by1, 0.0)
    inter_w = ops.maximum(ops.minimum(ax2, bx2) - ops.maximum(ax1, bx1), 0.0)
    inter_h = ops.maximum(ops.minimum(ay2, by2) - ops.maximum(ay1, by1), 0.0)
    inter = inter_w * inter_h
    return ops.divide_no_nan(inter, area_a + area_b - inter)


def iou(boxes_a, boxes_b, *, format: str = "rel_xyxy"):
    """Pairwise intersection over union.

    Boxes are taken as they are (not clipped to the image). A degenerate box (zero or negative width or height)
    has IoU 0 with every box, itself included.

    Args:
        boxes_a: `(..., N, 4)` boxes.
        boxes_b: `(..., M, 4)` boxes, with the same leading axes.
        format: the format of both.

    Returns:
        `(..., N, M)` float32 IoU; empty when N or M is 0.
    """
    a = [c[..., :, None] for c in _corners(boxes_a, format)]
    b = [c[..., None, :] for c in _corners(boxes_b, format)]
    return _iou(a, b)


def elementwise_iou(boxes_a, boxes_b, *, format: str = "rel_xyxy"):
    """IoU of aligned boxes, `(..., 4)` and `(..., 4)` -> `(...)` (box i of `a` with box i of `b` only)."""
    return _iou(_corners(boxes_a, format), _corners(boxes_b, format))


def clip(boxes):
    """Clip `rel_xyxy` boxes to the image, `[0, 1]`; a box wholly outside the image becomes degenerate."""
    return ops.clip(ops.convert_to_tensor(boxes, dtype="float32"), 0.0, 1.0)
