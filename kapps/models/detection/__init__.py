"""Detection builders: each a training network plus a function that wraps it as an image-to-detections model, and
the necks they share."""

from kapps.models.detection import yolo
from kapps.models.detection.fpn import fpn, fpn_backbone
from kapps.models.detection.yolo import darknet24, darknet_small, yolo_v1, yolo_v1_detector

__all__ = ["darknet24", "darknet_small", "fpn", "fpn_backbone", "yolo", "yolo_v1", "yolo_v1_detector"]
