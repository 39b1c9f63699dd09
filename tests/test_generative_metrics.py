"""Frechet distances: the closed form for Gaussians, an independent route to the trace of the square root, the
reference code's handling of singular and non-PSD covariances, sample estimates and LeNet-5's feature distance."""

import kapps.models
from kapps.generative_metrics import (
    DigitJudge,
    feature_statistics,
    fid,
    frechet_distance,
    lenet_frechet_distance,
    penultimate_features,
)

import keras
import numpy as np
import pytest
import tensorflow as tf


def test_isotropic_gaussians_match_the_closed_form():
    # N(0, I_d) vs N(m, s^2 I_d): ||m||^2 + Tr(I + s^2 I - 2 (s^2 I)^(1/2)) = ||m||^2 + d (1 - s)^2.
    d, m, s = 5, np.array([1.0, 2.0, 0.0, 0.0, -1.0]), 0.5
    assert frechet_distance(np.zeros(d), np.eye(d), m, s**2 * np.eye(d)) == pytest.approx(6 + 5 * 0.25, abs=1e-12)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[0.25]]) == pytest.approx(9 + 1.5**2, abs=1e-12)
    assert frechet_distance(m, np.eye(d), m, np.eye(d)) == pytest.approx(0, abs=1e-12)


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _symmetric_root(matrix):
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def test_general_covariances_match_a_symmetric_route():
    # AB = A^(1/2) (A^(1/2) B A^(1/2)) A^(-1/2): the two square roots are similar, so their traces are equal, and the
    # second is a symmetric PSD matrix's, computed here from its eigendecomposition rather than by sqrtm.
    rng = np.random.default_rng(0)
    a, b = _spd(rng, 6), _spd(rng, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    half = _symmetric_root(a)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(a) + np.trace(b) - 2 * np.trace(_symmetric_root(half @ b @ half))
    assert not np.allclose(a @ b, b @ a)  # the case where sqrt(A) sqrt(B) is not the answer
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(frechet_distance(mu2, b, mu1, a), rel=1e-9)


def test_singular_covariances_as_the_reference_code_handles_them():
    # Fewer samples than dimensions: a rank-2 covariance, whose product's square root has rounding-sized imaginary
    # parts; the distance of a set to itself is 0.
    features = np.random.default_rng(1).normal(size=(3, 10))
    sigma = np.cov(features, rowvar=False)
    assert frechet_distance(features.mean(0), sigma, features.mean(0), sigma) == pytest.approx(0, abs=1e-5)
    # A product without a square root (a Jordan block: sqrtm gives inf): retried with 1e-6 on both diagonals, which
    # gives Tr(A) + Tr(I) - 2 Tr(sqrt((1 + e) [[e, 1], [0, e]])) = 2 - 4 sqrt((1 + e) e).
    jordan = np.array([[0.0, 1.0], [0.0, 0.0]])
    e = 1e-6
    assert frechet_distance([0, 0], jordan, [0, 0], np.eye(2)) == pytest.approx(2 - 4 * np.sqrt((1 + e) * e), abs=1e-9)


def test_covariances_that_are_not_psd_are_refused():
    with pytest.raises(ValueError, match=r"imaginary parts up to 1 on its diagonal"):
        frechet_distance([0, 0], np.diag([1.0, -1.0]), [0, 0], np.eye(2))
    with pytest.raises(ValueError, match=r"^mu1 and mu2 must be \(d,\) and sigma1 and sigma2 \(d, d\)"):
        frechet_distance([0, 0], np.eye(3), [0, 0], np.eye(2))


def test_sample_estimates_approach_the_closed_form():
    rng = np.random.default_rng(2)
    d, n, m, s = 3, 40_000, np.array([0.5, -0.5, 1.0]), 2.0
    real = rng.normal(size=(n, d)).astype("float32")
    fake = (m + s * rng.normal(size=(n, d))).astype("float32")
    exact = 1.5 + d * (1 - s) ** 2  # 4.5
    identity = lambda x: x  # noqa: E731  (features = the samples themselves)
    # Sampling error of the means and covariances at n = 40,000: a few hundredths (measured 4.474).
    assert fid(real, fake, feature_model=identity, batch_size=4096) == pytest.approx(exact, abs=0.06)
    mu, sigma = feature_statistics(identity, fake, batch_size=1000)
    np.testing.assert_allclose(mu, m, atol=0.03)
    np.testing.assert_allclose(sigma, s**2 * np.eye(d), atol=0.06)


def test_feature_statistics_read_models_and_datasets():
    images = np.random.default_rng(3).uniform(size=(10, 4, 4, 1)).astype("float32")
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten()])
    from_array = feature_statistics(model, images, batch_size=3)
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(10))).batch(4)
    from_dataset = feature_statistics(model, dataset)
    flat = images.reshape(10, -1).astype("float64")
    for mu, sigma in (from_array, from_dataset):
        np.testing.assert_allclose(mu, flat.mean(0), atol=1e-7)
        np.testing.assert_allclose(sigma, np.cov(flat, rowvar=False), atol=1e-7)
    with pytest.raises(ValueError, match="images must hold at least two images. Received: 1"):
        feature_statistics(model, images[:1])
    with pytest.raises(ValueError, match="batch_size must be a positive integer. Received: batch_size=0"):
        feature_statistics(model, images, batch_size=0)


