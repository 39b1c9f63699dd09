"""yolo_v1_targets on hand-placed objects: the cell of each centre, and the larger of two in one cell."""

from kapps.detection import yolo_v1_targets

import numpy as np


def test_targets_put_each_object_in_the_cell_of_its_centre():
    boxes = np.array([[[0.1, 0.1, 0.4, 0.3], [0.6, 0.5, 0.9, 1.0], [0, 0, 0, 0]]], np.float32)
    classes = np.array([[1, 0, -1]], np.int32)
    targets = np.asarray(yolo_v1_targets(boxes, classes, grid_size=2, num_classes=2))
    # centre (0.25, 0.2): cell row 0, column 0, offsets (0.5, 0.4); centre (0.75, 0.75): cell (1, 1), (0.5, 0.5)
    np.testing.assert_allclose(targets[0, 0, 0], [0.5, 0.4, 0.3, 0.2, 1, 0, 1], atol=1e-6)
    np.testing.assert_allclose(targets[0, 1, 1], [0.5, 0.5, 0.3, 0.5, 1, 1, 0], atol=1e-6)
    assert not targets[0, 0, 1].any() and not targets[0, 1, 0].any()


def test_targets_keep_the_larger_of_two_objects_in_one_cell():
    boxes = np.array([[[0.2, 0.2, 0.3, 0.3], [0.05, 0.05, 0.45, 0.45], [0.1, 0.1, 0.4, 0.4]]], np.float32)
    classes = np.array([[0, 1, 0]], np.int32)
    targets = np.asarray(yolo_v1_targets(boxes, classes, grid_size=2, num_classes=2))
    np.testing.assert_allclose(targets[0, 0, 0], [0.5, 0.5, 0.4, 0.4, 1, 0, 1], atol=1e-6)
    assert targets[..., 4].sum() == 1
