"""Detections: a detector's padded `boxes`, `scores`, `classes` and `num_detections`, decoding and NMS inside.

Export criterion. Detections are compared as detections, image by image on the valid rows, not as raw tensors
(padding rows and the order of near-equal scores mean nothing). A float artifact must give, on every image,
detections that pair one-to-one with Keras's: boxes within `DETECTION_ATOL` (normalised), identical classes,
scores within `DETECTION_ATOL` (a detection within `DETECTION_ATOL` of the score threshold may be missing on either
side, and so may one within `DETECTION_ATOL` of the lowest score of the other side when that side's K rows are all
detections: a float difference can carry its score across either cut). A quantised one agrees on an image when its
detections scoring at least `QUANTIZED_SCORE_FLOOR`, on either side, pair one-to-one with one of the other side at
IoU >= `MATCH_IOU` with the same class; it must agree on at least `QUANTIZED_DETECTIONS` of the images. The floor
leaves out the long tail of low-scoring detections (a detector kept for mAP reports everything above 0.01), where
quantisation moves scores across the threshold; the bar is lower than the classifiers' 0.99 because a whole image
must agree, and an overlap moved across the NMS threshold adds or drops one box. A detector with any other output
(a Mask R-CNN's masks) is refused: this kind would not compare it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import ModelError
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

OUTPUTS = ("boxes", "scores", "classes", "num_detections")
DETECTION_ATOL = 1e-3
MATCH_IOU = 0.5
QUANTIZED_DETECTIONS = 0.9
QUANTIZED_SCORE_FLOOR = 0.25  # `kapps predict`'s default: the detections a user sees


class Detection(Kind):
    """A detector's detections: compared pair by pair for export, listed in pixels by predict, scored by COCO AP."""

    task = "detection"
    legend = "images with the same detections"
    unsupported_quantizations = {
        "int8": "int8 quantization of a detector is not supported: TFLite's calibrator crashes on the NMS loop in "
        "its graph; use --quantize dynamic or float16."
    }

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse outputs other than `boxes (B, K, 4)`, `scores (B, K)`, `classes (B, K)`, `num_detections (B,)`."""
        extra = sorted(set(shapes) - set(OUTPUTS))
        if extra and set(OUTPUTS) <= set(shapes):
            raise ModelError(
                f"{what} has outputs that the detection kind does not compare ({', '.join(extra)}); a detector gives "
                f"{', '.join(OUTPUTS)} only."
            )
        boxes = tuple(shapes.get("boxes", ()))
        fits = (
            not extra
            and len(boxes) == 3
            and boxes[-1] == 4
            and tuple(shapes.get("scores", ())) == boxes[:2]
            and tuple(shapes.get("classes", ())) == boxes[:2]
            and tuple(shapes.get("num_detections", ())) == boxes[:1]
        )
        if not fits:
            raise ModelError(
                f"{what} is not a detector: its outputs are {shapes_text(shapes)}, not boxes (B, K, 4), scores "
                "(B, K), classes (B, K) and num_detections (B,)."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return (
                f"on at least {QUANTIZED_DETECTIONS:.0%} of the images every detection scoring "
                f"{QUANTIZED_SCORE_FLOOR:g} or more, on either side, pairs one-to-one with one of the same class at "
                f"IoU >= {MATCH_IOU:g}"
            )
        return (
            "on every image the detections pair one-to-one with Keras's: same class, box and score within "
            f"{DETECTION_ATOL:g} (one within {DETECTION_ATOL:g} of the score threshold, or of the other side's lowest "
            "score when all its rows are detections, may be unpaired)"
        )

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`compare_detections`'s numbers, `top1_agreement` None (no classes to rank) and `passed` by `criterion`."""
        comparison = compare_detections(got, expected, exact=not quantized, score_threshold=score_threshold(model))
        bar = QUANTIZED_DETECTIONS if quantized else 1.0
        return {**comparison, "top1_agreement": None, "passed": comparison["detection_agreement"] >= bar}

    def agreement(self, entry: dict) -> float | None:
        return entry.get("detection_agreement")

    def describe(self, entry: dict) -> str:
        # The difference is over the detections that pair, so the counts say how many of them there were.
        return (
            f"max abs diff {entry['max_abs_diff']:.3g} over the paired detections, the same number of detections on "
            f"{entry['count_agreement']:.1%} of images, detections agree on {entry['detection_agreement']:.1%}"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`detections`: the first `num_detections` rows scoring at least `options.score_threshold`, by score, boxes
        in pixels of the original `width` x `height` image, rounded to 0.01."""
        count = int(np.asarray(outputs["num_detections"]).reshape(-1)[0])
        boxes = np.asarray(outputs["boxes"], "float64")[0, :count]
        scores = np.asarray(outputs["scores"], "float64")[0, :count]
        classes = np.asarray(outputs["classes"]).astype("int64")[0, :count]
        scale = np.array([width, height, width, height], "float64")
        detections = [
            {
                "box": [float(v) for v in np.clip(box * scale, 0, scale).round(2)],
                "class_id": int(class_id),
                "class": class_name(int(class_id)),
                "score": float(score),
            }
            for box, score, class_id in zip(boxes, scores, classes, strict=True)
            if score >= options.score_threshold
        ]
        return {"detections": sorted(detections, key=lambda d: -d["score"])}

    def summary(self, entry: dict) -> str:
        found = entry["detections"]
        return f"{len(found)} detections" + "".join(f", {d['class']} {d['score']:.2f}" for d in found[:5])

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with each detection's box and "class score"."""
        from kapps.viz import class_colour, draw_box, picture, write_png

        fig, ax = picture(pixels)
        for d in entry["detections"]:
            label = f"{d['class']} {d['score']:.2f}"
            draw_box(ax, d["box"], colour=class_colour(d["class_id"]), label=label, fontsize=9)
        ax.set_title(f"{len(entry['detections'])} detections")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """COCO-style box AP of a detector on a batched `(images, targets)` dataset: `kapps.metrics.evaluate_detector`.

        Raises:
            ValueError: `class_names` is None (COCO's evaluation names every class).
        """
        from kapps.metrics import evaluate_detector

        if class_names is None:
            raise ValueError("class_names must name each class id of a detector. Received: class_names=None")
        return evaluate_detector(model, dataset, class_names=class_names, limit=limit)

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        from kapps.data.detection import load_detection

        return load_detection(spec, image_size=image_size, seed=seed, data_dir=data_dir)


def score_threshold(model) -> float | None:
    """The score threshold of a detector's NonMaxSuppression layer; None when it has none."""
    from kapps.layers.detection import NonMaxSuppression

    thresholds = [layer.score_threshold for layer in model.layers if isinstance(layer, NonMaxSuppression)]
    return thresholds[0] if thresholds else None


def compare_detections(got: dict, expected: dict, *, exact: bool = True, score_threshold: float | None = None) -> dict:
    """Compare a detector's outputs with the reference's, image by image, on the valid rows only.

    Args:
        got, expected: batched detector outputs (`boxes`, `scores`, `classes`, `num_detections`).
        exact: float artifacts: an image agrees when its detections pair one-to-one, in any order (near-equal
            scores may swap places), with the same class and boxes and scores within `DETECTION_ATOL`. Otherwise
            (quantised artifacts) an image agrees when its detections scoring at least `QUANTIZED_SCORE_FLOOR`, on
            either side, pair one-to-one with one of the other side at IoU >= `MATCH_IOU` with the same class.
        score_threshold: the detector's score threshold. In the exact comparison a detection scoring within
            `DETECTION_ATOL` of it may go unpaired on either side: a float difference can carry its score across.
            So may one within `DETECTION_ATOL` of the lowest score of the other side when that side fills all its
            K rows, where the detections are cut by count (a Faster R-CNN's 100th and 101st candidates may score
            1e-8 apart, and another runtime keep the other one).

    Returns:
        `detection_agreement` (share of images that agree), `count_agreement` (share with the same num_detections),
        `max_box_diff`, `max_score_diff` (over the detections paired as nearest of the same class; 0 when there
        are none) and `max_abs_diff`, the larger of the two.
    """
    borderline = -np.inf if score_threshold is None else score_threshold + DETECTION_ATOL
    counts = [np.asarray(d["num_detections"]).reshape(-1).astype(int) for d in (got, expected)]
    rows = np.asarray(expected["scores"]).shape[1]  # K, the rows of every image
    agree, same_count, box_diff, score_diff = 0, 0, 0.0, 0.0
    for i, (n, n_ref) in enumerate(zip(*counts, strict=True)):
        a = {k: np.asarray(got[k])[i, :n].astype("float64") for k in OUTPUTS[:3]}
        b = {k: np.asarray(expected[k])[i, :n_ref].astype("float64") for k in OUTPUTS[:3]}
        same_count += n == n_ref
        pairs = nearest_pairs(a, b)
        boxes = [float(np.max(np.abs(a["boxes"][j] - b["boxes"][k]))) for j, k in pairs]
        scores = [abs(a["scores"][j] - b["scores"][k]) for j, k in pairs]
        box_diff, score_diff = max([box_diff, *boxes]), max([score_diff, *scores])
        if exact:
            within = zip(pairs, boxes, scores, strict=True)
            close = [pair for pair, box, score in within if box <= DETECTION_ATOL and score <= DETECTION_ATOL]
            # a side's unpaired detection may be one the other side cut at the score threshold, or, when the other
            # side fills all its rows, one it cut by count: scoring within DETECTION_ATOL of its lowest
            limits = [
                max(borderline, other["scores"].min() + DETECTION_ATOL if len(other["scores"]) == rows else -np.inf)
                for other in (b, a)
            ]
            unpaired = [np.delete(a["scores"], [j for j, _ in close]), np.delete(b["scores"], [k for _, k in close])]
            agree += bool(all(np.all(side <= limit) for side, limit in zip(unpaired, limits, strict=True)))
        else:
            agree += _paired(a, b)
    images = max(len(counts[1]), 1)
    return {
        "detection_agreement": agree / images,
        "count_agreement": same_count / images,
        "max_box_diff": box_diff,
        "max_score_diff": score_diff,
        "max_abs_diff": max(box_diff, score_diff),
    }


def nearest_pairs(a: dict, b: dict) -> list[tuple[int, int]]:
    """Rows of `a` and `b` paired one-to-one: each row of `b` in turn (by score) with the free row of `a` of the
    same class whose box and score are nearest (largest coordinate difference, then score difference)."""
    free, pairs = list(range(len(a["scores"]))), []
    for k, (box, score, cls) in enumerate(zip(b["boxes"], b["scores"], b["classes"], strict=True)):
        same = [j for j in free if a["classes"][j] == cls]
        if same:
            j = min(same, key=lambda j: (np.max(np.abs(a["boxes"][j] - box)), abs(a["scores"][j] - score)))
            free.remove(j)
            pairs.append((j, k))
    return pairs


def _paired(a: dict, b: dict) -> bool:
    """Whether every detection of `a` or `b` scoring at least QUANTIZED_SCORE_FLOOR pairs one-to-one with one of the
    other side (any score) at IoU >= MATCH_IOU with the same class; rows of `b` pick, by score, their best overlap."""
    free, paired_a, paired_b = list(range(len(a["scores"]))), set(), set()
    for k, (box, cls) in enumerate(zip(b["boxes"], b["classes"], strict=True)):
        overlaps = [(_iou(a["boxes"][j], box), j) for j in free if a["classes"][j] == cls]
        best = max(overlaps, default=(0.0, None))
        if best[0] >= MATCH_IOU:
            free.remove(best[1])
            paired_a.add(best[1])
            paired_b.add(k)
    unpaired = [s for j, s in enumerate(a["scores"]) if j not in paired_a]
    unpaired += [s for k, s in enumerate(b["scores"]) if k not in paired_b]
    return all(score < QUANTIZED_SCORE_FLOOR for score in unpaired)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two [x1, y1, x2, y2] boxes; 0 for two empty boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
