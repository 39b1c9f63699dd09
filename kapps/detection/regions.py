"""Regions for R-CNN (Girshick et al., "Rich feature hierarchies for accurate object detection and semantic
segmentation", CVPR 2014): selective-search proposals, the warp that turns a proposal into a fixed-size CNN input,
and the overlaps that label proposals for training.

Selective search is OpenCV contrib's (`cv2.ximgproc.segmentation`, Uijlings et al. 2013), not a re-implementation.
Measured on 40 `shapes` test scenes of 128x128 (seed 0): in fast mode it returns 48 boxes an image in 52 ms and
covers every object at IoU >= 0.5 (mean best IoU 0.915); upscaling the image 2x first gives 122 boxes (0.961) in
246 ms, so the native size is enough there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
from collections.abc import Sequence

from kapps.detection.boxes import iou

import numpy as np
import tensorflow as tf

MODES = ("fast", "quality", "single")


def selective_search(
    image, *, mode: str = "fast", max_proposals: int = 2000, scale: float = 1.0, seed: int | None = 0
) -> np.ndarray:
    """Class-independent object proposals of one image by OpenCV's selective search (Uijlings et al. 2013).

    R-CNN runs it in "fast mode" and keeps about 2000 proposals an image (Girshick et al. 2014, Sec. 2.1).

    Args:
        image: `(H, W, 3)` RGB, float in [0, 1] or uint8.
        mode: `"fast"` (R-CNN's: two colour spaces, two strategies, k in {50, 100}), `"quality"` (more diverse, much
            slower) or `"single"` (one strategy, the quickest).
        max_proposals: keep the first this many, in selective search's own ranking.
        scale: resize the image by this factor before the search (more, smaller segments on small images); the
            boxes come back in the original image's frame either way.
        seed: OpenCV ranks the regions by their level in the hierarchy times C's `rand()` (the pseudo-random
            ranking of Uijlings et al.), so the order, and which boxes `max_proposals` keeps, change from call to
            call; the C library's generator is seeded with `seed` first (`srand`), for the same proposals every
            time. None leaves it unseeded.

    Returns:
        `(N, 4)` float32 `rel_xyxy` boxes, duplicates removed, N <= `max_proposals`.
    """
    import cv2  # opencv-contrib-python-headless; imported here, where proposals are asked for

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: mode={mode!r}")
    if not isinstance(max_proposals, int) or max_proposals < 1:
        raise ValueError(f"max_proposals must be a positive integer. Received: max_proposals={max_proposals!r}")
    if not scale > 0:
        raise ValueError(f"scale must be positive. Received: scale={scale!r}")
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"image must be (height, width, 3). Received: shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
    bgr = np.ascontiguousarray(pixels[..., ::-1])
    if scale != 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if seed is not None:
        _c_library().srand(int(seed))
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    {"fast": search.switchToSelectiveSearchFast, "quality": search.switchToSelectiveSearchQuality}.get(
        mode, search.switchToSingleStrategy
    )()
    rects = np.asarray(search.process(), np.float32).reshape(-1, 4)  # (x, y, w, h) in pixels
    height, width = bgr.shape[:2]
    boxes = rects[:, [0, 1, 0, 1]] + np.concatenate([np.zeros_like(rects[:, 2:]), rects[:, 2:]], axis=1)
    boxes /= np.array([width, height, width, height], np.float32)
    _, first = np.unique(np.round(boxes * 1e4).astype(np.int64), axis=0, return_index=True)
    return boxes[np.sort(first)][:max_proposals]


@functools.cache
def _c_library() -> ctypes.CDLL:
    """The C library of this process, whose `rand()` OpenCV's selective search draws from."""
    return ctypes.CDLL(ctypes.util.find_library("c"))


