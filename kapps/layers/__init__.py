"""Custom Keras layers, each registered as serializable under the package name `kapps`."""

from kapps.layers.connection_table import ConnectionTableConv2D
from kapps.layers.conv_lstm import ConvLSTMCell, SpreadVector, StopSequence, ZeroMaps
from kapps.layers.detection import NonMaxSuppression
from kapps.layers.heatmaps import HeatmapPeaks
from kapps.layers.instance_masks import ClassMasks, PasteMasks
from kapps.layers.lrn import LocalResponseNormalization
from kapps.layers.roi import RoIAlign, RoIPooling, fpn_level
from kapps.layers.shortcut import ChannelPadShortcut
from kapps.layers.sobel import SobelEdges
from kapps.layers.two_stage import ClassBoxes, Proposals, PyramidRoIPool
from kapps.layers.unpooling import MaxPoolingWithSwitches, MaxUnpooling
from kapps.layers.upsampling import BilinearUpsampling, CropLike, bilinear_kernel
from kapps.layers.yolo import YoloV1Decode

__all__ = [
    "BilinearUpsampling",
    "ChannelPadShortcut",
    "ClassBoxes",
    "ClassMasks",
    "ConnectionTableConv2D",
    "ConvLSTMCell",
    "CropLike",
    "HeatmapPeaks",
    "LocalResponseNormalization",
    "MaxPoolingWithSwitches",
    "MaxUnpooling",
    "NonMaxSuppression",
    "PasteMasks",
    "Proposals",
    "PyramidRoIPool",
    "RoIAlign",
    "RoIPooling",
    "SobelEdges",
    "SpreadVector",
    "StopSequence",
    "YoloV1Decode",
    "ZeroMaps",
    "bilinear_kernel",
    "fpn_level",
]
