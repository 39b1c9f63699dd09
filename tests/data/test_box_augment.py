"""Box-aware augmentation: exact mirrored boxes, boxes that still bound their pixels after scale jitter, padding."""

import kapps.data
from kapps.data.box_augment import detection_augment, flip_augment
from kapps.data.scenes import load_shapes

import numpy as np
import pytest
import tensorflow as tf


def batch_of(image, boxes, classes, copies):
    images = np.repeat(image[None], copies, axis=0).astype(np.float32)
    targets = {
        "boxes": np.repeat(np.asarray(boxes, np.float32)[None], copies, axis=0),
        "classes": np.repeat(np.asarray(classes, np.int32)[None], copies, axis=0),
    }
    return tf.constant(images), {k: tf.constant(v) for k, v in targets.items()}


def pixel_box(mask):
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float64)


def test_flip_mirrors_a_hand_made_box_exactly_and_keeps_padding():
    image = np.zeros((32, 40, 3))
    image[4:10, 2:6] = 1.0  # an asymmetric mark that tells whether an image was flipped
    boxes = [[0.1, 0.2, 0.5, 0.6], [0, 0, 0, 0], [0, 0, 0, 0]]
    images, targets = batch_of(image, boxes, [3, -1, -1], copies=16)
    out_images, out = detection_augment(image_size=(32, 40), seed=1, scale=None)(images, targets)
    out_images, out_boxes, out_classes = out_images.numpy(), out["boxes"].numpy(), out["classes"].numpy()
    flipped = np.array([np.array_equal(im, image[:, ::-1]) for im in out_images])
    kept = np.array([np.array_equal(im, image) for im in out_images])
    assert np.all(flipped | kept) and flipped.any() and kept.any()
    np.testing.assert_allclose(out_boxes[flipped, 0], np.tile([0.5, 0.2, 0.9, 0.6], (flipped.sum(), 1)), atol=1e-6)
    np.testing.assert_allclose(out_boxes[kept, 0], np.tile([0.1, 0.2, 0.5, 0.6], (kept.sum(), 1)), atol=1e-6)
    assert np.all(out_classes == [3, -1, -1]) and not out_boxes[:, 1:].any()
    assert out_boxes.dtype == np.float32 and out_classes.dtype == np.int32


def test_scale_jitter_keeps_the_box_around_the_same_pixels():
    image = np.zeros((64, 64, 3))
    image[10:30, 20:50] = 1.0
    box = [20 / 64, 10 / 64, 50 / 64, 30 / 64]
    images, targets = batch_of(image, [box, [0, 0, 0, 0]], [1, -1], copies=12)
    out_images, out = detection_augment(image_size=(64, 64), seed=2, flip=False, scale=(0.75, 1.25))(images, targets)
    out_images, out_boxes = out_images.numpy(), out["boxes"].numpy()
    assert out_images.shape == (12, 64, 64, 3)
    assert np.all(out["classes"].numpy() == [1, -1]) and not out_boxes[:, 1].any()
    widths = []
    for picture, boxes in zip(out_images, out_boxes, strict=True):
        assert boxes.min() >= 0.0 and boxes.max() <= 1.0
        np.testing.assert_allclose(boxes[0] * 64, pixel_box(picture[..., 0] > 0.5), atol=1.5)
        widths.append(boxes[0, 2] - boxes[0, 0])
    assert min(widths) < 0.45 < max(widths)  # the 30-pixel-wide box (0.47) was both shrunk and grown


def test_boxes_cut_off_by_the_crop_become_padding_after_the_kept_ones():
    images, targets = batch_of(
        np.zeros((64, 64, 3)), [[0.0, 0.0, 0.05, 0.05], [0.4, 0.4, 0.6, 0.6], [0, 0, 0, 0]], [2, 0, -1], copies=16
    )
    _, out = detection_augment(image_size=(64, 64), seed=3, flip=False, scale=(2.0, 2.0))(images, targets)
    boxes, classes = out["boxes"].numpy(), out["classes"].numpy()
    gone = classes[:, 1] == -1
    assert gone.sum() >= 8  # the corner box survives only a crop that starts within 6 pixels of the corner
    np.testing.assert_array_equal(classes[gone], np.tile([0, -1, -1], (gone.sum(), 1)))
    np.testing.assert_array_equal(classes[~gone], np.tile([2, 0, -1], ((~gone).sum(), 1)))
    assert not boxes[gone][:, 1:].any() and not boxes[:, 2].any()
    widths = boxes[gone, 0, 2] - boxes[gone, 0, 0]
    assert np.all(widths * 64 >= 1.0) and boxes.min() >= 0.0 and boxes.max() <= 1.0


