"""Segmentation augmentation: flips and scale-crops move a mask (and its per-pixel weights) with its image, keep
its class indices and fill the padding with the ignore label."""

from kapps.data import IGNORE_LABEL, segmentation_augment

import numpy as np
import pytest
from scipy import ndimage

COLOURS = np.array([[0.2, 0.2, 0.2], [0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.9]], np.float32)


def scene() -> tuple[np.ndarray, np.ndarray]:
    """A 24x32 mask of four rectangles (classes 0..3) and an image painting each class its colour."""
    mask = np.zeros((24, 32), np.int32)
    mask[3:12, 2:10] = 1
    mask[14:22, 4:20] = 2
    mask[2:10, 20:30] = 3
    return COLOURS[mask], mask


def batch(n: int = 8):
    image, mask = scene()
    return np.repeat(image[None], n, 0), np.repeat(mask[None], n, 0)


def test_flips_mirror_image_and_mask_together():
    images, masks = batch()
    out_images, out_masks = segmentation_augment(image_size=(24, 32), seed=0, scale=None)(images, masks)
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    flipped = [bool(np.array_equal(m, masks[0][:, ::-1])) for m in out_masks]
    kept = [bool(np.array_equal(m, masks[0])) for m in out_masks]
    assert all(f != k for f, k in zip(flipped, kept, strict=True)) and 0 < sum(flipped) < len(flipped)
    for image, mask, mirrored in zip(out_images, out_masks, flipped, strict=True):
        np.testing.assert_allclose(image, images[0][:, ::-1] if mirrored else images[0], atol=1e-6)
        np.testing.assert_array_equal(COLOURS[mask], image)  # the image is still its mask painted
    assert out_masks.dtype == np.int32


@pytest.mark.parametrize("image_size", [(24, 32), (20, 20)])
def test_scale_crops_keep_each_region_under_its_colour(image_size):
    images, masks = batch(12)
    augment = segmentation_augment(image_size=image_size, seed=4, scale=(0.6, 1.6))
    out_images, out_masks = (t.numpy() for t in augment(images, masks))
    assert out_images.shape == (12, *image_size, 3) and out_masks.shape == (12, *image_size)
    padded = checked = 0
    for image, mask in zip(out_images, out_masks, strict=True):
        assert set(np.unique(mask)) <= {0, 1, 2, 3, IGNORE_LABEL}
        assert not np.array_equal(mask, masks[0][: image_size[0], : image_size[1]])  # rescaled, not just cut
        # the bilinear image and the nearest-neighbour mask were sampled at the same points: the padding is the
        # same pixels in both, and pixels deep inside a rectangle (their 3x3 neighbourhood all one label; the
        # bilinear footprint of a sample lies between its neighbours' samples) have exactly its colour
        np.testing.assert_array_equal(image.max(-1) == 0, mask == IGNORE_LABEL)
        for value in (1, 2, 3):
            inside = ndimage.binary_erosion(mask == value, structure=np.ones((3, 3)))
            np.testing.assert_allclose(image[inside], np.broadcast_to(COLOURS[value], image[inside].shape), atol=1e-5)
            checked += inside.sum()
        padded += np.any(mask == IGNORE_LABEL)
    assert 0 < padded < len(out_masks)
    assert checked > 12 * 40  # shrunk images leave padding, enlarged ones do not


@pytest.mark.parametrize("image_size", [(24, 32), (18, 20)])
def test_weights_are_sampled_at_the_masks_points(image_size):
    """Each weight names its source pixel (1 + row x 32 + column): after flips and scale-crops every output pixel's
    weight points at an input pixel holding its mask label, and the weights are 0 exactly on the padding."""
    images, masks = batch(12)
    source = (1 + np.arange(24 * 32, dtype=np.float32)).reshape(24, 32)
    weights = np.repeat(source[None], 12, 0)
    augment = segmentation_augment(image_size=image_size, seed=3, scale=(0.6, 1.6))
    out_images, out_masks, out_weights = (t.numpy() for t in augment(images, masks, weights))
    assert out_weights.dtype == np.float32 and out_weights.shape == (12, *image_size)
    # the same draws with or without weights: the images and masks are those of the two-element call
    again = segmentation_augment(image_size=image_size, seed=3, scale=(0.6, 1.6))(images, masks)
    np.testing.assert_array_equal(again[1].numpy(), out_masks)
    np.testing.assert_allclose(again[0].numpy(), out_images, atol=1e-6)
    mirrored = 0
    for mask, weight in zip(out_masks, out_weights, strict=True):
        np.testing.assert_array_equal(weight == 0, mask == IGNORE_LABEL)
        rows, cols = np.divmod(weight[weight > 0].astype(np.int64) - 1, 32)
        np.testing.assert_array_equal(masks[0][rows, cols], mask[weight > 0])
        middle = weight[len(weight) // 2]
        mirrored += bool(middle[middle > 0][0] > middle[middle > 0][-1])  # the row runs right to left
    assert 0 < mirrored < 12  # some images were flipped (their weights run right to left), some not


def test_the_seed_fixes_the_draws():
    images, masks = batch()
    first = segmentation_augment(image_size=(16, 16), seed=1)(images, masks)[1].numpy()
    again = segmentation_augment(image_size=(16, 16), seed=1)(images, masks)[1].numpy()
    other = segmentation_augment(image_size=(16, 16), seed=2)(images, masks)[1].numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_without_flip_or_scale_it_is_a_resize():
    images, masks = batch(2)
    out_images, out_masks = segmentation_augment(image_size=(24, 32), flip=False, scale=None)(images, masks)
    np.testing.assert_allclose(out_images, images, atol=1e-6)
    np.testing.assert_array_equal(out_masks, masks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": (1, 8)}, "image_size must be"),
        ({"image_size": 32}, "image_size must be"),
        ({"image_size": (8, 8), "scale": (1.2, 0.8)}, "scale must be None or"),
        ({"image_size": (8, 8), "flip": "yes"}, "flip must be True or False"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        segmentation_augment(**kwargs)


def test_it_augments_a_segmentation_source_in_the_pipeline():
    from kapps.data import load_segmentation, pipeline

    data = load_segmentation("shapes", image_size=(32, 32), sizes=(8, 1, 1))
    augment = segmentation_augment(image_size=(24, 24), seed=0, scale=(0.5, 0.9))
    images, masks = next(iter(pipeline(data.train, batch_size=4, training=True, augment=augment)))
    assert images.shape == (4, 24, 24, 3) and masks.shape == (4, 24, 24) and masks.dtype == np.int32
    assert set(np.unique(masks)) <= {0, 1, 2, 3, 4, IGNORE_LABEL} and np.any(masks.numpy() == IGNORE_LABEL)
