"""`folder:PATH` sources in both layouts, channel conversion and the CIFAR augmentation."""

import kapps.data
from kapps.data.base import as_arrays
from kapps.errors import DataError

import numpy as np
import pytest
from PIL import Image


def write_images(root, classes, per_class, size=(20, 30)):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 50, (*size, 3), dtype=np.uint8)
            pixels[..., index % 3] += 200  # each class its own colour
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_one_folder_is_split_stratified(tmp_path):
    write_images(tmp_path, ["cat", "dog"], 20)
    data = kapps.data.load(f"folder:{tmp_path}", image_size=(16, 16), seed=0)
    assert data.class_names == ["cat", "dog"]
    assert data.sizes == {"train": 28, "val": 4, "test": 8}
    images, labels = as_arrays(data.test)
    assert images.shape == (8, 16, 16, 3) and images.min() >= 0.0 and images.max() <= 1.0
    assert np.bincount(labels).tolist() == [4, 4]
    # The red class is red: the resize kept the images' content.
    assert images[labels == 0][..., 0].mean() > images[labels == 0][..., 1].mean() + 0.4


def test_train_test_layout(tmp_path):
    write_images(tmp_path / "train", ["a", "b", "c"], 10)
    write_images(tmp_path / "test", ["a", "b", "c"], 3)
    data = kapps.data.load(f"folder:{tmp_path}", image_size=(8, 8), channels=1)
    assert data.sizes == {"train": 27, "val": 3, "test": 9}
    assert data.input_shape == (8, 8, 1)
    assert as_arrays(data.train)[0].shape == (27, 8, 8, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "does not exist or is not a folder"),
        (lambda root: root.mkdir(), "has no class subfolders"),
        (lambda root: (root / "cls").mkdir(parents=True), "has no images"),
    ],
)
def test_folder_errors(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message):
        kapps.data.load(f"folder:{root}")


def test_digits_as_rgb():
    data = kapps.data.load("digits", channels=3)
    images, _ = as_arrays(data.train, 4)
    assert images.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_cifar_augment_shifts_whole_pixels_and_flips():
    image = np.zeros((1, 32, 32, 3), "float32")
    image[0, 10, 12] = 1.0
    batch = np.repeat(image, 64, axis=0)
    out, _ = kapps.data.cifar_augment(seed=3)(batch, np.zeros(64))
    out = np.asarray(out)
    assert set(np.unique(out)) <= {0.0, 1.0}  # nearest-neighbour: no blurred pixels
    rows, cols = np.nonzero(out[..., 0].reshape(64, 32, 32).max(axis=0))
    assert rows.min() >= 10 - 4 and rows.max() <= 10 + 4
    flipped_col = 31 - 12
    assert cols.max() >= flipped_col - 4  # some images were mirrored
    assert out.sum(axis=(1, 2, 3)).min() >= 0 and len({tuple(np.argwhere(o[..., 0])[0]) for o in out if o.any()}) > 5
