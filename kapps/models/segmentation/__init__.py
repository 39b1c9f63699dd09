"""Dense prediction: per-pixel class scores `(B, H, W, num_classes)`, float32, from a last layer named `"scores"`."""

from kapps.models.segmentation.encoder_decoder import encoder_decoder, segnet

__all__ = ["encoder_decoder", "segnet"]
