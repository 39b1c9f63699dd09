"""U-Net (Ronneberger et al. 2015): the paper's 572 -> 388 tile and count, "same" padding at any size, the border
weights of eq. 2 on touching cells, and the weighted cross-entropy they feed."""

import math

import kapps.models
from kapps.losses import weighted_pixel_crossentropy
from kapps.models.segmentation import unet, unet_output_size, unet_weight_map

import keras
import numpy as np
import pytest


def _paper_count(*, channels: int, num_classes: int, base_filters: int, depth: int) -> int:
    """Fig. 1 of the paper, level by level: two 3x3 convolutions a level down, 2x2 up-convolutions halving the
    channels, two 3x3 convolutions on the concatenation a level up, a 1x1 classifier; every layer has a bias."""

    def conv(kernel, inputs, outputs):
        return kernel * kernel * inputs * outputs + outputs

    total, inputs = 0, channels
    for level in range(depth + 1):
        outputs = base_filters * 2**level
        total += conv(3, inputs, outputs) + conv(3, outputs, outputs)
        inputs = outputs
    for level in reversed(range(depth)):
        outputs = base_filters * 2**level
        total += conv(2, inputs, outputs) + conv(3, 2 * outputs, outputs) + conv(3, outputs, outputs)
        inputs = outputs
    return total + conv(1, inputs, num_classes)


def test_count_is_the_papers():
    assert _paper_count(channels=1, num_classes=2, base_filters=64, depth=4) == 31_030_658
    info = kapps.models.info("unet")
    assert (info.task, info.input_shape, info.num_classes, info.param_count) == (
        "segmentation",
        (572, 572, 1),
        2,
        31_030_658,
    )
    small = unet(input_shape=(None, None, 3), num_classes=5, base_filters=8, depth=3, padding="same")
    assert small.count_params() == _paper_count(channels=3, num_classes=5, base_filters=8, depth=3) == 120_861


def test_valid_padding_maps_the_papers_572_tile_to_388():
    assert unet_output_size(572) == 388
    assert [unet_output_size(s, depth=2) for s in (44, 100)] == [4, 60]
    with pytest.raises(ValueError, match="every size before a 2x2 pooling must be even.*Received: size=573"):
        unet_output_size(573)
    with pytest.raises(ValueError, match="Received: size=573"):
        unet(input_shape=(573, 572, 1))

    model = unet(base_filters=4)  # the paper's layout, 16 times narrower
    assert model.output_shape == (None, 388, 388, 2) and model.layers[-1].name == "scores"
    # copy and crop: the first level's 568x568 map, cut at its centre to the 392x392 upsampled map
    taps = keras.Model(model.input, [model.get_layer("down1_conv2").output, model.get_layer("up1_skip_crop").output])
    image = np.random.default_rng(0).uniform(size=(1, 572, 572, 1)).astype("float32")
    level, cropped = (np.asarray(t) for t in taps(image))
    assert level.shape[1:3] == (568, 568) and cropped.shape[1:3] == (392, 392)
    np.testing.assert_array_equal(cropped, level[:, 88:480, 88:480])  # (568 - 392) / 2 = 88
    scores = np.asarray(model(image))
    np.testing.assert_allclose(scores.sum(-1), 1.0, rtol=1e-5)


def test_same_padding_keeps_any_size():
    model = unet(input_shape=(None, None, 2), num_classes=3, base_filters=4, padding="same")
    for height, width in [(64, 64), (97, 61), (31, 33)]:
        assert model(np.zeros((1, height, width, 2), "float32")).shape == (1, height, width, 3)
    # an odd map pools to its size rounded up; the 2x2 up-convolution's map is then cut back from its corner
    taps = keras.Model(model.input, [model.get_layer("up4_upconv").output, model.get_layer("up4_crop").output])
    upsampled, cropped = (np.asarray(t) for t in taps(np.ones((1, 97, 61, 2), "float32")))
    # 97 -> 49 -> 25 -> 13 -> 7 (bottom) -> up-conv 14, cropped to level 4's 13; 61 -> 31 -> 16 -> 8 -> 4 -> 8
    assert upsampled.shape[1:3] == (14, 8) and cropped.shape[1:3] == (13, 8)
    np.testing.assert_array_equal(cropped, upsampled[:, :13])


def test_logits_dropout_and_mixed_precision():
    model = unet(input_shape=(32, 32, 1), base_filters=4, padding="same", classifier_activation=None, dropout=0.5)
    assert model.get_layer("bottom_dropout").rate == 0.5
    assert model.get_layer("scores").activation.__name__ == "linear"
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = unet(input_shape=(32, 32, 1), base_filters=4, padding="same")
    finally:
        keras.config.set_dtype_policy(policy)
    assert mixed.get_layer("up1_conv2").compute_dtype == "float16" and mixed.output.dtype == "float32"


