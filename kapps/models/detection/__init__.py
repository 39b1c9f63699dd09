"""Detection builders: YOLO v1 (a training network plus a function that wraps it as an image-to-detections model),
R-CNN (a pipeline of selective search, a CNN and linear heads rather than one network, `rcnn.RCNN`), Fast R-CNN (a
network that takes the proposals selective search makes, `fast.FastRCNN` runs both), the two-stage
detectors (an inference model plus a trainer that trains it, `two_stage`; Mask R-CNN's mask branch on them,
`mask_branch`), and the necks they share."""

from kapps.models.detection import fast, mask_branch, rcnn, rcnn_heads, two_stage, yolo
from kapps.models.detection.fast import FastRCNN, FastRCNNTrainer, fast_rcnn
from kapps.models.detection.fpn import fpn, fpn_backbone
from kapps.models.detection.mask_branch import MaskRCNNTrainer, mask_rcnn
from kapps.models.detection.rcnn import RCNN, RCNNSettings
from kapps.models.detection.two_stage import FasterRCNNTrainer, faster_rcnn
from kapps.models.detection.yolo import darknet24, darknet_small, yolo_v1, yolo_v1_detector

__all__ = [
    "FastRCNN",
    "FastRCNNTrainer",
    "RCNN",
    "FasterRCNNTrainer",
    "MaskRCNNTrainer",
    "RCNNSettings",
    "darknet24",
    "darknet_small",
    "fast",
    "fast_rcnn",
    "faster_rcnn",
    "fpn",
    "fpn_backbone",
    "mask_branch",
    "mask_rcnn",
    "rcnn",
    "rcnn_heads",
    "two_stage",
    "yolo",
    "yolo_v1",
    "yolo_v1_detector",
]
