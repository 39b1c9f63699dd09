"""The recipes' learning-rate schedules: the values they state at the steps that matter, and a save and load."""

from kapps.train.schedules import HoldThenLinear

import keras
import numpy as np
import pytest


def test_hold_then_linear_holds_then_falls_in_a_straight_line():
    schedule = HoldThenLinear(2e-4, hold_steps=100, decay_steps=50)
    steps = [0, 99, 100, 110, 125, 149, 150, 400]
    expected = [2e-4, 2e-4, 2e-4, 1.6e-4, 1e-4, 4e-6, 0.0, 0.0]
    np.testing.assert_allclose([float(schedule(step)) for step in steps], expected, rtol=1e-5, atol=1e-12)
    ending = HoldThenLinear(1.0, hold_steps=0, decay_steps=4, end=0.2)
    assert [float(ending(step)) for step in range(6)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.2])


def test_hold_then_linear_drives_an_optimizer_and_survives_saving():
    schedule = HoldThenLinear(1e-3, hold_steps=2, decay_steps=2)
    optimizer = keras.optimizers.Adam(schedule)
    variable = keras.Variable(1.0)
    rates = []
    for _ in range(5):
        rates.append(float(optimizer.learning_rate))  # the rate the next step uses
        optimizer.apply([keras.ops.convert_to_tensor(1.0)], [variable])
    assert rates == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4, 0.0])
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.get_config()["learning_rate"]["class_name"] == "HoldThenLinear"
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(again, HoldThenLinear) and again.get_config() == schedule.get_config()


def test_hold_then_linear_refuses_impossible_lengths():
    with pytest.raises(ValueError, match="decay_steps at least 1"):
        HoldThenLinear(1e-3, hold_steps=5, decay_steps=0)
    with pytest.raises(ValueError, match="hold_steps must be at least 0"):
        HoldThenLinear(1e-3, hold_steps=-1, decay_steps=3)
