"""Heatmap regression builders: the stacked hourglass (a training network of every stack's heatmaps, and a function
that wraps it as an image-to-points model)."""

from kapps.models.keypoints import hourglass
from kapps.models.keypoints.hourglass import hourglass_detector, residual_module, stacked_hourglass

__all__ = ["hourglass", "hourglass_detector", "residual_module", "stacked_hourglass"]