def test_lenet_distance_is_the_distance_in_f6_of_unit_images_padded_to_its_size():
    keras.utils.set_random_seed(0)
    lenet = kapps.models.lenet5()
    assert penultimate_features(lenet).output.shape[1:] == (84,)
    rng = np.random.default_rng(4)
    real = rng.uniform(-1, 1, size=(64, 28, 28, 1)).astype("float32")
    fake = np.clip(real[::-1] * 0.5 + 0.3, -1, 1)
    f6 = keras.Model(lenet.input, lenet.get_layer("f6").output)

    def statistics(images):
        features = np.asarray(f6(np.pad((images + 1) / 2, [(0, 0), (2, 2), (2, 2), (0, 0)])), "float64")
        return features.mean(0), np.cov(features, rowvar=False)

    (mu1, s1), (mu2, s2) = statistics(real), statistics(fake)
    half = _symmetric_root(s1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(_symmetric_root(half @ s2 @ half))
    got = lenet_frechet_distance(real, fake, lenet=lenet, batch_size=20)
    assert expected > 0.01 and got == pytest.approx(expected, rel=1e-3)
    assert lenet_frechet_distance(real, real, lenet=lenet) == pytest.approx(0, abs=1e-4)
    with pytest.raises(ValueError, match=r"^value_range must be \(low, high\) with high > low"):
        lenet_frechet_distance(real, fake, lenet=lenet, value_range=(1, 1))


def test_digit_judge_scores_confidence_and_class_shares_as_computed_by_hand():
    """A judge whose softmax reads an image's mean m as logits (10m, 2, -10m): m = 1 gives class 0 at 0.9997,
    m = 0.5 class 0 at e^5 / (e^5 + e^2 + e^-5) = 0.9525, m = 0 class 1 at e^2 / (e^2 + 2) = 0.787, below 0.9."""
    image = keras.Input((4, 4, 1))
    features = keras.layers.GlobalAveragePooling2D()(image)
    probabilities = keras.layers.Dense(3, activation="softmax")(features)
    classifier = keras.Model(image, probabilities)
    classifier.layers[-1].set_weights([np.array([[10.0, 0.0, -10.0]]), np.array([0.0, 2.0, 0.0])])
    levels = np.array([1.0, 1.0, 0.5, 0.0, 1.0])
    images = np.broadcast_to(levels[:, None, None, None], (5, 4, 4, 1)).astype("float32")
    real = np.random.default_rng(0).uniform(size=(8, 4, 4, 1)).astype("float32")
    judge = DigitJudge(classifier, real, value_range=(0, 1))
    scores = judge.scores(images)
    assert scores["confident_share"] == pytest.approx(4 / 5)
    assert scores["class_shares"] == pytest.approx([4 / 5, 1 / 5, 0])
    assert scores["confident_class_shares"] == pytest.approx([1, 0, 0])
    assert scores["smallest_class_share"] == 0 and scores["count"] == 5
    assert judge.scores(images, confidence=0.95)["confident_share"] == pytest.approx(4 / 5)  # 0.9525 still counts
    assert judge.scores(images, confidence=0.96)["confident_share"] == pytest.approx(3 / 5)
    # The distance is the Frechet distance of the features (the pooled means) to the real images' Gaussian.
    real_means = real.mean(axis=(1, 2, 3))
    expected = frechet_distance(real_means.mean(), np.var(real_means, ddof=1), levels.mean(), np.var(levels, ddof=1))
    assert judge.distance(images) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"^confidence must be between 0 and 1. Received: confidence=1"):
        judge.scores(images, confidence=1)
