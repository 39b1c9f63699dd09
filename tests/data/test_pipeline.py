"""The recipe skeleton's data side: three batched splits in the model's input convention, and the default
augmentation of a source."""

import kapps.data
import kapps.train
from kapps.data.base import unit_images
from kapps.preprocessing import CAFFE_MEAN_BGR

import numpy as np
import tensorflow as tf


def _first_images(ds):
    return next(iter(ds))[0].numpy()


def test_splits_batch_and_convert_every_split():
    data = kapps.data.load("digits", image_size=(16, 16), seed=0, channels=3)
    plain = kapps.data.splits(data, batch_size=8, seed=0)
    caffe = kapps.data.splits(data, batch_size=8, seed=0, preprocessing="caffe", eval_batch_size=5)
    assert _first_images(plain.train).shape == (8, 16, 16, 3) and _first_images(caffe.val).shape == (5, 16, 16, 3)
    for split in ("train", "val", "test"):
        converted = _first_images(getattr(caffe, split))
        images = _first_images(getattr(plain, split))[: len(converted)]
        assert images.min() >= 0.0 and images.max() <= 1.0
        # caffe: x 255, RGB -> BGR, minus the BGR mean; the training stream is the same (seeded) first batch
        np.testing.assert_allclose(converted, images[..., ::-1] * 255 - np.float32(CAFFE_MEAN_BGR), atol=1e-3)


def test_default_augmentation_never_mirrors_digits():
    digits = kapps.data.default_augment("digits", image_size=32, seed=0)
    mnist = kapps.data.default_augment("tfds:mnist", image_size=32, seed=0)
    cifar = kapps.data.default_augment("tfds:cifar10", image_size=32, seed=0)
    names = {
        label: [layer.name for layer in fn.__closure__[0].cell_contents.layers]
        for label, fn in (("digits", digits), ("mnist", mnist), ("cifar", cifar))
    }
    assert not any("flip" in n for n in names["digits"] + names["mnist"])
    assert any("flip" in n for n in names["cifar"])


def test_run_config_comes_from_the_registry():
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    config = kapps.train.run_config("resnet50", kwargs={"weights": "imagenet", "num_classes": 10}, data=data)
    assert config["task"] == "classification" and config["preprocessing"] == "caffe"
    assert config["model"] == {"name": "resnet50", "kwargs": {"weights": "imagenet", "num_classes": 10}}
    assert config["data"]["spec"] == "digits"
    assert kapps.train.run_config("yolo_v1", kwargs={}, data=data, phase="x")["task"] == "detection"
    assert kapps.train.run_config("lenet5", kwargs={}, data=data)["preprocessing"] == "unit"


def test_eight_bit_images_are_kept_until_batched_then_scaled_exactly():
    """A source may keep its images uint8 (the point sources do, a quarter of the memory in the cache and the
    shuffle): every batch of the pipeline, training or not, holds them as float32 image / 255, in the same order as
    the float32 copy of the same source would give, and a float source passes unchanged."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(10, dtype=np.int32)
    eight_bit = tf.data.Dataset.from_tensor_slices((images, labels))
    scaled = tf.data.Dataset.from_tensor_slices((images.astype(np.float32) / np.float32(255), labels))
    for training in (True, False):
        got = kapps.data.pipeline(eight_bit, batch_size=4, training=training, seed=3)
        expected = kapps.data.pipeline(scaled, batch_size=4, training=training, seed=3)
        for (x, y), (ex, ey) in zip(got.take(3), expected.take(3), strict=True):
            assert x.dtype == tf.float32
            np.testing.assert_array_equal(x.numpy(), ex.numpy())
            np.testing.assert_array_equal(y.numpy(), ey.numpy())
    assert kapps.data.pipeline(scaled, batch_size=4, training=False).element_spec[0].dtype == tf.float32
    # NumPy and TensorFlow scale alike (an export reads its images through NumPy, training through tf.data)
    assert unit_images(images).dtype == np.float32
    np.testing.assert_array_equal(unit_images(images), unit_images(tf.constant(images)).numpy())
