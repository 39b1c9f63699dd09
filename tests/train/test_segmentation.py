"""The segmentation helpers of the engine: masks cut to a valid-padding U-Net's centre, the time per image, and the
scores a run keeps."""

from kapps.segmentation_metrics import confusion_matrix, segmentation_scores
from kapps.train.segmentation import crop_masks, evaluate_segmenter, seconds_per_image
from kapps.viz import plot_segmentation

import keras
import numpy as np
import pytest
import tensorflow as tf


def _batches(images, masks, batch_size=2):
    return tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch_size)


def test_crop_masks_keeps_the_centre_and_leaves_the_images():
    images = np.random.default_rng(0).random((3, 8, 10, 3)).astype("float32")
    masks = np.arange(3 * 8 * 10, dtype="int32").reshape(3, 8, 10)
    cropped = list(crop_masks(_batches(images, masks), (4, 6)).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([m for _, m in cropped]), masks[:, 2:6, 2:8])
    np.testing.assert_array_equal(np.concatenate([x for x, _ in cropped]), images)


@pytest.mark.parametrize("size", [(9, 6), (3, 6)])
def test_crop_masks_refuses_a_larger_size_or_an_odd_margin(size):
    masks = np.zeros((2, 8, 10), "int32")
    with pytest.raises(ValueError, match=r"size must be at most the masks' 8x10, with even margins"):
        crop_masks(_batches(np.zeros((2, 8, 10, 3), "float32"), masks), size)


def _classifier_of_the_red_channel():
    """A fixed segmenter: class 1 where the red channel is above 0.5, class 0 elsewhere."""
    inputs = keras.Input((None, None, 3))
    scores = keras.layers.Conv2D(2, 1, activation="softmax", name="scores")(inputs)
    model = keras.Model(inputs, scores)
    kernel = np.zeros((1, 1, 3, 2), "float32")
    kernel[0, 0, 0] = [-20.0, 20.0]
    model.get_layer("scores").set_weights([kernel, np.array([10.0, -10.0], "float32")])
    return model


def test_evaluate_segmenter_scores_the_class_map_and_counts_the_model():
    rng = np.random.default_rng(1)
    images = rng.random((5, 12, 12, 3)).astype("float32")
    masks = (rng.random((5, 12, 12)) > 0.5).astype("int32")
    masks[0, :3] = 255  # ignored
    model = _classifier_of_the_red_channel()
    metrics = evaluate_segmenter(model, _batches(images, masks), class_names=["background", "red"])
    expected = segmentation_scores(confusion_matrix(masks, (images[..., 0] > 0.5).astype("int32"), num_classes=2))
    assert metrics["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-9)
    assert metrics["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-9)
    assert metrics["pixels"] == 5 * 144 - 36
    assert metrics["parameters"] == 3 * 2 + 2
    assert metrics["ms_per_image"] > 0
    assert metrics["class_names"] == ["background", "red"]


def test_seconds_per_image_refuses_an_empty_dataset():
    empty = _batches(np.zeros((0, 4, 4, 3), "float32"), np.zeros((0, 4, 4), "int32"))
    with pytest.raises(ValueError, match="at least one image"):
        seconds_per_image(_classifier_of_the_red_channel(), empty)


def test_plot_segmentation_draws_one_row_an_image(tmp_path):
    from PIL import Image

    images = np.zeros((3, 16, 16, 3), "float32")
    masks = np.zeros((3, 16, 16), "int32")
    path = plot_segmentation(
        _classifier_of_the_red_channel(), _batches(images, masks), tmp_path / "m.png", class_names=["bg", "red"]
    )
    small = plot_segmentation(
        _classifier_of_the_red_channel(),
        _batches(images, masks),
        tmp_path / "one.png",
        class_names=["bg", "red"],
        count=1,
    )
    # three rows of 2.5 inches and the legend's row, against one: the figure grows by two rows (100 dpi)
    assert Image.open(path).size[1] - Image.open(small).size[1] == 500
