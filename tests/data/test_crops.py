"""Object crops: every labelled object of a detection source as a classification example."""

from kapps.data.base import Data
from kapps.data.crops import object_crops

import numpy as np
import pytest
import tensorflow as tf


def scenes():
    """Two 20x40 images: the first has a red 10x10 square at pixels (x 4-14, y 6-16) and padding, the second a
    green 20x10 bar at (x 20-40, y 0-10)."""
    images = np.zeros((2, 20, 40, 3), np.float32)
    images[0, 6:16, 4:14, 0] = 1.0
    images[1, 0:10, 20:40, 1] = 1.0
    boxes = np.zeros((2, 3, 4), np.float32)
    boxes[0, 0] = [4 / 40, 6 / 20, 14 / 40, 16 / 20]
    boxes[1, 0] = [20 / 40, 0, 1, 10 / 20]
    classes = np.array([[1, -1, -1], [0, -1, -1]], np.int32)
    split = tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "classes": classes}))
    return Data("toy", split, split.take(1), split.skip(1), (20, 40, 3), ["bar", "square"], {})


def test_each_object_becomes_one_example_of_its_class():
    crops = object_crops(scenes(), size=(8, 8), margin=0.0)
    assert crops.sizes == {"train": 2, "val": 1, "test": 1}
    assert crops.input_shape == (8, 8, 3) and crops.class_names == ["bar", "square"]
    examples = list(crops.train.as_numpy_iterator())
    (square, square_class), (bar, bar_class) = examples
    assert (square_class, bar_class) == (1, 0)
    assert square[1:-1, 1:-1, 0].min() > 0.99 and square[..., 1].max() == 0  # the red square fills its crop
    assert bar[1:-1, 1:-1, 1].min() > 0.99 and bar[..., 0].max() == 0


def test_margin_keeps_context_around_the_object():
    crop, _ = next(object_crops(scenes(), size=(20, 20), margin=0.5).train.as_numpy_iterator())
    # the 10x10 square with 5 pixels of context on each side: its middle half is red, the border black
    assert crop[7:13, 7:13, 0].min() > 0.99 and crop[:3, :, 0].max() < 0.01 and crop[:, -3:, 0].max() < 0.01


def test_negative_margin_is_refused():
    with pytest.raises(ValueError, match="margin must be zero or more"):
        object_crops(scenes(), margin=-0.1)


def test_native_scale_cuts_a_window_around_the_object_without_resizing():
    crops = object_crops(scenes(), size=(12, 12), scale="native")
    square, _ = next(crops.train.as_numpy_iterator())
    # the 10x10 square centred in a 12x12 window: one pixel of background on each side, no blur at its edges
    np.testing.assert_allclose(square[1:11, 1:11, 0], 1.0, atol=1e-6)
    assert square[0, :, 0].max() < 1e-6 and square[:, -1, 0].max() < 1e-6
    bar, _ = list(crops.train.as_numpy_iterator())[1]
    # the 20x10 bar at the top edge is wider than the window: it fills the window's width; above the image is zero
    np.testing.assert_allclose(bar[1:11, :, 1], 1.0, atol=1e-6)
    assert bar[0, :, 1].max() < 1e-6


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="scale must be 'stretch' or 'native'"):
        object_crops(scenes(), scale="zoom")


def test_splits_state_their_length():
    crops = object_crops(scenes(), size=(8, 8))
    assert [int(getattr(crops, name).cardinality()) for name in ("train", "val", "test")] == [2, 1, 1]
