"""The segmentation helpers of the engine: masks cut to a valid-padding U-Net's centre, the time per image, the
scores a run keeps, and U-Net's border weights carried from instance labels to the training loss."""

import dataclasses
import json
import math

import kapps.data
from kapps.data import IGNORE_LABEL, Data, load_segmentation_instances, segmentation_augment
from kapps.losses import weighted_pixel_crossentropy
from kapps.models.segmentation import unet_weight_map
from kapps.segmentation_metrics import confusion_matrix, segmentation_scores
from kapps.train import TrainOptions, fit
from kapps.train.segmentation import (
    border_weighted,
    class_weighted,
    crop_masks,
    evaluate_segmenter,
    median_frequency_weights,
    seconds_per_image,
)
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


def test_crop_masks_cuts_the_weights_as_the_masks():
    images = np.zeros((3, 8, 10, 3), "float32")
    masks = np.arange(3 * 8 * 10, dtype="int32").reshape(3, 8, 10)
    weights = masks.astype("float32") / 7
    dataset = tf.data.Dataset.from_tensor_slices((images, masks, weights)).batch(2)
    cropped = list(crop_masks(dataset, (4, 6)).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([m for _, m, _ in cropped]), masks[:, 2:6, 2:8])
    np.testing.assert_array_equal(np.concatenate([w for _, _, w in cropped]), weights[:, 2:6, 2:8])


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


# Two 5x8 squares one background column apart (column 7), in a 16x16 scene: two touching cells of U-Net's Fig. 3.
TOUCHING = np.zeros((16, 16), "int32")
TOUCHING[4:12, 2:7] = 1
TOUCHING[4:12, 8:13] = 2


def _brute_force_weight(labels: np.ndarray, row: int, col: int, *, w0: float, sigma: float) -> float:
    """Eq. 2 at one pixel, written out: w_c balanced (256 / (2 x 176) on the background, 256 / (2 x 80) on the
    cells) plus, on the background, w0 exp(-(d1 + d2)^2 / (2 sigma^2)) with d1, d2 the distances to the nearest
    pixel of the nearest and second-nearest cell, found by looking at every pixel."""
    foreground = labels > 0
    w_c = labels.size / (2 * np.count_nonzero(foreground if labels[row, col] else ~foreground))
    if labels[row, col]:
        return w_c
    distances = sorted(
        min(math.hypot(r - row, c - col) for r, c in zip(*np.nonzero(labels == k), strict=True)) for k in (1, 2)
    )
    return w_c + w0 * math.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))


def _touching_data(count: int = 4) -> Data:
    """`count` copies of the two touching squares, as load_segmentation_instances gives examples: the image paints
    the column index in red (so a flip shows), the mask is class 1 on both squares."""
    image = np.zeros((16, 16, 3), "float32")
    image[..., 0] = np.arange(16) / 15
    mask = (TOUCHING > 0).astype("int32")
    split = tf.data.Dataset.from_tensor_slices(
        (np.repeat(image[None], count, 0), np.repeat(mask[None], count, 0), np.repeat(TOUCHING[None], count, 0))
    )
    return Data(
        spec="touching",
        train=split,
        val=split.take(1),
        test=split.take(1),
        input_shape=(16, 16, 3),
        class_names=["background", "cell"],
        sizes={"train": count, "val": 1, "test": 1},
    )


def test_border_weighted_gives_the_training_masks_eq2_weights():
    data = border_weighted(_touching_data(), w0=10.0, sigma=5.0)
    image, mask, weights = next(data.train.as_numpy_iterator())
    assert weights.dtype == np.float32 and weights.shape == (16, 16)
    # the gap pixel beside both squares: d1 = d2 = 1, so 256 / 352 + 10 exp(-4 / 50) = 0.7273 + 9.2312 = 9.9585
    assert weights[6, 7] == pytest.approx(256 / 352 + 10 * math.exp(-4 / 50), abs=1e-5)
    assert weights[6, 7] == pytest.approx(9.9585, abs=1e-4)
    for row, col in [(6, 7), (0, 0), (0, 15), (12, 7), (3, 7), (8, 4), (13, 14)]:
        assert weights[row, col] == pytest.approx(_brute_force_weight(TOUCHING, row, col, w0=10, sigma=5), abs=1e-5)
    # the gap column is the heaviest background: every other background pixel is further from a square
    assert np.argmax(weights) // 16 in range(4, 12) and np.argmax(weights) % 16 == 7
    # validation and test keep (image, mask): they are scored unweighted
    assert len(data.val.element_spec) == 2 and len(data.test.element_spec) == 2


