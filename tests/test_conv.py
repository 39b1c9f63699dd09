"""Convolution arithmetic: output sizes, padding, a convolution as a dense layer, parameter counts, pooling."""

import re

import kapps.conv
from kapps.conv import conv_as_dense, conv_output_size, parameter_counts, same_padding

import keras
import numpy as np
import pytest
import scipy.signal

from tests.conftest import ROOT


def test_max_pooling_example_of_the_course():
    x = np.array([[1, 4, 3, 3], [2, 7, 1, 4], [3, 6, 5, 1], [2, 1, 4, 3]], "float32")[None, :, :, None]
    pooled = keras.layers.MaxPooling2D(pool_size=2, strides=2)(x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pooled)[0, :, :, 0], [[7, 4], [6, 5]])
    np.testing.assert_array_equal(kapps.conv.max_pool(x)[0, :, :, 0], [[7, 4], [6, 5]])


@pytest.mark.parametrize(
    ("size", "kernel", "kwargs", "expected"),
    [
        (5, 3, {"padding": 1, "stride": 1}, 5),
        (5, 3, {"padding": 0, "stride": 1}, 3),
        (5, 3, {"padding": 0, "stride": 2}, 2),
        (32, 5, {}, 28),  # LeNet-5's C1
        (224, 7, {"stride": 2, "padding": 3}, 112),  # ResNet's stem
        (224, 3, {"padding": 1}, 224),  # VGG's convolutions
        (112, 3, {"stride": 2, "padding": 1}, 56),  # ResNet's stem max pooling
        (7, 3, {"dilation": 2}, 3),  # a dilated 3x3 kernel spans 5 pixels
        (3, 3, {}, 1),
    ],
)
def test_conv_output_size_by_hand(size, kernel, kwargs, expected):
    assert conv_output_size(size, kernel, **kwargs) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 0, "kernel": 3}, "size must be an integer >= 1. Received: size=0"),
        ({"size": 5, "kernel": 0}, "kernel must be an integer >= 1. Received: kernel=0"),
        ({"size": 5, "kernel": 3, "stride": 0}, "stride must be an integer >= 1. Received: stride=0"),
        ({"size": 5, "kernel": 3, "padding": -1}, "padding must be an integer >= 0. Received: padding=-1"),
        ({"size": 5, "kernel": 3, "dilation": 0}, "dilation must be an integer >= 1. Received: dilation=0"),
        ({"size": 5.5, "kernel": 3}, "size must be an integer >= 1. Received: size=5.5"),
        ({"size": 5, "kernel": True}, "kernel must be an integer >= 1. Received: kernel=True"),
        ({"size": 4, "kernel": 5}, "kernel spans 5 pixels (kernel=5, dilation=1), more than the padded input's 4"),
        ({"size": 4, "kernel": 3, "dilation": 2}, "kernel spans 5 pixels (kernel=3, dilation=2)"),
    ],
)
def test_conv_output_size_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        conv_output_size(**kwargs)


def test_same_padding():
    assert [same_padding(k) for k in (1, 3, 5, 7)] == [0, 1, 2, 3]
    assert same_padding(3, dilation=2) == 2
    for k in (3, 5, 7):
        assert conv_output_size(17, k, padding=same_padding(k)) == 17
    with pytest.raises(ValueError, match=re.escape("kernel=4 with dilation=1 spans 4. Received: kernel=4")):
        same_padding(4)


def conv2d_model(kernel: np.ndarray, input_shape, stride: int, padding: int) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    conv = keras.layers.Conv2D(kernel.shape[-1], kernel.shape[:2], strides=stride, use_bias=False)
    outputs = conv(keras.layers.ZeroPadding2D(padding)(inputs))
    conv.set_weights([kernel])
    return keras.Model(inputs, outputs)


