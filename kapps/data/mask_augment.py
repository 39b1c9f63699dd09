"""Augmentation for segmentation batches: one random flip and scale-crop applied to an image, its mask and its
per-pixel loss weights alike."""

from __future__ import annotations

from collections.abc import Callable

from kapps.data.segmentation_folder import IGNORE_LABEL

import tensorflow as tf


def segmentation_augment(*, image_size, seed: int = 0, flip: bool = True, scale=(0.75, 1.25)) -> Callable:
    """Random horizontal flips and scale jitter that move each mask with its image.

    Each image is resized by a factor drawn uniformly from `scale` (1 being the stretch of the whole input to
    `image_size`), then cut at a random offset to `image_size` or, when it came out smaller, placed at a random
    offset inside it: the scale-and-crop augmentation of FCN and DeepLab training. One `tf.image.crop_and_resize`
    box per image does the scale, the crop, the placement and the flip (a box with x1 > x2 is sampled right to
    left), so the image (bilinear) and its mask (nearest neighbour, which keeps class indices) are sampled at the
    same points; pixels outside the input are 0 in the image and `IGNORE_LABEL` (255) in the mask, so no loss
    counts the padding.

    A batch may carry per-pixel loss weights as a third element, `(images, masks, weights)`: Keras's
    `sample_weight`, for example U-Net's border weights (Ronneberger et al. 2015, eq. 2). They are sampled at the
    mask's points by nearest neighbour too, so every output pixel keeps the (label, weight) pair of one input
    pixel: bilinear weights would hand a foreground pixel beside a thin border part of that border's high weight,
    a weight no pixel of the annotation has. Outside the input they are 0, which the ignore label makes moot.

    Args:
        image_size: (height, width) of the output images and masks, at least 2 pixels each.
        seed: seed of the random draws (a `tf.random.Generator`, as `pipeline` calls the function one batch at a
            time, in order).
        flip: flip half of the images left to right.
        scale: (smallest, largest) resize factor, or None for no scale jitter.

    Returns:
        A function mapping a batch `(images, masks)`, images float32 (B, H, W, C) and masks integer (B, H, W)
        class indices, to images (B, *image_size, C) float32 and masks (B, *image_size) of the masks' dtype, for
        `kapps.data.pipeline(..., augment=...)`; a batch `(images, masks, weights)` with float weights
        (B, H, W) gives `(images, masks, weights)`, the weights (B, *image_size) float32.
    """
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else None
    if size is None or len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 2 for s in size):
        raise ValueError(f"image_size must be (height, width), two integers of at least 2. Received: {image_size!r}")
    if scale is not None:
        scale = tuple(scale)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be None or (smallest, largest), 0 < smallest <= largest. Received: {scale}")
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False. Received: flip={flip!r}")
    generator = tf.random.Generator.from_seed(seed)
    low, high = scale if scale is not None else (1.0, 1.0)
    out = tf.constant(size, tf.float32)

    def augment(images, masks, *weights):
        batch = tf.shape(images)[0]
        source = tf.cast(tf.shape(images)[1:3], tf.float32)  # (H, W)
        factor = generator.uniform([batch, 1], low, high)
        # crop_and_resize samples output pixel i at y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (h - 1): one output
        # step is `step` input pixels, and the window's first sample may start anywhere in `room`
        step = (source - 1.0)[None] / (out - 1.0)[None] / factor  # (B, 2)
        room = (source - 1.0)[None] - (out - 1.0)[None] * step
        start = tf.minimum(room, 0.0) + generator.uniform([batch, 2]) * tf.abs(room)
        first = start / (source - 1.0)
        last = (start + (out - 1.0) * step) / (source - 1.0)
        if flip:
            mirrored = generator.uniform([batch]) < 0.5
            first_x = tf.where(mirrored, last[:, 1], first[:, 1])
            last_x = tf.where(mirrored, first[:, 1], last[:, 1])
            first, last = tf.stack([first[:, 0], first_x], 1), tf.stack([last[:, 0], last_x], 1)
        boxes = tf.concat([first, last], axis=1)  # (B, 4) as [y1, x1, y2, x2]
        indices = tf.range(batch)
        images = tf.image.crop_and_resize(images, boxes, indices, size, method="bilinear", extrapolation_value=0.0)
        sampled = tf.image.crop_and_resize(
            tf.cast(masks, tf.float32)[..., None],
            boxes,
            indices,
            size,
            method="nearest",
            extrapolation_value=float(IGNORE_LABEL),
        )
        masks = tf.cast(tf.round(sampled[..., 0]), masks.dtype)
        if not weights:
            return images, masks
        # the same boxes and method as the masks: the same source pixel for every output pixel
        weights = tf.image.crop_and_resize(
            tf.cast(weights[0], tf.float32)[..., None], boxes, indices, size, method="nearest", extrapolation_value=0.0
        )
        return images, masks, weights[..., 0]

    return augment
