"""RoI pooling (Fast R-CNN) and RoIAlign (Mask R-CNN) as gather-based Keras layers, and FPN level assignment.

Both layers take a feature map `(B, H, W, C)` and boxes `(B, N, 4)` in kapps' `rel_xyxy` format (normalised
`[x1, y1, x2, y2]` of the image's width and height, as `kapps.detection` uses), and return `(B, N, out_h, out_w,
C)`. A box's coordinates map onto the feature grid as `x * W` and `y * H`: the feature map covers the image, so no
`spatial_scale` is needed. They sample with `GATHER` and elementwise ops only, never `tf.image.crop_and_resize`
(not a TFLite builtin: it needs Select TF ops), so they export to TFLite builtins and to ONNX with static shapes.
"""

from __future__ import annotations

import keras
from keras import ops


def _check_output_size(output_size) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair of them. Received: output_size={output_size!r}")
    return size


def _check_inputs(name: str, features, boxes) -> None:
    if len(features.shape) != 4 or len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(
            f"{name} expects features (batch, height, width, channels) and boxes (batch, N, 4). "
            f"Received: features.shape={features.shape}, boxes.shape={boxes.shape}"
        )
    if features.shape[1] is None or features.shape[2] is None:
        raise ValueError(f"{name} needs a static feature map height and width. Received: {features.shape}")


def _gather_cells(features, rows, cols):
    """`features[b, rows[b, ...], cols[b, ...], :]`, `rows` and `cols` int32 broadcasting to `(B, ...)`, one GATHER.

    The result is flat, `(B * prod(...), C)`: callers reshape it, keeping every tensor at rank 6 or less (the
    TFLite XNNPACK delegate fails to prepare rank-7 tensors).
    """
    height, width, channels = features.shape[1], features.shape[2], features.shape[3]
    batch = ops.shape(features)[0]
    flat = ops.reshape(features, (-1, channels))  # (B*H*W, C)
    rank = max(len(rows.shape), len(cols.shape))
    offset = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1,) + (1,) * (rank - 1))
    return ops.take(flat, ops.reshape(offset + rows * width + cols, (-1,)), axis=0)


def _align_axis(start, end, bins: int, size, *, ratio: int, aligned: bool):
    """Per-axis corner indices and weights of every sample of RoIAlign: 4 tensors `(B, N, bins * ratio)`.

    `size` is the map's cells along the axis: an int, or a `(B, N)` float tensor (each box's own level's).
    """
    size = ops.cast(size, start.dtype)
    cells = size[..., None] if len(size.shape) else size  # broadcasts against the samples, (B, N, 1) or ()
    offset = 0.5 if aligned else 0.0
    start, end = start * size - offset, end * size - offset
    length = end - start if aligned else ops.maximum(end - start, 1.0)
    steps = [(i + (k + 0.5) / ratio) / bins for i in range(bins) for k in range(ratio)]
    at = start[..., None] + length[..., None] * ops.convert_to_tensor(steps, dtype=start.dtype)
    inside = ops.cast((at >= -1.0) & (at <= cells), at.dtype)
    at = ops.maximum(at, 0.0)
    low = ops.minimum(ops.floor(at), cells - 1.0)  # from the last cell on, both corners are the last cell
    high = ops.minimum(low + 1.0, cells - 1.0)
    frac = at - low
    return ops.cast(low, "int32"), ops.cast(high, "int32"), (1.0 - frac) * inside, frac * inside


