"""Points: a heatmap regressor's `points`, `scores` and `num_points` per point type, peak extraction inside
(`kapps.layers.HeatmapPeaks`, as `kapps.models.hourglass_detector` appends it).

Outputs: `points` float32 `(B, T, K, 2)` relative `[x, y]`, `scores` `(B, T, K)`, `num_points` int32 `(B, T)`;
each type's first `num_points` rows are its points by descending score, then padding.

Export criterion. Points are compared as points, image by image and type by type on the valid rows, in pixels of
the model's heatmaps (where the peaks are found). A float artifact must give, on every image, points that pair
one-to-one with Keras's (Hungarian pairing, same type) within `FLOAT_RADIUS` heatmap pixels with scores within
`SCORE_ATOL`; a point within `SCORE_ATOL` of the score threshold may be missing on either side, and so may one
within `SCORE_ATOL` of the lowest score of the other side when that side fills its K rows (a float difference can
carry a score across either cut). The radius is half a pixel because the quarter-pixel refinement turns on the
sign of the difference of a peak's two neighbours: where they are equal up to rounding one runtime may shift a
quarter pixel one way and another the other way. A quantised artifact agrees on an image when every point scoring at
least `score_threshold + QUANTIZED_SCORE_MARGIN`, on either side, pairs with a point of the other side (any score)
within `QUANTIZED_RADIUS` heatmap pixels; it must agree on at least `QUANTIZED_IMAGES` of the images. Quantisation
moves heatmap values by ~1e-2: a peak between two nearly equal pixels may move to the other one (1 px, plus the
quarter-pixel shifts), and low peaks may cross the threshold, which the margin leaves out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from kapps.errors import DataError, ModelError
from kapps.keypoints.metrics import count_scores, match_points, pck, point_scores, points_from_outputs
from kapps.keypoints.peaks import thresholds
from kapps.kinds.base import Kind, Outputs, PredictOptions, shapes_text

import numpy as np

OUTPUTS = ("points", "scores", "num_points")
FLOAT_RADIUS = 0.5  # heatmap pixels
SCORE_ATOL = 1e-3
QUANTIZED_RADIUS = 1.5  # heatmap pixels
QUANTIZED_SCORE_MARGIN = 0.1
QUANTIZED_IMAGES = 0.9
EVALUATION_RADIUS = 3.0  # input pixels, for precision and recall
PCK_ALPHA = 0.05  # of the image's longer side
MARKER_SIZE = 36
EMBEDDED_IMAGES = 256  # of each split an export reads: its verification samples and int8 calibration images


class Keypoints(Kind):
    """A heatmap regressor's points: compared pair by pair for export, listed in pixels by predict, drawn as
    markers coloured by type, scored by precision / recall within r pixels, PCK and counting."""

    task = "heatmap"
    legend = "images with the same points"

    def check(self, shapes: Mapping[str, tuple], *, what: str) -> None:
        """Refuse outputs other than `points (B, T, K, 2)`, `scores (B, T, K)` and `num_points (B, T)`."""
        points = tuple(shapes.get("points", ()))
        fits = (
            set(shapes) == set(OUTPUTS)
            and len(points) == 4
            and points[-1] == 2
            and tuple(shapes["scores"]) == points[:3]
            and tuple(shapes["num_points"]) == points[:2]
        )
        if not fits:
            raise ModelError(
                f"{what} is not a point detector: its outputs are {shapes_text(shapes)}, not points (B, T, K, 2), "
                "scores (B, T, K) and num_points (B, T); a hourglass's heatmaps are read as points by "
                "kapps.models.hourglass_detector."
            )

    def criterion(self, *, quantized: bool) -> str:
        if quantized:
            return (
                f"on at least {QUANTIZED_IMAGES:.0%} of the images every point scoring {QUANTIZED_SCORE_MARGIN:g} "
                f"or more above the threshold, on either side, pairs with one of the same type within "
                f"{QUANTIZED_RADIUS:g} heatmap pixels"
            )
        return (
            f"on every image the points pair one-to-one with Keras's: same type, within {FLOAT_RADIUS:g} heatmap "
            f"pixels, score within {SCORE_ATOL:g} (one within {SCORE_ATOL:g} of the threshold, or of the other "
            "side's lowest score when all its rows are points, may be unpaired)"
        )

    def compare(self, got: Outputs, expected: Outputs, *, quantized: bool, model) -> dict:
        """`compare_points`' numbers, `top1_agreement` None and `passed` by `criterion`."""
        threshold, size = peak_settings(model)
        comparison = compare_points(got, expected, size=size, score_threshold=threshold, quantized=quantized)
        bar = QUANTIZED_IMAGES if quantized else 1.0
        return {**comparison, "top1_agreement": None, "passed": comparison["point_agreement"] >= bar}

    def agreement(self, entry: dict) -> float | None:
        return entry.get("point_agreement")

    def describe(self, entry: dict) -> str:
        return (
            f"max abs diff {entry['max_abs_diff']:.3g} over the paired points ({entry['max_point_diff']:.3g} heatmap "
            f"pixels), the same counts on {entry['count_agreement']:.1%} of images, points agree on "
            f"{entry['point_agreement']:.1%}"
        )

    def result(
        self, outputs: Outputs, *, class_name: Callable[[int], str], width: int, height: int, options: PredictOptions
    ) -> dict:
        """`points`: `{"type", "type_id", "x", "y", "score"}` for each point scoring at least
        `options.score_threshold`, by score, in pixels of the original `width` x `height` image rounded to 0.01."""
        (found,) = points_from_outputs({k: np.asarray(v)[:1] for k, v in outputs.items()}, width=width, height=height)
        points = [
            {
                "type": class_name(int(t)),
                "type_id": int(t),
                "x": round(float(x), 2),
                "y": round(float(y), 2),
                "score": float(score),
            }
            for (x, y), t, score in zip(found["points"], found["types"], found["scores"], strict=True)
            if score >= options.score_threshold
        ]
        return {"points": sorted(points, key=lambda p: -p["score"])}

    def summary(self, entry: dict) -> str:
        counts: dict[str, int] = {}
        for p in entry["points"]:
            counts[p["type"]] = counts.get(p["type"], 0) + 1
        return f"{len(entry['points'])} points" + "".join(f", {n} {t}" for t, n in counts.items())

    def draw(self, pixels: np.ndarray, entry: dict, file) -> None:
        """The image with each point as a marker in its type's colour, and a legend of the types and counts."""
        from kapps.viz import class_colour, picture, write_png

        fig, ax = picture(pixels)
        by_type: dict[int, list[dict]] = {}
        for p in entry["points"]:
            by_type.setdefault(p["type_id"], []).append(p)
        for type_id, points in sorted(by_type.items()):
            ax.scatter(
                [p["x"] for p in points],
                [p["y"] for p in points],
                s=MARKER_SIZE,
                color=class_colour(type_id),
                edgecolors="white",
                linewidths=0.8,
                label=f"{points[0]['type']} ({len(points)})",
            )
        if by_type:
            ax.legend(loc="upper right", fontsize=8, framealpha=0.7)
        ax.set_title(f"{len(entry['points'])} points")
        write_png(fig, file)

    def evaluate(self, model, dataset, *, class_names: Sequence[str] | None = None, limit: int | None = None) -> dict:
        """Precision, recall and F1 within `EVALUATION_RADIUS` input pixels, PCK@`PCK_ALPHA` of the image's longer
        side, and counting (exact-count share and mean absolute error), per type and overall.

        Args:
            model: an image-to-points model (`hourglass_detector`).
            dataset: batched `(images, {"points": (B, N, 2) relative [x, y], "types": (B, N), -1 for padding})`.
            class_names: the name of each point type, for the per-type entries.
            limit: score at most this many images.
        """
        predictions, truths, size, types = detected_points(model, dataset, limit=limit)
        predicted_counts = [np.bincount(p["types"], minlength=types) for p in predictions]
        true_counts = [np.bincount(t["types"], minlength=types) for t in truths]
        seen = len(truths)
        names = list(class_names) if class_names is not None else [str(t) for t in range(types)]
        scores = point_scores(predictions, truths, radius=EVALUATION_RADIUS, num_types=types)
        within = pck(predictions, truths, alpha=PCK_ALPHA, reference=size)
        counts = count_scores(predicted_counts, true_counts)
        per_type = {
            name: {
                **scores["per_type"][t],
                "pck": within["per_type"][t] if t < len(within["per_type"]) else None,
                **{k: v[t] for k, v in counts.items()},
            }
            for t, name in enumerate(names)
        }
        overall = {k: v for k, v in scores.items() if k != "per_type"}
        return {
            **overall,
            "radius": EVALUATION_RADIUS,
            f"pck@{PCK_ALPHA:g}": within["pck"],
            "images": seen,
            "per_type": per_type,
        }

    def load_data(self, spec: str, *, image_size: tuple[int, int], seed: int, data_dir: str | None):
        """The point source `spec`; of an embedded source only the first `EMBEDDED_IMAGES` train and test images
        (the same images as the run's, whose first images do not depend on a split's size) and no val split,
        since an export reads no more: drawing every image of a 512-pixel wheat run would take minutes."""
        from kapps.data.keypoints import load_keypoints

        embedded = {"sizes": (EMBEDDED_IMAGES, 0, EMBEDDED_IMAGES)} if spec in ("wheat", "shapes") else {}
        return load_keypoints(spec, image_size=image_size, seed=seed, **embedded)


