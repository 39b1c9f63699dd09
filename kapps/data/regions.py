"""Warped regions as training data for R-CNN's CNN (Girshick et al. 2014): scenes as arrays, and batches of
regions cut out of them by `kapps.detection.regions.warp` while they stream.

The regions are warped inside the tf.data pipeline from the scenes (uint8, the only copy of the pixels), so a
table of a hundred thousand proposals costs its boxes, not a hundred thousand crops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kapps.detection.regions import pad_proposals, to_uint8, warp

import keras
import numpy as np
import tensorflow as tf


def scene_arrays(split: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An unbatched detection split `(image, {"boxes", "classes"})` as NumPy arrays.

    Returns:
        `(images, boxes, classes)`: uint8 `(I, H, W, 3)` (the [0, 1] images times 255, rounded), float32
        `(I, G, 4)` and int32 `(I, G)`, padded as the source pads them.
    """
    images, boxes, classes = [], [], []
    for batch, targets in split.batch(256).as_numpy_iterator():
        images.append(to_uint8(batch))
        boxes.append(targets["boxes"])
        classes.append(targets["classes"])
    if not images:
        raise ValueError("split must hold at least one scene. Received: an empty split")
    return np.concatenate(images), np.concatenate(boxes), np.concatenate(classes)


def _cutter(images: np.ndarray, *, size: Sequence[int], context: float):
    pixels = tf.constant(images)

    def cut(image_index, boxes, *rest):
        batch = tf.cast(tf.gather(pixels, image_index), tf.float32) / 255.0
        regions = warp(batch, boxes, size=size, context=context, box_indices=tf.range(tf.shape(boxes)[0]))
        return (regions, *rest)

    return cut


def region_stream(
    images: np.ndarray,
    regions: dict,
    *,
    background: int,
    batch_size: int = 128,
    positive_fraction: float = 0.25,
    size: Sequence[int] = (227, 227),
    context: float = 16.0,
    seed: int = 0,
) -> tf.data.Dataset:
    """An endless stream of `(warped regions, labels)` batches, a fixed share of each batch positive.

    R-CNN fine-tunes on batches of 128 with 32 positive windows (all classes) and 96 background ones, "because
    they are extremely rare compared to background" (Girshick et al. 2014, Sec. 2.3): `positive_fraction` 0.25.
    Each side is shuffled anew every time it runs out, from `seed`.

    Args:
        images: uint8 `(I, H, W, 3)` scenes (`scene_arrays`).
        regions: `{"image": (R,), "boxes": (R, 4), "label": (R,)}`, as `label_regions` makes them.
        background: the label of background regions.
        batch_size: regions per batch.
        positive_fraction: share of each batch that is not background.
        size: (height, width) of the warped regions.
        context: pixels of context at the warped size (see `warp`).
        seed: shuffle seed.

    Returns:
        Batches of float32 `(batch_size, *size, 3)` regions in [0, 1] and int32 `(batch_size,)` labels.
    """
    if not 0 < positive_fraction < 1:
        raise ValueError(f"positive_fraction must be in (0, 1). Received: positive_fraction={positive_fraction!r}")
    positives = max(1, round(batch_size * positive_fraction))
    if positives >= batch_size:
        raise ValueError(f"batch_size must leave room for background regions. Received: batch_size={batch_size!r}")
    labels = np.asarray(regions["label"], np.int32)
    sides = []
    for number, (keep, count) in enumerate(((labels != background, positives), (labels == background, None))):
        if not keep.any():
            raise ValueError(f"regions must hold {'positive' if number == 0 else 'background'} regions to sample.")
        rows = (np.asarray(regions["image"], np.int32)[keep], np.asarray(regions["boxes"], np.float32)[keep])
        side = tf.data.Dataset.from_tensor_slices((*rows, labels[keep]))
        side = side.shuffle(int(keep.sum()), seed=seed + number, reshuffle_each_iteration=True).repeat()
        sides.append(side.batch(count or batch_size - positives))

    def join(first, second):
        return tuple(tf.concat([a, b], 0) for a, b in zip(first, second, strict=True))

    stream = tf.data.Dataset.zip(tuple(sides)).map(join)
    return stream.map(_cutter(images, size=size, context=context)).prefetch(tf.data.AUTOTUNE)


def region_batches(
    images: np.ndarray,
    regions: dict,
    *,
    batch_size: int = 256,
    size: Sequence[int] = (227, 227),
    context: float = 16.0,
) -> tf.data.Dataset:
    """One pass over the regions in table order, as `(warped regions, labels)` batches (for validation)."""
    rows = (
        np.asarray(regions["image"], np.int32),
        np.asarray(regions["boxes"], np.float32),
        np.asarray(regions["label"], np.int32),
    )
    batches = tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)
    return batches.map(_cutter(images, size=size, context=context)).prefetch(tf.data.AUTOTUNE)


def with_proposals(
    split: tf.data.Dataset,
    search: Callable[[np.ndarray], np.ndarray],
    *,
    rows: int | None = None,
    name: str = "scenes",
    progress: bool = True,
) -> tuple[tf.data.Dataset, np.ndarray]:
    """Each example of an unbatched detection split with its proposals: `(image, {..., "proposals": (P, 4)})`.

    The proposals are computed once, here (selective search takes tens of milliseconds an image), and held as
    one `(I, P, 4)` table that the returned dataset zips with the split, so every epoch reads them from memory.
    The split must give its examples in the same order on every pass, as kapps' sources do.

    Args:
        split: `(image, targets)` examples, images in [0, 1].
        search: the proposal function, `uint8 (H, W, 3) -> (N, 4) rel_xyxy`
            (`kapps.detection.regions.SelectiveSearch`).
        rows: P, the proposals kept an image (zero rows pad the rest); the most any image has by default.
        name: what the progress bar calls the split.
        progress: show a progress bar.

    Returns:
        `(dataset, table)`: the split with `"proposals"` added to its targets, and the `(I, P, 4)` table.
    """
    count = int(split.cardinality())
    bar = keras.utils.Progbar(count if count > 0 else None, unit_name="image") if progress else None
    if bar is not None:
        print(f"selective search on the {name}")
    found = []
    for images, _ in split.batch(64).as_numpy_iterator():
        found.extend(search(image) for image in to_uint8(images))
        if bar is not None:
            bar.update(len(found))
    if not found:
        raise ValueError("split must hold at least one scene. Received: an empty split")
    table = pad_proposals(found, rows=rows)
    proposals = tf.data.Dataset.from_tensor_slices(table)

    def join(example, boxes):
        image, targets = example
        return image, {**targets, "proposals": boxes}

    joined = tf.data.Dataset.zip(split, proposals).map(join, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return joined.apply(tf.data.experimental.assert_cardinality(len(found))), table
