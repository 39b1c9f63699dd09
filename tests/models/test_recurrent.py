"""Recurrent models: one step of Keras's SimpleRNN, LSTM and GRU equals the course's gate equations computed in
NumPy from the layer's own weights; the classifiers' counts follow from those equations; the builder's checks."""

import kapps.models

import keras
import numpy as np
import pytest

FEATURES, UNITS, BATCH = 5, 4, 3


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def randomised(layer: keras.layers.Layer, seed: int) -> list[np.ndarray]:
    """Give every weight of `layer` (kernels and biases) a random normal value, so that no gate block is left at an
    initial value another block shares (the LSTM's forget bias starts at 1, every other bias at 0). Returns them."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0.0, 0.7, w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    return [w.astype("float64") for w in weights]


def one_step(cell: str, *, seed: int):
    """A Keras layer of `cell` run for one step from a random state on a random input, with `return_state=True`.

    Returns:
        `(weights, x, states, new_states)` as float64: the layer's weights, the input (B, F), the states it started
        from ([h] or [h, c], each (B, n)) and the states Keras answers after the step.
    """
    rng = np.random.default_rng(seed)
    layer_type = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    layer = layer_type(UNITS, return_state=True)
    x = rng.normal(0.0, 1.0, (BATCH, FEATURES)).astype("float32")
    states = [rng.normal(0.0, 0.8, (BATCH, UNITS)).astype("float32") for _ in range(2 if cell == "lstm" else 1)]
    layer(x[:, None], initial_state=states)  # builds the weights
    weights = randomised(layer, seed + 1)
    output, *new_states = layer(x[:, None], initial_state=states)
    np.testing.assert_array_equal(np.asarray(output), np.asarray(new_states[0]))  # the output is h'
    as64 = [np.asarray(s, "float64") for s in new_states]
    return weights, x.astype("float64"), [s.astype("float64") for s in states], as64


def lstm_step(x, h, c, kernel, recurrent_kernel, bias, *, order="ifco"):
    """The LSTM's equations: gates from blocks of Keras's concatenated weights, taken in `order`."""
    blocks = {
        name: (kernel[:, k * UNITS : (k + 1) * UNITS], recurrent_kernel[:, k * UNITS : (k + 1) * UNITS])
        for k, name in enumerate(order)
    }
    biases = {name: bias[k * UNITS : (k + 1) * UNITS] for k, name in enumerate(order)}

    def pre(name):
        w, u = blocks[name]
        return x @ w + h @ u + biases[name]

    i = sigmoid(pre("i"))  # input gate
    f = sigmoid(pre("f"))  # forget gate
    candidate = np.tanh(pre("c"))  # c~
    o = sigmoid(pre("o"))  # output gate
    c_next = f * c + i * candidate
    return o * np.tanh(c_next), c_next


def test_lstm_step_is_the_gate_equations():
    (kernel, recurrent_kernel, bias), x, (h, c), (h_next, c_next) = one_step("lstm", seed=0)
    assert kernel.shape == (FEATURES, 4 * UNITS) and recurrent_kernel.shape == (UNITS, 4 * UNITS)
    assert bias.shape == (4 * UNITS,)
    expected_h, expected_c = lstm_step(x, h, c, kernel, recurrent_kernel, bias, order="ifco")
    np.testing.assert_allclose(c_next, expected_c, atol=1e-5)
    np.testing.assert_allclose(h_next, expected_h, atol=1e-5)
    # The block order is Keras's i, f, c, o and no other: every other order of the four blocks misses by far more.
    for order in ("ifoc", "fico", "icfo", "oifc", "cfio"):
        wrong_h, wrong_c = lstm_step(x, h, c, kernel, recurrent_kernel, bias, order=order)
        assert np.max(np.abs(wrong_h - h_next)) + np.max(np.abs(wrong_c - c_next)) > 0.1, order


def test_simple_rnn_step_is_tanh_of_wx_plus_uh_plus_b():
    (kernel, recurrent_kernel, bias), x, (h,), (h_next,) = one_step("rnn", seed=1)
    np.testing.assert_allclose(h_next, np.tanh(x @ kernel + h @ recurrent_kernel + bias), atol=1e-5)
    # the transposed recurrence (h U^T) is not what Keras computes
    assert np.max(np.abs(np.tanh(x @ kernel + h @ recurrent_kernel.T + bias) - h_next)) > 0.1


def gru_step(x, h, kernel, recurrent_kernel, bias, *, reset_after=True, z_keeps_state=True):
    """Keras's GRU: blocks z (update), r (reset), h (candidate); bias row 0 for the input products, row 1 for the
    recurrent ones. With `reset_after` the reset gate scales the recurrent product (cuDNN's form); without, it
    scales h before it (Cho et al. 2014's). `z_keeps_state`: h' = z h + (1 - z) h~ (Keras's and Cho et al.'s),
    else h' = (1 - z) h + z h~ (Chung et al. 2014's)."""
    blocks = lambda w, k: w[..., k * UNITS : (k + 1) * UNITS]  # noqa: E731
    input_bias, recurrent_bias = bias
    z = sigmoid(
        x @ blocks(kernel, 0) + blocks(input_bias, 0) + h @ blocks(recurrent_kernel, 0) + blocks(recurrent_bias, 0)
    )
    r = sigmoid(
        x @ blocks(kernel, 1) + blocks(input_bias, 1) + h @ blocks(recurrent_kernel, 1) + blocks(recurrent_bias, 1)
    )
    if reset_after:
        recurrent = r * (h @ blocks(recurrent_kernel, 2) + blocks(recurrent_bias, 2))
    else:
        recurrent = (r * h) @ blocks(recurrent_kernel, 2) + blocks(recurrent_bias, 2)
    candidate = np.tanh(x @ blocks(kernel, 2) + blocks(input_bias, 2) + recurrent)
    if z_keeps_state:
        return z * h + (1.0 - z) * candidate
    return (1.0 - z) * h + z * candidate


def test_gru_step_is_kerass_reset_after_equations():
    (kernel, recurrent_kernel, bias), x, (h,), (h_next,) = one_step("gru", seed=2)
    assert bias.shape == (2, 3 * UNITS)  # reset_after=True: a second bias vector, for the recurrent products
    np.testing.assert_allclose(h_next, gru_step(x, h, kernel, recurrent_kernel, bias), atol=1e-5)
    # the reset gate applied before the product, or z weighting the candidate, give other states
    before = gru_step(x, h, kernel, recurrent_kernel, bias, reset_after=False)
    assert np.max(np.abs(before - h_next)) > 0.05
    other_z = gru_step(x, h, kernel, recurrent_kernel, bias, z_keeps_state=False)
    assert np.max(np.abs(other_z - h_next)) > 0.1


def test_lstm_classifier_is_the_equations_over_every_step_then_softmax():
    steps = 6
    model = kapps.models.lstm_classifier(input_shape=(steps, FEATURES), units=UNITS, num_classes=3)
    kernel, recurrent_kernel, bias = randomised(model.get_layer("lstm"), seed=3)
    dense, dense_bias = randomised(model.get_layer("predictions"), seed=4)
    sequences = np.random.default_rng(5).normal(0.0, 1.0, (BATCH, steps, FEATURES)).astype("float32")
    h = c = np.zeros((BATCH, UNITS))
    for t in range(steps):  # the state starts at zero and reads the steps in order
        h, c = lstm_step(sequences[:, t].astype("float64"), h, c, kernel, recurrent_kernel, bias)
    logits = h @ dense + dense_bias
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    got = np.asarray(model(sequences))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the steps read backwards give other probabilities: order matters, and the test sees it
    assert np.max(np.abs(np.asarray(model(sequences[:, ::-1])) - got)) > 1e-3


def gate_params(gates: int, biases: int, *, features: int, units: int) -> int:
    """Weights of a recurrent layer of `gates` blocks, each W (features x units), U (units x units) and `biases`
    bias vectors of `units`."""
    return gates * (units * (features + units) + biases * units)


@pytest.mark.parametrize(
    ("cell", "gates", "biases"),
    [("rnn", 1, 1), ("lstm", 4, 1), ("gru", 3, 2)],
)
@pytest.mark.parametrize(("steps", "features", "units", "classes"), [(28, 28, 128, 10), (32, 32, 64, 10), (7, 2, 5, 3)])
def test_counts_follow_from_the_gate_equations(cell, gates, biases, steps, features, units, classes):
    model = kapps.models.rnn_classifier(input_shape=(steps, features), units=units, num_classes=classes, cell=cell)
    expected = gate_params(gates, biases, features=features, units=units) + units * classes + classes
    assert model.count_params() == expected
    assert model.name == f"{cell}_classifier"
    assert model.output_shape == (None, classes)


def test_registered_counts_are_the_equations_at_28_by_28():
    # 128 units on 28 features; the head 128 x 10 + 10 = 1,290
    assert kapps.models.info("rnn_classifier").param_count == 128 * (28 + 128) + 128 + 1_290 == 21_386
    assert kapps.models.info("lstm_classifier").param_count == 4 * (128 * (28 + 128) + 128) + 1_290 == 81_674
    assert kapps.models.info("gru_classifier").param_count == 3 * (128 * (28 + 128) + 2 * 128) + 1_290 == 61_962
    for name in ("rnn_classifier", "lstm_classifier", "gru_classifier"):
        assert kapps.models.info(name).task == "classification"


def test_regression_head_is_one_linear_output():
    model = kapps.models.rnn_classifier(input_shape=(20, 2), units=8, cell="lstm", head="regression")
    assert model.name == "lstm_regressor" and model.output_shape == (None, 1)
    head = model.get_layer("predictions")
    assert head.activation is keras.activations.linear and head.dtype_policy.name == "float32"
    assert model.count_params() == 4 * (8 * (2 + 8) + 8) + 8 + 1


def test_the_recurrence_is_a_loop_unless_unrolled():
    loop = kapps.models.rnn_classifier(input_shape=(10, 3), units=4, cell="gru")
    assert loop.get_layer("gru").unroll is False  # trains faster; kapps export unrolls it
    unrolled = kapps.models.rnn_classifier(input_shape=(10, 3), units=4, cell="gru", unroll=True)
    assert unrolled.get_layer("gru").unroll is True
    unrolled.set_weights(loop.get_weights())
    sequences = np.random.default_rng(0).normal(0.0, 1.0, (2, 10, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(unrolled(sequences)), np.asarray(loop(sequences)), atol=1e-6)
    free = kapps.models.rnn_classifier(input_shape=(None, 3), units=4)
    assert free(np.zeros((2, 17, 3), "float32")).shape == (2, 10)  # any length


def test_cell_pair_builds_one_model_per_cell_for_one_length():
    pair = kapps.models.cell_pair(length=50, features=2, head="regression", units=16)
    assert list(pair) == ["rnn", "lstm"]
    assert [m.name for m in pair.values()] == ["rnn_regression_50", "lstm_regression_50"]
    assert [m.input_shape for m in pair.values()] == [(None, 50, 2)] * 2
    assert pair["rnn"].count_params() == 16 * (2 + 16) + 16 + 17
    assert pair["lstm"].count_params() == 4 * (16 * (2 + 16) + 16) + 17
    digits = kapps.models.cell_pair(length=32, features=32, head="classification", units=8, cells=("lstm", "gru"))
    assert [m.output_shape for m in digits.values()] == [(None, 10)] * 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "cell must be one of"),
        ({"head": "segmentation"}, "head must be one of"),
        ({"input_shape": (28, 28, 1)}, r"input_shape must be \(steps, features\)"),
        ({"input_shape": (28, None)}, r"input_shape must be \(steps, features\)"),
        ({"units": 0}, "units must be a positive integer"),
        ({"num_classes": 1}, "num_classes must be an integer of at least 2"),
        ({"input_shape": (None, 28), "unroll": True}, "unroll=True needs a fixed number of steps"),
    ],
)
def test_bad_arguments_are_one_sentence(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kapps.models.rnn_classifier(**kwargs)


def test_cell_pair_refuses_repeated_cells():
    with pytest.raises(ValueError, match="cells must name distinct cells"):
        kapps.models.cell_pair(length=10, features=2, head="regression", cells=("lstm", "lstm"))
