"""The layers between the stages of a two-stage detector (Faster R-CNN, Mask R-CNN): region proposals from the RPN's
outputs, RoI features from one feature map or a pyramid of them, and per-class boxes from the box head's outputs.

Every layer has static output shapes and exports to TFLite builtins and ONNX: proposals are ranked with `top_k`
and suppressed with `kapps.detection.batched_nms` (NON_MAX_SUPPRESSION_V5 / NonMaxSuppression in a loop), RoI
features are gathered (`kapps.layers.roi`), and boxes are decoded with elementwise ops.
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.detection import anchors as anchor_grid
from kapps.detection import batched_nms, check_nms_settings, clip, decode
from kapps.layers.roi import RoIAlign, RoIPooling, fpn_level, roi_align

import keras
import numpy as np
import tensorflow as tf
from keras import ops

# Faster R-CNN's RPN regresses raw deltas (Ren et al. 2015, eq. 2); its box head divides them by (0.1, 0.1, 0.2,
# 0.2) (the "bbox normalisation" of the released code, Detectron's BBOX_REG_WEIGHTS 10, 10, 5, 5).
RPN_VARIANCES = (1.0, 1.0, 1.0, 1.0)
HEAD_VARIANCES = (0.1, 0.1, 0.2, 0.2)


def level_anchors(
    *,
    image_size: Sequence[int],
    feature_sizes: Sequence[Sequence[int]],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float],
) -> np.ndarray:
    """The anchors of every level of an RPN, concatenated in level order: `(sum of h * w * A, 4)` `rel_xyxy`.

    Level `l` has a `feature_sizes[l]` grid with `len(sizes[l]) * len(aspect_ratios)` anchors per cell, in
    `kapps.detection.anchors`' order, so the rows match an RPN head's outputs reshaped level by level and
    concatenated.
    """
    if len(feature_sizes) != len(sizes) or not sizes:
        raise ValueError(
            f"feature_sizes and sizes must give one entry per level. Received: feature_sizes={feature_sizes!r}, "
            f"sizes={sizes!r}"
        )
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(
                anchor_grid(feature_size=tuple(fs), image_size=tuple(image_size), sizes=s, aspect_ratios=aspect_ratios)
            )
            for fs, s in zip(feature_sizes, sizes, strict=True)
        ]
    )


def level_anchors_at(
    indices,
    *,
    image_size: Sequence[int],
    feature_sizes: Sequence[Sequence[int]],
    sizes: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float],
) -> tf.Tensor:
    """Rows `indices` of `level_anchors`, computed from the indices in the graph: `(...)` int -> `(..., 4)` float32.

    Each index is split into its level, cell and anchor shape with integer ops, and the anchor is the cell's centre
    plus its shape's half width and height (tables of a number a level and shape). The same anchors as
    `level_anchors` (within float32 rounding), but with no table of every anchor in the graph: a TFLite converter
    stores a constant of 1,024 or more numbers in int8 under dynamic-range quantization, which moved the anchors
    of a 64-pixel Faster R-CNN by up to 0.006 of the image and changed its detections on 20 of 32 images.
    """
    if len(feature_sizes) != len(sizes) or not sizes:
        raise ValueError(
            f"feature_sizes and sizes must give one entry per level. Received: feature_sizes={feature_sizes!r}, "
            f"sizes={sizes!r}"
        )
    height, width = (float(s) for s in image_size)
    roots = np.sqrt(np.asarray(aspect_ratios, "float64"))
    shapes = [len(s) * len(roots) for s in sizes]  # anchors a cell, per level
    starts = np.cumsum([0] + [h * w * a for (h, w), a in zip(feature_sizes, shapes, strict=True)])[:-1]
    half_w = np.concatenate([(np.asarray(s, "float64")[:, None] * roots).ravel() / (2 * width) for s in sizes])
    half_h = np.concatenate([(np.asarray(s, "float64")[:, None] / roots).ravel() / (2 * height) for s in sizes])

    def per_level(values, dtype=tf.int32):
        return tf.gather(tf.constant(np.asarray(values), dtype), level)

    indices = tf.cast(indices, tf.int32)
    if len(sizes) == 1:
        level = tf.zeros_like(indices)
    else:  # the number of later levels' starts at or before the index
        level = tf.reduce_sum(tf.cast(tf.expand_dims(indices, -1) >= tf.constant(starts[1:], tf.int32), tf.int32), -1)
    local = indices - per_level(starts)
    cell, shape = local // per_level(shapes), local % per_level(shapes)
    columns = per_level([w for _, w in feature_sizes])
    row, column = cell // columns, cell % columns
    cx = (tf.cast(column, tf.float32) + 0.5) / tf.cast(columns, tf.float32)
    cy = (tf.cast(row, tf.float32) + 0.5) / per_level([h for h, _ in feature_sizes], tf.float32)
    shape = per_level(np.cumsum([0, *shapes])[:-1]) + shape
    hw = tf.gather(tf.constant(half_w, tf.float32), shape)
    hh = tf.gather(tf.constant(half_h, tf.float32), shape)
    return tf.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=-1)


@keras.saving.register_keras_serializable(package="kapps")
class Proposals(keras.layers.Layer):
    """Region proposals from an RPN's objectness logits and box deltas (Ren et al. 2015, sec. 3.1).

    The anchors are decoded with their deltas (`kapps.detection.decode`, unnormalised as in the paper), clipped
    to the image, and the `pre_nms_top_n` of highest objectness (over all levels at once) go through
    non-maximum suppression at `iou_threshold`; the best `post_nms_top_n` survivors are the proposals. Boxes left
    without area by the clipping are never proposed. Rows past an image's survivors are zeros (no area), which
    the RoI head turns into boxes without area, which detection suppression drops.

    Inputs: objectness logits `(B, A)` and deltas `(B, A, 4)`, rows in the order of `anchors`.
    Output: `(B, post_nms_top_n, 4)` `rel_xyxy` proposals by descending objectness, then zero rows.

    Args:
        image_size: `(H, W)` of the input image in pixels.
        feature_sizes: `(h, w)` of each level's map.
        sizes: each level's anchor sizes in pixels (the square root of the area).
        aspect_ratios: anchor widths over heights, the same on every level.
        pre_nms_top_n: the boxes, by objectness, that go into suppression (12,000 in training, 6,000 at test in
            the paper's released code).
        post_nms_top_n: the proposals kept (2,000 in training, 300 at test in the paper).
        iou_threshold: suppression's IoU (0.7 in the paper).

    Reference: S. Ren, K. He, R. Girshick, J. Sun, "Faster R-CNN: Towards Real-Time Object Detection with Region
    Proposal Networks", NeurIPS 2015.
    """

    def __init__(
        self,
        *,
        image_size: Sequence[int],
        feature_sizes: Sequence[Sequence[int]],
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        pre_nms_top_n: int = 6000,
        post_nms_top_n: int = 300,
        iou_threshold: float = 0.7,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        for name, value in (("pre_nms_top_n", pre_nms_top_n), ("post_nms_top_n", post_nms_top_n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        check_nms_settings(max_detections=post_nms_top_n, iou_threshold=iou_threshold)
        self.image_size = tuple(int(s) for s in image_size)
        self.feature_sizes = [tuple(int(s) for s in fs) for fs in feature_sizes]
        self.sizes = [tuple(float(s) for s in level) for level in sizes]
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.pre_nms_top_n = pre_nms_top_n
        self.post_nms_top_n = post_nms_top_n
        self.iou_threshold = float(iou_threshold)
        self.anchors = level_anchors(
            image_size=self.image_size,
            feature_sizes=self.feature_sizes,
            sizes=self.sizes,
            aspect_ratios=self.aspect_ratios,
        )

    def call(self, objectness, deltas):
        objectness = tf.cast(objectness, tf.float32)
        deltas = tf.cast(deltas, tf.float32)
        k = min(self.pre_nms_top_n, self.anchors.shape[0])
        logits, order = tf.math.top_k(objectness, k=k)  # (B, k)
        chosen = tf.gather(deltas, order, batch_dims=1)  # (B, k, 4)
        anchors = level_anchors_at(
            order,
            image_size=self.image_size,
            feature_sizes=self.feature_sizes,
            sizes=self.sizes,
            aspect_ratios=self.aspect_ratios,
        )
        boxes = clip(decode(chosen, anchors, variances=RPN_VARIANCES))
        found = batched_nms(
            boxes,
            tf.sigmoid(logits)[..., None],
            max_detections=self.post_nms_top_n,
            iou_threshold=self.iou_threshold,
            score_threshold=0.0,
            per_class=False,
        )
        return found["boxes"]

    def compute_output_spec(self, objectness, deltas):
        if len(objectness.shape) != 2 or len(deltas.shape) != 3 or objectness.shape[1] != self.anchors.shape[0]:
            raise ValueError(
                f"Proposals expects objectness (batch, {self.anchors.shape[0]}) and deltas (batch, "
                f"{self.anchors.shape[0]}, 4). Received: {objectness.shape} and {deltas.shape}"
            )
        return keras.KerasTensor((objectness.shape[0], self.post_nms_top_n, 4), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=list(self.image_size),
            feature_sizes=[list(fs) for fs in self.feature_sizes],
            sizes=[list(s) for s in self.sizes],
            aspect_ratios=list(self.aspect_ratios),
            pre_nms_top_n=self.pre_nms_top_n,
            post_nms_top_n=self.post_nms_top_n,
            iou_threshold=self.iou_threshold,
        )
        return config


POOLERS = ("align", "max")


@keras.saving.register_keras_serializable(package="kapps")
class PyramidRoIPool(keras.layers.Layer):
    """RoI features from one feature map, or from a pyramid by each box's level (FPN, Lin et al. 2017, eq. 1).

    With one map, every box is pooled from it. With maps of levels `k_min .. k_min + n - 1`, box of level
    `kapps.layers.fpn_level` (with `canonical_size` the size that maps to level `k0`) is pooled from its level's
    map: RoIAlign gathers each box's samples from its own level (`kapps.layers.roi.roi_align`, one GATHER from
    the concatenated maps); RoI max pooling runs on every level and selects the box's, `n` times the work.

    Inputs: a list of maps `(B, h_l, w_l, C)`, shallow to deep, and boxes `(B, N, 4)` `rel_xyxy`.
    Output: `(B, N, out_h, out_w, C)`.

    Args:
        output_size: the pooled grid, `out_h, out_w` or an int.
        pooler: `"align"` (RoIAlign, Mask R-CNN) or `"max"` (RoI max pooling, Fast R-CNN).
        sampling_ratio: RoIAlign's samples per bin along each axis.
        image_size: `(H, W)` of the input image in pixels, for the boxes' level.
        k_min: the level of the first map.
        k0: the level of a box of `canonical_size` pixels.
        canonical_size: in pixels (224 on the paper's ~800-pixel images).
    """

    def __init__(
        self,
        output_size=7,
        *,
        pooler: str = "align",
        sampling_ratio: int = 2,
        image_size: Sequence[int] = (224, 224),
        k_min: int = 2,
        k0: int = 4,
        canonical_size: float = 224.0,
        **kwargs,
    ):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if pooler not in POOLERS:
            raise ValueError(f"pooler must be one of {POOLERS}. Received: pooler={pooler!r}")
        self.pooler = pooler
        self.sampling_ratio = sampling_ratio
        self.image_size = tuple(int(s) for s in image_size)
        self.k_min = int(k_min)
        self.k0 = int(k0)
        self.canonical_size = float(canonical_size)
        if pooler == "align":
            self.pool = RoIAlign(output_size, sampling_ratio=sampling_ratio, aligned=True, name="roi_align")
        else:
            self.pool = RoIPooling(output_size, name="roi_max_pool")
        self.output_size = self.pool.output_size

    def build(self, maps_shape, boxes_shape):
        self.built = True  # the poolers have no weights

    def call(self, maps, boxes):
        maps = list(maps)
        boxes = tf.cast(boxes, tf.float32)
        if len(maps) == 1:
            return self.pool(maps[0], boxes)
        levels = fpn_level(
            boxes,
            image_size=self.image_size,
            k0=self.k0,
            k_min=self.k_min,
            k_max=self.k_min + len(maps) - 1,
            canonical_size=self.canonical_size,
        )
        if self.pooler == "align":
            return roi_align(
                maps,
                boxes,
                levels=levels - self.k_min,
                output_size=self.output_size,
                sampling_ratio=self.sampling_ratio,
                aligned=True,
            )
        pooled = 0.0
        for offset, feature_map in enumerate(maps):
            chosen = ops.cast(ops.equal(levels, self.k_min + offset), "float32")[:, :, None, None, None]
            pooled = pooled + chosen * self.pool(feature_map, boxes)
        return pooled

    def compute_output_spec(self, maps, boxes):
        maps = list(maps)
        if not maps or len({m.shape[-1] for m in maps}) != 1:
            raise ValueError(f"PyramidRoIPool expects maps with equal channels. Received: {[m.shape for m in maps]}")
        return keras.KerasTensor((boxes.shape[0], boxes.shape[1], *self.output_size, maps[0].shape[-1]), "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            output_size=list(self.output_size),
            pooler=self.pooler,
            sampling_ratio=self.sampling_ratio,
            image_size=list(self.image_size),
            k_min=self.k_min,
            k0=self.k0,
            canonical_size=self.canonical_size,
        )
        return config


@keras.saving.register_keras_serializable(package="kapps")
class ClassBoxes(keras.layers.Layer):
    """The box head's outputs as detection candidates: one box and one score per proposal and class.

    Class `c`'s box is proposal `n` moved by the head's class-`c` deltas (`kapps.detection.decode` with
    `HEAD_VARIANCES`), clipped to the image; its score is the softmax probability of class `c` (the background's
    is left out). Fast R-CNN (Girshick 2015, sec. 2.3) and Faster R-CNN regress a box per class this way. A
    proposal without area (an all-zero padding row) scores 0 for every class, so it never becomes a detection.

    Inputs: proposals `(B, N, 4)`, class logits `(B, N, C + 1)` (background first), deltas `(B, N, 4 C)`.
    Output: `{"boxes": (B, N, C, 4), "class_scores": (B, N, C)}`, for `kapps.layers.NonMaxSuppression`.

    Args:
        num_classes: C, the object classes (without the background).
    """

    def __init__(self, num_classes: int, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
        self.num_classes = num_classes

    def call(self, proposals, class_logits, deltas):
        proposals = tf.cast(proposals, tf.float32)
        scores = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[..., 1:]
        has_area = (proposals[..., 2] > proposals[..., 0]) & (proposals[..., 3] > proposals[..., 1])
        scores = scores * tf.cast(has_area, tf.float32)[..., None]
        deltas = tf.reshape(tf.cast(deltas, tf.float32), [tf.shape(deltas)[0], -1, self.num_classes, 4])
        boxes = clip(decode(deltas, tf.expand_dims(proposals, 2), variances=HEAD_VARIANCES))
        return {"boxes": boxes, "class_scores": scores}

    def compute_output_spec(self, proposals, class_logits, deltas):
        c = self.num_classes
        if class_logits.shape[-1] != c + 1 or deltas.shape[-1] != 4 * c:
            raise ValueError(
                f"ClassBoxes with {c} classes expects class logits (..., {c + 1}) and deltas (..., {4 * c}). "
                f"Received: {class_logits.shape} and {deltas.shape}"
            )
        batch, n = proposals.shape[0], proposals.shape[1]
        return {
            "boxes": keras.KerasTensor((batch, n, c, 4), "float32"),
            "class_scores": keras.KerasTensor((batch, n, c), "float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config