def warp(images, boxes, *, size: Sequence[int] = (227, 227), context: float = 16.0, box_indices=None) -> tf.Tensor:
    """Cut each box out of its image, with context, and stretch it to `size`: R-CNN's region warp.

    Girshick et al. (2014, Appendix A) dilate each proposal so that, once warped, `context` pixels of the image
    surround the original box on every side (p = 16 at 227x227), then resize it anisotropically; where the dilated
    box leaves the image, the image mean fills in. So the box itself spans `[context, side - context]` of the
    output, whatever its size or aspect. Here "the image mean" is each image's mean colour, and sampling is
    bilinear at the output pixels' centres (`tf.image.crop_and_resize`).

    Args:
        images: `(H, W, C)` one image, or `(B, H, W, C)` with `box_indices`.
        boxes: `(N, 4)` `rel_xyxy` boxes of positive size.
        size: (height, width) of the warped regions.
        context: pixels of context at the warped size on each side, less than half of each side.
        box_indices: `(N,)` the image of each box, for a batch of images; None for one image.

    Returns:
        `(N, *size, C)` float32 regions.
    """
    height, width = (int(n) for n in size)
    if min(height, width) < 2:
        raise ValueError(f"size must be at least 2 pixels each way. Received: size={tuple(size)!r}")
    if not 0 <= context < min(height, width) / 2:
        raise ValueError(f"context must be in [0, {min(height, width) / 2}) pixels. Received: context={context!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    if box_indices is None:
        if images.shape.rank != 3:
            raise ValueError(f"box_indices are needed for a batch of images. Received: images.shape={images.shape}")
        images = images[None]
    boxes = tf.reshape(tf.convert_to_tensor(boxes, tf.float32), (-1, 4))
    box_indices = tf.zeros(tf.shape(boxes)[:1], tf.int32) if box_indices is None else tf.cast(box_indices, tf.int32)
    image_height = tf.cast(tf.shape(images)[1], tf.float32)
    image_width = tf.cast(tf.shape(images)[2], tf.float32)
    xs = _sample_centres(boxes[:, 0] * image_width, boxes[:, 2] * image_width, width, context)  # (N, width)
    ys = _sample_centres(boxes[:, 1] * image_height, boxes[:, 3] * image_height, height, context)  # (N, height)
    means = tf.reduce_mean(images, axis=[1, 2], keepdims=True)  # (B, 1, 1, C)
    # crop_and_resize reads pixel centres from 0 to size - 1 and writes one constant beyond them. One replicated
    # pixel around the image (less its mean) lets samples between the border and the first centre read the border
    # pixel; samples whose centre is outside the image are set to 0, the mean once it is added back.
    padded = tf.pad(images - means, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    regions = tf.stack(
        [
            (ys[:, 0] + 1.0) / (image_height + 1.0),
            (xs[:, 0] + 1.0) / (image_width + 1.0),
            (ys[:, -1] + 1.0) / (image_height + 1.0),
            (xs[:, -1] + 1.0) / (image_width + 1.0),
        ],
        axis=1,
    )
    warped = tf.image.crop_and_resize(padded, regions, box_indices, (height, width))
    inside_x = (xs >= -0.5) & (xs <= image_width - 0.5)
    inside_y = (ys >= -0.5) & (ys <= image_height - 0.5)
    inside = inside_y[:, :, None, None] & inside_x[:, None, :, None]
    return tf.where(inside, warped, 0.0) + tf.gather(means, box_indices)


def _sample_centres(start, stop, samples: int, context: float):
    """`(N, samples)` centres of the output pixels along one axis, in input pixel-centre coordinates (pixel i's
    centre at i), for boxes spanning input edges `[start, stop]` warped with `context` output pixels around them."""
    extent = tf.maximum(stop - start, 1e-6)
    pad = context * extent / (samples - 2.0 * context)  # `context` output pixels, in input pixels
    step = (extent + 2.0 * pad) / samples
    first = start - pad + 0.5 * step - 0.5
    return first[:, None] + tf.range(samples, dtype=tf.float32)[None, :] * step[:, None]


def match_regions(regions, gt_boxes, gt_classes, *, num_classes: int) -> dict[str, np.ndarray]:
    """How each region overlaps the ground truth of one image, overall and class by class.

    Args:
        regions: `(N, 4)` `rel_xyxy` boxes (proposals).
        gt_boxes: `(G, 4)` `rel_xyxy` true boxes; rows whose class is negative are padding.
        gt_classes: `(G,)` their classes, -1 for padding.
        num_classes: K.

    Returns:
        `{"iou": (N,) best IoU with any true box (0 without one), "gt": (N,) the index into the unpadded true boxes
        of that box (-1 without one), "class": (N,) its class (-1 without one), "class_iou": (N, K) best IoU with a
        true box of each class}`.
    """
    regions = np.asarray(regions, np.float32).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes).reshape(-1).astype(np.int64)
    valid = gt_classes >= 0
    gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)[valid]
    gt_classes = gt_classes[valid]
    n = len(regions)
    if not len(gt_boxes):
        return {
            "iou": np.zeros(n, np.float32),
            "gt": np.full(n, -1, np.int64),
            "class": np.full(n, -1, np.int64),
            "class_iou": np.zeros((n, num_classes), np.float32),
        }
    overlaps = np.asarray(iou(regions, gt_boxes))  # (N, G)
    best = np.argmax(overlaps, axis=1)
    class_iou = np.zeros((n, num_classes), np.float32)
    for k in np.unique(gt_classes):
        class_iou[:, k] = overlaps[:, gt_classes == k].max(axis=1)
    return {
        "iou": overlaps[np.arange(n), best],
        "gt": best,
        "class": gt_classes[best],
        "class_iou": class_iou,
    }


