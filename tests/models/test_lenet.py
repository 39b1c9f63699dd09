"""LeNet-5: its layers, the paper's sparse C3 connection table, options and serialisation."""

import kapps.models
from kapps.layers import ConnectionTableConv2D
from kapps.models.lenet import C3_TABLE

import keras
import numpy as np
import pytest


def test_layer_shapes_follow_the_paper():
    model = kapps.models.build("lenet5")
    shapes = {layer.name: layer.output.shape[1:] for layer in model.layers[1:]}
    assert shapes["c1"] == (28, 28, 6)
    assert shapes["s2"] == (14, 14, 6)
    assert shapes["c3"] == (10, 10, 16)
    assert shapes["s4"] == (5, 5, 16)
    assert shapes["c5"] == (1, 1, 120)
    assert shapes["f6"] == (84,)
    assert shapes["predictions"] == (10,)


# Table I of LeCun et al. 1998, typed from the paper: a row per S2 map, a column per C3 map, X where the C3 map
# reads the S2 map. Columns 0-5 read 3 contiguous maps, 6-11 read 4 contiguous, 12-14 read 4 non-contiguous and
# 15 reads all six.
TABLE_I = """
X...XXX..XXXX.XX
XX...XXX..XXXX.X
XXX...XXX..X.XXX
.XXX..XXXX..X.XX
..XXX..XXXX.XX.X
...XXX..XXXX.XXX
"""


def test_connection_table_is_table_one_of_the_paper():
    paper = np.array([[mark == "X" for mark in row] for row in TABLE_I.split()])
    assert paper.shape == (6, 16) and paper.sum() == 60
    np.testing.assert_array_equal(np.array(C3_TABLE, dtype=bool), paper)


def test_c3_maps_do_not_see_the_s2_maps_table_one_leaves_out():
    # Change one S2 map at a time: exactly the C3 maps that Table I connects to it change, the others are equal
    # to the last bit (their effective kernels are zero there, not merely small).
    paper = np.array([[mark == "X" for mark in row] for row in TABLE_I.split()])
    keras.utils.set_random_seed(0)
    c3 = kapps.models.build("lenet5", connection_table=True).get_layer("c3")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 14, 14, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(c3(x))
    for s2 in range(6):
        changed = x.copy()
        changed[..., s2] += rng.normal(size=(2, 14, 14)).astype("float32")
        diff = np.abs(keras.ops.convert_to_numpy(c3(changed)) - y).max(axis=(0, 1, 2))  # per C3 map
        np.testing.assert_array_equal(diff[~paper[s2]], 0.0, err_msg=f"S2 map {s2}")
        assert (diff[paper[s2]] > 1e-3).all(), (s2, diff)


def test_connection_table_parameter_count():
    # C3 with the table: 60 kernels of 5x5 plus 16 biases = 1,516 (the paper's count) instead of 2,416.
    model = kapps.models.build("lenet5", connection_table=True)
    assert model.get_layer("c3").count_params() == 1_516
    assert model.count_params() == 61_706 - 2_416 + 1_516


def test_connection_table_equals_a_dense_conv_with_zeroed_kernels():
    rng = np.random.default_rng(0)
    layer = ConnectionTableConv2D(C3_TABLE, 5, activation=None)
    x = rng.normal(size=(2, 14, 14, 6)).astype("float32")
    y = keras.ops.convert_to_numpy(layer(x))
    sparse = keras.ops.convert_to_numpy(layer.kernel)  # (5, 5, 60)
    dense = np.zeros((5, 5, 6, 16), "float32")
    for c, (i, o) in enumerate(zip(*np.nonzero(np.array(C3_TABLE, dtype=bool)), strict=True)):
        dense[:, :, i, o] = sparse[:, :, c]
    conv = keras.layers.Conv2D(16, 5, use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(dense)
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(conv(x)), atol=1e-5)


def test_saves_and_loads_in_safe_mode(tmp_path):
    model = kapps.models.build("lenet5", connection_table=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = np.random.default_rng(1).uniform(size=(3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


def test_weights_from_a_file(tmp_path):
    source = kapps.models.build("lenet5")
    source.save_weights(tmp_path / "lenet.weights.h5")
    model = kapps.models.build("lenet5", weights=str(tmp_path / "lenet.weights.h5"))
    for a, b in zip(source.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_without_top():
    model = kapps.models.build("lenet5", include_top=False, pooling="avg")
    assert model.output_shape == (None, 120)
    assert kapps.models.build("lenet5", include_top=False).output_shape == (None, 1, 1, 120)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "mean", "include_top": False}, "pooling must be None, 'avg' or 'max'. Received: pooling='mean'"),
        ({"subsampling": "sum"}, "subsampling must be 'avg' or 'max'"),
        ({"input_shape": (32, 32)}, "input_shape must be"),
        ({"num_classes": 0}, "num_classes must be a positive integer"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        kapps.models.build("lenet5", **kwargs)


def test_exports_match_keras(tmp_path):
    from tests.conftest import assert_exports_match

    model = kapps.models.build("lenet5", connection_table=True)
    images = np.random.default_rng(3).uniform(size=(4, 32, 32, 1)).astype("float32")
    assert_exports_match(model, images, tmp_path)