def test_saves_and_loads_in_safe_mode(tmp_path):
    keras.utils.set_random_seed(1)
    model = unet(input_shape=(None, None, 1), base_filters=4)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    image = np.random.default_rng(1).uniform(size=(1, 188, 188, 1)).astype("float32")  # 188 -> 4
    np.testing.assert_allclose(loaded(image), model(image), atol=1e-6)
    assert loaded(image).shape == (1, 4, 4, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"padding": "reflect"}, "padding must be 'valid' or 'same'. Received: padding='reflect'"),
        ({"base_filters": 0}, "base_filters must be a positive integer"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
        ({"dropout": -0.1}, "dropout must be in \\[0, 1\\)"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        unet(**kwargs)


def _touching_cells() -> np.ndarray:
    """Two cells side by side, one background column (19) between them."""
    labels = np.zeros((40, 40), "int32")
    labels[10:30, 5:19] = 1
    labels[10:30, 20:35] = 2
    return labels


def test_border_weights_peak_on_the_gap_between_touching_cells():
    labels = _touching_cells()
    weights = unet_weight_map(labels)  # w0 = 10, sigma = 5, w_c = 1
    assert weights.shape == (40, 40) and weights.dtype == np.float32
    # on the gap: 1 pixel to each cell, d1 + d2 = 2
    gap = 1 + 10 * math.exp(-(2**2) / (2 * 5**2))
    np.testing.assert_allclose(weights[10:30, 19], gap, rtol=1e-6)
    assert weights.max() == pytest.approx(gap) and set(np.argwhere(weights == weights.max())[:, 1]) == {19}
    # 5 rows above the gap: the cells' nearest pixels are (10, 18) and (10, 20), sqrt(26) away each
    np.testing.assert_allclose(weights[5, 19], 1 + 10 * math.exp(-((2 * math.sqrt(26)) ** 2) / 50), rtol=1e-6)
    # 3 columns right of cell 2 (d1 = 3) and 19 from cell 1 (d2 = 19)
    np.testing.assert_allclose(weights[20, 37], 1 + 10 * math.exp(-(22**2) / 50), rtol=1e-6)
    # far from both, and inside the cells, only w_c
    np.testing.assert_allclose(weights[0, 0], 1.0, atol=1e-8)
    np.testing.assert_array_equal(weights[labels > 0], 1.0)


def test_border_weights_add_to_the_class_weights():
    labels = _touching_cells()
    pair = unet_weight_map(labels, class_weights=(0.5, 2.0), w0=5, sigma=3)
    np.testing.assert_array_equal(pair[labels > 0], 2.0)
    np.testing.assert_allclose(pair[20, 19], 0.5 + 5 * math.exp(-4 / 18), rtol=1e-6)
    np.testing.assert_allclose(pair[0, 0], 0.5, atol=1e-8)
    # balanced: 580 cell pixels and 1,020 background ones, each class weighing 1,600 / (2 x its count)
    balanced = unet_weight_map(labels, class_weights="balanced", w0=0)
    np.testing.assert_allclose(balanced[labels > 0], 1600 / 1160, rtol=1e-6)
    np.testing.assert_allclose(balanced[labels == 0], 1600 / 2040, rtol=1e-6)
    assert balanced.mean() == pytest.approx(1.0)
    # one cell alone has no border with another: w_c everywhere
    np.testing.assert_array_equal(unet_weight_map(np.where(labels == 1, 1, 0)), 1.0)
    with pytest.raises(ValueError, match="instance_labels must be \\(H, W\\) non-negative integers"):
        unet_weight_map(labels.astype("float32"))
    with pytest.raises(ValueError, match="class_weights must be None, 'balanced' or"):
        unet_weight_map(labels, class_weights="inverse")


def test_weighted_pixel_crossentropy_is_the_weighted_mean_over_labelled_pixels():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, 3, size=(2, 5, 6))
    labels[0, 0, :4] = 255  # unlabelled
    weights = rng.uniform(0.5, 10, size=(2, 5, 6)).astype("float32")
    labelled = labels != 255
    picked = np.take_along_axis(probabilities, np.where(labelled, labels, 0)[..., None], -1)[..., 0]
    expected = np.sum(-np.log(picked) * weights * labelled) / labelled.sum()
    np.testing.assert_allclose(weighted_pixel_crossentropy(labels, probabilities, weights), expected, rtol=1e-5)
    np.testing.assert_allclose(
        weighted_pixel_crossentropy(labels, logits, weights, from_logits=True), expected, rtol=1e-5
    )
    unweighted = np.sum(-np.log(picked) * labelled) / labelled.sum()
    np.testing.assert_allclose(weighted_pixel_crossentropy(labels, probabilities), unweighted, rtol=1e-5)
    assert float(weighted_pixel_crossentropy(np.full((1, 2, 2), 255), probabilities[:1, :2, :2])) == 0.0
