"""Model builders and the registry that names them.

>>> import kapps.models
>>> model = kapps.models.build("lenet5", num_classes=10)
>>> kapps.models.list_models(task="classification")
"""

from kapps.models import detection, inception, lenet, resnet, vgg
from kapps.models._common import batch_norm_layers, set_bn_momentum
from kapps.models.detection import yolo_v1
from kapps.models.inception import googlenet, googlenet_paper, inception_v3
from kapps.models.lenet import lenet5
from kapps.models.resnet import (
    plain20,
    plain32,
    plain44,
    plain56,
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
from kapps.registry import TASKS, ModelInfo, build, count_params, info, list_models

__all__ = [
    "batch_norm_layers",
    "TASKS",
    "ModelInfo",
    "build",
    "count_params",
    "detection",
    "googlenet",
    "googlenet_paper",
    "inception",
    "inception_v3",
    "info",
    "lenet",
    "lenet5",
    "list_models",
    "plain20",
    "plain32",
    "plain44",
    "plain56",
    "resnet",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnet101",
    "resnet110",
    "resnet152",
    "set_bn_momentum",
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
