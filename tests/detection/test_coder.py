"""kapps.detection.coder: Faster R-CNN's box encoding against hand-computed deltas, round trips and the clamp."""

import re

from kapps.detection import coder

import numpy as np
import pytest


def numpy(x) -> np.ndarray:
    return np.asarray(x)


ANCHOR = [0.2, 0.2, 0.6, 0.4]  # centre (0.4, 0.3), size 0.4 x 0.2
BOX = [0.3, 0.2, 0.7, 0.6]  # centre (0.5, 0.4), size 0.4 x 0.4


def test_encode_hand_computed():
    # tx = 0.1 / 0.4, ty = 0.1 / 0.2, tw = log(0.4 / 0.4), th = log(0.4 / 0.2) (Ren et al. 2015, eq. 2).
    plain = coder.encode([BOX], [ANCHOR], variances=(1.0, 1.0, 1.0, 1.0))
    np.testing.assert_allclose(numpy(plain), [[0.25, 0.5, 0.0, np.log(2.0)]], atol=1e-6)
    scaled = coder.encode([BOX], [ANCHOR])
    np.testing.assert_allclose(numpy(scaled), [[2.5, 5.0, 0.0, np.log(2.0) / 0.2]], atol=1e-5)
    np.testing.assert_allclose(numpy(coder.decode(scaled, [ANCHOR])), [BOX], atol=1e-6)


def test_encode_and_decode_are_inverses():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0.0, 0.6, (2, 50, 2))
    sizes = rng.uniform(0.02, 0.4, (2, 50, 2))
    gt, priors = np.concatenate([corners, corners + sizes], -1).astype("float32")
    np.testing.assert_allclose(numpy(coder.decode(coder.encode(gt, priors), priors)), gt, atol=1e-6)
    deltas = rng.normal(0.0, 1.0, (50, 4)).astype("float32")
    np.testing.assert_allclose(numpy(coder.encode(coder.decode(deltas, priors), priors)), deltas, atol=1e-4)


def test_decode_clamps_huge_sizes_and_encode_survives_padding():
    decoded = numpy(coder.decode([[0.0, 0.0, 1000.0, 1000.0]], [ANCHOR]))
    np.testing.assert_allclose(decoded[0, 2] - decoded[0, 0], 0.4 * 62.5, rtol=1e-5)  # exp(log(1000 / 16)) wide
    assert np.all(np.isfinite(numpy(coder.encode([[0.0, 0.0, 0.0, 0.0]], [ANCHOR]))))
    with pytest.raises(ValueError, match=re.escape("variances must be 4 positive numbers. Received: variances=(1, 1)")):
        coder.encode([BOX], [ANCHOR], variances=(1, 1))
