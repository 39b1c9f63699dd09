"""Box-aware augmentation for detection batches: horizontal flip and scale jitter through keras-cv's layers,
keeping kapps' fixed, padded targets."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def detection_augment(*, image_size, seed: int = 0, flip: bool = True, scale=(0.75, 1.25)) -> Callable:
    """Random horizontal flips and scale jitter that move the boxes (and masks) with the image.

    The scale jitter is keras-cv's `JitteredResize`, the resize-and-crop augmentation of Mask R-CNN (He et al.,
    2017): each image is resized by a factor drawn from `scale`, then cut at a random offset, or padded at the
    bottom and right, to `image_size`. Boxes are clipped to the image; a box left narrower or lower than one
    pixel is removed (class -1, zero box), and the remaining boxes move to the first rows. Instance masks
    ("masks", (B, max_boxes, H, W)) and a "semantic" mask, when the targets have them, get the same flip and
    resize (nearest neighbour) and follow their boxes' rows.

    Args:
        image_size: (height, width) of the output images.
        seed: seed of the random transforms. (It also seeds TensorFlow's global generator, which keras-cv 0.9's
            layers read when they are built.)
        flip: flip half of the images left to right.
        scale: (smallest, largest) resize factor, or None for no scale jitter.

    Returns:
        A function mapping a batch `(images, targets)`, images float32 (B, H, W, 3) and targets {"boxes": (B,
        max_boxes, 4) normalised [x1, y1, x2, y2], "classes": (B, max_boxes) int32, -1 for padding, and
        optionally "masks" and "semantic"}, to augmented images at `image_size` and targets of the same shapes,
        for `kapps.data.pipeline(..., augment=...)`.
    """
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else None
    if size is None or len(size) != 2 or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in size):
        raise ValueError(f"image_size must be (height, width), two positive integers. Received: {image_size!r}")
    if scale is not None:
        scale = tuple(scale)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be None or (smallest, largest), 0 < smallest <= largest. Received: {scale}")
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be True or False. Received: flip={flip!r}")
    import keras_cv  # 1.5 s to import: only when augmentation is asked for

    # keras-cv 0.9's constructors read TensorFlow's global generator (RandomFlip when its seed is 0, JitteredResize
    # always), which raises once op determinism is on unless a global generator was set: set a seeded one.
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    layers = []
    if flip:
        layers.append(keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format="rel_xyxy", dtype="float32"))
    if scale is not None:
        layers.append(
            keras_cv.layers.JitteredResize(
                target_size=size, scale_factor=scale, bounding_box_format="rel_xyxy", seed=seed, dtype="float32"
            )
        )
    # ... and would then draw its flips and crop offsets from it: each layer gets a generator of its own instead.
    for number, layer in enumerate(layers):
        layer._random_generator = tf.random.Generator.from_seed(seed * 1_000 + number + 1)
    height, width = size

    def augment(images, targets):
        boxes, classes = targets["boxes"], targets["classes"]
        max_boxes = boxes.shape[1]
        # keras-cv drops padding rows and may reorder what is left, so each box carries its row number as its class.
        rows = tf.broadcast_to(tf.range(max_boxes, dtype=tf.int32)[None], tf.shape(classes))
        inputs = {
            "images": images,
            "bounding_boxes": {"boxes": boxes, "classes": tf.cast(tf.where(classes >= 0, rows, -1), tf.float32)},
        }
        masks = _stack_masks(targets)
        if masks is not None:
            inputs["segmentation_masks"] = masks
        for layer in layers:
            inputs = layer(inputs)

        out_boxes = _padded(inputs["bounding_boxes"]["boxes"], max_boxes, fill=0.0)  # (B, max_boxes, 4)
        out_rows = tf.cast(_padded(inputs["bounding_boxes"]["classes"], max_boxes, fill=-1.0), tf.int32)
        out_boxes = tf.clip_by_value(out_boxes, 0.0, 1.0)
        keep = (
            (out_rows >= 0)
            & ((out_boxes[..., 2] - out_boxes[..., 0]) * width >= 1.0)
            & ((out_boxes[..., 3] - out_boxes[..., 1]) * height >= 1.0)
        )
        # Kept rows first, in their order.
        order = tf.argsort(tf.where(keep, 0, 1) * max_boxes + tf.range(max_boxes)[None], axis=1, stable=True)
        keep = tf.gather(keep, order, batch_dims=1)
        out_rows = tf.maximum(tf.gather(out_rows, order, batch_dims=1), 0)
        result = dict(targets)
        result["boxes"] = tf.where(keep[..., None], tf.gather(out_boxes, order, batch_dims=1), 0.0)
        result["classes"] = tf.where(keep, tf.gather(classes, out_rows, batch_dims=1), -1)
        if masks is not None:
            _unstack_masks(inputs["segmentation_masks"], targets, result, rows=out_rows, keep=keep)
        images = inputs["images"]
        images.set_shape([None, height, width, images.shape[-1]])
        result["boxes"].set_shape([None, max_boxes, 4])
        result["classes"].set_shape([None, max_boxes])
        return images, result

    return augment


def _padded(values, max_boxes: int, *, fill: float) -> tf.Tensor:
    """keras-cv's box output (ragged, or dense with as many rows as the fullest image) as (B, max_boxes, ...)."""
    if isinstance(values, tf.RaggedTensor):
        values = values.to_tensor(default_value=fill)
    values = tf.cast(values, tf.float32)
    missing = max_boxes - tf.shape(values)[1]
    padding = [[0, 0], [0, missing]] + [[0, 0]] * (len(values.shape) - 2)
    return tf.pad(values, padding, constant_values=fill)[:, :max_boxes]


