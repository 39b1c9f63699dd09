"""Object crops: a detection source turned into a classification source, one example per labelled object.

A detector's backbone can be pre-trained on them, as YOLO's is on ImageNet classification (Redmon et al. 2016,
Sec. 2.2) and R-CNN's region classifier reads such warped regions (Girshick et al. 2014).
"""

from __future__ import annotations

from kapps.data.sources import Data

import tensorflow as tf


def object_crops(data: Data, *, size=(48, 48), margin: float = 0.1) -> Data:
    """Cut every labelled object of a detection source out of its image, with a margin, resized to `size`.

    Args:
        data: a detection source, splits of `(image, {"boxes", "classes"})` with normalised `[x1, y1, x2, y2]`
            boxes and class -1 for padding.
        size: (height, width) of the crops.
        margin: context kept around each box, as a share of its width and height on each side.

    Returns:
        A classification `Data` of `(crop, class)` with the same class names; crops are stretched to `size`.
    """
    if margin < 0:
        raise ValueError(f"margin must be zero or more. Received: margin={margin!r}")
    height, width = size

    def crops(image, targets):
        keep = targets["classes"] >= 0
        boxes = tf.boolean_mask(targets["boxes"], keep)
        classes = tf.boolean_mask(targets["classes"], keep)
        pad_x = (boxes[:, 2] - boxes[:, 0]) * margin
        pad_y = (boxes[:, 3] - boxes[:, 1]) * margin
        regions = tf.stack([boxes[:, 1] - pad_y, boxes[:, 0] - pad_x, boxes[:, 3] + pad_y, boxes[:, 2] + pad_x], 1)
        cut = tf.image.crop_and_resize(image[None], regions, tf.zeros_like(classes), (height, width))
        return tf.data.Dataset.from_tensor_slices((cut, tf.cast(classes, tf.int32)))

    splits = {name: getattr(data, name).flat_map(crops) for name in ("train", "val", "test")}
    sizes = {name: int(split.reduce(0, lambda count, _: count + 1)) for name, split in splits.items()}
    return Data(
        spec=f"{data.spec} (object crops)",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        input_shape=(height, width, data.input_shape[-1]),
        class_names=list(data.class_names),
        sizes=sizes,
    )
