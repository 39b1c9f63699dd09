"""Class subsets: relabelling, a stratified and seeded per-class budget, sizes, and bad requests."""

import kapps.data
from kapps.data.base import as_arrays
from kapps.data.subsets import subset_classes
from kapps.errors import DataError

import numpy as np
import pytest


@pytest.fixture(scope="module")
def digits():
    return kapps.data.load("digits", image_size=(16, 16), seed=0)


def test_classes_are_relabelled_in_the_order_given(digits):
    subset = subset_classes(digits, [7, 5, 9])
    assert subset.class_names == ["7", "5", "9"] and subset.num_classes == 3
    _, all_labels = as_arrays(digits.test)
    images, labels = as_arrays(subset.test)
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert subset.sizes["test"] == len(labels) == int(np.isin(all_labels, [7, 5, 9]).sum())
    assert [int((labels == k).sum()) for k in range(3)] == [int((all_labels == c).sum()) for c in (7, 5, 9)]
    for split in ("train", "val"):
        assert subset.sizes[split] == len(as_arrays(getattr(subset, split))[1])
    for split in ("train", "val", "test"):  # stated, so Keras knows where an evaluation ends
        assert int(getattr(subset, split).cardinality()) == subset.sizes[split]
    assert images.shape[1:] == digits.input_shape and subset.input_shape == digits.input_shape
    assert subset_classes(digits, ["5", "6"]).class_names == ["5", "6"]


def test_per_class_is_stratified_and_seeded(digits):
    subset = subset_classes(digits, [5, 6, 7, 8, 9], per_class=20, seed=1)
    images, labels = as_arrays(subset.train)
    assert subset.sizes["train"] == len(labels) == 100
    assert np.bincount(labels).tolist() == [20] * 5
    again, _ = as_arrays(subset_classes(digits, [5, 6, 7, 8, 9], per_class=20, seed=1).train)
    other, _ = as_arrays(subset_classes(digits, [5, 6, 7, 8, 9], per_class=20, seed=2).train)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    # validation and test keep all their images of the chosen classes
    assert subset.sizes["val"] == subset_classes(digits, [5, 6, 7, 8, 9]).sizes["val"]


@pytest.mark.parametrize(
    ("classes", "per_class", "message"),
    [
        ([3, 10], None, "'digits' has no class 10; it has classes 0..9."),
        ([3, 3], None, "The classes of a subset must differ; got [3, 3]."),
        ([], None, "A class subset needs at least one class."),
        ([1], 0, "per_class must be a positive whole number, not 0."),
        ([1], 1000, "Class '1' has only "),
    ],
)
def test_bad_subsets_are_one_sentence(digits, classes, per_class, message):
    with pytest.raises(DataError) as err:
        subset_classes(digits, classes, per_class=per_class)
    assert str(err.value).startswith(message)
