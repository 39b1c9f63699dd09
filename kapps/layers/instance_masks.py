"""Mask R-CNN's layers after the mask head: each detection's class mask, and the masks pasted at image resolution.

Both export to TFLite builtins and ONNX: the class is picked with a one-hot product (no gather on a -1 padding
class), and pasting is two batched matrix products (`kapps.detection.masks.paste_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.detection.masks import paste_masks

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="kapps")
class ClassMasks(keras.layers.Layer):
    """Each detection's mask probabilities from its own class's channel (He et al. 2017, sec. 3: the mask branch
    predicts a mask per class, and the class branch picks which one is used).

    Inputs: mask logits `(B, K, M, M, C)` and classes `(B, K)` (-1 for padding rows).
    Output: float32 `(B, K, M, M)` sigmoid probabilities of the detection's class; 0 for padding rows.
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, logits, classes):
        logits = tf.cast(logits, tf.float32)
        chosen = tf.one_hot(tf.cast(classes, tf.int32), logits.shape[-1], dtype=tf.float32)[:, :, None, None, :]
        return tf.reduce_sum(tf.sigmoid(logits) * chosen, axis=-1)

    def compute_output_spec(self, logits, classes):
        if len(logits.shape) != 5 or tuple(classes.shape[:2]) != tuple(logits.shape[:2]):
            raise ValueError(
                f"ClassMasks expects logits (B, K, M, M, C) and classes (B, K). Received: {logits.shape} and "
                f"{classes.shape}"
            )
        return keras.KerasTensor(tuple(logits.shape[:4]), "float32")


@keras.saving.register_keras_serializable(package="kapps")
class PasteMasks(keras.layers.Layer):
    """Each box's `M x M` mask pasted into an image-sized canvas, bilinearly, 0 outside its box
    (`kapps.detection.masks.paste_masks`, Detectron2's convention).

    Inputs: masks `(B, K, M, M)` and boxes `(B, K, 4)` `rel_xyxy`.
    Output: float32 `(B, K, H, W)` probabilities at image resolution; a mask is the pixels at 0.5 or more.

    Args:
        image_size: `(H, W)` of the canvas in pixels, the model's input size.
    """

    def __init__(self, image_size: Sequence[int], **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        size = tuple(image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"image_size must be two positive integers. Received: image_size={image_size!r}")
        self.image_size = size

    def call(self, masks, boxes):
        return paste_masks(masks, boxes, image_size=self.image_size)

    def compute_output_spec(self, masks, boxes):
        if len(masks.shape) != 4 or len(boxes.shape) != 3 or boxes.shape[-1] != 4:
            raise ValueError(
                f"PasteMasks expects masks (B, K, M, M) and boxes (B, K, 4). Received: {masks.shape} and {boxes.shape}"
            )
        return keras.KerasTensor((masks.shape[0], masks.shape[1], *self.image_size), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(image_size=list(self.image_size))
        return config
