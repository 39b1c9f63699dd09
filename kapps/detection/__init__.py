"""Box math for detectors, one concern a module: formats and IoU (`boxes`), the Faster R-CNN box coder
(`coder`), anchors (`anchor_grid`), training targets (`targets`: YOLO v1's grid, Faster R-CNN's RPN and RoI
samples), instance masks cropped to RoIs and pasted back (`masks`), non-maximum suppression that exports
(`suppression`) and R-CNN's regions: selective search, the context warp, proposals labelled by overlap
(`regions`). Every public name is importable from here.

    >>> from kapps.detection import batched_nms, iou
"""

from kapps.detection.anchor_grid import anchors
from kapps.detection.boxes import FORMATS, area, clip, convert_format, elementwise_iou, iou
from kapps.detection.coder import MAX_LOG_SCALE, decode, encode
from kapps.detection.masks import mask_targets, paste_masks
from kapps.detection.regions import label_regions, match_regions, proposal_recall, selective_search, warp
from kapps.detection.suppression import batched_nms, check_nms_settings, nms
from kapps.detection.targets import roi_targets, rpn_targets, yolo_v1_targets

__all__ = [
    "FORMATS",
    "MAX_LOG_SCALE",
    "anchors",
    "area",
    "batched_nms",
    "check_nms_settings",
    "clip",
    "convert_format",
    "decode",
    "elementwise_iou",
    "encode",
    "iou",
    "label_regions",
    "mask_targets",
    "match_regions",
    "nms",
    "paste_masks",
    "proposal_recall",
    "roi_targets",
    "rpn_targets",
    "selective_search",
    "warp",
    "yolo_v1_targets",
]
