"""The embedded `leaves` rosettes: determinism, labels that agree with the pixels, counts, splits and targets."""

from kapps.data.instances import load_instances
from kapps.data.leaves import LEAF_CLASSES, load_leaves, render_rosette

import numpy as np
import pytest


def rng(seed):
    return np.random.Generator(np.random.PCG64(seed))


def rosettes(count, seed=0, **options):
    generator = rng(seed)
    return [render_rosette(generator, **options) for _ in range(count)]


def test_one_seed_gives_one_image_and_another_seed_another():
    first, again, other = render_rosette(rng(5)), render_rosette(rng(5)), render_rosette(rng(6))
    assert set(first) == {"image", "labels", "count", "layers"}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])


def test_arrays_have_the_documented_shapes_and_types():
    scene = render_rosette(rng(0), image_size=(96, 128))
    n = int(scene["count"])
    assert scene["image"].shape == (96, 128, 3) and scene["image"].dtype == np.uint8
    assert scene["labels"].shape == (96, 128) and scene["labels"].dtype == np.int32
    assert scene["count"].dtype == np.int32 and scene["layers"].shape == (n,) and scene["layers"].dtype == np.int32


def test_labels_are_one_to_count_each_seen_and_numbered_by_the_pixels_they_show():
    for scene in rosettes(30, seed=1):
        labels, n = scene["labels"], int(scene["count"])
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        assert labels.min() == 0 and labels.max() == n and len(areas) == n + 1
        assert np.all(areas[1:] >= 16)  # 0.1% of 128 x 128: no leaf is a sliver
        assert np.all(np.diff(areas[1:]) <= 0)  # label 1 shows the most pixels
        assert sorted(scene["layers"]) == list(range(n))


def test_the_image_changes_where_the_labels_change():
    """Leaf outlines are in the pixels: across a label boundary (leaf to background or leaf to leaf) neighbouring
    pixels differ at least twice as much as two neighbours inside one leaf, and leaf-to-leaf boundaries alone,
    over all images, by a third more."""
    within, leaf_to_leaf = [], []
    for scene in rosettes(8, seed=2):
        image, labels = scene["image"].astype(np.float64), scene["labels"]
        step = np.abs(np.diff(image, axis=1)).sum(-1)
        a, b = labels[:, 1:], labels[:, :-1]
        assert step[a != b].mean() > 2 * step[(a == b) & (a > 0)].mean()
        within.append(step[(a == b) & (a > 0)])
        leaf_to_leaf.append(step[(a != b) & (a > 0) & (b > 0)])
    assert np.concatenate(leaf_to_leaf).mean() > 1.33 * np.concatenate(within).mean()


def test_leaves_are_leaf_coloured_against_their_own_background():
    """The pixels under the labels are greener (or redder, for a reddish plant) than a plain background: their mean
    colour is far from the background's mean colour."""
    for scene in rosettes(8, seed=3):
        image, leaf = scene["image"].astype(np.float64), scene["labels"] > 0
        assert np.linalg.norm(image[leaf].mean(0) - image[~leaf].mean(0)) > 20


def test_the_counts_cover_one_to_twenty_and_follow_the_range_asked_for():
    counts = [int(scene["count"]) for scene in rosettes(120, seed=4)]
    assert set(counts) == set(range(1, 21))
    exact = [int(scene["count"]) for scene in rosettes(10, seed=5, leaves=(7, 7))]
    assert exact == [7] * 10


def test_leaves_overlap_one_another_in_a_rosette():
    """Rosettes of 8 to 12 leaves have leaves meeting leaves: many neighbouring pixel pairs hold two different
    leaves, where one leaf hides part of another."""
    for scene in rosettes(10, seed=6, leaves=(8, 12)):
        labels = scene["labels"]
        a, b = labels[:, 1:], labels[:, :-1]
        assert np.count_nonzero((a != b) & (a > 0) & (b > 0)) >= 20


def test_splits_are_independent_of_the_sizes_of_the_others():
    small = load_leaves(image_size=(64, 64), seed=3, sizes=(3, 2, 4))
    large = load_leaves(image_size=(64, 64), seed=3, sizes=(5, 1, 6))
    for name, k in (("train", 3), ("val", 1), ("test", 4)):
        for (a, ta), (b, tb) in zip(getattr(small, name).take(k), getattr(large, name).take(k), strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            np.testing.assert_array_equal(ta["labels"].numpy(), tb["labels"].numpy())
    first_train = next(iter(small.train))[0].numpy()
    first_test = next(iter(small.test))[0].numpy()
    assert not np.array_equal(first_train, first_test)
    assert small.sizes == {"train": 3, "val": 2, "test": 4} and small.class_names == list(LEAF_CLASSES)


def test_examples_carry_labels_masks_in_label_order_and_the_count():
    data = load_instances("leaves", image_size=(64, 80), seed=0, sizes=(6, 0, 0), max_leaves=24)
    assert data.input_shape == (64, 80, 3)
    for image, targets in data.train:
        labels, masks, count = targets["labels"].numpy(), targets["masks"].numpy(), int(targets["count"])
        assert image.dtype == "float32" and image.shape == (64, 80, 3)
        assert float(image.numpy().min()) >= 0.0 and float(image.numpy().max()) <= 1.0
        assert labels.dtype == np.int32 and masks.dtype == np.uint8 and masks.shape == (24, 64, 80)
        assert count == labels.max() >= 1
        for k in range(24):
            np.testing.assert_array_equal(masks[k], (labels == k + 1).astype(np.uint8))
        assert masks[:count].sum(axis=(1, 2)).min() > 0 and masks[count:].sum() == 0


def test_the_default_mask_rows_are_the_most_leaves_asked_for():
    data = load_leaves(image_size=(64, 64), sizes=(1, 0, 0), leaves=(2, 5))
    _, targets = next(iter(data.train))
    assert targets["masks"].shape == (5, 64, 64) and 2 <= int(targets["count"]) <= 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": (16, 64)}, "image_size"),
        ({"leaves": (0, 5)}, "leaves"),
        ({"leaves": (6, 5)}, "leaves"),
        ({"leaves": (1, 20), "max_leaves": 10}, "max_leaves"),
        ({"seed": -1}, "seed"),
        ({"sizes": (1, 2)}, "sizes"),
    ],
)
def test_bad_arguments_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        load_leaves(**options)
