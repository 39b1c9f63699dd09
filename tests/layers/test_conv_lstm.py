"""The convolutional LSTM cell against Keras's ConvLSTM2D and against its gate equations in NumPy; the zero maps; a
vector spread over maps; the stop that turns confidences into a count."""

from kapps.layers import ConvLSTMCell, SpreadVector, StopSequence, ZeroMaps

import keras
import numpy as np
import pytest


def same_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """A stride-1 "same" convolution (cross-correlation, as every deep-learning library computes it) in NumPy:
    x (B, H, W, C), kernel (k, k, C, F) -> (B, H, W, F)."""
    k = kernel.shape[0]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    height, width = x.shape[1:3]
    out = np.zeros((*x.shape[:3], kernel.shape[-1]))
    for dy in range(k):
        for dx in range(k):
            out += padded[:, dy : dy + height, dx : dx + width] @ kernel[dy, dx]
    return out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def random_cell(filters=4, channels=3, kernel_size=3, seed=0):
    cell = ConvLSTMCell(filters, kernel_size)
    cell.build([(None, 5, 6, channels), (None, 5, 6, filters), (None, 5, 6, filters)])
    rng = np.random.default_rng(seed)
    cell.set_weights([rng.normal(0, 0.4, w.shape).astype("float32") for w in cell.get_weights()])
    return cell


def test_one_step_is_the_gate_equations():
    cell = random_cell()
    kernel, recurrent, bias = (w.astype("float64") for w in cell.get_weights())
    rng = np.random.default_rng(1)
    x, h, c = rng.normal(size=(2, 5, 6, 3)), rng.normal(size=(2, 5, 6, 4)), rng.normal(size=(2, 5, 6, 4))
    z = same_conv(x, kernel) + same_conv(h, recurrent) + bias
    i, f, g, o = sigmoid(z[..., 0:4]), sigmoid(z[..., 4:8]), np.tanh(z[..., 8:12]), sigmoid(z[..., 12:16])
    c_next = f * c + i * g
    h_next = o * np.tanh(c_next)
    got_h, got_c = cell([x.astype("float32"), h.astype("float32"), c.astype("float32")])
    np.testing.assert_allclose(np.asarray(got_c), c_next, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got_h), h_next, atol=1e-5)


def test_three_steps_from_zero_are_keras_conv_lstm2d_with_the_same_weights():
    cell = random_cell(seed=2)
    reference = keras.layers.ConvLSTM2D(4, 3, padding="same", return_sequences=True)
    sequence = np.random.default_rng(3).normal(size=(2, 3, 5, 6, 3)).astype("float32")
    expected = np.asarray(reference(sequence))  # builds it
    reference.set_weights(cell.get_weights())
    expected = np.asarray(reference(sequence))
    h = c = np.zeros((2, 5, 6, 4), "float32")
    for t in range(3):
        h, c = cell([sequence[:, t], h, c])
        np.testing.assert_allclose(np.asarray(h), expected[:, t], atol=1e-5)


def test_weights_have_conv_lstm2d_layout_and_the_forget_bias_starts_at_one():
    cell = ConvLSTMCell(4, 5)
    cell.build([(None, 8, 8, 3), (None, 8, 8, 4), (None, 8, 8, 4)])
    kernel, recurrent, bias = cell.get_weights()
    assert kernel.shape == (5, 5, 3, 16) and recurrent.shape == (5, 5, 4, 16)
    np.testing.assert_array_equal(bias, [0] * 4 + [1] * 4 + [0] * 8)
    assert cell.count_params() == 25 * (3 + 4) * 16 + 16


def test_the_cell_refuses_bad_settings_and_states():
    with pytest.raises(ValueError, match="filters must be a positive integer. Received: filters=0"):
        ConvLSTMCell(0)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd integer. Received: kernel_size=2"):
        ConvLSTMCell(4, 2)
    with pytest.raises(ValueError, match="states must have 4 channels"):
        ConvLSTMCell(4).build([(None, 8, 8, 3), (None, 8, 8, 5), (None, 8, 8, 4)])


def test_zero_maps_follow_the_inputs_batch_and_size():
    x = np.random.default_rng(0).normal(size=(3, 4, 5, 2)).astype("float32")
    for channels in (1, 6):
        zeros = np.asarray(ZeroMaps(channels)(x))
        assert zeros.shape == (3, 4, 5, channels) and not zeros.any()
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        ZeroMaps(0)


def test_a_vector_is_spread_over_the_maps_batch_and_size():
    vector = np.array([[1.0, -2.0], [3.0, 4.0]], "float32")
    maps = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype("float32")
    spread = np.asarray(SpreadVector()([vector, maps]))
    np.testing.assert_array_equal(spread, np.broadcast_to(vector[:, None, None, :], (2, 3, 5, 2)))
    assert SpreadVector().compute_output_shape([(None, 2), (None, 3, 5, 7)]) == (None, 3, 5, 2)


def test_the_stop_keeps_the_steps_before_the_first_low_confidence():
    confidences = np.array(
        [
            [0.9, 0.6, 0.4, 0.8],  # stops at step 2: the step after it counts no more, though confident
            [0.3, 0.9, 0.9, 0.9],  # stops at once
            [0.5, 0.5, 0.5, 0.5],  # 0.5 goes on
            [0.99, 0.7, 0.6, 0.49],
        ],
        "float32",
    )
    masks = np.random.default_rng(0).uniform(0.1, 1, (4, 4, 3, 3)).astype("float32")
    kept, count = (np.asarray(v) for v in StopSequence()(masks, confidences))
    np.testing.assert_array_equal(count, [2, 0, 4, 3])
    keep = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], "float32")
    np.testing.assert_array_equal(kept, masks * keep[:, :, None, None])
    _, count = StopSequence(threshold=0.65)(masks, confidences)
    np.testing.assert_array_equal(np.asarray(count), [1, 0, 0, 2])
    with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\). Received: threshold=1.5"):
        StopSequence(threshold=1.5)
