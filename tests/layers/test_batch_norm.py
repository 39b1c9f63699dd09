"""Keras BatchNormalization computes the formula of Ioffe & Szegedy (2015) on a real batch of photographs."""

import keras
import numpy as np
import skimage.data


def photo_batch() -> np.ndarray:
    """Four 12x16 RGB crops of scikit-image's astronaut and coffee photographs, in [0, 255] like raw pixels."""
    astronaut, coffee = skimage.data.astronaut(), skimage.data.coffee()
    crops = [astronaut[100:112, 180:196], astronaut[300:312, 40:56], coffee[150:162, 200:216], coffee[50:62, 0:16]]
    return np.stack(crops).astype("float32")  # (4, 12, 16, 3)


def test_training_mode_uses_batch_statistics():
    x = photo_batch()
    rng = np.random.default_rng(0)
    gamma, beta = rng.uniform(0.5, 2.0, size=3), rng.normal(size=3)
    layer = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9)
    layer.build(x.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)

    y = keras.ops.convert_to_numpy(layer(x, training=True))

    # Statistics per channel over batch, height and width; the variance is the biased one (divided by N*H*W).
    x64 = x.astype("float64")
    mean = x64.mean(axis=(0, 1, 2))
    var = ((x64 - mean) ** 2).mean(axis=(0, 1, 2))
    expected = (x64 - mean) / np.sqrt(var + 1e-3) * gamma + beta
    assert np.all(var > 100.0)  # real, varied pixels, so the test does not hinge on epsilon
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    # Each channel of the normalised batch has mean beta and standard deviation gamma (up to epsilon).
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), beta, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), gamma * np.sqrt(var / (var + 1e-3)), rtol=1e-4)

    # The moving statistics move towards the batch's by (1 - momentum), with the same biased variance.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance), 0.9 + 0.1 * var, rtol=1e-5)


def test_inference_mode_uses_moving_statistics():
    x = photo_batch()
    layer = keras.layers.BatchNormalization(epsilon=1e-3)
    layer.build(x.shape)
    layer.gamma.assign([2.0, 0.5, 1.0])
    layer.beta.assign([1.0, -1.0, 0.0])
    # Fresh moving statistics are mean 0 and variance 1: inference is an affine map of each pixel, not a
    # normalisation of the batch.
    y = keras.ops.convert_to_numpy(layer(x, training=False))
    expected = x / np.sqrt(1.0 + 1e-3) * np.array([2.0, 0.5, 1.0]) + np.array([1.0, -1.0, 0.0])
    np.testing.assert_allclose(y, expected, rtol=1e-5)
