"""The standard input pipeline: decode (done by the source) -> cache -> shuffle -> augment -> batch -> prefetch."""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf


def pipeline(
    ds: tf.data.Dataset,
    *,
    batch_size: int,
    training: bool,
    augment: Callable | None = None,
    cache: bool = True,
    shuffle_buffer: int = 10_000,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batch a decoded split for training or evaluation.

    Args:
        ds: unbatched `(image, label)` dataset, already decoded.
        batch_size: the global batch size (a tf.distribute strategy splits it between replicas).
        training: shuffle (reshuffled each epoch) and augment when true.
        augment: a batched `(images, labels) -> (images, labels)` function, applied only in training.
        cache: keep decoded examples in memory after the first pass.
        shuffle_buffer: shuffle buffer size.
        seed: shuffle seed, so one seed gives one order of batches.
        drop_remainder: drop the last partial batch.

    Returns:
        A batched, prefetching `tf.data.Dataset`.
    """
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if training and augment is not None:
        # Augmenting whole batches vectorises the random transforms.
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def digit_augment(*, shift: float = 0.08, rotation: float = 0.03, zoom: float = 0.1, seed: int = 0) -> Callable:
    """Small random shifts, rotations and zooms, the distortions LeCun et al. (1998) used on MNIST.

    Args:
        shift: largest shift as a fraction of the image side.
        rotation: largest rotation as a fraction of a full turn.
        zoom: largest zoom in or out as a fraction.
        seed: seed of the random transforms.

    Returns:
        A function mapping a batch `(images, labels)` to distorted images and the same labels.
    """
    layers = keras.Sequential(
        [
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed),
            keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
        ],
        name="digit_augment",
    )

    def augment(images, labels):
        return layers(images, training=True), labels

    return augment
