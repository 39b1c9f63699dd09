"""The Inception family: GoogLeNet, i.e. Inception v1 (`v1`), and Inception v3 (`v3`)."""

from kapps.models.inception.v1 import (
    GOOGLENET_MODULES,
    auxiliary_classifier,
    conv_unit,
    googlenet,
    googlenet_main_output,
    googlenet_paper,
    inception_module,
)
from kapps.models.inception.v3 import INCEPTION_V3_BLOCKS, INCEPTION_V3_IMAGENET, inception_v3

__all__ = [
    "GOOGLENET_MODULES",
    "INCEPTION_V3_BLOCKS",
    "INCEPTION_V3_IMAGENET",
    "auxiliary_classifier",
    "conv_unit",
    "googlenet",
    "googlenet_main_output",
    "googlenet_paper",
    "inception_module",
    "inception_v3",
]
