"""The semantic segmentation preset of the engine: the test's scores, time per image and size; the masks cut to
a valid-padding U-Net's output; U-Net's border-weighted training data (Ronneberger et al. 2015, eq. 2); and
SegNet's class-balanced training data (median frequency balancing, Badrinarayanan et al. 2017)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from kapps.data import Data
from kapps.data.segmentation import IGNORE_LABEL
from kapps.kinds import kind_for
from kapps.models.segmentation import unet_weight_map

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
    The per-pixel weights of a `(images, masks, weights)` dataset are cut the same way.

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

    def crop(images, masks, *weights):
        return images, *(t[:, top : top + size[0], left : left + size[1]] for t in (masks, *weights))

    return dataset.map(crop)


def border_weighted(data: Data, *, w0: float = 10.0, sigma: float = 5.0, class_weights="balanced") -> Data:
    """U-Net's border-weighted training data: each training example's mask with its per-pixel loss weights
    (Ronneberger et al., "U-Net: Convolutional networks for biomedical image segmentation", MICCAI 2015, eq. 2)

        w(x) = w_c(x) + w0 exp(-(d1(x) + d2(x))^2 / (2 sigma^2)),

    so that the thin background between touching objects, few pixels that decide whether two objects come out as
    one, weighs up to w0 times more than the rest.

    The weights are computed from each example's instance labels (`kapps.models.segmentation.unet_weight_map`,
    distance transforms in NumPy) once, before batching, at the size the model sees, as the paper precomputes
    them per ground truth; the training pipeline caches them with the example. From there they travel as the
    third element of the example, Keras's `sample_weight`: flipped and rescaled with the mask
    (`kapps.data.segmentation_augment`, nearest neighbour; a rescaled example's border band is rescaled with its
    objects, sigma with it), cut with it (`crop_masks`), and applied per pixel by
    `keras.Model.fit` to any per-pixel loss: with `SparseCategoricalCrossentropy(ignore_class=255)` the loss is
    `kapps.losses.weighted_pixel_crossentropy`, the weighted sum over the labelled pixels divided by their count,
    the ignored pixels weighing nothing whatever their weight. Nothing in them depends on the network, so any
    segmenter can be trained with them. Validation and test keep `(image, mask)`: they are scored by their
    unweighted metrics.

    Args:
        data: `kapps.data.load_segmentation_instances`'s `Data`, of `(image, mask, instances)` examples.
        w0: weight of the border term (10 in the paper), at least 0.
        sigma: its width in pixels of the model's input (5 in the paper), above 0.
        class_weights: w_c, as `unet_weight_map` takes it: `"balanced"` (the paper's class-frequency balance:
            background and objects of each image weigh inversely to their pixel counts, the pixels averaging 1),
            None (1 everywhere), or a pair `(background, foreground)`.

    Returns:
        The `Data` with training examples `(image, mask, weights)`, weights float32 (H, W), and validation and
        test examples `(image, mask)`.

    Raises:
        ValueError: `w0` below 0 or `sigma` not above 0, or examples without instance labels.
    """
    if not (isinstance(w0, (int, float)) and w0 >= 0) or not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"w0 must be >= 0 and sigma > 0. Received: w0={w0!r}, sigma={sigma!r}")
    if len(data.train.element_spec) != 3:
        raise ValueError(
            "data must hold (image, mask, instances) examples, as kapps.data.load_segmentation_instances gives. "
            f"Received: examples of {len(data.train.element_spec)} elements"
        )
    unet_weight_map(np.zeros((2, 2), np.int32), w0=w0, sigma=sigma, class_weights=class_weights)  # checks them

    def weights_of(instances: np.ndarray) -> np.ndarray:
        return unet_weight_map(instances, w0=w0, sigma=sigma, class_weights=class_weights)

    def weigh(image, mask, instances):
        weights = tf.numpy_function(weights_of, [instances], tf.float32, stateful=False)
        return image, mask, tf.ensure_shape(weights, instances.shape)

    def drop_instances(image, mask, instances):
        return image, mask

    return dataclasses.replace(
        data,
        train=data.train.map(weigh, num_parallel_calls=tf.data.AUTOTUNE),
        val=data.val.map(drop_instances),
        test=data.test.map(drop_instances),
    )


def median_frequency_weights(
    masks: tf.data.Dataset, num_classes: int, *, ignore_label: int = IGNORE_LABEL
) -> np.ndarray:
    """Median frequency balancing's class weights (Eigen & Fergus, ICCV 2015, sec. 4.1, the loss SegNet trains
    with): `w_c = median(f) / f_c`, where `f_c` is class c's pixels divided by the pixels of the masks that hold
    class c at all, so a class is weighed by how much of an image it takes where it appears, not by how often it
    appears.

    Args:
        masks: unbatched or batched class-index masks (or examples whose second element is the mask).
        num_classes: the classes; labels at or above it other than `ignore_label` are an error.
        ignore_label: pixels not counted (255, as everywhere in kapps).

    Returns:
        float32 (num_classes,) weights; a class no mask holds gets weight 0.

    Raises:
        ValueError: a label that is neither a class nor the ignore label, or no labelled pixel at all.
    """
    pixels = np.zeros(num_classes, np.float64)  # class c's pixels
    present = np.zeros(num_classes, np.float64)  # labelled pixels of the masks holding class c
    for element in masks.as_numpy_iterator():
        batch = np.asarray(element[1] if isinstance(element, tuple) else element)
        batch = batch.reshape((-1, *batch.shape[-2:])) if batch.ndim > 2 else batch[None]
        for mask in batch:
            labelled = mask[mask != ignore_label].astype(np.int64)
            if labelled.size and (labelled.min() < 0 or labelled.max() >= num_classes):
                raise ValueError(
                    f"masks hold labels outside 0..{num_classes - 1} and {ignore_label}. Received: labels "
                    f"{labelled.min()}..{labelled.max()}"
                )
            counts = np.bincount(labelled, minlength=num_classes)
            pixels += counts
            present += np.where(counts > 0, labelled.size, 0)
    if not present.any():
        raise ValueError("masks hold no labelled pixel, so they have no class frequencies.")
    seen = present > 0
    frequency = np.where(seen, pixels / np.maximum(present, 1), 0.0)
    weights = np.where(seen, np.median(frequency[seen]) / np.maximum(frequency, 1e-12), 0.0)
    return weights.astype(np.float32)


def class_weighted(data: Data, weights: Sequence[float]) -> Data:
    """Class-balanced training data: each training example `(image, mask)` becomes `(image, mask, weights)`, each
    pixel weighted by its class's weight (the ignore label by 0). The weights travel as Keras's `sample_weight`,
    flipped and rescaled with the mask by `kapps.data.segmentation_augment`, as `border_weighted`'s do, so the
    per-pixel cross-entropy becomes the class-weighted one; validation and test are left as they are.

    Args:
        data: a `Data` of `(image, mask)` examples.
        weights: one non-negative weight a class (`median_frequency_weights` gives SegNet's).

    Raises:
        ValueError: a weight per class missing or negative.
    """
    weights = np.asarray(weights, np.float32)
    if weights.shape != (len(data.class_names),) or not np.all(weights >= 0) or not np.all(np.isfinite(weights)):
        raise ValueError(
            f"weights must be {len(data.class_names)} finite numbers of at least 0, one a class. Received: {weights!r}"
        )
    table = np.zeros(max(IGNORE_LABEL + 1, len(weights)), np.float32)  # every label up to the ignore label's 0
    table[: len(weights)] = weights
    table = tf.constant(table)

    def weigh(image, mask):
        return image, mask, tf.gather(table, tf.cast(mask, tf.int32))

    return dataclasses.replace(data, train=data.train.map(weigh, num_parallel_calls=tf.data.AUTOTUNE))