def roi_align(maps, boxes, *, levels=None, output_size=(7, 7), sampling_ratio: int = 2, aligned: bool = True):
    """RoIAlign of each box from one map of a pyramid, with one GATHER from all the maps at once.

    The maps are flattened and concatenated, so each box reads only its own level's cells: the work is that of
    one pooling whatever the number of levels. See `RoIAlign` for the sampling and edge conventions.

    Args:
        maps: a list of `(B, h_l, w_l, C)` maps with static sizes and equal channels.
        boxes: `(B, N, 4)` `rel_xyxy` boxes.
        levels: int `(B, N)`, the index in `maps` of each box's map; None for a single map.
        output_size: `(out_h, out_w)`.
        sampling_ratio: samples per bin along each axis.
        aligned: the half-pixel offset.

    Returns:
        `(B, N, out_h, out_w, C)`.
    """
    out_h, out_w = output_size
    channels = maps[0].shape[3]
    batch, count = ops.shape(boxes)[0], ops.shape(boxes)[1]
    boxes = ops.cast(boxes, maps[0].dtype)
    heights = [m.shape[1] for m in maps]
    widths = [m.shape[2] for m in maps]
    starts = [sum(h * w for h, w in zip(heights[:i], widths[:i], strict=True)) for i in range(len(maps))]
    total = starts[-1] + heights[-1] * widths[-1]
    flat = maps[0] if len(maps) == 1 else ops.concatenate([ops.reshape(m, (batch, -1, channels)) for m in maps], 1)
    flat = ops.reshape(flat, (-1, channels))  # (B * total, C)
    if levels is None:
        height, width, start = heights[0], widths[0], 0
    else:

        def per_box(values):
            return ops.take(ops.convert_to_tensor(values, dtype="int32"), levels, axis=0)  # (B, N)

        height, width, start = per_box(heights), per_box(widths), per_box(starts)
    ratio = sampling_ratio
    x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
    y_low, y_high, wy_low, wy_high = _align_axis(y1, y2, out_h, height, ratio=ratio, aligned=aligned)  # (B, N, Y)
    x_low, x_high, wx_low, wx_high = _align_axis(x1, x2, out_w, width, ratio=ratio, aligned=aligned)  # (B, N, X)
    # each box's first cell in `flat`: its image's block, then its level's
    base = ops.reshape(ops.arange(batch, dtype="int32") * total, (-1, 1)) + start
    base = ops.broadcast_to(base, (batch, count))[..., None, None]  # (B, N, 1, 1)
    row_width = width[..., None, None] if levels is not None else width
    values = 0.0
    for rows, wy in ((y_low, wy_low), (y_high, wy_high)):
        for cols, wx in ((x_low, wx_low), (x_high, wx_high)):
            weight = ops.reshape(wy[..., :, None] * wx[..., None, :], (-1, 1))
            index = base + rows[..., :, None] * row_width + cols[..., None, :]  # (B, N, Y, X)
            values = values + weight * ops.take(flat, ops.reshape(index, (-1,)), axis=0)
    # (B*N*Y*X, C) -> (B*N, out_h, S, out_w, S, C): the samples of each bin averaged
    values = ops.mean(ops.reshape(values, (-1, out_h, ratio, out_w, ratio, channels)), axis=(2, 4))
    return ops.reshape(values, (batch, count, out_h, out_w, channels))


