"""The regression kind: a regressor's values compared for export, scored as MSE and accuracy within 0.04, listed
for predict; its data is the adding problem."""

import kapps.data
from kapps.errors import DataError, ModelError
from kapps.kinds import PredictOptions, kind_for, regression

import keras
import numpy as np
import pytest
import tensorflow as tf

KIND = kind_for("regression")


def test_outputs_are_one_batch_of_values():
    KIND.check({"predictions": (None, 1)}, what="'m'")
    KIND.check({"predictions": (None, 3)}, what="'m'")
    for bad in ({"map": (None, 8, 8, 3)}, {"a": (None, 1), "b": (None, 1)}, {}):
        with pytest.raises(ModelError, match=r"^'m' is not a regressor: its outputs are .*, not one \(batch, values\)"):
            KIND.check(bad, what="'m'")


def test_float_and_quantised_criteria():
    expected = {"p": np.array([[1.0], [0.5], [1.5], [0.2]])}
    close = {"p": expected["p"] + np.array([[5e-5], [-5e-5], [0.0], [0.0]])}
    assert KIND.compare(close, expected, quantized=False, model=None) == {
        "max_abs_diff": pytest.approx(5e-5),
        "value_agreement": 1.0,
        "top1_agreement": None,
        "passed": True,
    }
    # one value of four moved by 0.015: within the quantised bound (0.02), not the float one (1e-4)
    moved = {"p": expected["p"] + np.array([[0.0], [0.015], [0.0], [0.0]])}
    assert KIND.compare(moved, expected, quantized=False, model=None)["value_agreement"] == 0.75
    assert not KIND.compare(moved, expected, quantized=False, model=None)["passed"]
    assert KIND.compare(moved, expected, quantized=True, model=None)["passed"]
    far = {"p": expected["p"] + np.array([[0.0], [0.0], [0.025], [0.0]])}
    entry = KIND.compare(far, expected, quantized=True, model=None)
    assert not entry["passed"] and entry["max_abs_diff"] == pytest.approx(0.025)
    assert KIND.agreement(entry) == 0.75
    assert KIND.describe(entry) == "max abs diff 0.025, 75.0% of examples within the bound"
    assert regression.QUANTIZED_MAX_ABS_DIFF == regression.TOLERANCE / 2 == 0.02
    assert KIND.criterion(quantized=False) == "every value within 0.0001 of Keras's"


def test_evaluate_is_mse_and_the_share_within_the_tolerance():
    """A model that answers the first input of each example: errors 0.03, -0.05, 0.0 and 0.1 against the targets,
    so MSE (0.0009 + 0.0025 + 0 + 0.01) / 4 and two of four within 0.04."""
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False)(inputs))
    model.set_weights([np.array([[1.0], [0.0]], "float32")])
    x = np.array([[1.03, 9], [0.45, 9], [1.2, 9], [0.6, 9]], "float32")
    y = np.array([[1.0], [0.5], [1.2], [0.5]], "float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    scores = KIND.evaluate(model, dataset)
    assert scores["mse"] == pytest.approx((0.0009 + 0.0025 + 0.01) / 4, abs=1e-6)
    assert scores["accuracy"] == 0.5 and scores["count"] == 4
    assert KIND.evaluate(model, dataset, limit=2) == {
        "mse": pytest.approx(0.0017, abs=1e-6),
        "accuracy": 0.5,
        "count": 2,
    }


def test_result_lists_the_values():
    entry = KIND.result(
        {"predictions": np.array([[1.25, -0.5]])}, class_name=str, width=0, height=0, options=PredictOptions()
    )
    assert entry == {"values": [1.25, -0.5]}
    assert KIND.summary(entry) == "1.2500, -0.5000"


def test_data_is_the_adding_problem_at_the_model_length():
    data = KIND.load_data("adding", image_size=(30, 2), seed=1, data_dir=None)
    assert data.input_shape == (30, 2) and data.sizes == {"train": 10_000, "val": 1_000, "test": 1_000}
    expected = kapps.data.adding_data(length=30, seed=1)
    first, _ = next(iter(data.test.batch(4)))
    np.testing.assert_array_equal(first.numpy(), next(iter(expected.test.batch(4)))[0].numpy())
    with pytest.raises(DataError, match="^Unknown regression data source 'digits'; kapps has 'adding'."):
        KIND.load_data("digits", image_size=(30, 2), seed=1, data_dir=None)