def test_border_weighted_shapes_weights_are_the_instance_maps():
    """On the shapes scenes, each training example's weights are eq. 2 of its own instance map, and a scene whose
    objects touch gets the peak border weight (w0 exp(-(1 + 1)^2 / 50) above w_c at least) between them."""
    data = load_segmentation_instances("shapes", image_size=(48, 48), seed=0, sizes=(12, 1, 1), max_objects=6)
    weighted = border_weighted(data, w0=10.0, sigma=5.0)
    touching = 0
    for (_, mask, instances), (_, weighted_mask, weights) in zip(
        data.train.as_numpy_iterator(), weighted.train.as_numpy_iterator(), strict=True
    ):
        np.testing.assert_array_equal(weighted_mask, mask)
        np.testing.assert_allclose(weights, unet_weight_map(instances, class_weights="balanced"), rtol=1e-6)
        assert np.array_equal(mask > 0, instances > 0)
        # background pixels whose 4-neighbours hold two different objects: the gap between touching objects
        padded = np.pad(instances, 1)
        neighbours = np.stack([padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]])
        largest, smallest = neighbours.max(0), np.where(neighbours > 0, neighbours, 256).min(0)
        gap = (instances == 0) & (largest > 0) & (smallest < largest)
        if gap.any():
            touching += 1
            w_c = instances.size / (2 * np.count_nonzero(instances == 0))
            assert weights[gap].max() >= w_c + 10 * math.exp(-4 / 50) - 1e-4
            assert weights[instances == 0].max() <= w_c + 10
    assert touching >= 2  # the test saw touching objects


@pytest.mark.parametrize(("kwargs", "message"), [({"w0": -1.0}, "w0 must be >= 0"), ({"sigma": 0.0}, "sigma > 0")])
def test_border_weighted_refuses_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        border_weighted(_touching_data(), **kwargs)


def test_border_weighted_needs_instance_labels():
    data = kapps.data.load_segmentation("shapes", image_size=(32, 32), sizes=(2, 1, 1))
    with pytest.raises(ValueError, match=r"data must hold \(image, mask, instances\) examples.*2 elements$"):
        border_weighted(data)


def test_augmented_weights_stay_on_their_pixels():
    """After the training pipeline's flips, the weights are the eq. 2 map of the mask they came with: the gap
    column's peak moves with the mirrored squares (column 7 -> 8), never beside them."""
    data = border_weighted(_touching_data(8), w0=10.0, sigma=5.0)
    reference = unet_weight_map(TOUCHING, class_weights="balanced")
    augment = segmentation_augment(image_size=(16, 16), seed=1, scale=None)
    train = kapps.data.pipeline(data.train, batch_size=8, training=True, augment=augment, seed=0)
    images, masks, weights = (np.asarray(t) for t in next(iter(train)))
    mirrored = images[:, 0, 0, 0] > 0.5  # red was the column index: a flipped image starts bright
    assert 0 < mirrored.sum() < 8
    for flipped, mask, weight in zip(mirrored, masks, weights, strict=True):
        expected = reference[:, ::-1] if flipped else reference
        np.testing.assert_allclose(weight, expected, rtol=1e-6)
        np.testing.assert_array_equal(mask, (TOUCHING[:, ::-1] if flipped else TOUCHING) > 0)
        assert np.argmax(weight[6]) == (8 if flipped else 7)


def _one_by_one_segmenter():
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax", name="scores")(inputs))


