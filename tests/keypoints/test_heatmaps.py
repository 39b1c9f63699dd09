"""Gaussian heatmap targets: the NumPy formula, types, padding and points outside, inside a tf.data map, and a
target decoded by HeatmapPeaks back to its own points."""

from kapps.keypoints import heatmap_peaks, heatmap_targets

import numpy as np
import pytest
import tensorflow as tf


def numpy_targets(points, types, *, num_types, size, sigma):
    """Channel t: the maximum over t's points of exp(-((col - (x W - 0.5))^2 + (row - (y H - 0.5))^2) / 2 sigma^2),
    sigma the type's own when `sigma` is a list."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype("float64")
    maps = np.zeros((height, width, num_types))
    for (x, y), t in zip(points, types, strict=True):
        if t < 0 or not (0 <= x <= 1 and 0 <= y <= 1):
            continue
        own = sigma[t] if isinstance(sigma, list) else sigma
        g = np.exp(-((cols - (x * width - 0.5)) ** 2 + (rows - (y * height - 0.5)) ** 2) / (2 * own**2))
        maps[:, :, t] = np.maximum(maps[:, :, t], g)
    return maps


POINTS = np.array([[0.30, 0.40], [0.62, 0.55], [0.66, 0.58], [0.10, 0.90], [0.5, 0.5], [1.2, 0.5]], "float32")
TYPES = np.array([0, 1, 1, 2, -1, 0], "int32")  # a padding row and a point outside the image


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_targets_are_the_numpy_formula(sigma):
    got = heatmap_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=sigma).numpy()
    expected = numpy_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=sigma)
    assert got.shape == (24, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # type 0's one point, at pixel (0.3 * 32 - 0.5, 0.4 * 24 - 0.5) = (9.1, 9.1): its nearest pixel (9, 9) scores
    # exp(-(0.01 + 0.01) / (2 sigma^2)); the padding row's point (0.5, 0.5) and the one outside left nothing
    assert got[9, 9, 0] == pytest.approx(np.exp(-0.02 / (2 * sigma**2)), abs=1e-6)
    assert got[:, 20:, 0].max() < np.exp(-((20 - 9.1) ** 2) / (2 * sigma**2)) + 1e-7


def test_each_type_can_have_its_own_sigma():
    """One sigma a type: each channel is the formula at its own sigma (here 3, 1 and 0.5), and the same sigma for
    every type is the scalar's map exactly."""
    got = heatmap_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=[3.0, 1.0, 0.5]).numpy()
    np.testing.assert_allclose(got, numpy_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=[3.0, 1.0, 0.5]),
                               atol=1e-6)  # fmt: skip
    assert got[9, 11, 0] == pytest.approx(np.exp(-(1.9**2 + 0.1**2) / (2 * 3.0**2)), abs=1e-6)  # 1.9 px right
    same = heatmap_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=[2.5, 2.5, 2.5])
    np.testing.assert_array_equal(same, heatmap_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=2.5))


def test_batches_empty_images_and_a_tf_data_map():
    batch = heatmap_targets(np.stack([POINTS, POINTS[::-1]]), np.stack([TYPES, TYPES[::-1]]), num_types=3, size=(8, 8))
    assert batch.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-7)  # the same points in another order
    blank = heatmap_targets(np.zeros((4, 2)), -np.ones(4), num_types=2, size=(8, 8)).numpy()
    np.testing.assert_array_equal(blank, 0.0)
    none = heatmap_targets(np.zeros((0, 2)), np.zeros(0), num_types=2, size=(8, 8)).numpy()
    np.testing.assert_array_equal(none, 0.0)
    dataset = tf.data.Dataset.from_tensor_slices({"points": POINTS[None], "types": TYPES[None]})
    mapped = dataset.map(lambda t: heatmap_targets(t["points"], t["types"], num_types=3, size=(24, 32)))
    (first,) = list(mapped.as_numpy_iterator())
    np.testing.assert_allclose(first, numpy_targets(POINTS, TYPES, num_types=3, size=(24, 32), sigma=1.0), atol=1e-6)


def test_peaks_of_a_target_decode_to_its_points():
    """Points at pixel centres come back exactly; others within the quarter-pixel refinement's 0.25 px."""
    size = (64, 64)
    rng = np.random.default_rng(0)
    centres = (rng.choice(60, (6, 2), replace=False) + 2.5) / 64
    exact = heatmap_peaks(
        heatmap_targets(centres, np.arange(6) % 2, num_types=2, size=size)[None], max_points=4, score_threshold=0.5
    )
    np.testing.assert_array_equal(exact["num_points"], [[3, 3]])
    found = exact["points"].numpy()[0, :, :3].reshape(-1, 2)
    assert sorted(map(tuple, found)) == sorted(map(tuple, centres.astype("float32")))
    anywhere = rng.uniform(0.05, 0.95, (5, 2)).astype("float32")
    maps = heatmap_targets(anywhere, np.arange(5), num_types=5, size=size)[None]
    points = heatmap_peaks(maps, max_points=1, score_threshold=0.5)["points"].numpy()[0, :, 0]
    error = np.abs(points - anywhere) * 64  # in heatmap pixels
    assert error.max() <= 0.25 + 1e-5 and error.max() > 0.01


def test_bad_settings():
    with pytest.raises(ValueError, match="num_types must be a positive integer. Received: num_types=0"):
        heatmap_targets(POINTS, TYPES, num_types=0, size=(8, 8))
    with pytest.raises(ValueError, match="size must be"):
        heatmap_targets(POINTS, TYPES, num_types=3, size=(8,))
    with pytest.raises(ValueError, match="sigma must be positive"):
        heatmap_targets(POINTS, TYPES, num_types=3, size=(8, 8), sigma=0)
    with pytest.raises(ValueError, match="sigma must be positive, one number or one a type"):
        heatmap_targets(POINTS, TYPES, num_types=3, size=(8, 8), sigma=[1.0, 2.0])