def _stack_masks(targets) -> tf.Tensor | None:
    """The targets' masks as one float32 (B, H, W, max_boxes [+ 1]) tensor: instances, then semantic."""
    channels = []
    if "masks" in targets:
        channels.append(tf.transpose(tf.cast(targets["masks"], tf.float32), [0, 2, 3, 1]))
    if "semantic" in targets:
        channels.append(tf.cast(targets["semantic"], tf.float32)[..., None])
    return tf.concat(channels, axis=-1) if channels else None


def _unstack_masks(stacked, targets, result, *, rows, keep) -> None:
    stacked = tf.round(stacked)
    if "masks" in targets:
        masks = tf.transpose(stacked[..., : targets["masks"].shape[1]], [0, 3, 1, 2])  # (B, max_boxes, H, W)
        masks = tf.gather(masks, rows, batch_dims=1)
        result["masks"] = tf.cast(tf.where(keep[..., None, None], masks, 0.0), targets["masks"].dtype)
    if "semantic" in targets:
        result["semantic"] = tf.cast(stacked[..., -1], targets["semantic"].dtype)


def flip_augment(*, seed: int = 0, box_keys=("boxes", "proposals")) -> Callable:
    """Flip half of the images left to right, with every box set of their targets: Fast R-CNN's only augmentation
    (Girshick 2015, sec. 3.1), which must move the proposals the targets carry (`"proposals"`) with the objects.

    Args:
        seed: seed of the flips.
        box_keys: the targets' `(B, N, 4)` `rel_xyxy` boxes to flip, those present; all-zero (padding) rows stay
            zero.

    Returns:
        A function mapping a batch `(images, targets)` to flipped images and targets, for
        `kapps.data.pipeline(..., augment=...)`.
    """
    generator = tf.random.Generator.from_seed(seed)

    def augment(images, targets):
        flip = generator.uniform([tf.shape(images)[0]]) < 0.5  # (B,)
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
        result = dict(targets)
        for key in box_keys:
            if key not in targets:
                continue
            boxes = tf.convert_to_tensor(targets[key], tf.float32)
            x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
            mirrored = tf.stack([1.0 - x2, y1, 1.0 - x1, y2], axis=-1)
            real = tf.reduce_any(boxes != 0.0, axis=-1, keepdims=True)
            result[key] = tf.where(flip[:, None, None] & real, mirrored, boxes)
        return images, result

    return augment