def dense_model(matrix: np.ndarray, input_shape, output_shape) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    dense = keras.layers.Dense(matrix.shape[1], use_bias=False)
    outputs = keras.layers.Reshape(output_shape)(dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([matrix])
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("channels", [(1, 1), (3, 4)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_as_dense_equals_conv2d(channels, stride, padding):
    cin, cout = channels
    rng = np.random.default_rng(stride * 10 + padding)
    # Small integers: every product and sum is exact in float32, so the two layers must agree to the bit.
    kernel = rng.integers(-3, 4, size=(3, 3, cin, cout)).astype("float32")
    x = rng.integers(0, 10, size=(2, 7, 6, cin)).astype("float32")
    # One channel goes in as a plain (3, 3) kernel and a (7, 6) image, as on the course's slides.
    single = channels == (1, 1)
    matrix = conv_as_dense(
        kernel[:, :, 0, 0] if single else kernel, (7, 6) if single else (7, 6, cin), stride=stride, padding=padding
    )
    expected = keras.ops.convert_to_numpy(conv2d_model(kernel, (7, 6, cin), stride, padding)(x))
    out_h = conv_output_size(7, 3, stride=stride, padding=padding)
    out_w = conv_output_size(6, 3, stride=stride, padding=padding)
    assert expected.shape == (2, out_h, out_w, cout)
    assert matrix.shape == (7 * 6 * cin, out_h * out_w * cout)
    got = keras.ops.convert_to_numpy(dense_model(matrix, (7, 6, cin), (out_h, out_w, cout))(x))
    np.testing.assert_array_equal(got, expected)
    # Sparse: each output reads at most 3*3*cin inputs. Shared: every column holds only the kernel's weights.
    assert ((matrix != 0).sum(axis=0) <= 9 * cin).all()
    assert set(np.unique(matrix)) <= set(np.unique(kernel)) | {0.0}


def test_conv_as_dense_by_hand():
    # A 1x2 kernel [a, b] on a 1x3 row: outputs a*x0 + b*x1 and a*x1 + b*x2.
    matrix = conv_as_dense([[2.0, 3.0]], (1, 3))
    np.testing.assert_array_equal(matrix, [[2, 0], [3, 2], [0, 3]])


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((np.ones(3), (5, 5)), {}, "kernel must be (height, width) or (height, width, in_channels, out_channels)"),
        ((np.ones((3, 3, 2, 1)), (5, 5)), {}, "input_shape must be (height, width) or (height, width, 2)"),
        ((np.ones((3, 3)), (5, 5)), {"stride": 0}, "stride must be an integer >= 1. Received: stride=0"),
    ],
)
def test_conv_as_dense_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        conv_as_dense(*args, **kwargs)


def test_parameter_counts_conv_against_dense():
    counts = parameter_counts(3, 3, 64, (224, 224))
    conv = keras.layers.Conv2D(64, 3, padding="same")
    conv.build((None, 224, 224, 3))
    assert counts.conv == conv.count_params() == 3 * 3 * 3 * 64 + 64 == 1_792
    # Dense from 224*224*3 = 150,528 inputs to 224*224*64 = 3,211,264 outputs, one bias each.
    assert counts.dense == 150_528 * 3_211_264 + 3_211_264 == 483_388_358_656
    assert counts.ratio == pytest.approx(483_388_358_656 / 1_792)
    assert counts.output_hw == (224, 224)
    no_bias = parameter_counts(3, 3, 64, (224, 224), stride=2, padding=1, use_bias=False)
    assert (no_bias.conv, no_bias.dense, no_bias.output_hw) == (1_728, 150_528 * 112 * 112 * 64, (112, 112))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (((3, 3, 3), 3, 64, (224, 224)), "kernel_size must be k or (kh, kw). Received: kernel_size=(3, 3, 3)"),
        ((3, 3, 64, 224), "input_hw must be (height, width). Received: input_hw=224"),
        ((3, 0, 64, (224, 224)), "in_channels must be an integer >= 1. Received: in_channels=0"),
        ((4, 3, 64, (224, 224)), "kernel=4 with dilation=1 spans 4"),  # no symmetric 'same' padding
    ],
)
def test_parameter_counts_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parameter_counts(*args)


def test_parameter_counts_match_a_small_dense_layer():
    # Small enough to build: the dense layer's count is what Keras counts for Dense(OH*OW*out).
    counts = parameter_counts(3, 2, 4, (6, 5), padding=0)
    dense = keras.layers.Dense(4 * 3 * 4)
    dense.build((None, 6 * 5 * 2))
    assert counts.dense == dense.count_params() == 60 * 48 + 48
    assert counts.conv == 3 * 3 * 2 * 4 + 4


def test_a_5x5_input_against_the_definition():
    # out[i, j] = sum_{u, v} x[i + u, j + v] * k[u, v] (cross-correlation, what CNN layers compute), by hand:
    # with this kernel each output is (left column - right column) of its 3x3 window.
    x = np.array([[1, 2, 0, 1, 3], [0, 1, 2, 3, 1], [2, 1, 0, 0, 2], [1, 0, 1, 2, 0], [3, 1, 2, 0, 1]], "float32")
    k = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], "float32")
    # out[0, 0] = (1 + 0 + 2) - (0 + 2 + 0) = 1;  out[0, 2] = (0 + 2 + 0) - (3 + 1 + 2) = -4
    # out[1, 1] = (1 + 1 + 0) - (3 + 0 + 2) = -3; out[2, 0] = (2 + 1 + 3) - (0 + 1 + 2) = 3
    by_hand = np.array([[1, 0, -4], [0, -3, 0], [3, 0, 0]], "float32")
    got = kapps.conv.apply_kernel(x[None, :, :, None], k)[0, :, :, 0]
    np.testing.assert_array_equal(got, by_hand)
    # The mathematicians' convolution flips the kernel; this kernel flipped left-right is its negative.
    np.testing.assert_array_equal(scipy.signal.convolve2d(x, k, mode="valid"), -by_hand)
    # With padding 1 the output keeps the 5x5 size; its centre is the valid output.
    padded = kapps.conv.apply_kernel(x[None, :, :, None], k, padding=1)[0, :, :, 0]
    assert padded.shape == (5, 5)
    np.testing.assert_array_equal(padded[1:-1, 1:-1], by_hand)
    assert padded[0, 0] == (0 + 0 + 0) - (2 + 1)  # zeros on the left, x[0:2, 1] on the right


def test_kernels_demo_recipe_writes_its_pictures(tmp_path):
    """The recipe's click command, run in this process (the recipe tests start real processes)."""
    import importlib.util

    import matplotlib.image
    from click.testing import CliRunner

    spec = importlib.util.spec_from_file_location("kernels_demo_recipe", ROOT / "recipes" / "kernels_demo.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    out = tmp_path / "demo"
    result = CliRunner().invoke(recipe.main, ["--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    names = ["sobel_camera.png", "sobel_astronaut.png", "padding_stride.png", "max_pooling.png"]
    assert result.stdout.splitlines() == [f"wrote {out / name}" for name in names]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for name in names:
        picture = matplotlib.image.imread(out / name)
        assert picture.shape[0] > 300 and picture.shape[1] > 1000, name
        assert picture[..., :3].std() > 0.05, name  # not a blank canvas
