"""kapps.detection.anchor_grid: anchors over a small feature map, their order, areas and ratios."""

import re

from kapps.detection import anchor_grid

import numpy as np
import pytest


def numpy(x) -> np.ndarray:
    return np.asarray(x)


def test_anchors_on_a_2x2_map():
    # A 64 x 32 image (W x H) seen as a 2 x 2 map: cell centres at x 16 / 48 px, y 8 / 24 px.
    grid = numpy(
        anchor_grid.anchors(feature_size=(2, 2), image_size=(32, 64), sizes=(8, 16), aspect_ratios=(0.5, 1, 2))
    )
    assert grid.shape == (2 * 2 * 6, 4) and grid.dtype == np.float32
    centres = (grid[:, :2] + grid[:, 2:]) / 2
    cells = [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]  # cell-major, row by row
    np.testing.assert_allclose(centres, np.repeat(cells, 6, axis=0), atol=1e-6)
    width, height = (grid[:, 2] - grid[:, 0]) * 64, (grid[:, 3] - grid[:, 1]) * 32  # pixels
    np.testing.assert_allclose(width * height, np.tile([64.0] * 3 + [256.0] * 3, 4), rtol=1e-5)  # size ** 2
    np.testing.assert_allclose(width / height, np.tile([0.5, 1.0, 2.0], 8), rtol=1e-5)  # ratios inner
    np.testing.assert_allclose(grid[1], [0.25 - 4 / 64, 0.25 - 4 / 32, 0.25 + 4 / 64, 0.25 + 4 / 32], atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("Received: sizes=()")):
        anchor_grid.anchors(feature_size=(2, 2), image_size=(32, 32), sizes=())
