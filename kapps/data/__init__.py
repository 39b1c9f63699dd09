"""tf.data pipelines: named sources and the standard `source -> decode -> cache -> shuffle -> augment -> batch
-> prefetch` chain.

    >>> data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    >>> train = kapps.data.pipeline(data.train, batch_size=64, training=True, augment=kapps.data.digit_augment())
    >>> scenes = kapps.data.load_detection("shapes", image_size=(128, 128), seed=0)  # (image, {"boxes", "classes"})
    >>> masks = kapps.data.load_segmentation("shapes", image_size=(128, 128), seed=0)  # (image, mask (H, W) int32)
    >>> wheat = kapps.data.load_keypoints("wheat", image_size=(256, 256), seed=0)  # (image, {"points", "types"})
    >>> rows = kapps.data.digit_rows("digits", seed=0)  # (sequence (32, 32): 32 rows of 32 pixels, label)
    >>> inputs, targets = kapps.data.adding_problem(length=100, count=1000, seed=0)  # (1000, 100, 2), (1000, 1)
    >>> adding = kapps.data.adding_data(length=100, seed=0)  # (sequence (100, 2), sum (1,)) train/val/test
    >>> leaves = kapps.data.load_instances("leaves", image_size=(128, 128))  # (image, {"labels", "masks", "count"})
"""

from kapps.data.base import Data
from kapps.data.box_augment import detection_augment
from kapps.data.detection import DETECTION_SOURCES, load_detection
from kapps.data.instances import INSTANCE_SOURCES, load_instances
from kapps.data.keypoints import KEYPOINT_SOURCES, SHAPE_POINT_TYPES, load_keypoints, shape_points
from kapps.data.leaves import LEAF_CLASSES, load_leaves, render_rosette
from kapps.data.mask_augment import segmentation_augment
from kapps.data.pipeline import Splits, cifar_augment, default_augment, digit_augment, pipeline, splits, steps_per_epoch
from kapps.data.scenes import SHAPE_CLASSES, load_shapes, render_scene
from kapps.data.segmentation import (
    IGNORE_LABEL,
    SEGMENTATION_SOURCES,
    load_segmentation,
    load_segmentation_instances,
)
from kapps.data.sequences import ADDING_SPEC, adding_data, adding_problem, digit_rows
from kapps.data.sources import SOURCES, load
from kapps.data.subsets import subset_classes
from kapps.data.wheat import WHEAT_POINT_TYPES, load_wheat, render_wheat

__all__ = [
    "DETECTION_SOURCES",
    "IGNORE_LABEL",
    "INSTANCE_SOURCES",
    "LEAF_CLASSES",
    "SEGMENTATION_SOURCES",
    "KEYPOINT_SOURCES",
    "SHAPE_CLASSES",
    "SHAPE_POINT_TYPES",
    "SOURCES",
    "WHEAT_POINT_TYPES",
    "Data",
    "Splits",
    "ADDING_SPEC",
    "adding_data",
    "adding_problem",
    "cifar_augment",
    "default_augment",
    "detection_augment",
    "digit_augment",
    "digit_rows",
    "load",
    "load_detection",
    "load_segmentation",
    "load_segmentation_instances",
    "load_keypoints",
    "load_instances",
    "load_leaves",
    "load_shapes",
    "load_wheat",
    "pipeline",
    "render_rosette",
    "render_scene",
    "segmentation_augment",
    "render_wheat",
    "shape_points",
    "splits",
    "steps_per_epoch",
    "subset_classes",
]