def label_regions(proposals, gt_boxes, gt_classes, *, num_classes: int, positive_iou: float = 0.5) -> dict:
    """Every image's proposals and true boxes as one table of regions, each with what R-CNN trains on.

    The true boxes come first in each image's rows, as R-CNN adds them to the proposals for fine-tuning.

    Args:
        proposals: one `(N_i, 4)` `rel_xyxy` array per image.
        gt_boxes: `(I, G, 4)` padded true boxes of the images.
        gt_classes: `(I, G)` their classes, -1 for padding.
        num_classes: K.
        positive_iou: a proposal overlapping a true box by at least this is labelled with its class, otherwise
            background (Girshick et al. 2014, Sec. 2.3: 0.5 for fine-tuning).

    Returns:
        A dict of arrays with one row per region: `"image"` (R,) image index, `"boxes"` (R, 4), `"is_gt"` (R,)
        bool, `"label"` (R,) class for fine-tuning, K for background, `"iou"` (R,) best IoU with a true box,
        `"gt"` (R,) that box's index among the image's true boxes (-1 without one), `"class"` (R,) its class
        (-1 without one), `"gt_boxes"` (R, 4) that box (0 without one) and
        `"class_iou"` (R, K), as `match_regions` gives them.
    """
    if len(proposals) != len(gt_boxes) or len(gt_boxes) != len(gt_classes):
        raise ValueError(
            "proposals, gt_boxes and gt_classes must have one entry per image. Received: "
            f"{len(proposals)}, {len(gt_boxes)} and {len(gt_classes)}"
        )
    keys = ("image", "boxes", "is_gt", "iou", "gt", "class", "gt_boxes", "class_iou")
    columns: dict[str, list] = {key: [] for key in keys}
    for index, (found, boxes, classes) in enumerate(zip(proposals, gt_boxes, gt_classes, strict=True)):
        valid = np.asarray(classes) >= 0
        truth = np.asarray(boxes, np.float32)[valid]
        regions = np.concatenate([truth, np.asarray(found, np.float32).reshape(-1, 4)])
        match = match_regions(regions, truth, np.asarray(classes)[valid], num_classes=num_classes)
        columns["image"].append(np.full(len(regions), index, np.int32))
        columns["boxes"].append(regions)
        columns["is_gt"].append(np.arange(len(regions)) < len(truth))
        columns["iou"].append(match["iou"])
        columns["gt"].append(match["gt"])
        columns["class"].append(match["class"])
        columns["gt_boxes"].append(truth[match["gt"]] if len(truth) else np.zeros_like(regions))
        columns["class_iou"].append(match["class_iou"])
    table = {key: np.concatenate(value) for key, value in columns.items()}
    table["label"] = np.where(table["iou"] >= positive_iou, table["class"], num_classes).astype(np.int32)
    return table


def proposal_recall(regions: dict, *, min_iou: float = 0.5) -> float:
    """Share of the true boxes of a `label_regions` table that some proposal overlaps by IoU >= `min_iou` (1.0 when
    there is no true box): the proposals' recall, which bounds the detector's."""
    is_gt = np.asarray(regions["is_gt"], bool)
    objects = int(is_gt.sum())
    if not objects:
        return 1.0
    near = ~is_gt & (np.asarray(regions["iou"]) >= min_iou)
    pairs = np.stack([np.asarray(regions["image"])[near], np.asarray(regions["gt"])[near]], axis=1)
    return len(np.unique(pairs, axis=0)) / objects


class SelectiveSearch:
    """Selective search as a proposal function of uint8 images, with its settings, and optionally a memory.

    Args:
        mode: `kapps.detection.regions.selective_search`'s mode (`"fast"`, R-CNN's and Fast R-CNN's).
        max_proposals: boxes kept an image (2,000 in the papers).
        scale: the image is resized by this before the search.
        remember: keep each image's proposals, keyed by its pixels, so a second call on the same image (the
            validation scenes, epoch after epoch) costs a hash, not a search.
    """

    def __init__(self, *, mode: str = "fast", max_proposals: int = 2000, scale: float = 1.0, remember: bool = False):
        self.mode = mode
        self.max_proposals = int(max_proposals)
        self.scale = float(scale)
        self.memory: dict[bytes, np.ndarray] | None = {} if remember else None

    def settings(self) -> dict:
        return {"mode": self.mode, "max_proposals": self.max_proposals, "scale": self.scale}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """`(H, W, 3)` uint8 -> `(N, 4)` float32 `rel_xyxy` proposals."""
        key = None
        if self.memory is not None:
            key = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
            if key in self.memory:
                return self.memory[key]
        boxes = selective_search(image, mode=self.mode, max_proposals=self.max_proposals, scale=self.scale)
        if key is not None:
            self.memory[key] = boxes
        return boxes


def pad_proposals(proposals: Sequence[np.ndarray], *, rows: int | None = None, multiple: int = 1) -> np.ndarray:
    """Stack each image's `(N_i, 4)` proposals into `(B, P, 4)` with zero rows for padding.

    Args:
        proposals: one array a image.
        rows: P; by default the most any image has (at least 1), rounded up to `multiple`. Longer lists are cut.
        multiple: round the default P up to a multiple of this (fewer shapes for a traced function to see).
    """
    if rows is None:
        most = max([len(p) for p in proposals] + [1])
        rows = -(-most // multiple) * multiple
    table = np.zeros((len(proposals), rows, 4), np.float32)
    for row, boxes in enumerate(proposals):
        kept = np.asarray(boxes, np.float32)[:rows]
        table[row, : len(kept)] = kept
    return table


def to_uint8(images) -> np.ndarray:
    """Images in [0, 1] as uint8, rounded: the pixels selective search sees."""
    return np.clip(np.round(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
