"""Dense prediction: per-pixel class scores `(B, H, W, num_classes)`, float32, from a last layer named `"scores"`:
FCN-32s/16s/8s (`fcn`), U-Net (`unet`), SegNet and the plain encoder-decoder it is compared with
(`encoder_decoder`)."""

from kapps.models.segmentation.encoder_decoder import encoder_decoder, segnet
from kapps.models.segmentation.fcn import convolutionalise, fcn8s, fcn16s, fcn32s
from kapps.models.segmentation.unet import unet, unet_output_size, unet_weight_map

__all__ = [
    "convolutionalise",
    "encoder_decoder",
    "fcn16s",
    "fcn32s",
    "fcn8s",
    "segnet",
    "unet",
    "unet_output_size",
    "unet_weight_map",
]
