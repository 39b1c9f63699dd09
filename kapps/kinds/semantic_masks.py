"""Semantic masks: one `(B, H, W, C)` array of per-pixel class scores (logits or probabilities), the output of every
semantic segmenter (FCN, SegNet, U-Net); a pixel's class is its best-scored one.

Export criterion. Masks are compared as class maps, pixel by pixel, not as raw scores. A float artifact passes when
its class is Keras's on every pixel where Keras's best score leads its second by more than `FLOAT_MARGIN`: a float
graph moves scores by ~1e-6, which may swap two classes tied to that precision but no other. A quantised artifact
passes when its class is Keras's on at least `QUANTIZED_PIXELS` of the pixels and the mean IoU of its class map,
measured against Keras's class map as the truth, is at least 1 - `QUANTIZED_IOU_DROP` (Keras's own against itself
being 1): quantisation moves scores by ~1e-2, which moves a region's edge by a pixel here and there, and the IoU bar
keeps a small class from vanishing behind a high pixel agreement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

FLOAT_MARGIN = 1e-4
QUANTIZED_PIXELS = 0.99
QUANTIZED_IOU_DROP = 0.01
OVERLAY_ALPHA = 0.45
BOUNDARY_TOLERANCE = 2.0  # pixels, for the boundary F-score of `evaluate`


class SemanticMasks(Kind):
    """A semantic segmenter's per-pixel scores: class maps compared pixel by pixel for export, COCO RLE per class for
    predict, a translucent overlay with a legend for pictures, and pixel accuracy, mean IoU, Dice and the boundary
    F-score for evaluation."""

    task = "segmentation"
    legend = "pixels with Keras's class"

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse anything but one `(B, H, W, C)` output with at least two classes."""
        shape = tuple(next(iter(shapes.values()))) if len(shapes) == 1 else ()
        if len(shape) != 4 or shape[-1] is None or shape[-1] < 2:
            raise ModelError(
                f"{what} is not a semantic segmenter: its outputs are {shapes_text(shapes)}, not one (B, H, W, C) "
                "array of class scores."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return (
                f"the class is Keras's on at least {QUANTIZED_PIXELS:.0%} of the pixels and the mean IoU against "
                f"Keras's class map is at least {1 - QUANTIZED_IOU_DROP:g}"
            )
        return (
            "the class is Keras's on every pixel where Keras's best score leads the second by more than "
            f"{FLOAT_MARGIN:g}"
        )

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`compare_class_maps`' numbers, `top1_agreement` None (no image-level class) and `passed` by `criterion`."""
        (name,) = expected
        comparison = compare_class_maps(np.asarray(got[name]), np.asarray(expected[name]))
        if quantized:
            passed = comparison["pixel_agreement"] >= QUANTIZED_PIXELS
            passed &= comparison["mean_iou"] >= 1 - QUANTIZED_IOU_DROP
        else:
            passed = comparison["decisive_pixel_agreement"] == 1.0
        return {**comparison, "top1_agreement": None, "passed": bool(passed)}

    def agreement(self, entry: dict) -> float | None:
        return entry.get("pixel_agreement")

    def describe(self, entry: dict) -> str:
        return (
            f"max abs diff {entry['max_abs_diff']:.3g}, Keras's class on {entry['pixel_agreement']:.2%} of pixels "
            f"({entry['decisive_pixel_agreement']:.2%} of those it leads by more than {FLOAT_MARGIN:g}), mean IoU "
            f"{entry['mean_iou']:.4f}"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`mask`: one entry a class present, by class id, `{"class_id", "class", "rle", "pixels"}`, its pixels a COCO
        RLE of the class map at the original `width` x `height` (resized by nearest neighbour)."""
        from kapps.metrics import encode_masks

        (scores,) = outputs.values()
        classes = resize_class_map(np.argmax(np.asarray(scores)[0], axis=-1), height=height, width=width)
        present = np.unique(classes)
        rles = encode_masks((classes[None] == present[:, None, None]).astype(np.uint8))
        return {
            "mask": [
                {"class_id": int(c), "class": class_name(int(c)), "rle": rle, "pixels": int(np.sum(classes == c))}
                for c, rle in zip(present, rles, strict=True)
            ]
        }

    def summary(self, entry: dict) -> str:
        total = sum(m["pixels"] for m in entry["mask"]) or 1
        largest = sorted(entry["mask"], key=lambda m: -m["pixels"])
        return f"{len(largest)} classes: " + ", ".join(f"{m['class']} {m['pixels'] / total:.1%}" for m in largest[:5])

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with every class but "background" as a translucent overlay in its colour, and a legend."""
        from kapps.viz import class_colour, picture, write_png

        from matplotlib.patches import Patch
        from pycocotools import mask as mask_utils

        fig, ax = picture(pixels)
        height, width = pixels.shape[:2]
        overlay = np.zeros((height, width, 4), "float32")
        handles = []
        total = sum(m["pixels"] for m in entry["mask"]) or 1
        for m in entry["mask"]:
            share = f"{m['class']} {m['pixels'] / total:.1%}"
            if m["class"] == "background":
                handles.append(Patch(facecolor="none", edgecolor="grey", label=f"{share} (not drawn)"))
                continue
            colour = class_colour(m["class_id"])
            region = mask_utils.decode({"size": m["rle"]["size"], "counts": m["rle"]["counts"].encode("ascii")})
            overlay[region > 0] = (*colour[:3], OVERLAY_ALPHA)
            handles.append(Patch(facecolor=colour[:3], alpha=OVERLAY_ALPHA, label=share))
        ax.imshow(overlay, interpolation="nearest")
        if handles:
            ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
        ax.set_title(f"{len(entry['mask'])} classes")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Pixel accuracy, mean and per-class IoU and Dice (`kapps.segmentation_metrics.segmentation_scores`) and the
        boundary F-score at `BOUNDARY_TOLERANCE` pixels of `model` on a batched `(images, masks)` dataset.

        Returns:
            JSON-ready metrics, per-class lists by class id, with `count` the images scored.
        """
        from kapps.segmentation_metrics import boundary_f_score, confusion_matrix, segmentation_scores

        import tensorflow as tf

        if limit is not None and limit < 1:
            raise ValueError(f"limit must be None or a positive number of images. Received: limit={limit!r}")
        run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
        confusion, truths, predictions = None, [], []
        for images, masks, *_ in dataset:
            outputs = run(images)
            if isinstance(outputs, Mapping | list | tuple):
                (outputs,) = outputs.values() if isinstance(outputs, Mapping) else outputs
            scores = np.asarray(outputs)
            keep = len(scores) if limit is None else min(len(scores), limit - len(truths))
            predicted, truth = np.argmax(scores[:keep], axis=-1), np.asarray(masks)[:keep]
            counts = confusion_matrix(truth, predicted, num_classes=scores.shape[-1])
            confusion = counts if confusion is None else confusion + counts
            truths.extend(truth)
            predictions.extend(predicted)
            if limit is not None and len(truths) >= limit:
                break
        if confusion is None:
            raise ValueError("dataset must hold at least one batch. Received: an empty dataset")
        boundary = boundary_f_score(
            np.stack(truths), np.stack(predictions), num_classes=len(confusion), tolerance=BOUNDARY_TOLERANCE
        )
        scores = segmentation_scores(confusion)
        return {
            **scores,
            "boundary_f_score": boundary["mean_bf"],
            "class_boundary_f_score": boundary["class_bf"],
            "boundary_tolerance": BOUNDARY_TOLERANCE,
            "class_names": list(class_names) if class_names is not None else None,
            "count": len(truths),
        }

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        from kapps.data.segmentation import load_segmentation

        return load_segmentation(spec, image_size=image_size, seed=seed, data_dir=data_dir)


def resize_class_map(classes: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """A `(h, w)` class map at `(height, width)` by nearest neighbour: each output pixel takes the class of the input
    pixel its centre falls in."""
    rows = np.minimum(((np.arange(height) + 0.5) * classes.shape[0] / height).astype(int), classes.shape[0] - 1)
    columns = np.minimum(((np.arange(width) + 0.5) * classes.shape[1] / width).astype(int), classes.shape[1] - 1)
    return classes[rows[:, None], columns[None, :]]


def compare_class_maps(got: np.ndarray, expected: np.ndarray) -> dict:
    """Compare an artifact's `(B, H, W, C)` scores with Keras's as class maps.

    Returns:
        `max_abs_diff` over the scores; `pixel_agreement`, the share of pixels whose best class is Keras's;
        `decisive_pixel_agreement`, the same share over the pixels where Keras's best score leads its second by
        more than `FLOAT_MARGIN` (1 when there are none) and `decisive_pixels`, their share; `mean_iou`, the mean
        IoU of the artifact's class map against Keras's as the truth (`kapps.segmentation_metrics`).
    """
    from kapps.segmentation_metrics import confusion_matrix, segmentation_scores

    got, expected = np.asarray(got, "float64"), np.asarray(expected, "float64")
    mine, theirs = np.argmax(got, axis=-1), np.argmax(expected, axis=-1)
    top_two = np.sort(expected, axis=-1)[..., -2:]
    decisive = top_two[..., 1] - top_two[..., 0] > FLOAT_MARGIN
    same = mine == theirs
    confusion = confusion_matrix(theirs, mine, num_classes=expected.shape[-1])
    return {
        "max_abs_diff": float(np.max(np.abs(got - expected))),
        "pixel_agreement": float(np.mean(same)),
        "decisive_pixel_agreement": float(np.mean(same[decisive])) if decisive.any() else 1.0,
        "decisive_pixels": float(np.mean(decisive)),
        "mean_iou": segmentation_scores(confusion)["mean_iou"],
    }
