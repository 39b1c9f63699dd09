"""The heatmap loss: squared error over pixels and types, averaged over the stacks of intermediate supervision."""

from kapps.losses import HeatmapLoss, heatmap_mse

import keras
import numpy as np
import pytest


def test_mse_averaged_over_stacks_and_one_type():
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 1, (2, 4, 5, 1)).astype("float32")
    stacks = rng.uniform(0, 1, (2, 3, 4, 5, 1)).astype("float32")
    expected = np.mean((stacks - targets[:, None]) ** 2, axis=(1, 2, 3, 4))  # per example
    np.testing.assert_allclose(heatmap_mse(targets, stacks), expected, rtol=1e-6)
    np.testing.assert_allclose(
        heatmap_mse(targets, stacks[:, 1]), np.mean((stacks[:, 1] - targets) ** 2, (1, 2, 3)), rtol=1e-6
    )
    # the Keras loss: the batch mean, with one point type (where a function loss would be squeezed wrongly)
    assert float(HeatmapLoss()(targets, stacks)) == pytest.approx(expected.mean(), rel=1e-6)
    restored = keras.losses.deserialize(keras.losses.serialize(HeatmapLoss()))
    assert isinstance(restored, HeatmapLoss)


def test_foreground_weight_weighs_each_pixel_by_its_target():
    """With w, a pixel's squared error counts 1 + w * target: an error under a peak of 1 counts 11 times with w = 10,
    one on the background once, and the weight survives serialisation."""
    targets = np.zeros((1, 2, 2, 1), "float32")
    targets[0, 0, 0, 0], targets[0, 1, 1, 0] = 1.0, 0.5
    predictions = np.full((1, 1, 2, 2, 1), 0.25, "float32")
    errors = (0.25 - targets[0, :, :, 0]) ** 2 * (1 + 10 * targets[0, :, :, 0])  # 0.5625*11, .0625, .0625, .0625*6
    assert float(heatmap_mse(targets, predictions, foreground_weight=10)[0]) == pytest.approx(errors.mean(), rel=1e-6)
    assert errors.mean() == pytest.approx((6.1875 + 0.0625 + 0.0625 + 0.375) / 4)
    loss = HeatmapLoss(foreground_weight=10)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.foreground_weight == 10 and float(restored(targets, predictions)) == pytest.approx(errors.mean())
    with pytest.raises(ValueError, match="foreground_weight must be at least 0"):
        HeatmapLoss(foreground_weight=-1)


def test_a_foreground_weight_a_type():
    """Type 0 weighed 30 and type 1 weighed 0: the same as each type alone at its weight, averaged over the types."""
    rng = np.random.default_rng(1)
    targets = rng.uniform(0, 1, (2, 3, 4, 2)).astype("float32")
    predictions = rng.uniform(0, 1, (2, 2, 3, 4, 2)).astype("float32")
    alone = [
        heatmap_mse(targets[..., t : t + 1], predictions[..., t : t + 1], foreground_weight=w).numpy()
        for t, w in enumerate((30.0, 0.0))
    ]
    got = heatmap_mse(targets, predictions, foreground_weight=[30.0, 0.0]).numpy()
    np.testing.assert_allclose(got, (alone[0] + alone[1]) / 2, rtol=1e-6)
    restored = keras.losses.deserialize(keras.losses.serialize(HeatmapLoss(foreground_weight=[30, 0])))
    assert restored.foreground_weight == [30.0, 0.0]
    with pytest.raises(ValueError, match="foreground_weight must be at least 0, one or one a type"):
        HeatmapLoss(foreground_weight=[1, -1])
