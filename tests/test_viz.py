"""Segmenters compared on the same images: what each panel of the figure holds, pixel by pixel, for models of the
image's size and for a model that scores only the image's centre (a valid-padding U-Net); and the refusals."""

from pathlib import Path

import kapps.viz
from kapps.viz import class_colour, plot_segmentation_comparison

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

BACKGROUND = np.array([0.15, 0.15, 0.15], "float32")  # plot_segmentation's dark grey of class 0
RED = np.array(class_colour(1)[:3], "float32")  # class 1
IGNORED = np.ones(3, "float32")


def _red_segmenter(*, crop=0, name: str = "red"):
    """A fixed segmenter: class 1 where the red channel is above 0.5, class 0 elsewhere; with `crop`, only the
    centre (Cropping2D's `crop`), as a valid-padding U-Net scores."""
    inputs = keras.Input((None, None, 3))
    scores = keras.layers.Conv2D(2, 1, activation="softmax", name="scores")(inputs)
    if crop:
        scores = keras.layers.Cropping2D(crop)(scores)
    model = keras.Model(inputs, scores, name=name)
    kernel = np.zeros((1, 1, 3, 2), "float32")
    kernel[0, 0, 0] = [-20.0, 20.0]
    model.get_layer("scores").set_weights([kernel, np.array([10.0, -10.0], "float32")])
    return model


def _blank_segmenter():
    """A fixed segmenter that calls every pixel background."""
    inputs = keras.Input((None, None, 3))
    scores = keras.layers.Conv2D(2, 1, activation="softmax", name="scores")(inputs)
    model = keras.Model(inputs, scores)
    model.get_layer("scores").set_weights([np.zeros((1, 1, 3, 2), "float32"), np.array([5.0, -5.0], "float32")])
    return model


def _scenes(count: int = 3, size: int = 16):
    """`count` grey scenes, the k-th with a red square at rows and columns k+2 to k+8; its true mask marks the
    square as class 1 and its first row as ignored."""
    images = np.full((count, size, size, 3), 0.4, "float32")
    masks = np.zeros((count, size, size), "int32")
    for k in range(count):
        images[k, k + 2 : k + 8, k + 2 : k + 8] = (0.9, 0.1, 0.1)
        masks[k, k + 2 : k + 8, k + 2 : k + 8] = 1
    masks[:, 0] = 255
    return images, masks


def _drawn(monkeypatch, models, images, masks, **kwargs):
    """The figure `plot_segmentation_comparison` would write, kept open to read its panels."""
    figures = []
    monkeypatch.setattr(kapps.viz, "write_png", lambda fig, file: figures.append(fig))
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    plot_segmentation_comparison(models, dataset, Path("unused.png"), class_names=["bg", "red"], **kwargs)
    (figure,) = figures
    return figure


def _colours(mask: np.ndarray) -> np.ndarray:
    return np.where((mask == 1)[..., None], RED, np.where((mask == 255)[..., None], IGNORED, BACKGROUND))


def test_each_row_holds_the_image_the_truth_and_every_models_mask(monkeypatch):
    images, masks = _scenes()
    models = {"red": _red_segmenter(), "blank": _blank_segmenter()}
    figure = _drawn(monkeypatch, models, images, masks, count=3)
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 3 * 4  # three rows of image, true mask, red's and blank's masks
    assert [ax.get_title() for ax in panels[:4]] == ["image", "true mask", "red", "blank"]
    for k in range(3):
        image, truth, red, blank = (ax.images[0].get_array() for ax in panels[4 * k : 4 * k + 4])
        np.testing.assert_array_equal(image, images[k])
        np.testing.assert_allclose(truth, _colours(masks[k]))
        # red's mask: the square is class 1, the rest background, the ignored row included (the model's own call)
        np.testing.assert_allclose(red, _colours(np.where(masks[k] == 255, 0, masks[k])))
        np.testing.assert_allclose(blank, np.broadcast_to(BACKGROUND, (16, 16, 3)))


def test_a_model_of_the_centre_is_drawn_at_its_own_size_inside_a_frame(monkeypatch):
    images, masks = _scenes(count=1)
    models = {"full": _red_segmenter(), "valid": _red_segmenter(crop=4)}
    figure = _drawn(monkeypatch, models, images, masks, count=1)
    image_ax, truth_ax, full_ax, valid_ax = (ax for ax in figure.axes if ax.images)
    assert valid_ax.get_title() == "valid\n(its 8x8 centre)" and full_ax.get_title() == "full"
    drawn = valid_ax.images[0].get_array()
    assert drawn.shape == (16, 16, 3)
    # the model's 8x8 class map on rows and columns 4 to 11; the image faded to 35% on white around it
    expected = 0.35 * images[0] + 0.65
    expected[4:12, 4:12] = _colours(np.where(masks[0] == 255, 0, masks[0]))[4:12, 4:12]
    np.testing.assert_allclose(drawn, expected, atol=1e-6)
    (frame,) = valid_ax.patches
    assert (frame.get_xy(), frame.get_width(), frame.get_height()) == ((3.5, 3.5), 8, 8)
    assert not full_ax.patches


@pytest.mark.parametrize(("columns", "models", "count"), [(3, 1, 2), (4, 2, 3), (7, 5, 1)])
def test_the_picture_has_a_column_a_model_beside_the_image_and_truth(tmp_path, columns, models, count):
    images, masks = _scenes()
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    segmenters = {f"model {k}": _red_segmenter() for k in range(models)}
    path = plot_segmentation_comparison(segmenters, dataset, tmp_path / "c.png", class_names=["bg", "red"], count=count)
    # 2.5 inches a column and a row, the legend's row 0.6 inch, at 100 dpi
    assert Image.open(path).size == (250 * columns, 250 * count + 60)


def test_refusals(tmp_path):
    images, masks = _scenes(count=2)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    with pytest.raises(ValueError, match="at least one name"):
        plot_segmentation_comparison({}, dataset, tmp_path / "c.png", class_names=["bg", "red"])
    cropped = tf.data.Dataset.from_tensor_slices((images, masks[:, 4:12, 4:12])).batch(2)
    with pytest.raises(ValueError, match=r"the true masks' 8x8 or their centre. Received: 16x16 masks from 'full'"):
        plot_segmentation_comparison({"full": _red_segmenter()}, cropped, tmp_path / "c.png", class_names=["bg", "r"])
    odd = tf.data.Dataset.from_tensor_slices((images[:, :15, :15], masks[:, :15, :15])).batch(2)
    one_side = _red_segmenter(crop=((1, 0), (1, 0)))  # 15 -> 14: no centre half a pixel in
    with pytest.raises(ValueError, match="Received: 14x14 masks from 'valid'"):
        plot_segmentation_comparison({"valid": one_side}, odd, tmp_path / "c.png", class_names=["bg", "red"])
    assert list(tmp_path.iterdir()) == []
