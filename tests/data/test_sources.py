"""Data sources and the pipeline: the digits split, tfds through mock data, errors."""

import kapps.data
from kapps.data.base import as_arrays
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds


def test_digits_split_is_stratified_fixed_and_disjoint():
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    assert data.sizes == {"train": 1257, "val": 180, "test": 360}
    assert sum(data.sizes.values()) == 1797
    assert data.input_shape == (32, 32, 1) and data.num_classes == 10
    train_x, train_y = as_arrays(data.train)
    test_x, test_y = as_arrays(data.test)
    assert train_x.shape == (1257, 32, 32, 1) and train_x.dtype == np.float32
    assert train_x.min() >= 0.0 and train_x.max() <= 1.0
    # Stratified: every class is 10% of the test split to within one image either way.
    assert np.all(np.abs(np.bincount(test_y, minlength=10) - 36) <= 1)
    # Disjoint: no test image appears in training.
    train_keys = {x.tobytes() for x in train_x}
    assert not any(x.tobytes() in train_keys for x in test_x)
    # The same seed gives the same split; another seed another one.
    again_x, _ = as_arrays(kapps.data.load("digits", seed=0).test)
    np.testing.assert_array_equal(test_x, again_x)
    other_x, _ = as_arrays(kapps.data.load("digits", seed=1).test)
    assert not np.array_equal(test_x, other_x)


def test_digits_are_centred_with_a_margin():
    images, _ = as_arrays(kapps.data.load("digits").train, 200)
    assert images[:, :4].max() == 0 and images[:, -4:].max() == 0
    assert images[:, 4:28, 4:28].max() > 0.9


def test_tfds_mnist_is_padded_to_32(tmp_path):
    with tfds.testing.mock_data(num_examples=20):
        data = kapps.data.load("tfds:mnist", image_size=(32, 32))
        images, labels = as_arrays(data.train)
    assert data.input_shape == (32, 32, 1)
    assert data.class_names == [str(i) for i in range(10)]
    assert images.shape[1:] == (32, 32, 1) and images.dtype == np.float32
    assert images.max() <= 1.0 and labels.dtype == np.int32
    # The 28x28 image sits in the middle: the two-pixel border is padding.
    assert images[:, :2].max() == 0 and images[:, -2:].max() == 0


@pytest.mark.parametrize("spec", ["digitz", "tfds:", "folder:/nowhere", ""])
def test_unknown_sources_are_one_sentence(spec):
    with pytest.raises(DataError, match="source"):
        kapps.data.load(spec)


def test_missing_tfds_dataset_offline(tmp_path):
    with pytest.raises(DataError, match="tensorflow-datasets could not load 'no_such_dataset_xyz'"):
        kapps.data.load("tfds:no_such_dataset_xyz", data_dir=str(tmp_path))


def test_pipeline_batches_shuffles_and_augments_deterministically():
    data = kapps.data.load("digits")

    def first_batch(seed):
        ds = kapps.data.pipeline(
            data.train, batch_size=16, training=True, seed=seed, augment=kapps.data.digit_augment(seed=seed)
        )
        return next(iter(ds))

    x1, y1 = first_batch(0)
    x2, y2 = first_batch(0)
    assert x1.shape == (16, 32, 32, 1)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x1, x2)
    plain = kapps.data.pipeline(data.train, batch_size=16, training=False)
    xs, ys = next(iter(plain))
    np.testing.assert_array_equal(ys, as_arrays(data.train, 16)[1])
    assert isinstance(plain, tf.data.Dataset)
