"""Sequence data: the adding problem's markers, targets and seeds, and digit images read row by row."""

import kapps.data
from kapps.data.base import as_arrays

import numpy as np
import pytest
import tensorflow_datasets as tfds


def test_adding_problem_shapes_and_channels():
    inputs, targets = kapps.data.adding_problem(length=20, count=500, seed=0)
    assert inputs.shape == (500, 20, 2) and inputs.dtype == np.float32
    assert targets.shape == (500, 1) and targets.dtype == np.float32
    values, markers = inputs[..., 0], inputs[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=1), np.full(500, 2.0))


def test_adding_problem_markers_one_in_each_half():
    length = 21  # odd: the first half is steps 0..9, the second 10..20
    inputs, _ = kapps.data.adding_problem(length=length, count=2000, seed=1)
    positions = np.argwhere(inputs[..., 1] == 1.0)  # (count * 2, 2): (sequence, step), sorted by sequence then step
    first, second = positions[0::2, 1], positions[1::2, 1]
    np.testing.assert_array_equal(positions[0::2, 0], np.arange(2000))
    assert first.min() == 0 and first.max() == 9
    assert second.min() == 10 and second.max() == 20
    # uniform within each half: each of the 10 first-half steps holds about a tenth (200 +- 4 standard deviations)
    assert np.all(np.abs(np.bincount(first, minlength=10) - 200) < 4 * np.sqrt(2000 * 0.1 * 0.9))


def test_adding_problem_target_is_the_sum_of_the_marked_values():
    inputs, targets = kapps.data.adding_problem(length=50, count=300, seed=2)
    for sequence, target in zip(inputs, targets, strict=True):
        marked = sequence[sequence[:, 1] == 1.0, 0]
        assert marked.shape == (2,)
        assert target[0] == pytest.approx(marked[0] + marked[1], abs=1e-6)


def test_adding_problem_baseline_error_is_one_sixth():
    # Answering 1, the mean target, errs by the variance of a sum of two uniform values: 2 / 12.
    _, targets = kapps.data.adding_problem(length=10, count=50_000, seed=3)
    assert np.mean(targets) == pytest.approx(1.0, abs=0.01)
    assert np.mean((targets - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.005)


def test_adding_problem_is_fixed_by_its_seed():
    a_inputs, a_targets = kapps.data.adding_problem(length=30, count=64, seed=7)
    b_inputs, b_targets = kapps.data.adding_problem(length=30, count=64, seed=7)
    np.testing.assert_array_equal(a_inputs, b_inputs)
    np.testing.assert_array_equal(a_targets, b_targets)
    c_inputs, _ = kapps.data.adding_problem(length=30, count=64, seed=8)
    assert not np.array_equal(a_inputs[..., 0], c_inputs[..., 0])
    assert not np.array_equal(a_inputs[..., 1], c_inputs[..., 1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 1, "count": 4}, "length must be an integer of at least 2"),
        ({"length": 10.0, "count": 4}, "length must be"),
        ({"length": 10, "count": 0}, "count must be a positive integer"),
    ],
)
def test_adding_problem_refuses_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.data.adding_problem(seed=0, **kwargs)


def test_digit_rows_are_the_images_rows():
    rows = kapps.data.digit_rows("digits", seed=0)
    images = kapps.data.load("digits", image_size=(32, 32), seed=0)
    assert rows.input_shape == (32, 32) and rows.sizes == images.sizes
    assert rows.class_names == images.class_names
    sequences, labels = as_arrays(rows.test, 50)
    pictures, picture_labels = as_arrays(images.test, 50)
    assert sequences.shape == (50, 32, 32) and sequences.dtype == np.float32
    np.testing.assert_array_equal(labels, picture_labels)
    np.testing.assert_array_equal(sequences, pictures[..., 0])  # step t is row t, top to bottom


def test_mnist_rows_are_28_steps_of_28_pixels():
    with tfds.testing.mock_data(num_examples=6):
        rows = kapps.data.digit_rows("tfds:mnist", image_size=(28, 28))
        sequences, _ = as_arrays(rows.train)
    assert rows.input_shape == (28, 28)
    assert sequences.shape == (6, 28, 28)


def test_colour_rows_hold_every_channel_of_a_pixel_side_by_side():
    with tfds.testing.mock_data(num_examples=4):
        rows = kapps.data.digit_rows("tfds:cifar10", image_size=(32, 32))
        images = kapps.data.load("tfds:cifar10", image_size=(32, 32))
        sequences, _ = as_arrays(rows.train)
        pictures, _ = as_arrays(images.train)
    assert rows.input_shape == (32, 96)
    np.testing.assert_array_equal(sequences[:, 5, 3:6], pictures[:, 5, 1, :])  # pixel 1 of row 5: features 3, 4, 5


def test_adding_data_splits_have_their_own_seeds():
    """Each split is `adding_problem` of its own seed (3 seed + 0, 1, 2): the test split is found again from the seed
    and its size alone, whatever the training split's size, and no two splits share a sequence."""
    data = kapps.data.adding_data(length=12, sizes=(40, 8, 16), seed=2)
    assert data.spec == "adding" and data.input_shape == (12, 2) and data.class_names == []
    assert data.sizes == {"train": 40, "val": 8, "test": 16}
    for split, k, count in (("train", 0, 40), ("val", 1, 8), ("test", 2, 16)):
        inputs, targets = as_arrays(getattr(data, split))
        expected_inputs, expected_targets = kapps.data.adding_problem(length=12, count=count, seed=6 + k)
        np.testing.assert_array_equal(inputs, expected_inputs)
        np.testing.assert_array_equal(targets, expected_targets)
    other = kapps.data.adding_data(length=12, sizes=(5, 8, 16), seed=2)
    np.testing.assert_array_equal(as_arrays(other.test)[0], as_arrays(data.test)[0])
    train, test = as_arrays(data.train)[0], as_arrays(data.test)[0]
    assert not np.isin(test[:, :, 0], train[:, :, 0]).all(axis=1).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sizes": (10, 0, 5)}, "sizes must hold at least one sequence a split"),
        ({"sizes": (10, 5)}, "sizes must be three non-negative integers"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"length": 1}, "length must be an integer of at least 2"),
    ],
)
def test_adding_data_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.data.adding_data(**{"length": 10, **kwargs})
