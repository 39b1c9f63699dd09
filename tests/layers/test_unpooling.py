"""MaxPoolingWithSwitches and MaxUnpooling: against argmax unpooling in NumPy (ties and odd sizes included), their
gradients, saving, and the same switches in SavedModel, TFLite (builtins only) and ONNX."""

import itertools

from kapps.layers import MaxPoolingWithSwitches, MaxUnpooling

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import assert_exports_match, tflite_ops


def argmax_pooling(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Max pooling of k x k windows (the last ones cut short by the edge) and the flat row-major position, in the
    image, of each window's maximum: the first maximum of the window in row-major order, as `np.argmax` picks."""
    batch, height, width, channels = x.shape
    rows, cols = -(-height // k), -(-width // k)
    pooled = np.zeros((batch, rows, cols, channels), x.dtype)
    where = np.zeros((batch, rows, cols, channels), int)
    for b, i, j, c in itertools.product(range(batch), range(rows), range(cols), range(channels)):
        window = x[b, i * k : (i + 1) * k, j * k : (j + 1) * k, c]
        u, v = np.unravel_index(np.argmax(window), window.shape)
        pooled[b, i, j, c] = window[u, v]
        where[b, i, j, c] = (i * k + u) * width + j * k + v
    return pooled, where


def argmax_unpooling(values: np.ndarray, where: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scatter each pooled value to the flat position `where` holds for it, as SegNet's Caffe "Upsample" does."""
    batch, rows, cols, channels = values.shape
    out = np.zeros((batch, height * width, channels), values.dtype)
    for b, i, j, c in itertools.product(range(batch), range(rows), range(cols), range(channels)):
        out[b, where[b, i, j, c], c] = values[b, i, j, c]
    return out.reshape(batch, height, width, channels)


def tied(shape, seed=0) -> np.ndarray:
    """Integers 0..2: most windows hold several equal maxima."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype("float32")


def continuous(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


CASES = [
    ((2, 7, 9, 3), 2, tied),
    ((2, 5, 5, 2), 2, tied),
    ((1, 6, 8, 4), 2, tied),
    ((2, 7, 9, 3), 2, continuous),
    ((1, 7, 8, 2), 3, tied),
]


@pytest.mark.parametrize(("shape", "k", "make"), CASES)
def test_switches_and_unpooling_match_argmax_unpooling(shape, k, make):
    x = make(shape)
    height, width = shape[1:3]
    pooled, switches = (np.asarray(t) for t in MaxPoolingWithSwitches(pool_size=k)(x))
    expected_pooled, where = argmax_pooling(x, k)
    np.testing.assert_array_equal(pooled, expected_pooled)
    np.testing.assert_array_equal(switches, argmax_unpooling(np.ones_like(expected_pooled), where, height, width))
    # the decoder's values are not the pooled map: any map of the pooled size goes back to the switches
    values = continuous(expected_pooled.shape, seed=1)
    unpooled = np.asarray(MaxUnpooling(pool_size=k)([values, switches]))
    np.testing.assert_array_equal(unpooled, argmax_unpooling(values, where, height, width))


def test_ties_are_really_there():
    # the tied inputs must exercise the tie-break: most 2x2 windows of the 7x9 case hold their maximum twice or more
    x = tied((2, 7, 9, 3))[:, :6, :8]
    windows = x.reshape(2, 3, 2, 4, 2, 3).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
    repeats = (windows == windows.max(axis=1, keepdims=True)).sum(axis=1)
    assert np.mean(repeats > 1) > 0.5
    # and the equality mask alone (no tie-break) would set more than one position per window
    _, switches = MaxPoolingWithSwitches()(x)
    assert np.asarray(switches).sum() == windows.shape[0]


def test_gradients_reach_the_values_at_the_switches():
    x = tied((2, 7, 9, 3))
    _, where = argmax_pooling(x, 2)
    pooled, switches = MaxPoolingWithSwitches()(x)
    values = tf.Variable(continuous(pooled.shape, seed=2))
    weights = continuous(x.shape, seed=3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weights * MaxUnpooling()([values, switches]))
    grad = tape.gradient(loss, values).numpy()
    # d loss / d value = the weight at the value's switch position
    flat = weights.reshape(2, -1, 3)
    expected = np.take_along_axis(flat, where.reshape(2, -1, 3), axis=1).reshape(grad.shape)
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_pooled_map_keeps_max_poolings_gradient():
    x = tf.Variable(continuous((1, 5, 5, 2)))
    _, where = argmax_pooling(x.numpy(), 2)
    with tf.GradientTape() as tape:
        pooled, switches = MaxPoolingWithSwitches()(x)
        loss = tf.reduce_sum(pooled)
    grad = tape.gradient(loss, x).numpy()
    # one unit of gradient at each window's maximum: the switches themselves
    np.testing.assert_array_equal(grad, argmax_unpooling(np.ones(pooled.shape, "float32"), where, 5, 5))


def test_free_sizes_and_mixed_precision():
    inputs = keras.Input((None, None, 3))
    pooled, switches = MaxPoolingWithSwitches(dtype="mixed_float16")(inputs)
    out = MaxUnpooling(dtype="mixed_float16")([pooled, switches])
    model = keras.Model(inputs, [out, switches])
    assert model.output_shape == [(None, None, None, 3), (None, None, None, 3)]
    x = tied((2, 7, 9, 3))
    _, where = argmax_pooling(x, 2)
    got, got_switches = model(x)
    assert got.dtype == "float16"
    pooled = argmax_pooling(x, 2)[0]
    np.testing.assert_array_equal(np.asarray(got, "float32"), argmax_unpooling(pooled, where, 7, 9))
    np.testing.assert_array_equal(np.asarray(got_switches, "float32"), argmax_unpooling(pooled * 0 + 1, where, 7, 9))


def test_saves_and_loads_in_safe_mode(tmp_path):
    inputs = keras.Input((7, 9, 2))
    pooled, switches = MaxPoolingWithSwitches(pool_size=3, name="pool")(inputs)
    out = MaxUnpooling(pool_size=3, name="unpool")([keras.layers.Conv2D(2, 1)(pooled), switches])
    model = keras.Model(inputs, out)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.get_layer("pool").pool_size == 3 and loaded.get_layer("unpool").pool_size == 3
    x = continuous((2, 7, 9, 2))
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


@pytest.mark.parametrize("pool_size", [1, 0, 2.0, True, "2"])
def test_bad_pool_size(pool_size):
    with pytest.raises(ValueError, match="pool_size must be an integer of at least 2"):
        MaxPoolingWithSwitches(pool_size=pool_size)
    with pytest.raises(ValueError, match="pool_size must be an integer of at least 2"):
        MaxUnpooling(pool_size=pool_size)


def test_values_must_be_the_pooled_size_of_the_switches():
    with pytest.raises(ValueError, match=r"not the 2x2 pooling of switches of size \(7, 9\)"):
        MaxUnpooling()([keras.Input((3, 5, 4)), keras.Input((7, 9, 4))])
    with pytest.raises(ValueError, match="same C"):
        MaxUnpooling()([keras.Input((4, 5, 3)), keras.Input((7, 9, 4))])
    with pytest.raises(ValueError, match="known channels"):
        MaxPoolingWithSwitches()(keras.Input((7, 9, None)))


@pytest.mark.parametrize("input_shape", [(7, 9, 3), (None, None, 3)])
def test_exports_with_builtin_ops_and_the_same_switches(tmp_path, input_shape):
    # The switches are taken on the tied input itself and on a ReLU map (zeros tie everywhere), the values come
    # from convolutions: what SegNet does, in miniature, at an odd size. With a free size the crops are computed in
    # the graph, and the convolutions after the layers must still see their channels (TFLite's Conv2D needs them).
    inputs = keras.Input(input_shape, name="image")
    pooled, switches = MaxPoolingWithSwitches(name="pool1")(inputs)
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(pooled)
    pooled2, switches2 = MaxPoolingWithSwitches(name="pool2")(features)
    up2 = MaxUnpooling(name="unpool2")([keras.layers.Conv2D(4, 1, name="decode2")(pooled2), switches2])
    up1 = MaxUnpooling(name="unpool1")([keras.layers.Conv2D(3, 1, name="decode1")(up2), switches])
    model = keras.Model(inputs, {"unpooled": up1, "switches": switches, "relu_switches": switches2})
    x = tied((4, 7, 9, 3), seed=5)
    diffs = assert_exports_match(model, x, tmp_path, atol=1e-5)
    assert max(diffs.values()) <= 1e-5, diffs
    ops = tflite_ops(tmp_path / "model.tflite")
    assert {"SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "EQUAL", "MAX_POOL_2D"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    # the switches are exact in every runtime: the tie-break is the NumPy reference's
    _, where = argmax_pooling(x, 2)
    expected = argmax_unpooling(np.ones((4, 4, 5, 3), "float32"), where, 7, 9)
    np.testing.assert_array_equal(np.asarray(model(x)["switches"]), expected)