def test_the_engine_trains_on_the_weighted_loss(tmp_path):
    """`kapps.train.fit` with the recipe's loss on border-weighted batches: the logged loss of one step is
    `weighted_pixel_crossentropy` with the batch's weights, computed here; the unweighted loss differs by more than
    a third, so dropping the weights would fail. Pixels labelled 255 carry weight 1000 and add nothing."""
    data = _touching_data(4)
    ignored = np.zeros((16, 16), "int32")
    ignored[:, 14:] = IGNORE_LABEL

    def plant_ignored(image, mask, instances):
        return image, tf.where(ignored == IGNORE_LABEL, IGNORE_LABEL, mask), instances

    data = dataclasses.replace(data, train=data.train.map(plant_ignored))
    weighted = border_weighted(data, w0=10.0, sigma=5.0)

    def heavy_ignored(image, mask, weights):
        return image, mask, tf.where(mask == IGNORE_LABEL, 1000.0, weights)

    train = kapps.data.pipeline(weighted.train.map(heavy_ignored), batch_size=4, training=True, seed=0)
    images, masks, weights = (np.asarray(t) for t in next(iter(train)))
    assert weights[masks == IGNORE_LABEL].min() == 1000.0
    keras.utils.set_random_seed(0)
    model = _one_by_one_segmenter()
    start = [w.copy() for w in model.get_weights()]
    opts = TrainOptions(out=str(tmp_path / "run"), epochs=1, steps_per_epoch=1, batch_size=4, seed=0)
    run = fit(
        opts,
        build_model=lambda: _rebuilt(start),
        train=train,
        train_steps=1,
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE_LABEL),
        optimizer=lambda: keras.optimizers.SGD(0.0),
        monitor=None,
    )
    scores = model(images)
    expected = float(weighted_pixel_crossentropy(masks, scores, weights))
    unweighted = float(weighted_pixel_crossentropy(masks, scores))
    labelled = masks != IGNORE_LABEL
    by_hand = -np.log(np.take_along_axis(np.asarray(scores), np.where(labelled, masks, 0)[..., None], -1)[..., 0])
    assert expected == pytest.approx(np.sum((weights * by_hand)[labelled]) / labelled.sum(), rel=1e-5)
    assert run.history[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(expected - unweighted) > unweighted / 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["epochs"] == 1


def _rebuilt(weights):
    model = _one_by_one_segmenter()
    model.set_weights(weights)
    return model


def test_median_frequency_weights_by_hand():
    """Eigen & Fergus's f_c is class c's pixels over the labelled pixels of the masks holding c. Here class 0:
    4 of 4 + 3 labelled pixels, f = 4/7; class 1: 1 of 4, f = 1/4; class 2: 2 of 3, f = 2/3; class 3 in no mask.
    The median of the seen classes is 4/7, so the weights are 1, 16/7, 6/7 and 0 for the absent class."""
    masks = np.array([[[0, 0], [0, 1]], [[0, 2], [2, IGNORE_LABEL]]], np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((np.zeros((2, 2, 2, 3), "float32"), masks))
    expected = [1.0, 16 / 7, 6 / 7, 0.0]
    np.testing.assert_allclose(median_frequency_weights(dataset, 4), expected, rtol=1e-6)
    np.testing.assert_allclose(median_frequency_weights(dataset.batch(2), 4), expected, rtol=1e-6)  # batched too
    np.testing.assert_allclose(median_frequency_weights(tf.data.Dataset.from_tensor_slices(masks), 4), expected)
    with pytest.raises(ValueError, match="labels outside 0..1"):
        median_frequency_weights(dataset, 2)
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights(tf.data.Dataset.from_tensor_slices(np.full((1, 2, 2), IGNORE_LABEL, np.uint8)), 4)


def test_class_weighted_weighs_each_pixel_by_its_class():
    masks = np.array([[[0, 1], [2, IGNORE_LABEL]]], np.int32)
    split = tf.data.Dataset.from_tensor_slices((np.ones((1, 2, 2, 3), "float32"), masks))
    data = Data(
        spec="hand",
        train=split,
        val=split,
        test=split,
        input_shape=(2, 2, 3),
        class_names=["a", "b", "c"],
        sizes={"train": 1, "val": 1, "test": 1},
    )
    weighted = class_weighted(data, [0.5, 2.0, 3.0])
    image, mask, weights = next(weighted.train.as_numpy_iterator())
    np.testing.assert_array_equal(mask, masks[0])
    np.testing.assert_allclose(weights, [[0.5, 2.0], [3.0, 0.0]])  # the ignored pixel weighs nothing
    assert weights.dtype == np.float32
    assert len(weighted.val.element_spec) == 2 and len(weighted.test.element_spec) == 2
    with pytest.raises(ValueError, match="3 finite numbers of at least 0"):
        class_weighted(data, [1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="3 finite numbers of at least 0"):
        class_weighted(data, [1.0, 1.0])
