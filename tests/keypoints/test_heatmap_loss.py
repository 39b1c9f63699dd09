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