def detected_points(model, dataset, *, limit: int | None = None) -> tuple[list[dict], list[dict], int, int]:
    """A point detector's points and the true points of each image of a batched `(images, {"points", "types"})`
    dataset (at most `limit` images), in pixels, the images' longer side and the detector's point types.

    Raises:
        DataError: the dataset has no images.
    """
    predictions, truths = [], []
    size = types = None
    for images, targets in dataset:
        images = np.asarray(images)[: None if limit is None else limit - len(truths)]
        if not len(images):
            break
        height, width = images.shape[1:3]
        size = max(height, width)
        outputs = {k: np.asarray(v) for k, v in model(images, training=False).items()}
        predictions += points_from_outputs(outputs, width=width, height=height)
        types = outputs["num_points"].shape[1]
        true_points = np.asarray(targets["points"], "float64")[: len(images)] * [width, height]
        true_types = np.asarray(targets["types"])[: len(images)]
        truths += [{"points": p[k >= 0], "types": k[k >= 0]} for p, k in zip(true_points, true_types, strict=True)]
    if not truths:
        raise DataError("The dataset to evaluate has no images.")
    return predictions, truths, size, types


def peak_settings(model) -> tuple[float | list[float], tuple[int, int]]:
    """The score threshold (one number, or one a type) and heatmap size `(H, W)` of a point detector's
    `HeatmapPeaks` layer.

    Raises:
        ModelError: the model has no `HeatmapPeaks` layer, so its points cannot be compared in heatmap pixels.
    """
    from kapps.layers.heatmaps import HeatmapPeaks

    layers = [layer for layer in model.layers if isinstance(layer, HeatmapPeaks)]
    if not layers:
        raise ModelError(
            f"The model {model.name!r} has no HeatmapPeaks layer, which a heatmap model's export compares points by."
        )
    return layers[0].score_threshold, tuple(layers[0].input.shape[1:3])


