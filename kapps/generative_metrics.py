"""Frechet distances between real and generated images, measured in the features of a network.

The Frechet (2-Wasserstein) distance between two Gaussians N(mu1, S1) and N(mu2, S2) is

    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))

(Dowson and Landau 1982). The Frechet Inception Distance (FID, Heusel et al., "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium", NIPS 2017) is this distance between Gaussians fitted to the
2048-d pool features of Inception-v3 on real and on generated images (at 299 x 299). `fid` computes the same
definition with any feature model: with `keras.applications.InceptionV3(include_top=False, pooling="avg")` and its
ImageNet weights (inputs preprocessed as that model expects) it is the standard FID. kapps ships no Inception
weights and downloads nothing at run time, so an offline number from kapps is FID only where that file was in the
Keras cache; a distance in other features, such as `lenet_frechet_distance`'s, is not FID and is never called so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

SQRTM_EPSILON = 1e-6  # added to both covariances' diagonals when their product's square root is not finite
IMAGINARY_TOLERANCE = 1e-3  # the largest imaginary part of the square root's diagonal taken as rounding


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), squared as FID reports it.

    The square root of `sigma1 @ sigma2` is scipy's `sqrtm`, handled as the FID authors' reference code does:
    when it is not finite (near-singular covariances, e.g. fewer samples than feature dimensions), it is taken
    again with `SQRTM_EPSILON` added to both diagonals; rounding leaves tiny imaginary parts, which are dropped
    when those on its diagonal are below `IMAGINARY_TOLERANCE` and are an error otherwise.

    Args:
        mu1, mu2: `(d,)` means.
        sigma1, sigma2: `(d, d)` covariances.

    Returns:
        ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Raises:
        ValueError: shapes that do not fit, or a square root with a large imaginary part.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, "float64")), np.atleast_1d(np.asarray(mu2, "float64"))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, "float64")), np.atleast_2d(np.asarray(sigma2, "float64"))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            "mu1 and mu2 must be (d,) and sigma1 and sigma2 (d, d). Received shapes: "
            f"mu1={mu1.shape}, sigma1={sigma1.shape}, mu2={mu2.shape}, sigma2={sigma2.shape}"
        )
    with warnings.catch_warnings():  # a singular product warns; the fallback below is the answer to it
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(root)):
        shift = SQRTM_EPSILON * np.eye(d)
        root = scipy.linalg.sqrtm((sigma1 + shift) @ (sigma2 + shift))
    if np.iscomplexobj(root):
        imaginary = np.max(np.abs(np.diagonal(root).imag))
        if imaginary > IMAGINARY_TOLERANCE:
            raise ValueError(
                f"the square root of sigma1 @ sigma2 has imaginary parts up to {imaginary:.3g} on its diagonal: the "
                "covariances are not positive semi-definite."
            )
        root = root.real
    difference = mu1 - mu2
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def feature_statistics(model_or_fn: Callable, images, *, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of a network's features over `images`.

    Args:
        model_or_fn: a Keras model or any function of a batch of images returning `(B, ...)` features (flattened).
        images: an array of images, or a dataset / iterable of batches of images.
        batch_size: batch size for an array.

    Returns:
        `(mu, sigma)`: the features' `(d,)` mean and `(d, d)` covariance (unbiased, N - 1, as `np.cov`).

    Raises:
        ValueError: fewer than two images, or a bad `batch_size`.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
    if isinstance(model_or_fn, keras.Model):
        model = model_or_fn
        model_or_fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    if isinstance(images, np.ndarray):
        batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    features = []
    for batch in batches:
        if isinstance(batch, (tuple, list)):  # (images, labels) from a dataset
            batch = batch[0]
        out = np.asarray(model_or_fn(tf.convert_to_tensor(np.asarray(batch, "float32"))), "float64")
        features.append(out.reshape(len(out), -1))
    features = np.concatenate(features) if features else np.zeros((0, 0))
    if len(features) < 2:
        raise ValueError(f"images must hold at least two images. Received: {len(features)}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def fid(real_images, fake_images, *, feature_model: Callable, batch_size: int = 256) -> float:
    """The Frechet distance between real and generated images in `feature_model`'s features (Heusel et al. 2017).

    With Inception-v3's ImageNet pool features at 299 x 299 this is the standard FID; with any other model it is
    the same definition in other features, and should be reported under another name (see the module's note).

    Args:
        real_images, fake_images: arrays of images (or datasets of batches), as `feature_model` takes them.
        feature_model: a Keras model or function, images -> `(B, d)` features.
        batch_size: batch size for arrays.
    """
    mu1, sigma1 = feature_statistics(feature_model, real_images, batch_size=batch_size)
    mu2, sigma2 = feature_statistics(feature_model, fake_images, batch_size=batch_size)
    return frechet_distance(mu1, sigma1, mu2, sigma2)


def penultimate_features(classifier: keras.Model) -> keras.Model:
    """A classifier cut before its class layer: images in, what its last layer reads out (LeNet-5's 84 F6 units)."""
    return keras.Model(classifier.inputs, classifier.layers[-1].input, name=f"{classifier.name}_features")


def lenet_frechet_distance(
    real_images, fake_images, *, lenet: keras.Model, value_range=(-1.0, 1.0), batch_size: int = 256
) -> float:
    """The Frechet distance between real and generated digits in the F6 features of a trained LeNet-5.

    Not FID: FID is defined on Inception-v3's features of natural images. This is the same distance in the 84
    features a LeNet-5 trained on the digits computes before its class layer, which needs no download and reads
    digits better than an ImageNet network does. Numbers are comparable only with the same trained LeNet-5.

    Args:
        real_images, fake_images: `(N, H, W, C)` arrays of digit images in `value_range` (a generator's [-1, 1]
            by default), read as `DigitJudge` reads them.
        lenet: a trained `kapps.models.lenet5` (or any classifier whose last layer is its class layer).
        value_range: the images' (low, high).
        batch_size: batch size.
    """
    judge = DigitJudge(lenet, real_images, value_range=value_range, batch_size=batch_size)
    return judge.distance(fake_images)


class DigitJudge:
    """A trained digit classifier (LeNet-5) that judges generated digits against real ones.

    It measures two things a generator of digits should get right: whether its images look like the real ones as a
    whole (`distance`, the Frechet distance in the classifier's penultimate features, LeNet-5's 84 F6 units, to
    the real images' Gaussian computed once here) and whether each image is a clear digit, with every digit drawn
    (`scores`: the share classified with high confidence and each class's share, the sign of mode collapse when
    one is missing). Not FID, which is the distance in Inception-v3's features (see the module's note).

    Images are mapped from `value_range` to [0, 1] (kapps' "unit" convention, which LeNet-5 trains in) and fitted to
    the classifier's input size as `kapps.data` fits its digits: padded around with black when smaller (28 to 32
    px), resized bilinearly when larger.

    Args:
        classifier: a trained `kapps.models.lenet5` (or any softmax classifier whose last layer is its class
            layer).
        real_images: `(N, H, W, C)` real images in `value_range`, at least two.
        value_range: the images' (low, high): a generator's [-1, 1] by default.
        batch_size: batch size.
    """

    def __init__(self, classifier: keras.Model, real_images, *, value_range=(-1.0, 1.0), batch_size: int = 256):
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low. Received: value_range={value_range!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        self.classifier = classifier
        self.batch_size = batch_size
        size = tuple(classifier.input_shape[1:3])
        both = keras.Model(classifier.inputs, [classifier.layers[-1].input, classifier.output])

        def read(images):
            images = (tf.cast(images, tf.float32) - low) / (high - low)
            if images.shape[1] <= size[0] and images.shape[2] <= size[1]:
                images = tf.image.resize_with_crop_or_pad(images, *size)  # kapps.data's rule: a 28 px digit in 32 px
            else:
                images = tf.image.resize(images, size)
            return both(images, training=False)

        self._read = tf.function(read, reduce_retracing=True)
        self.real_statistics = self._statistics(self._outputs(real_images)[0])

    def _outputs(self, images) -> tuple[np.ndarray, np.ndarray]:
        """The features `(N, d)` and class probabilities `(N, classes)` of `images`."""
        images = np.asarray(images, "float32")
        parts = [
            self._read(tf.convert_to_tensor(images[i : i + self.batch_size]))
            for i in range(0, len(images), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, 0)), np.zeros((0, 0))
        features = np.concatenate([np.asarray(f, "float64").reshape(len(f), -1) for f, _ in parts])
        return features, np.concatenate([np.asarray(p, "float64") for _, p in parts])

    @staticmethod
    def _statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(features) < 2:
            raise ValueError(f"images must hold at least two images. Received: {len(features)}")
        return features.mean(axis=0), np.cov(features, rowvar=False)

    def distance(self, fake_images) -> float:
        """The Frechet distance between the real images and `fake_images` in the classifier's features."""
        return frechet_distance(*self.real_statistics, *self._statistics(self._outputs(fake_images)[0]))

    def scores(self, images, *, confidence: float = 0.9) -> dict:
        """How clearly and how evenly the classifier reads `images` as its classes.

        Args:
            images: `(N, H, W, C)` images in the judge's `value_range`.
            confidence: the least top probability that counts as a clear reading.

        Returns:
            `confident_share` (the share of images whose top probability is at least `confidence`),
            `class_shares` (each class's share of all the images by top class), `confident_class_shares` (each
            class's share of the confidently read images; zeros when there are none), `smallest_class_share`
            and `count`.
        """
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1. Received: confidence={confidence!r}")
        probabilities = self._outputs(images)[1]
        if not len(probabilities):
            raise ValueError("images must hold at least one image. Received: 0")
        classes, top = probabilities.argmax(axis=1), probabilities.max(axis=1)
        confident = top >= confidence
        count = probabilities.shape[1]
        shares = np.bincount(classes, minlength=count) / len(classes)
        confident_shares = np.bincount(classes[confident], minlength=count) / max(int(confident.sum()), 1)
        return {
            "confident_share": float(confident.mean()),
            "class_shares": [float(s) for s in shares],
            "confident_class_shares": [float(s) for s in confident_shares],
            "smallest_class_share": float(shares.min()),
            "count": len(classes),
        }