def test_runs_in_the_training_pipeline_and_flips_masks_with_their_boxes():
    data = load_shapes(image_size=(48, 48), seed=0, sizes=(16, 1, 1), max_objects=3, masks=True)
    augment = detection_augment(image_size=(48, 48), seed=4, scale=None)
    stream = kapps.data.pipeline(data.train, batch_size=8, training=True, augment=augment)
    assert stream.element_spec[1]["masks"].shape.as_list() == [None, 3, 48, 48]
    for images, targets in stream.take(2).as_numpy_iterator():
        assert images.shape == (8, 48, 48, 3)
        columns = (targets[k] for k in ("boxes", "classes", "masks", "semantic"))
        for boxes, classes, masks, semantic in zip(*columns, strict=True):
            for box, label, mask in zip(boxes, classes, masks, strict=True):
                if label < 0:
                    assert not box.any() and not mask.any()
                    continue
                np.testing.assert_allclose(box * 48, pixel_box(mask), atol=1e-4)
                assert np.all(semantic[mask == 1] == label + 1)


def test_scale_jitter_resizes_masks_with_the_images_in_the_pipeline():
    data = load_shapes(image_size=(48, 48), seed=1, sizes=(8, 1, 1), max_objects=3, masks=True)
    augment = detection_augment(image_size=(40, 40), seed=5, scale=(0.8, 1.2))
    stream = kapps.data.pipeline(data.train, batch_size=8, training=True, augment=augment)
    images, targets = next(stream.as_numpy_iterator())
    assert images.shape == (8, 40, 40, 3) and targets["masks"].shape == (8, 3, 40, 40)
    assert targets["semantic"].shape == (8, 40, 40) and targets["semantic"].dtype == np.int32
    assert set(np.unique(targets["masks"])) <= {0, 1}
    valid = targets["classes"] >= 0
    assert valid.any() and not targets["masks"][~valid].any()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": (64,)}, "image_size"),
        ({"image_size": (64, 64), "scale": (1.2, 0.8)}, "scale"),
        ({"image_size": (64, 64), "flip": "yes"}, "flip"),
    ],
)
def test_bad_arguments_name_themselves(options, message):
    with pytest.raises(ValueError, match=message):
        detection_augment(**options)


def test_the_seed_decides_the_transforms_even_under_op_determinism():
    # keras-cv would draw from TensorFlow's global generator, which op determinism (the recipes' default) forbids.
    tf.config.experimental.enable_op_determinism()
    data = load_shapes(image_size=(48, 48), seed=2, sizes=(16, 1, 1), max_objects=3)

    def first_batches(seed):
        augment = detection_augment(image_size=(48, 48), seed=seed)
        stream = kapps.data.pipeline(data.train, batch_size=8, training=True, augment=augment, seed=0)
        return [boxes for _, targets in stream.take(3).as_numpy_iterator() for boxes in [targets["boxes"]]]

    same, again, other = first_batches(3), first_batches(3), first_batches(4)
    for a, b in zip(same, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(same, other, strict=True))


def test_fast_rcnn_flip_moves_the_proposals_with_the_objects():
    """Fast R-CNN's flip mirrors the image, its boxes and its proposals together, image by image, and leaves
    padding rows zero; about half the images flip."""
    image = np.zeros((32, 40, 3))
    image[4:10, 2:6] = 1.0
    images, targets = batch_of(image, [[0.1, 0.2, 0.5, 0.6], [0, 0, 0, 0]], [3, -1], copies=64)
    targets["proposals"] = tf.constant(np.tile(np.array([[0.0, 0.1, 0.25, 0.5], [0, 0, 0, 0]], np.float32), (64, 1, 1)))
    flipped_images, out = flip_augment(seed=3)(images, targets)
    flipped = flipped_images.numpy()[:, 5, 3, 0] == 0.0  # the mark left its corner
    assert 16 < flipped.sum() < 48
    np.testing.assert_array_equal(flipped_images.numpy()[flipped], images.numpy()[flipped][:, :, ::-1])
    np.testing.assert_array_equal(flipped_images.numpy()[~flipped], images.numpy()[~flipped])
    np.testing.assert_allclose(out["boxes"].numpy()[flipped, 0], np.tile([0.5, 0.2, 0.9, 0.6], (flipped.sum(), 1)))
    np.testing.assert_allclose(out["proposals"].numpy()[flipped, 0], np.tile([0.75, 0.1, 1.0, 0.5], (flipped.sum(), 1)))
    np.testing.assert_array_equal(out["boxes"].numpy()[~flipped], targets["boxes"].numpy()[~flipped])
    assert not out["boxes"].numpy()[:, 1].any() and not out["proposals"].numpy()[:, 1].any()
    np.testing.assert_array_equal(out["classes"], targets["classes"])
