"""Detection builders: each a training network plus a function that wraps it as an image-to-detections model; and
R-CNN, a pipeline of selective search, a CNN and linear heads rather than one network (`rcnn.RCNN`)."""

from kapps.models.detection import rcnn, rcnn_heads, yolo
from kapps.models.detection.rcnn import RCNN, RCNNSettings
from kapps.models.detection.yolo import darknet24, darknet_small, yolo_v1, yolo_v1_detector

__all__ = [
    "RCNN",
    "RCNNSettings",
    "darknet24",
    "darknet_small",
    "rcnn",
    "rcnn_heads",
    "yolo",
    "yolo_v1",
    "yolo_v1_detector",
]
