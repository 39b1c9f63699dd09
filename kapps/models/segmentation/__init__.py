"""Dense prediction: per-pixel class scores `(B, H, W, num_classes)`, float32, from a last layer named `"scores"`."""

from kapps.models.segmentation.fcn import convolutionalise, fcn8s, fcn16s, fcn32s
from kapps.models.segmentation.unet import unet, unet_output_size, unet_weight_map

__all__ = ["convolutionalise", "fcn16s", "fcn32s", "fcn8s", "unet", "unet_output_size", "unet_weight_map"]
