"""Heatmap post-processing as a Keras layer: points from a heatmap regressor's maps inside the graph."""

from __future__ import annotations

from kapps.keypoints.peaks import check_peak_settings, heatmap_peaks

import keras


@keras.saving.register_keras_serializable(package="kapps")
class HeatmapPeaks(keras.layers.Layer):
    """The end of a heatmap regressor's inference model: heatmaps in, a fixed number of points per type out.

    Calls `kapps.keypoints.heatmap_peaks`: heatmaps `(B, H, W, T)` (static H, W, T) in, a dict `{"points":
    float32 (B, T, K, 2) relative [x, y], "scores": float32 (B, T, K), "num_points": int32 (B, T)}` out, each
    type's points by descending score, then padding rows (point 0, score 0). A peak is the maximum of its 3x3
    window, ties to the first pixel in raster order, scoring more than its type's `score_threshold`; with
    `refine`, it moves a quarter pixel towards its higher neighbour along each axis. Built from TFLite builtin ops
    only (TOPK_V2 and one GATHER among them), it exports to SavedModel, TFLite and ONNX with a free batch axis, and
    computes in float32 whatever the dtype policy.

    Args:
        max_points: K, the points kept per image and type.
        score_threshold: a peak must score strictly more (heatmap targets peak at 1): one number, or a list of
            one a point type (such as thresholds chosen on a validation split, `kapps.keypoints.choose_thresholds`).
        refine: the quarter-pixel refinement of Newell et al.'s code.
        window: the side of the square a peak is the maximum of: 3 (CenterNet's), or wider for sparse points; one,
            or a list of one a type.

    Reference: A. Newell, K. Yang and J. Deng, "Stacked Hourglass Networks for Human Pose Estimation", ECCV 2016;
    the max-pool suppression as in CenterNet (X. Zhou et al., "Objects as Points", 2019).
    """

    def __init__(self, max_points: int = 32, score_threshold=0.2, refine: bool = True, window=3, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        check_peak_settings(max_points=max_points, score_threshold=score_threshold, window=window)
        self.window = [int(w) for w in window] if isinstance(window, (list, tuple)) else int(window)
        self.max_points = int(max_points)
        per_type = isinstance(score_threshold, (list, tuple))
        self.score_threshold = [float(v) for v in score_threshold] if per_type else float(score_threshold)
        self.refine = bool(refine)

    def call(self, heatmaps):
        return heatmap_peaks(
            heatmaps,
            max_points=self.max_points,
            score_threshold=self.score_threshold,
            refine=self.refine,
            window=self.window,
        )

    def compute_output_spec(self, heatmaps):
        shape = tuple(heatmaps.shape)
        if len(shape) != 4 or None in shape[1:]:
            raise ValueError(
                f"HeatmapPeaks expects heatmaps (batch, H, W, types) with static H, W and types. Received: {shape}"
            )
        check_peak_settings(
            max_points=self.max_points, score_threshold=self.score_threshold, num_types=shape[3], window=self.window
        )
        if self.max_points > shape[1] * shape[2]:
            raise ValueError(
                f"HeatmapPeaks keeps at most H * W = {shape[1] * shape[2]} points a type. Received: "
                f"max_points={self.max_points}"
            )
        batch, types, k = shape[0], shape[3], self.max_points
        return {
            "points": keras.KerasTensor((batch, types, k, 2), dtype="float32"),
            "scores": keras.KerasTensor((batch, types, k), dtype="float32"),
            "num_points": keras.KerasTensor((batch, types), dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            max_points=self.max_points, score_threshold=self.score_threshold, refine=self.refine, window=self.window
        )
        return config
