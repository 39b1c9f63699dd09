"""Model builders, the registry that names them, and their backbones.

>>> import kapps.models
>>> model = kapps.models.build("lenet5", num_classes=10)
>>> kapps.models.list_models(task="classification")
>>> features = kapps.models.backbone("resnet50", input_shape=(None, None, 3))  # {"C1": ..., "C5": ...}
"""

from kapps.models import detection, inception, keypoints, lenet, resnet, vgg
from kapps.models._common import batch_norm_layers, set_bn_momentum
from kapps.models.backbones import (
    backbone,
    copy_weights,
    feature_maps,
    list_backbones,
    load_backbone_weights,
    stage_layers,
    transfer_backbone,
)
from kapps.models.detection import (
    FasterRCNNTrainer,
    FastRCNNTrainer,
    MaskRCNNTrainer,
    darknet24,
    darknet_small,
    fast_rcnn,
    faster_rcnn,
    mask_rcnn,
    yolo_v1,
)
from kapps.models.inception import googlenet, googlenet_main_output, googlenet_paper, inception_v3
from kapps.models.keypoints import hourglass_detector, stacked_hourglass
from kapps.models.lenet import lenet5
from kapps.models.resnet import (
    plain20,
    plain32,
    plain44,
    plain56,
    resnet10_narrow,
    resnet18,
    resnet20,
    resnet32,
    resnet34,
    resnet44,
    resnet50,
    resnet56,
    resnet101,
    resnet110,
    resnet152,
)
from kapps.models.vgg import (
    vgg11,
    vgg11_bn,
    vgg11_lrn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg16_c,
    vgg19,
    vgg19_bn,
)
from kapps.registry import TASKS, FeatureMap, ModelInfo, build, count_params, info, list_models

__all__ = [
    "FastRCNNTrainer",
    "FasterRCNNTrainer",
    "MaskRCNNTrainer",
    "FeatureMap",
    "ModelInfo",
    "TASKS",
    "backbone",
    "batch_norm_layers",
    "build",
    "copy_weights",
    "count_params",
    "darknet24",
    "darknet_small",
    "detection",
    "fast_rcnn",
    "faster_rcnn",
    "feature_maps",
    "googlenet",
    "googlenet_main_output",
    "googlenet_paper",
    "hourglass_detector",
    "inception",
    "inception_v3",
    "info",
    "keypoints",
    "lenet",
    "lenet5",
    "mask_rcnn",
    "list_backbones",
    "list_models",
    "load_backbone_weights",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "resnet",
    "resnet10_narrow",
    "resnet101",
    "resnet110",
    "resnet152",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "set_bn_momentum",
    "stacked_hourglass",
    "stage_layers",
    "transfer_backbone",
    "vgg",
    "vgg11",
    "vgg11_bn",
    "vgg11_lrn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg16_c",
    "vgg19",
    "vgg19_bn",
    "yolo_v1",
]
