"""Instance sequences: a recurrent instance segmenter's `masks (B, T, H, W)` (one instance's mask probabilities a
step, zero from the stop on), `confidences (B, T)` (that an instance remains, at each step) and `count (B,)` (the
steps before the first confidence below 0.5), as `kapps.models.recurrent_instance_segmenter` makes them
(Romera-Paredes & Torr, "Recurrent instance segmentation", ECCV 2016).

Export criterion. A float artifact passes when its count is Keras's on every image whose count is decisive, and
the masks of the steps both keep have a mean IoU of at least `FLOAT_MASK_IOU` with Keras's (masks at 0.5, pixels
whose Keras probability is within `MASK_BORDERLINE` of 0.5 left out). An image's count is decisive when every
confidence that decides it (those of the kept steps and of the step that stops) is farther than
`CONFIDENCE_BORDERLINE` from the threshold: a float graph moves a confidence by ~1e-7, which may carry one that close
across the threshold, and no other. Quantised artifacts are refused: the count is a threshold on confidences carried
through every step of the recurrence, and no criterion for it under quantisation has been measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text
from kapps.kinds.instance_masks import MASK_BORDERLINE, mask_iou, resize_masks

import numpy as np

OUTPUTS = ("masks", "confidences", "count")
FLOAT_MASK_IOU = 0.99
CONFIDENCE_BORDERLINE = 1e-4
STOP_THRESHOLD = 0.5  # the threshold of a model without a `stop` layer to read it from
OVERLAY_ALPHA = 0.5

_REFUSED = (
    "--quantize {q} is not offered for a recurrent instance segmenter: its count is a threshold on confidences "
    "carried through every step of the recurrence, and kapps has measured no criterion for it under quantisation; "
    "export it in float32 (no --quantize)."
)


class InstanceSequence(Kind):
    """A recurrent instance segmenter's masks step by step and its count: compared count by count and mask by mask
    for export, listed in step order with COCO RLE masks by predict, drawn in colour with the count, scored by the
    CVPPP leaf metrics (SBD, FBD, DiC, |DiC|)."""

    task = "instance_sequence"
    legend = "images with Keras's count"
    unsupported_quantizations = {q: _REFUSED.format(q=q) for q in ("dynamic", "float16", "int8")}

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse outputs other than `masks (B, T, H, W)`, `confidences (B, T)` and `count (B,)`."""
        masks = tuple(shapes.get("masks", ()))
        fits = (
            set(shapes) == set(OUTPUTS)
            and len(masks) == 4
            and tuple(shapes["confidences"]) == masks[:2]
            and tuple(shapes["count"]) == masks[:1]
        )
        if not fits:
            raise ModelError(
                f"{what} is not a recurrent instance segmenter: its outputs are {shapes_text(shapes)}, not masks "
                "(B, T, H, W), confidences (B, T) and count (B,)."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return "not offered: quantised artifacts are refused"
        return (
            f"the count is Keras's on every image whose deciding confidences are farther than "
            f"{CONFIDENCE_BORDERLINE:g} from the threshold, and the steps both keep have a mean mask IoU >= "
            f"{FLOAT_MASK_IOU:g} with Keras's (masks at 0.5, pixels within {MASK_BORDERLINE:g} of 0.5 left out)"
        )

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`compare_sequences`' numbers and `passed` by `criterion` (quantised artifacts never pass)."""
        comparison = compare_sequences(got, expected, threshold=stop_threshold(model))
        passed = (
            not quantized
            and comparison["decisive_count_agreement"] == 1.0
            and comparison["mean_mask_iou"] >= FLOAT_MASK_IOU
        )
        return {**comparison, "top1_agreement": None, "passed": bool(passed)}

    def agreement(self, entry: dict) -> float | None:
        return entry.get("count_agreement")

    def describe(self, entry: dict) -> str:
        return (
            f"max abs diff {entry['max_abs_diff']:.3g}, Keras's count on {entry['count_agreement']:.1%} of images "
            f"({entry['decisive_count_agreement']:.1%} of the decisive ones), mask IoU of the kept steps "
            f"{entry['mean_mask_iou']:.4f} on average and {entry['min_mask_iou']:.4f} at least"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`count` and `instances` in step order, each `{"step": 1.., "confidence", "pixels", "mask"}`, its mask a
        COCO RLE at the original `width` x `height` (the probabilities resized bilinearly, then a pixel is in at 0.5
        or more). Masks may overlap: each step's is the whole instance it sees."""
        from kapps.metrics import encode_masks

        count = int(round(float(np.asarray(outputs["count"]).reshape(-1)[0])))
        confidences = np.asarray(outputs["confidences"], "float64")[0]
        masks = resize_masks(np.asarray(outputs["masks"], "float32")[0, :count], height=height, width=width)
        instances = [
            {"step": t + 1, "confidence": float(confidences[t]), "pixels": int(np.sum(mask >= 0.5)), "mask": rle}
            for t, (mask, rle) in enumerate(zip(masks, encode_masks(masks), strict=True))
        ]
        return {"count": count, "instances": instances}

    def summary(self, entry: dict) -> str:
        steps = ", ".join(f"{i['step']}: {i['pixels']} px ({i['confidence']:.2f})" for i in entry["instances"][:5])
        more = " ..." if len(entry["instances"]) > 5 else ""
        return f"{entry['count']} instances" + (f": {steps}{more}" if steps else "")

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with each instance's mask as a translucent overlay in its step's colour, numbered by its step
        at its centre, titled with the count."""
        from kapps.viz import instance_colour, picture, write_png

        from pycocotools import mask as mask_utils

        fig, ax = picture(pixels)
        height, width = pixels.shape[:2]
        for instance in entry["instances"]:
            rle = instance["mask"]
            mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}) > 0
            colour = instance_colour(instance["step"] - 1)
            overlay = np.zeros((height, width, 4), "float32")
            overlay[mask] = (*colour[:3], OVERLAY_ALPHA)
            ax.imshow(overlay, interpolation="nearest")
            if mask.any():
                rows, columns = np.nonzero(mask)
                ax.text(
                    columns.mean(),
                    rows.mean(),
                    str(instance["step"]),
                    color="white",
                    fontsize=9,
                    ha="center",
                    va="center",
                    bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "linewidth": 0},
                )
        ax.set_title(f"count {entry['count']}")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """The CVPPP leaf scores (`kapps.instance_metrics.leaf_scores`: SBD, FBD, DiC, |DiC|, each with its standard
        deviation) of `model` on a batched dataset of `(images, {"labels": (B, H, W), ...})`, the predicted label
        image of an image being its kept steps' masks (`masks_to_labels`), and `count_accuracy`, the share of images
        whose count is right."""
        from kapps.instance_metrics import leaf_scores, masks_to_labels

        import tensorflow as tf

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be None or a positive number of images. Received: limit={limit!r}")
        run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
        truths, predictions = [], []
        for images, targets, *_ in dataset:
            outputs = run(images)
            masks, counts = np.asarray(outputs["masks"]), np.asarray(outputs["count"])
            for i, labels in enumerate(np.asarray(targets["labels"])):
                if limit is not None and len(truths) >= limit:
                    break
                truths.append(labels.astype(np.int64))
                predictions.append(masks_to_labels(masks[i], count=int(round(float(counts[i])))))
            if limit is not None and len(truths) >= limit:
                break
        if not truths:
            raise ValueError("dataset must hold at least one batch. Received: an empty dataset")
        scores = leaf_scores(truths, predictions)
        right = [len(np.unique(t[t > 0])) == len(np.unique(p[p > 0])) for t, p in zip(truths, predictions, strict=True)]
        return {**scores, "count_accuracy": float(np.mean(right)), "count": len(truths)}

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        from kapps.data.instances import load_instances

        return load_instances(spec, image_size=tuple(image_size), seed=seed)


def stop_threshold(model) -> float:
    """The confidence threshold of `model`'s `stop` layer, `STOP_THRESHOLD` when it has none."""
    try:
        return float(model.get_layer("stop").threshold)
    except (AttributeError, ValueError):
        return STOP_THRESHOLD


def compare_sequences(got: Outputs, expected: Outputs, *, threshold: float = STOP_THRESHOLD) -> dict:
    """Compare an artifact's instance sequences with Keras's, image by image.

    Returns:
        `max_abs_diff` over the masks and confidences; `count_agreement`, the share of images with Keras's count;
        `decisive_count_agreement`, the same share over the images whose deciding confidences (those of the steps
        Keras keeps and of the step that stops it) are all farther than `CONFIDENCE_BORDERLINE` from `threshold`
        (1 when there are none), and `decisive_images`, their number; `mean_mask_iou` and `min_mask_iou` over the
        steps both keep (1 when there are none; masks at 0.5, pixels within `MASK_BORDERLINE` of 0.5 in Keras's
        left out), `mask_pairs` their number.
    """
    masks, theirs_masks = np.asarray(got["masks"], "float64"), np.asarray(expected["masks"], "float64")
    confidences = np.asarray(got["confidences"], "float64")
    theirs_confidences = np.asarray(expected["confidences"], "float64")
    counts = np.rint(np.asarray(got["count"], "float64")).astype(int)
    theirs = np.rint(np.asarray(expected["count"], "float64")).astype(int)
    steps = theirs_confidences.shape[1]
    same = counts == theirs
    decisive = np.array(
        [
            np.all(np.abs(row[: min(n + 1, steps)] - threshold) > CONFIDENCE_BORDERLINE)
            for row, n in zip(theirs_confidences, theirs, strict=True)
        ],
        bool,
    )
    ious = []
    for i, n in enumerate(np.minimum(counts, theirs)):
        for t in range(n):
            reference = theirs_masks[i, t]
            ignore = np.abs(reference - 0.5) < MASK_BORDERLINE
            ious.append(mask_iou(masks[i, t] >= 0.5, reference >= 0.5, ignore=ignore))
    return {
        "max_abs_diff": float(
            max(np.max(np.abs(masks - theirs_masks)), np.max(np.abs(confidences - theirs_confidences)))
        ),
        "count_agreement": float(np.mean(same)),
        "decisive_count_agreement": float(np.mean(same[decisive])) if decisive.any() else 1.0,
        "decisive_images": int(decisive.sum()),
        "mean_mask_iou": float(np.mean(ious)) if ious else 1.0,
        "min_mask_iou": min(ious, default=1.0),
        "mask_pairs": len(ious),
    }