def compare_points(got: Outputs, expected: Outputs, *, size: tuple[int, int], score_threshold, quantized: bool) -> dict:
    """Compare a point detector's outputs with the reference's, image by image and type by type, on valid rows.

    Args:
        got, expected: batched outputs (`points`, `scores`, `num_points`).
        size: the heatmaps' `(H, W)`: distances are in their pixels.
        score_threshold: the peaks' threshold, one number or one a type.
        quantized: the quantised criterion (see the module) rather than the float one.

    Returns:
        `point_agreement` (share of images that agree), `count_agreement` (share with the same `num_points` for
        every type), `max_point_diff` (heatmap pixels) and `max_score_diff` over the Hungarian pairs within
        `QUANTIZED_RADIUS`, and `max_abs_diff`, the largest difference of a paired row's numbers (relative
        coordinates and score).
    """
    scale = np.array([size[1], size[0]], "float64")  # relative [x, y] -> heatmap pixels
    counts = [np.asarray(o["num_points"]).astype(int) for o in (got, expected)]
    rows = np.asarray(expected["scores"]).shape[2]
    radius = QUANTIZED_RADIUS if quantized else FLOAT_RADIUS
    least = thresholds(score_threshold, np.asarray(expected["scores"]).shape[1])
    agree = same_count = 0
    point_diff = score_diff = raw_diff = 0.0
    for i in range(len(counts[1])):
        same_count += bool(np.array_equal(counts[0][i], counts[1][i]))
        fine = True
        for t in range(counts[1].shape[1]):
            a, b = (_rows(o, i, t, n[i, t]) for o, n in ((got, counts[0]), (expected, counts[1])))
            pairs = match_points(a["points"] * scale, b["points"] * scale, radius=radius)
            for j, k in match_points(a["points"] * scale, b["points"] * scale, radius=QUANTIZED_RADIUS):
                point_diff = max(point_diff, float(np.linalg.norm((a["points"][j] - b["points"][k]) * scale)))
                score_diff = max(score_diff, abs(a["scores"][j] - b["scores"][k]))
                raw_diff = max(raw_diff, float(np.max(np.abs(a["points"][j] - b["points"][k]))))
            if quantized:
                floor = least[t] + QUANTIZED_SCORE_MARGIN
                limits = (floor, floor)
            else:
                pairs = [(j, k) for j, k in pairs if abs(a["scores"][j] - b["scores"][k]) <= SCORE_ATOL]
                # a side's unpaired point may be one the other side cut at the threshold, or by count (K rows)
                limits = tuple(
                    max(
                        least[t] + SCORE_ATOL,
                        other["scores"].min() + SCORE_ATOL if len(other["scores"]) == rows else -np.inf,
                    )
                    for other in (b, a)
                )
            unpaired = (np.delete(a["scores"], [j for j, _ in pairs]), np.delete(b["scores"], [k for _, k in pairs]))
            strict = not quantized  # float: unpaired points must be at most the limit; quantised: below the floor
            fine &= all(
                np.all(side <= limit) if strict else np.all(side < limit)
                for side, limit in zip(unpaired, limits, strict=True)
            )
        agree += fine
    images = max(len(counts[1]), 1)
    return {
        "point_agreement": agree / images,
        "count_agreement": same_count / images,
        "max_point_diff": point_diff,
        "max_score_diff": float(score_diff),
        "max_abs_diff": max(raw_diff, float(score_diff)),
    }


def _rows(outputs: Outputs, image: int, t: int, count: int) -> dict:
    return {
        "points": np.asarray(outputs["points"], "float64")[image, t, :count],
        "scores": np.asarray(outputs["scores"], "float64")[image, t, :count],
    }
