"""What every source gives: `Data`, three splits of decoded examples, and the decoding the sources share.

Classification sources fit their images with `fit_image`; detection sources give `detection_image` and
`detection_targets` (see `kapps.data.detection`); point sources give `point_targets`, or build a split from arrays
with `points_dataset` (see `kapps.data.keypoints`). `as_arrays` reads a split back as NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kapps.errors import DataError

import numpy as np
import tensorflow as tf


@dataclass
class Data:
    """A loaded source, split three ways, each split an unbatched `tf.data.Dataset` of decoded `(image, label)`.

    Attributes:
        spec: the source as the user named it (`"digits"`, `"tfds:mnist"`).
        train, val, test: the splits; images are float32 in [0, 1] at `input_shape` (uint8 from a source that
            keeps them 8-bit, such as the point sources: `pipeline` and `unit_images` scale them), labels int32.
        input_shape: (height, width, channels) of every image.
        class_names: one name per class; `num_classes` is its length.
        sizes: number of examples in each split.
    """

    spec: str
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple[int, int, int]
    class_names: list[str]
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict:
        """A JSON-ready description, stored in a run's config.json so the data can be loaded again."""
        return {
            "spec": self.spec,
            "input_shape": list(self.input_shape),
            "class_names": self.class_names,
            "sizes": self.sizes,
        }


def check_seed(seed) -> int:
    """`seed` as an int, or a `ValueError` naming it: an embedded source's seed is a non-negative integer."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    return int(seed)


def check_sizes(sizes) -> tuple[int, int, int]:
    """`sizes` as three ints, or a `ValueError` naming it: an embedded source's (train, val, test) counts."""
    sizes = tuple(sizes) if isinstance(sizes, (tuple, list)) else ()
    if len(sizes) != 3 or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0 for n in sizes):
        raise ValueError(f"sizes must be three non-negative integers (train, val, test). Received: sizes={sizes!r}")
    return tuple(int(n) for n in sizes)


def fit_image(image: tf.Tensor, image_size, *, resize: bool = False) -> tf.Tensor:
    """Scale an image tensor to float32 in [0, 1] and fit it to `image_size`: resized when `resize` or when it is
    larger, else padded around (MNIST's 28x28 digits in LeNet's 32x32 frame)."""
    image = tf.image.convert_image_dtype(image, tf.float32) if image.dtype == tf.uint8 else tf.cast(image, tf.float32)
    height, width = image_size
    shape = image.shape
    if not resize and shape[0] is not None and shape[0] <= height and shape[1] <= width:
        return tf.image.resize_with_crop_or_pad(image, height, width)
    return tf.image.resize(image, (height, width))


def detection_image(image: tf.Tensor, *, image_size) -> tf.Tensor:
    """A decoded image as float32 RGB in [0, 1], stretched to `image_size`: the image of every detection source."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = tf.image.resize(image, image_size)
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), (*image_size, 3))


def detection_targets(boxes: tf.Tensor, classes: tf.Tensor, *, max_boxes: int, masks=None) -> dict[str, tf.Tensor]:
    """Boxes (n, 4) rel_xyxy and classes (n,) clipped to the image, boxes without area dropped, the first
    `max_boxes` kept and padded to `max_boxes` rows (boxes 0, classes -1): the targets of every detection source.
    With `masks` (n, H, W) uint8, the same rows of them as "masks" (max_boxes, H, W), padding 0."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
    boxes = tf.boolean_mask(boxes, keep)[:max_boxes]
    classes = tf.cast(tf.boolean_mask(classes, keep)[:max_boxes], tf.int32)
    pad = max_boxes - tf.shape(classes)[0]
    targets = {
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_boxes, 4)),
        "classes": tf.ensure_shape(tf.pad(classes, [[0, pad]], constant_values=-1), (max_boxes,)),
    }
    if masks is not None:
        masks = tf.boolean_mask(masks, keep)[:max_boxes]
        targets["masks"] = tf.ensure_shape(tf.pad(masks, [[0, pad], [0, 0], [0, 0]]), (max_boxes, *masks.shape[1:]))
    return targets


def point_targets(points: tf.Tensor, types: tf.Tensor, *, max_points: int) -> dict[str, tf.Tensor]:
    """Points (n, 2) relative [x, y] and their types (n,), the first `max_points` kept and padded to `max_points`
    rows (points -1, types -1): the targets of every point source."""
    points = tf.cast(points, tf.float32)[:max_points]
    types = tf.cast(types, tf.int32)[:max_points]
    pad = max_points - tf.shape(types)[0]
    return {
        "points": tf.ensure_shape(tf.pad(points, [[0, pad], [0, 0]], constant_values=-1.0), (max_points, 2)),
        "types": tf.ensure_shape(tf.pad(types, [[0, pad]], constant_values=-1), (max_points,)),
    }


def points_dataset(images, points, types, *, image_size, max_points: int) -> tf.data.Dataset:
    """An unbatched split of `(image, {"points", "types"})` from lists of uint8 images (H, W, 3), points (n, 2)
    relative [x, y] and types (n,), padded as `point_targets` pads. The images stay uint8 (H, W, 3): `pipeline`
    caches and shuffles them as they are and scales each batch to [0, 1] (`unit_images`), a quarter of the memory
    of float32 copies (600 wheat images at 512x512 take 450 MiB, not 1.8 GiB, in each of the cache and the
    shuffle's permutation)."""
    count = len(images)
    stacked = np.zeros((count, *image_size, 3), np.uint8)
    padded = np.full((count, max_points, 2), -1.0, np.float32)
    kinds = np.full((count, max_points), -1, np.int32)
    for i, (image, xy, kind) in enumerate(zip(images, points, types, strict=True)):
        n = min(len(kind), max_points)
        stacked[i], padded[i, :n], kinds[i, :n] = image, xy[:n], kind[:n]
    return tf.data.Dataset.from_tensor_slices((stacked, {"points": padded, "types": kinds}))


def unit_images(images):
    """Images as float32 in [0, 1]: uint8 ones (a source may keep its images 8-bit, see `points_dataset`) divided
    by 255, float ones as they are. Works on NumPy arrays and tensors alike."""
    if tf.is_tensor(images):
        return tf.cast(images, tf.float32) / 255.0 if images.dtype == tf.uint8 else images
    return images.astype(np.float32) / np.float32(255) if images.dtype == np.uint8 else images


def as_arrays(ds: tf.data.Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` examples of an unbatched split as NumPy arrays (images, labels)."""
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in ds.batch(256).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise DataError("The data split is empty.")
    return np.concatenate(images), np.concatenate(labels)
