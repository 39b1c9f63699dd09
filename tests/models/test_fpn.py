"""Feature Pyramid Network: torchvision's parameter count on ResNet-50, the strides and channels of every level on
even and odd inputs, a top-down pathway that carries deep features down and nothing up, serialisation and export."""

import functools
import math

import kapps.models
from kapps.models.detection import fpn, fpn_backbone

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.models import parity

STRIDES = {"P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}


@functools.cache
def _resnet50_fpn(shape):
    return fpn_backbone("resnet50", input_shape=shape)


def _pyramid(channels_by_level, size, *, channels=8, **kwargs):
    """`fpn` on model inputs standing in for a backbone's maps: C<k> of `size / 2**(k - 2)` pixels a side."""
    inputs = {
        level: keras.Input((math.ceil(size / 2 ** (int(level[1:]) - 2)),) * 2 + (c,), name=level)
        for level, c in channels_by_level.items()
    }
    return keras.Model(inputs, fpn(inputs, channels=channels, **kwargs))


def test_neck_on_resnet50_has_torchvisions_parameter_count():
    # torchvision.ops.FeaturePyramidNetwork([256, 512, 1024, 2048], 256), as resnet_fpn_backbone("resnet50") builds
    # it (torchvision/ops/feature_pyramid_network.py): inner_blocks Conv2d(c, 256, 1) and layer_blocks
    # Conv2d(256, 256, 3, padding=1), both with biases; LastLevelMaxPool has no weights.
    in_channels = [f.channels for f in kapps.models.feature_maps("resnet50") if f.name in ("C2", "C3", "C4", "C5")]
    assert in_channels == [256, 512, 1024, 2048]
    laterals = sum((c + 1) * 256 for c in in_channels)
    outputs = 4 * (9 * 256 + 1) * 256
    assert (laterals, outputs) == (984_064, 2_360_320)
    model = _resnet50_fpn((224, 224, 3))
    neck = [layer for layer in model.layers if layer.name.startswith("fpn_")]
    assert sum(layer.count_params() for layer in neck) == laterals + outputs == 3_344_384
    body = kapps.models.backbone("resnet50", input_shape=(224, 224, 3), maps=["C2", "C3", "C4", "C5"])
    assert model.count_params() == body.count_params() + 3_344_384


@pytest.mark.parametrize("shape", [(224, 224, 3), (100, 132, 3)])
def test_levels_have_strides_4_to_64_and_256_channels(shape):
    # A stride-2 layer maps n pixels to ceil(n / 2): 100 x 132 gives C4 7 x 9 and C5 4 x 5, which upsamples to 8 x 10.
    model = _resnet50_fpn(shape)
    assert list(model.output) == list(STRIDES)
    for level, stride in STRIDES.items():
        expected = (math.ceil(shape[0] / stride), math.ceil(shape[1] / stride), 256)
        assert tuple(model.output[level].shape[1:]) == expected, level
    cropped = {layer.name for layer in model.layers if isinstance(layer, keras.layers.Cropping2D)}
    assert cropped == (set() if shape[0] % 32 == 0 else {"fpn_crop_m3", "fpn_crop_m4", "fpn_crop_m5"})


def test_unknown_sizes_take_multiples_of_the_deepest_stride():
    model = fpn_backbone("resnet10_narrow", input_shape=(None, None, 3), channels=16)
    for height, width in ((128, 192), (96, 160)):
        out = model.compute_output_spec(keras.KerasTensor((1, height, width, 3)))
        for level, stride in STRIDES.items():
            assert tuple(out[level].shape[1:]) == (math.ceil(height / stride), math.ceil(width / stride), 16), level


def test_odd_sizes_upsample_as_torchvision_interpolates():
    # With identity laterals the merged map is C4 + nearest(C5): torchvision's F.interpolate(size=(7, 9)) reads
    # source pixel floor(i * 4 / 7), floor(j * 5 / 9), which the 2x upsampling cropped to 7 x 9 must equal.
    c4, c5 = keras.Input((7, 9, 2)), keras.Input((4, 5, 2))
    pyramid = fpn({"C4": c4, "C5": c5}, channels=2, levels=("C4", "C5"), extra_level=False)
    model = keras.Model([c4, c5], pyramid)
    for layer in ("fpn_lateral_c4", "fpn_lateral_c5"):
        model.get_layer(layer).set_weights([np.eye(2, dtype="float32")[None, None], np.zeros(2, "float32")])
    merged = keras.Model([c4, c5], model.get_layer("fpn_merge_m4").output)
    rng = np.random.default_rng(0)
    x4, x5 = rng.normal(size=(2, 7, 9, 2)).astype("float32"), rng.normal(size=(2, 4, 5, 2)).astype("float32")
    rows, cols = np.arange(7) * 4 // 7, np.arange(9) * 5 // 9
    np.testing.assert_allclose(merged([x4, x5]), x4 + x5[:, rows][:, :, cols], atol=1e-6)


def test_top_down_pathway_carries_deep_maps_down_and_nothing_up():
    model = _pyramid({"C2": 4, "C3": 8, "C4": 8, "C5": 8}, 16)
    rng = np.random.default_rng(1)
    features = {name: tf.constant(rng.normal(size=(1, *x.shape[1:])), tf.float32) for name, x in model.input.items()}
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(features)
        totals = {level: tf.reduce_sum(p) for level, p in model(features).items()}
    for level, total in totals.items():
        for name, c in features.items():
            grad = tape.gradient(total, c, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()
            reaches = int(name[1:]) >= min(int(level[1:]), 5)  # P6 is subsampled P5
            assert (np.abs(grad).sum() > 0) == reaches, (level, name)
    # Every C5 cell reaches P2 through the three upsamplings.
    assert np.all(np.abs(tape.gradient(totals["P2"], features["C5"]).numpy()).sum(-1) > 0)


def test_levels_and_the_extra_level_choose_the_outputs():
    channels = {"C3": 8, "C4": 8, "C5": 8}
    assert list(_pyramid(channels, 32, levels=("C3", "C4", "C5")).output) == ["P3", "P4", "P5", "P6"]
    model = _pyramid(channels, 32, levels=("C3", "C4"), extra_level=False)
    assert list(model.output) == ["P3", "P4"]
    assert {layer.name for layer in model.layers if layer.weights} == {
        "fpn_lateral_c3",
        "fpn_lateral_c4",
        "fpn_output_p3",
        "fpn_output_p4",
    }


def test_saves_and_loads_in_safe_mode_with_identical_outputs(tmp_path):
    model = fpn_backbone("resnet10_narrow", input_shape=(100, 100, 3), channels=32)
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)  # no custom layer to register
    images = np.random.default_rng(2).uniform(size=(2, 100, 100, 3)).astype("float32")
    parity.randomise_batch_norm(model, images, seed=3)
    model.save(tmp_path / "fpn.keras")
    loaded = keras.saving.load_model(tmp_path / "fpn.keras", safe_mode=True)
    expected, got = model(images), loaded(images)
    assert list(got) == list(STRIDES)
    for level in STRIDES:
        np.testing.assert_array_equal(got[level], expected[level], err_msg=level)


def test_exports_match_keras_on_an_odd_input(tmp_path):
    keras.utils.set_random_seed(4)
    model = fpn_backbone("resnet10_narrow", input_shape=(100, 100, 3), channels=16)
    rng = np.random.default_rng(4)
    parity.randomise_batch_norm(model, parity.varied_images(rng, 8, 100), seed=5)
    parity.assert_exports_match_logits(model, parity.varied_images(rng, 2, 100), tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 0}, "channels must be a positive integer. Received: channels=0"),
        ({"levels": "C2"}, "levels must be a non-empty sequence"),
        ({"levels": ("C2", "C4")}, "levels must be 'C<k>' maps of consecutive k"),
        ({"levels": ("C5", "C4")}, "levels must be 'C<k>' maps of consecutive k"),
        ({"levels": ("C4", "C5", "C6")}, "levels must be maps of features, which has C2, C3, C4, C5"),
        ({"extra_level": "yes"}, "extra_level must be True or False. Received: extra_level='yes'"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    features = {f"C{k}": keras.Input((64 // 2**k, 64 // 2**k, 4)) for k in (2, 3, 4, 5)}
    with pytest.raises(ValueError, match=message):
        fpn(features, **kwargs)


def test_maps_that_do_not_halve_are_refused():
    features = {"C4": keras.Input((8, 8, 4)), "C5": keras.Input((2, 2, 4))}
    with pytest.raises(ValueError, match=r"Received: C4 of \(8, 8\) and C5 of \(2, 2\)"):
        fpn(features, levels=("C4", "C5"))
