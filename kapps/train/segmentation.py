"""The semantic segmentation preset of the engine's test: the output kind's scores, time per image and size."""

from __future__ import annotations

import time
from collections.abc import Sequence

from kapps.kinds import kind_for

import keras
import numpy as np
import tensorflow as tf


def evaluate_segmenter(model: keras.Model, test: tf.data.Dataset, *, class_names: Sequence[str]) -> dict:
    """Score a semantic segmenter on a batched `(images, masks)` split, as a run's metrics.json keeps it.

    Args:
        model: images -> `(B, h, w, C)` per-pixel class scores; the masks of `test` must be `(B, h, w)`.
        test: one pass of batched `(images, masks)`, masks of class indices with 255 ignored.
        class_names: the name of each class id, recorded beside the per-class lists.

    Returns:
        The segmentation kind's `evaluate` (`pixel_accuracy`, `mean_iou`, `mean_dice`, `class_iou`, `class_dice`,
        `boundary_f_score` at 2 pixels, `class_boundary_f_score`, `count`...) plus `ms_per_image`, the model's
        time per image over `test` (a compiled call a batch, outputs fetched, the tracing call left out), and
        `parameters`, the model's weight count.
    """
    scores = kind_for("segmentation").evaluate(model, test, class_names=class_names)
    return {**scores, "ms_per_image": 1000 * seconds_per_image(model, test), "parameters": int(model.count_params())}


def seconds_per_image(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """The model's inference time per image over a batched `(images, ...)` dataset: each batch is run by one
    compiled call and its outputs fetched; the first batch is run once before timing, so tracing is left out.

    Raises:
        ValueError: the dataset holds no image.
    """
    run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    seconds, images = 0.0, 0
    for number, (batch, *_) in enumerate(dataset):
        if number == 0:
            keras.tree.map_structure(np.asarray, run(batch))
        start = time.perf_counter()
        keras.tree.map_structure(np.asarray, run(batch))
        seconds += time.perf_counter() - start
        images += int(batch.shape[0])
    if not images:
        raise ValueError("dataset must hold at least one image. Received: an empty dataset")
    return seconds / images


def crop_masks(dataset: tf.data.Dataset, size: tuple[int, int]) -> tf.data.Dataset:
    """Cut the masks of a batched `(images, masks)` dataset to their centre `size`, the part of the image a
    valid-padding U-Net scores (Ronneberger et al. 2015: a 572x572 tile gives the 388x388 map of its centre).

    Raises:
        ValueError: `size` is larger than the masks, or leaves an odd margin (no centre).
    """
    height, width = dataset.element_spec[1].shape[1:3]
    margins = (height - size[0], width - size[1])
    if min(margins) < 0 or any(m % 2 for m in margins):
        raise ValueError(
            f"size must be at most the masks' {height}x{width}, with even margins. Received: size={tuple(size)}"
        )
    top, left = margins[0] // 2, margins[1] // 2

    def crop(images, masks):
        return images, masks[:, top : top + size[0], left : left + size[1]]

    return dataset.map(crop)