@keras.saving.register_keras_serializable(package="kapps")
class RoIAlign(keras.layers.Layer):
    """RoIAlign: each box's bins averaged over `sampling_ratio` x `sampling_ratio` bilinear samples.

    A box `[x1, y1, x2, y2]` (`rel_xyxy`) spans `x1 * W .. x2 * W` on the feature grid, where cell `i` is centred
    at `i + 0.5`. With `aligned=True` (the default) 0.5 is subtracted from both ends so that sample coordinates
    are in cell-centre units: Detectron2's `aligned=True` and ONNX's `coordinate_transformation_mode="half_pixel"`
    (opset 16). With `aligned=False` no offset is applied and a box is at least one cell wide and tall, as in the
    original Mask R-CNN and ONNX's `output_half_pixel`. Each of the `out_h x out_w` bins takes `sampling_ratio`
    evenly spaced samples per axis (at `(k + 0.5) / sampling_ratio` of the bin) and averages them; the ratio is
    fixed so that shapes are static (Detectron2's adaptive `sampling_ratio=0` is not offered).

    Samples outside the map follow ONNX and Detectron2: a sample more than one cell beyond the map (`y < -1`,
    `y > H`, `x < -1` or `x > W`) reads 0; one within that margin is clamped to the edge cells. So a box wholly
    outside the image gives zeros, and a box at the border reads the border cells.

    Args:
        output_size: `out_h, out_w` (an int for a square).
        sampling_ratio: samples per bin along each axis.
        aligned: the half-pixel offset (True) or the legacy convention (False).

    Reference: K. He, G. Gkioxari, P. Dollar, R. Girshick, "Mask R-CNN", ICCV 2017; the half-pixel correction of
    Y. Wu et al., Detectron2, 2019.
    """

    def __init__(self, output_size=7, *, sampling_ratio: int = 2, aligned: bool = True, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.output_size = _check_output_size(output_size)
        if not isinstance(sampling_ratio, int) or sampling_ratio < 1:
            raise ValueError(f"sampling_ratio must be a positive integer. Received: sampling_ratio={sampling_ratio!r}")
        self.sampling_ratio = sampling_ratio
        self.aligned = bool(aligned)

    def call(self, features, boxes):
        return roi_align(
            [features],
            boxes,
            output_size=self.output_size,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )

    def compute_output_shape(self, features_shape, boxes_shape):
        return (boxes_shape[0], boxes_shape[1], *self.output_size, features_shape[3])

    def compute_output_spec(self, features, boxes):
        _check_inputs("RoIAlign", features, boxes)
        return keras.KerasTensor(self.compute_output_shape(features.shape, boxes.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size), sampling_ratio=self.sampling_ratio, aligned=self.aligned)
        return config


@keras.saving.register_keras_serializable(package="kapps")
class RoIPooling(keras.layers.Layer):
    """Fast R-CNN's RoI max pooling: a box quantised to feature cells, split into `out_h x out_w` bins, max per bin.

    The box is first clipped to the image (`[0, 1]`), then its edges are rounded to the feature grid:
    `round(x1 * W)` and `round(x2 * W)` (half to even), columns `start .. end - 1`, at least one (`end >=
    start + 1`). A box of `L` cells puts cells `start + floor(i * L / out) .. start + ceil((i + 1) * L / out) - 1`
    in bin `i`, so bins are never empty: when a box is smaller than one bin (`L < out`), neighbouring bins share
    a cell and repeat its value. A box with no area inside the image (wholly outside, or `x2 <= x1` after
    clipping) pools to zeros. Unlike Caffe's layer, the end is exclusive (a box `[0, 1]` is exactly the `W`
    cells) and the part of a box outside the image is dropped before binning rather than binned and clipped.

    Args:
        output_size: `out_h, out_w` (an int for a square).

    Reference: R. Girshick, "Fast R-CNN", ICCV 2015, section 2.1.
    """

    def __init__(self, output_size=7, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.output_size = _check_output_size(output_size)

    @staticmethod
    def _axis(start, end, bins: int, size: int):
        """Cell indices `(B, N, bins, K)` of each bin, the last cell repeated to a static K (max is unchanged)."""
        start = ops.clip(start, 0.0, 1.0)
        end = ops.clip(end, 0.0, 1.0)
        first = ops.minimum(ops.round(start * size), size - 1.0)
        last = ops.maximum(ops.round(end * size), first + 1.0)
        length = last - first
        steps = ops.arange(bins, dtype=start.dtype)
        low = first[..., None] + ops.floor(steps * length[..., None] / bins)
        high = first[..., None] + ops.ceil((steps + 1.0) * length[..., None] / bins)  # exclusive
        count = -(-size // bins) + 1  # ceil(size / bins) + 1 bounds the cells of one bin of a clipped box
        cells = low[..., None] + ops.arange(count, dtype=start.dtype)
        cells = ops.minimum(cells, high[..., None] - 1.0)
        return ops.cast(cells, "int32")

    def call(self, features, boxes):
        out_h, out_w = self.output_size
        height, width, channels = features.shape[1], features.shape[2], features.shape[3]
        boxes = ops.cast(boxes, features.dtype)
        x1, y1, x2, y2 = (boxes[..., i] for i in range(4))
        rows = self._axis(y1, y2, out_h, height)  # (B, N, out_h, Kh)
        cols = self._axis(x1, x2, out_w, width)  # (B, N, out_w, Kw)
        cells = _gather_cells(features, rows[:, :, :, :, None, None], cols[:, :, None, None, :, :])
        # (B*N*out_h*Kh*out_w*Kw, C) -> (B*N, out_h, Kh, out_w, Kw, C), the max over each bin's cells
        cells = ops.reshape(cells, (-1, out_h, rows.shape[-1], out_w, cols.shape[-1], channels))
        values = ops.reshape(
            ops.max(cells, axis=(2, 4)), (ops.shape(boxes)[0], ops.shape(boxes)[1], out_h, out_w, channels)
        )
        inside = (ops.minimum(x2, 1.0) > ops.maximum(x1, 0.0)) & (ops.minimum(y2, 1.0) > ops.maximum(y1, 0.0))
        return values * ops.cast(inside, values.dtype)[:, :, None, None, None]

    def compute_output_shape(self, features_shape, boxes_shape):
        return (boxes_shape[0], boxes_shape[1], *self.output_size, features_shape[3])

    def compute_output_spec(self, features, boxes):
        _check_inputs("RoIPooling", features, boxes)
        return keras.KerasTensor(self.compute_output_shape(features.shape, boxes.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(output_size=list(self.output_size))
        return config


def fpn_level(boxes, *, image_size, k0: int = 4, k_min: int = 2, k_max: int = 5, canonical_size: float = 224.0):
    """The FPN level of each box by its size: `k = floor(k0 + log2(sqrt(w * h) / canonical_size))`, clipped.

    Args:
        boxes: `(..., 4)` `rel_xyxy` boxes.
        image_size: `(height, width)` of the input image in pixels, for the boxes' pixel size.
        k0: the level of a box of `canonical_size` pixels (4: ResNet's C4 in Faster R-CNN).
        k_min, k_max: the pyramid's levels; smaller and larger boxes go to the ends, zero-area boxes to `k_min`.
        canonical_size: the ImageNet pre-training size.

    Returns:
        int32 `(...)` levels in `[k_min, k_max]`.

    Reference: T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017, equation 1.
    """
    if k_min > k_max:
        raise ValueError(f"k_min must not exceed k_max. Received: k_min={k_min}, k_max={k_max}")
    boxes = ops.convert_to_tensor(boxes, dtype="float32")
    height, width = image_size
    w = ops.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * width
    h = ops.maximum(boxes[..., 3] - boxes[..., 1], 0.0) * height
    side = ops.maximum(ops.sqrt(w * h), 1e-6)
    level = ops.floor(k0 + ops.log2(side / canonical_size))
    return ops.cast(ops.clip(level, k_min, k_max), "int32")
