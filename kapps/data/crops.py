"""Object crops: a detection source turned into a classification source, one example per labelled object.

A detector's backbone can be pre-trained on them, as YOLO's is on ImageNet classification (Redmon et al. 2016,
Sec. 2.2) and R-CNN's region classifier reads such warped regions (Girshick et al. 2014).
"""

from __future__ import annotations

from kapps.data.base import Data

import tensorflow as tf


def object_crops(data: Data, *, size=(48, 48), margin: float = 0.1, scale: str = "stretch") -> Data:
    """Cut every labelled object of a detection source out of its image, as a `size` crop.

    Args:
        data: a detection source, splits of `(image, {"boxes", "classes"})` with normalised `[x1, y1, x2, y2]`
            boxes and class -1 for padding.
        size: (height, width) of the crops.
        margin: with `scale="stretch"`, context kept around each box, as a share of its width and height on each
            side.
        scale: `"stretch"` resizes the box and its margin to `size`, so every object fills its crop; `"native"`
            cuts the `size`-pixel window centred on the box at the image's own scale (zeros beyond the image), so
            objects keep the size a detector sees them at, and large ones are cut.

    Returns:
        A classification `Data` of `(crop, class)` with the same class names.
    """
    if margin < 0:
        raise ValueError(f"margin must be zero or more. Received: margin={margin!r}")
    if scale not in ("stretch", "native"):
        raise ValueError(f"scale must be 'stretch' or 'native'. Received: scale={scale!r}")
    height, width = size
    image_height, image_width = data.input_shape[:2]

    def crops(image, targets):
        keep = targets["classes"] >= 0
        boxes = tf.boolean_mask(targets["boxes"], keep)
        classes = tf.boolean_mask(targets["classes"], keep)
        if scale == "native":
            # crop_and_resize reads 0 and 1 as the first and last pixel centres; the window spans size - 1 of them
            first_x = (boxes[:, 0] + boxes[:, 2]) / 2 * image_width - 0.5 - (width - 1) / 2
            first_y = (boxes[:, 1] + boxes[:, 3]) / 2 * image_height - 0.5 - (height - 1) / 2
            regions = tf.stack([first_y, first_x, first_y + height - 1, first_x + width - 1], 1)
            regions /= [image_height - 1, image_width - 1, image_height - 1, image_width - 1]
        else:
            pad_x = (boxes[:, 2] - boxes[:, 0]) * margin
            pad_y = (boxes[:, 3] - boxes[:, 1]) * margin
            regions = tf.stack([boxes[:, 1] - pad_y, boxes[:, 0] - pad_x, boxes[:, 3] + pad_y, boxes[:, 2] + pad_x], 1)
        cut = tf.image.crop_and_resize(image[None], regions, tf.zeros_like(classes), (height, width))
        return tf.data.Dataset.from_tensor_slices((cut, tf.cast(classes, tf.int32)))

    splits = {name: getattr(data, name).flat_map(crops) for name in ("train", "val", "test")}
    sizes = {name: int(split.reduce(0, lambda count, _: count + 1)) for name, split in splits.items()}
    # flat_map hides the count; stating it spares Keras's "ran out of data" warning at each evaluation
    splits = {name: split.apply(tf.data.experimental.assert_cardinality(sizes[name])) for name, split in splits.items()}
    return Data(
        spec=f"{data.spec} (object crops)",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        input_shape=(height, width, data.input_shape[-1]),
        class_names=list(data.class_names),
        sizes=sizes,
    )
