"""Points from heatmaps, one concern a module: Gaussian heatmap targets (`heatmaps`), peaks read back inside the
inference graph (`peaks`) and the NumPy metrics of detected points (`metrics`: PCK, precision and recall by
Hungarian matching, counting). Points are relative `[x, y]` in the graph and in targets, pixels in the metrics.

    >>> from kapps.keypoints import heatmap_targets, heatmap_peaks, point_scores
"""

from kapps.keypoints.heatmaps import DEFAULT_SIGMA, heatmap_targets
from kapps.keypoints.metrics import (
    choose_thresholds,
    count_scores,
    match_points,
    pck,
    point_scores,
    points_from_outputs,
)
from kapps.keypoints.peaks import check_peak_settings, heatmap_peaks

__all__ = [
    "DEFAULT_SIGMA",
    "check_peak_settings",
    "choose_thresholds",
    "count_scores",
    "heatmap_peaks",
    "heatmap_targets",
    "match_points",
    "pck",
    "point_scores",
    "points_from_outputs",
]
