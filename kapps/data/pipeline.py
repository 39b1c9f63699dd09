"""The standard input pipeline: decode (done by the source) -> cache -> shuffle -> augment -> batch -> prefetch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kapps.data.base import unit_images
from kapps.preprocessing import check_convention, preprocess

import keras
import tensorflow as tf

EVAL_BATCH_SIZE = 256
# Sources of handwritten characters, which a mirror image would turn into other characters.
DIGIT_SOURCES = ("digits", "tfds:mnist", "tfds:emnist", "tfds:kmnist")


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
    preprocessing: str = "unit",
) -> tf.data.Dataset:
    """Batch a decoded split for training or evaluation.

    In training the result is an endless stream of epochs, each shuffled with a seed made from `seed` and the
    epoch's number, so the order of batches depends only on the seed: not on how many iterators Keras or a
    tf.distribute strategy opens (MirroredStrategy opens one more than the default strategy). Pass the number of
    batches in an epoch, `steps_per_epoch(n, batch_size)`, to `fit`.

    Args:
        ds: unbatched `(image, label)` dataset, already decoded, its images float32 in [0, 1] or uint8 (kept 8-bit
            through the cache and the shuffle, a quarter of the memory, and scaled to [0, 1] a batch at a time);
            a third element (Keras's `sample_weight`) travels with them.
        batch_size: the global batch size (a tf.distribute strategy splits it between replicas).
        training: shuffle each epoch anew, augment, and repeat without end when true.
        augment: a batched `(images, labels) -> (images, labels)` function, applied only in training (given the
            sample weights too, when the examples have them).
        cache: keep decoded examples in memory after the first pass.
        shuffle_buffer: how many examples are shuffled together.
        seed: shuffle seed, so one seed gives one order of batches.
        drop_remainder: drop the last partial batch of each epoch.
        preprocessing: the model's input convention (`kapps.preprocessing.CONVENTIONS`), applied to the batches
            last, after augmentation, which works on [0, 1] images.

    Returns:
        A batched, prefetching `tf.data.Dataset`: endless in training, one pass otherwise.
    """
    eight_bit = tf.nest.flatten(ds.element_spec)[0].dtype == tf.uint8
    if cache:
        ds = ds.cache()
    if training:
        one_epoch = ds

        def epoch(number):
            shuffled = _stateless_shuffle(one_epoch, buffer=shuffle_buffer, seed=seed, epoch=number)
            return shuffled.batch(batch_size, drop_remainder=drop_remainder)

        # flat_map hides that the stream never ends; saying so lets Keras insist on steps_per_epoch.
        ds = (
            tf.data.Dataset.counter()
            .flat_map(epoch)
            .apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        )
        if eight_bit:
            ds = ds.map(_unit, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if augment is not None:
            # Whole batches, to vectorise the random transforms; one call at a time, because the transforms draw
            # from a seed generator whose state parallel calls would advance in an unpredictable order.
            ds = ds.map(augment)
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        if eight_bit:
            ds = ds.map(_unit, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if check_convention(preprocessing) != "unit":
        ds = ds.map(lambda images, *targets: (preprocess(images, preprocessing), *targets))
    return ds.prefetch(tf.data.AUTOTUNE)


@dataclass(frozen=True)
class Splits:
    """The three batched pipelines of a run: an endless, shuffled, augmented `train` stream and one pass of `val` and
    `test`, every split in the model's input convention."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset


def _unit(images, *targets):
    """A batch of 8-bit images (and its targets) with the images scaled to [0, 1] float32."""
    return (unit_images(images), *targets)


def splits(
    data,
    *,
    batch_size: int,
    seed: int,
    augment: Callable | None = None,
    preprocessing: str = "unit",
    eval_batch_size: int = EVAL_BATCH_SIZE,
) -> Splits:
    """Batch the three splits of `data` (a `kapps.data.Data`) with `pipeline`: training with `augment` and the
    per-epoch shuffle of `seed`, validation and test in batches of `eval_batch_size`."""
    return Splits(
        train=pipeline(
            data.train, batch_size=batch_size, training=True, augment=augment, seed=seed, preprocessing=preprocessing
        ),
        val=pipeline(data.val, batch_size=eval_batch_size, training=False, preprocessing=preprocessing),
        test=pipeline(data.test, batch_size=eval_batch_size, training=False, preprocessing=preprocessing),
    )


def default_augment(spec: str, *, image_size: int, seed: int) -> Callable:
    """The augmentation of a classification source: small shifts, turns and zooms for the `DIGIT_SOURCES` (no
    flips: a mirrored 2 is no digit), the CIFAR pad-crop-flip (padding an eighth of `image_size`) for every other
    source."""
    if spec in DIGIT_SOURCES:
        return digit_augment(seed=seed)
    return cifar_augment(pad=max(1, image_size // 8), size=image_size, seed=seed)


def _stateless_shuffle(ds: tf.data.Dataset, *, buffer: int, seed: int, epoch) -> tf.data.Dataset:
    """Shuffle one epoch as windows of `buffer` examples, each permuted by a stateless draw keyed on
    (seed, epoch, window): the same order from every iterator, unlike `Dataset.shuffle`, whose reshuffling
    advances with each iterator opened. A split no larger than `buffer` gets a full permutation."""

    def permute(window, examples):
        count = tf.shape(tf.nest.flatten(examples)[0])[0]
        key = tf.stack([tf.cast(epoch, tf.int64) * 1_000_003 + window, tf.constant(seed, tf.int64)])
        order = tf.argsort(tf.random.stateless_uniform([count], seed=key))
        return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda t: tf.gather(t, order), examples))

    return ds.batch(buffer).enumerate().flat_map(permute)


def steps_per_epoch(examples: int, batch_size: int, *, drop_remainder: bool = False) -> int:
    """Batches in one epoch of `examples` at `batch_size`: the `steps_per_epoch` of a training stream."""
    return examples // batch_size if drop_remainder else -(-examples // batch_size)


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


def cifar_augment(*, pad: int = 4, size: int = 32, seed: int = 0) -> Callable:
    """The standard CIFAR augmentation of He et al. (2016): pad by `pad` pixels, crop back at random, flip.

    A random whole-pixel translation of up to `pad` pixels with zero fill is the same as padding and cropping,
    and is drawn per image.

    Args:
        pad: padding on each side, in pixels.
        size: the image side the padding is relative to.
        seed: seed of the random transforms.

    Returns:
        A function mapping a batch `(images, labels)` to augmented images and the same labels.
    """
    shift = pad / size
    layers = keras.Sequential(
        [
            keras.layers.RandomTranslation(shift, shift, fill_mode="constant", interpolation="nearest", seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed + 1),
        ],
        name="cifar_augment",
    )

    def augment(images, labels):
        return layers(images, training=True), labels

    return augment
