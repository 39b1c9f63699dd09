"""Instance masks: a detector's outputs plus `masks (B, K, H, W)`, each detection's mask probabilities at the input's
resolution (a pixel is in the mask at 0.5 or more), as `kapps.models.mask_rcnn` makes them.

Export criterion. The detections are compared as the detection kind compares them (`kapps.kinds.detection`), and
the masks of the detections that pair, pixel by pixel at 0.5. A float artifact passes when its detections pass
the detection kind's float criterion and every paired detection's mask has IoU >= `FLOAT_MASK_IOU` with Keras's,
where pixels whose Keras probability is within `MASK_BORDERLINE` of 0.5 are left out (a float difference may
carry them across, as a score across the threshold). A quantised artifact passes when its detections pass the
detection kind's quantised criterion and the mean mask IoU over the paired detections scoring at least
`QUANTIZED_SCORE_FLOOR` is at least `QUANTIZED_MASK_IOU`: quantisation moves a mask's probabilities by ~1e-2,
which moves its edge by a pixel here and there, not its shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Outputs, PredictOptions, shapes_text
from kapps.kinds.detection import (
    OUTPUTS,
    QUANTIZED_DETECTIONS,
    QUANTIZED_SCORE_FLOOR,
    Detection,
    compare_detections,
    nearest_pairs,
    score_threshold,
)

import numpy as np

MASK_OUTPUTS = (*OUTPUTS, "masks")
FLOAT_MASK_IOU = 0.99
MASK_BORDERLINE = 1e-3
QUANTIZED_MASK_IOU = 0.9
OVERLAY_ALPHA = 0.45


class InstanceMasks(Detection):
    """An instance segmenter's detections and masks: compared pair by pair and pixel by pixel for export, listed in
    pixels with COCO RLE masks by predict, drawn as translucent overlays, scored by COCO box and mask AP."""

    task = "instance_segmentation"
    legend = "images with the same detections and masks"

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse outputs other than a detector's and `masks (B, K, H, W)` with the detections' B and K."""
        boxes, masks = tuple(shapes.get("boxes", ())), tuple(shapes.get("masks", ()))
        fits = (
            set(shapes) == set(MASK_OUTPUTS)
            and len(boxes) == 3
            and boxes[-1] == 4
            and tuple(shapes["scores"]) == boxes[:2]
            and tuple(shapes["classes"]) == boxes[:2]
            and tuple(shapes["num_detections"]) == boxes[:1]
            and len(masks) == 4
            and masks[:2] == boxes[:2]
        )
        if not fits:
            raise ModelError(
                f"{what} is not an instance segmenter: its outputs are {shapes_text(shapes)}, not boxes (B, K, 4), "
                "scores (B, K), classes (B, K), num_detections (B,) and masks (B, K, H, W)."
            )

    def criterion(self, *, quantized: bool) -> str:
        detections = super().criterion(quantized=quantized)
        if quantized:
            return (
                f"{detections}; and the paired detections scoring {QUANTIZED_SCORE_FLOOR:g} or more have a mean mask "
                f"IoU >= {QUANTIZED_MASK_IOU:g} (masks at 0.5)"
            )
        return (
            f"{detections}; and every paired detection's mask has IoU >= {FLOAT_MASK_IOU:g} with Keras's (masks at "
            f"0.5, pixels within {MASK_BORDERLINE:g} of 0.5 left out)"
        )

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """The detection kind's numbers, `compare_masks`' and `passed` by `criterion`."""
        threshold = score_threshold(model)
        detections = compare_detections(got, expected, exact=not quantized, score_threshold=threshold)
        masks = compare_masks(got, expected, quantized=quantized)
        if quantized:
            passed = detections["detection_agreement"] >= QUANTIZED_DETECTIONS
            passed &= masks["mean_mask_iou"] >= QUANTIZED_MASK_IOU
        else:
            passed = detections["detection_agreement"] == 1.0 and masks["min_mask_iou"] >= FLOAT_MASK_IOU
        return {**detections, **masks, "top1_agreement": None, "passed": bool(passed)}

    def describe(self, entry: dict) -> str:
        return (
            f"{super().describe(entry)}, mask IoU of the paired detections {entry['min_mask_iou']:.4f} at least and "
            f"{entry['mean_mask_iou']:.4f} on average"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """The detection kind's `detections`, each with its `mask` as a COCO RLE at the original `width` x `height`
        (the probabilities resized bilinearly, then a pixel is in at 0.5 or more)."""
        from kapps.metrics import encode_masks

        count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
        scores = np.asarray(outputs["scores"], "float64")[0, :count]
        kept = np.flatnonzero(scores >= options.score_threshold)
        masks = resize_masks(np.asarray(outputs["masks"], "float32")[0, kept], height=height, width=width)
        detections = super().result(outputs, class_name=class_name, width=width, height=height, options=options)
        # the detection kind keeps the same rows, then sorts them by score: match each to its row by order
        rows = sorted(range(len(kept)), key=lambda r: -scores[kept[r]])
        rles = encode_masks(masks)
        for entry, row in zip(detections["detections"], rows, strict=True):
            entry["mask"] = rles[row]
        return detections

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with each detection's mask as a translucent overlay in its class's colour, and its box."""
        from kapps.viz import class_colour, draw_box, picture, write_png

        from pycocotools import mask as mask_utils

        fig, ax = picture(pixels)
        height, width = pixels.shape[:2]
        for d in entry["detections"]:
            colour = class_colour(d["class_id"])
            mask = mask_utils.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode("ascii")})
            overlay = np.zeros((height, width, 4), "float32")
            overlay[mask > 0] = (*colour[:3], OVERLAY_ALPHA)
            ax.imshow(overlay, interpolation="nearest")
            draw_box(ax, d["box"], colour=colour, label=f"{d['class']} {d['score']:.2f}", fontsize=9)
        ax.set_title(f"{len(entry['detections'])} detections")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """COCO-style box and mask AP: `kapps.metrics.evaluate_instance_segmenter`.

        Raises:
            ValueError: `class_names` is None (COCO's evaluation names every class).
        """
        from kapps.metrics import evaluate_instance_segmenter

        if class_names is None:
            raise ValueError("class_names must name each class id of a detector. Received: class_names=None")
        return evaluate_instance_segmenter(model, dataset, class_names=class_names, limit=limit)

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        from kapps.data.detection import load_detection

        return load_detection(spec, image_size=image_size, seed=seed, data_dir=data_dir, masks=True)


def resize_masks(masks: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """`(N, h, w)` mask probabilities resized bilinearly to `(N, height, width)`."""
    if not len(masks):
        return np.zeros((0, height, width), "float32")
    if masks.shape[1:] == (height, width):
        return masks
    import tensorflow as tf

    return tf.image.resize(masks[..., None], (height, width)).numpy()[..., 0]


def mask_iou(a: np.ndarray, b: np.ndarray, *, ignore: np.ndarray | None = None) -> float:
    """IoU of two boolean masks over the pixels not in `ignore`; 1 when both are empty there."""
    if ignore is not None:
        a, b = a & ~ignore, b & ~ignore
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare_masks(got: dict, expected: dict, *, quantized: bool) -> dict:
    """The masks of the detections paired as the detection kind pairs them (same class, nearest box and score).

    Args:
        got, expected: batched instance segmenter outputs.
        quantized: count only the pairs whose Keras detection scores at least `QUANTIZED_SCORE_FLOOR`, and keep
            every pixel; otherwise pixels whose Keras probability is within `MASK_BORDERLINE` of 0.5 are left out.

    Returns:
        `min_mask_iou` and `mean_mask_iou` over the pairs (1 when there are none), `max_mask_diff` (the largest
        difference of a paired pixel's probability) and `mask_pairs`.
    """
    counts = [np.asarray(d["num_detections"]).reshape(-1).astype(int) for d in (got, expected)]
    ious, diff = [], 0.0
    for i, (n, n_ref) in enumerate(zip(*counts, strict=True)):
        a = {k: np.asarray(got[k])[i, :n].astype("float64") for k in OUTPUTS[:3]}
        b = {k: np.asarray(expected[k])[i, :n_ref].astype("float64") for k in OUTPUTS[:3]}
        for j, k in nearest_pairs(a, b):
            if quantized and b["scores"][k] < QUANTIZED_SCORE_FLOOR:
                continue
            mine, theirs = np.asarray(got["masks"][i, j]), np.asarray(expected["masks"][i, k])
            ignore = None if quantized else np.abs(theirs - 0.5) < MASK_BORDERLINE
            ious.append(mask_iou(mine >= 0.5, theirs >= 0.5, ignore=ignore))
            diff = max(diff, float(np.max(np.abs(mine - theirs))))
    return {
        "min_mask_iou": min(ious, default=1.0),
        "mean_mask_iou": float(np.mean(ious)) if ious else 1.0,
        "max_mask_diff": diff,
        "mask_pairs": len(ious),
    }
