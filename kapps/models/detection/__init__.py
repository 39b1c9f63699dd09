"""Detection builders: each a training network plus a function that wraps it as an image-to-detections model."""

from kapps.models.detection import yolo
from kapps.models.detection.yolo import yolo_v1, yolo_v1_detector

__all__ = ["yolo", "yolo_v1", "yolo_v1_detector"]
