"""Detection metrics: COCO-style mean average precision of boxes and of instance masks through pycocotools, and a
Keras callback that reports it.

The numbers are pycocotools' own (Lin et al. 2014, "Microsoft COCO: Common Objects in Context"): AP is the
101-point interpolated area under the precision-recall curve, averaged over the ten IoU thresholds
0.50, 0.55, ..., 0.95 for `map` (a detection matches at threshold t when IoU >= t), at 0.5 alone for `map50`
(the PASCAL VOC criterion), with at most 100 detections per image (the last of COCOeval's `maxDets`
(1, 10, 100)). A class without ground truth has no AP: pycocotools leaves it out of the mean, and kapps reports
it as None. Boxes inside kapps are normalised [x1, y1, x2, y2]; they are scaled to pixels here, because COCO's
small / medium / large split is by area in pixels (32**2 and 96**2).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

_MAX_DETECTIONS = 100
_AREAS = ("small", "medium", "large")


def coco_evaluate(
    ground_truth: Sequence[dict],
    detections: Sequence[dict],
    *,
    class_names: Sequence[str],
    image_size: tuple[int, int] | None = None,
    iou_type: str = "bbox",
    verbose: bool = False,
) -> dict:
    """COCO-style box or mask AP of `detections` against `ground_truth`, computed by pycocotools' `COCOeval`.

    One entry per image in each sequence, in the same order. Ground truth: {"boxes": (M, 4) normalised
    [x1, y1, x2, y2], "classes": (M,) int, optional "crowd": (M,) bool, optional "width" and "height" in pixels};
    rows with class < 0 or an all-zero box are padding. Detections: {"boxes": (K, 4), "scores": (K,),
    "classes": (K,), optional "num_detections"}; rows with class < 0 or past num_detections are padding.
    Crowd boxes follow COCO: a detection that lands on one counts neither as a hit nor as a false positive.
    With `iou_type="segm"` each entry also has "masks", one per row (padding rows included): an `(N, H, W)` array
    (a pixel is in the mask at 0.5 or more) or a list of COCO RLEs; detections and objects then match by mask IoU
    (Mask R-CNN's mask AP, He et al. 2017), and areas are the masks'.

    Args:
        ground_truth: the true objects of each image.
        detections: the detections of each image; only the 100 best scored per image count.
        class_names: the name of each class id, 0-based.
        image_size: (height, width) in pixels of every image whose ground truth has no "height"/"width", usually
            the model's input size.
        iou_type: `"bbox"` (boxes) or `"segm"` (masks).
        verbose: print pycocotools' summary table.

    Returns:
        Plain floats: "map" (AP@[.5:.95]), "map50", "map75", "map_small", "map_medium", "map_large",
        "per_class_ap" and "per_class_ap50" ({class name: AP}). A value is None where there is no ground truth to
        score it (pycocotools' -1), for example "map_large" when no object is larger than 96x96 pixels.

    Raises:
        ValueError: if the two sequences differ in length, or an image has no size.
    """
    if len(ground_truth) != len(detections):
        raise ValueError(
            f"ground_truth and detections must have one entry per image. Received: {len(ground_truth)} and "
            f"{len(detections)} entries"
        )
    if image_size is not None and (len(image_size) != 2 or min(image_size) <= 0):
        raise ValueError(f"image_size must be (height, width) in pixels. Received: image_size={image_size!r}")
    if not class_names:
        raise ValueError(f"class_names must name at least one class. Received: class_names={class_names!r}")
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm'. Received: iou_type={iou_type!r}")
    segm = iou_type == "segm"
    images, annotations, results = [], [], []
    for index, (truth, found) in enumerate(zip(ground_truth, detections, strict=True)):
        image_id = index + 1  # COCOeval treats id 0 as "unmatched"
        height, width = _image_size(truth, image_size, index)
        images.append({"id": image_id, "height": height, "width": width})
        rows, (boxes, classes, crowd) = _ground_truth_rows(truth)
        masks = _rles(truth["masks"], rows) if segm else [None] * len(rows)
        for box, class_id, is_crowd, mask in zip(
            _to_coco_boxes(boxes, height, width), classes, crowd, masks, strict=True
        ):
            annotation = {"bbox": box, "area": box[2] * box[3]}
            if segm:
                annotation = {"segmentation": mask, "area": float(mask_utils.area(mask)), "bbox": box}
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id) + 1,
                    **annotation,
                    "iscrowd": int(is_crowd),
                }
            )
        rows, (boxes, scores, classes) = _detection_rows(found)
        masks = _rles(found["masks"], rows) if segm else [None] * len(rows)
        for box, score, class_id, mask in zip(
            _to_coco_boxes(boxes, height, width), scores, classes, masks, strict=True
        ):
            shape = {"segmentation": mask} if segm else {"bbox": box}
            results.append({"image_id": image_id, "category_id": int(class_id) + 1, **shape, "score": float(score)})
    categories = [{"id": i + 1, "name": str(name)} for i, name in enumerate(class_names)]
    unknown = {r["category_id"] - 1 for r in results} | {a["category_id"] - 1 for a in annotations}
    unknown -= set(range(len(class_names)))
    if unknown:
        raise ValueError(
            f"class_names must name every class id. Received: class ids {sorted(unknown)} and "
            f"{len(class_names)} class_names"
        )

    with contextlib.redirect_stdout(io.StringIO()):
        truth_set = COCO()
        truth_set.dataset = {"images": images, "annotations": annotations, "categories": categories}
        truth_set.createIndex()
        if results:
            found_set = truth_set.loadRes(results)
        else:  # loadRes cannot take an empty list
            found_set = COCO()
            found_set.dataset = {"images": images, "annotations": [], "categories": categories}
            found_set.createIndex()
        evaluation = COCOeval(truth_set, found_set, iouType=iou_type)
        evaluation.params.imgIds = [image["id"] for image in images]
        evaluation.params.catIds = [category["id"] for category in categories]
        evaluation.evaluate()
        evaluation.accumulate()
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        evaluation.summarize()

    stats = [_defined(value) for value in evaluation.stats[:6]]
    # precision: (IoU thresholds, recall thresholds, classes, area ranges, maxDets); area "all", 100 detections.
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    at_50 = int(np.argmin(np.abs(evaluation.params.iouThrs - 0.5)))
    return {
        "map": stats[0],
        "map50": stats[1],
        "map75": stats[2],
        **{f"map_{area}": value for area, value in zip(_AREAS, stats[3:6], strict=True)},
        "per_class_ap": {str(name): _mean_defined(precision[:, :, k]) for k, name in enumerate(class_names)},
        "per_class_ap50": {str(name): _mean_defined(precision[at_50, :, k]) for k, name in enumerate(class_names)},
    }


def split_batch(outputs: dict) -> list[dict]:
    """Split a detector's batched output dict into one dict of numpy arrays per image, padding rows removed.

    Args:
        outputs: {"boxes": (B, K, 4), "scores": (B, K), "classes": (B, K), "num_detections": (B,)} as the
            inference model returns it (tensors or arrays).

    Returns:
        B dicts {"boxes": (k, 4), "scores": (k,), "classes": (k,)} holding the first num_detections rows.
    """
    arrays = {key: np.asarray(value) for key, value in outputs.items()}
    images = []
    for i in range(arrays["boxes"].shape[0]):
        count = int(arrays["num_detections"][i]) if "num_detections" in arrays else arrays["boxes"].shape[1]
        images.append({key: arrays[key][i, :count] for key in ("boxes", "scores", "classes")})
    return images


def collect_detections(
    model: keras.Model, dataset: tf.data.Dataset, *, limit: int | None = None, timings: list | None = None
) -> tuple[list[dict], list[dict]]:
    """Run a detector's inference model over a batched dataset and keep, per image, its targets and detections.

    Args:
        model: inference model, images (B, H, W, 3) in [0, 1] -> {"boxes", "scores", "classes", "num_detections"};
            a Keras model runs traced, any other callable (a pipeline such as `kapps.models.detection.rcnn.RCNN`)
            as it is, on NumPy images.
        dataset: batched `(images, targets)` dataset, targets as the detection sources make them; one pass.
        limit: evaluate at most this many images (None: the whole dataset).
        timings: a list that receives `(seconds, images)` of each batch's model call, outputs fetched; the first
            batch then runs twice, untimed the first time, which traces the model.

    Returns:
        `(ground_truth, detections)`: two lists with one dict of numpy arrays per image, in dataset order, that
        `coco_evaluate` takes and that a recipe can draw.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or a positive number of images. Received: limit={limit!r}")
    ground_truth, detections = [], []
    # One graph per call, traced again only for a new batch shape (a last, smaller batch): predict_on_batch would
    # make a new function for every inference model the callback builds, and warn about retracing.
    if isinstance(model, keras.Model):
        run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    else:  # a detector that is a pipeline, not one graph (R-CNN), is called as it is
        run = functools.partial(model, training=False)
    for number, (images, targets, *_) in enumerate(dataset):
        if timings is not None and number == 0:
            run(images)  # traced here, so that the timed call below is the model's time alone
        start = time.perf_counter()
        found = split_batch(run(images))
        if timings is not None:
            timings.append((time.perf_counter() - start, len(found)))
        detections.extend(found)
        truth = {key: np.asarray(value) for key, value in targets.items() if key in ("boxes", "classes", "crowd")}
        ground_truth.extend({key: value[i] for key, value in truth.items()} for i in range(len(truth["boxes"])))
        if limit is not None and len(detections) >= limit:
            return ground_truth[:limit], detections[:limit]
    return ground_truth, detections


def evaluate_detector(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    class_names: Sequence[str],
    image_size: tuple[int, int] | None = None,
    limit: int | None = None,
    verbose: bool = False,
) -> dict:
    """COCO-style AP of a detector's inference model on a batched `(images, targets)` dataset.

    Args:
        model: inference model, images in [0, 1] -> {"boxes", "scores", "classes", "num_detections"}.
        dataset: batched `(images, targets)` dataset; one pass.
        class_names: the name of each class id.
        image_size: (height, width) in pixels that normalised boxes are scaled to; None: the images' own size.
        limit: evaluate at most this many images.
        verbose: print pycocotools' summary table.

    Returns:
        `coco_evaluate`'s dict, plus `"seconds_per_image"`: the model's time per image over the dataset, tracing
        left out (None for an empty dataset). For the per-image detections themselves, use `collect_detections`.
    """
    if image_size is None:
        height, width = dataset.element_spec[0].shape[1:3]
        if height is None or width is None:
            raise ValueError(
                "image_size must be given when the dataset's images have no fixed size. Received: image_size=None"
            )
        image_size = (int(height), int(width))
    timings: list[tuple[float, int]] = []
    ground_truth, detections = collect_detections(model, dataset, limit=limit, timings=timings)
    result = coco_evaluate(ground_truth, detections, class_names=class_names, image_size=image_size, verbose=verbose)
    images = sum(count for _, count in timings)
    result["seconds_per_image"] = sum(seconds for seconds, _ in timings) / images if images else None
    return result


def evaluate_instance_segmenter(
    model: keras.Model,
    dataset: tf.data.Dataset,
    *,
    class_names: Sequence[str],
    limit: int | None = None,
    verbose: bool = False,
) -> dict:
    """COCO-style box AP and mask AP of an instance segmenter (Mask R-CNN) on a batched `(images, targets)` dataset.

    Args:
        model: images in [0, 1] -> a detector's outputs plus `"masks" (B, K, H, W)` at the input's resolution.
        dataset: batched `(images, targets)`, targets with `"masks" (B, G, H, W)` beside the boxes and classes.
        class_names: the name of each class id.
        limit: evaluate at most this many images.
        verbose: print pycocotools' summary tables.

    Returns:
        `coco_evaluate`'s box numbers (`map50`, `map`...), the same of the masks prefixed `mask_` (`mask_map50`,
        `mask_map`...) and `seconds_per_image` as `evaluate_detector` measures it. Masks are kept as COCO RLEs as
        they come, so memory stays that of the detections.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or a positive number of images. Received: limit={limit!r}")
    image_size = tuple(int(n) for n in dataset.element_spec[0].shape[1:3])
    run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    ground_truth, detections, timings = [], [], []
    for number, (images, targets, *_) in enumerate(dataset):
        if number == 0:
            run(images)  # traced here, so that the timed call below is the model's time alone
        start = time.perf_counter()
        outputs = {key: np.asarray(value) for key, value in run(images).items()}
        timings.append((time.perf_counter() - start, len(images)))
        truth = {key: np.asarray(targets[key]) for key in ("boxes", "classes", "masks")}
        for i in range(len(images)):
            valid = np.flatnonzero(truth["classes"][i] >= 0)
            ground_truth.append(
                {
                    "boxes": truth["boxes"][i, valid],
                    "classes": truth["classes"][i, valid],
                    "masks": encode_masks(truth["masks"][i, valid]),
                }
            )
            count = int(outputs["num_detections"][i])
            found = {key: outputs[key][i, :count] for key in ("boxes", "scores", "classes")}
            detections.append({**found, "masks": encode_masks(outputs["masks"][i, :count])})
        if limit is not None and len(detections) >= limit:
            ground_truth, detections = ground_truth[:limit], detections[:limit]
            break
    options = {"class_names": class_names, "image_size": image_size, "verbose": verbose}
    boxes = coco_evaluate(ground_truth, detections, **options)
    masks = coco_evaluate(ground_truth, detections, iou_type="segm", **options)
    seen = sum(count for _, count in timings)
    return {
        **boxes,
        **{f"mask_{key}": value for key, value in masks.items()},
        "seconds_per_image": sum(seconds for seconds, _ in timings) / seen if seen else None,
    }


class PeriodicScores(keras.callbacks.Callback):
    """Adds a validation measure that takes a pass over a dataset to the logs of each epoch, without paying that
    pass every epoch. Subclasses say what is measured in `scores`.

    Every `every` epochs, on the last epoch and on the first epoch of each `fit` call (so that CSVLogger, which
    fixes its columns from the first epoch's keys, has them from the start, also after a resume), it builds the
    inference model with `inference_model(self.model)` and logs `scores` of it under `{prefix}{key}`. On the other
    epochs it writes the most recent values again, so the keys are always there: ModelCheckpoint(monitor=...,
    mode="max", save_best_only=True) then saves only on an epoch that measured an improvement, since a repeated
    value is no improvement. A value `scores` gives as None (nothing to score it on) is logged as NaN.

    Keras calls callbacks in list order with one logs dict, so put this callback BEFORE ModelCheckpoint,
    CSVLogger, TensorBoard and EarlyStopping in the list; History, which `fit` appends last, sees it anyway.

    Args:
        dataset: batched `(images, targets)` validation dataset, one pass.
        class_names: the name of each class id.
        inference_model: builds the inference model from the training model, sharing its weights; None when the
            model being trained is already the one to score.
        every: evaluate every this many epochs.
        prefix: prefix of the keys written to the logs.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        class_names: Sequence[str],
        inference_model: Callable[[keras.Model], keras.Model] | None = None,
        every: int = 1,
        prefix: str = "val_",
    ):
        super().__init__()
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive number of epochs. Received: every={every!r}")
        self.dataset = dataset
        self.class_names = list(class_names)
        self.inference_model = inference_model
        self.every = every
        self.prefix = prefix
        self.latest: dict[str, float] | None = None

    def scores(self, model: keras.Model) -> dict[str, float | None]:
        """The measures of the inference `model` on `self.dataset`, by the key they are logged under."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        self.latest = None

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        if self.latest is None or number % self.every == 0 or number == self.params.get("epochs"):
            model = self.inference_model(self.model) if self.inference_model else self.model
            self.latest = {f"{self.prefix}{key}": _or_nan(value) for key, value in self.scores(model).items()}
        if logs is not None:
            logs.update(self.latest)


class DetectionMetrics(PeriodicScores):
    """Adds `{prefix}map` and `{prefix}map50` (COCO-style, see `evaluate_detector`) of the detector to the logs of
    each epoch, on `PeriodicScores`' schedule (put it before ModelCheckpoint and CSVLogger).

    Args:
        dataset: batched `(images, targets)` validation dataset, one pass.
        class_names: the name of each class id.
        inference_model: builds the inference model (decoding and NMS) from the training model, sharing its
            weights; None when the model being trained already returns detections.
        every: evaluate every this many epochs.
        prefix: prefix of the keys written to the logs.
        image_size: (height, width) that boxes are scaled to for the area ranges; None: the images' own size.
        limit: evaluate at most this many images.
    """

    def __init__(
        self,
        dataset: tf.data.Dataset,
        *,
        class_names: Sequence[str],
        inference_model: Callable[[keras.Model], keras.Model] | None = None,
        every: int = 1,
        prefix: str = "val_",
        image_size: tuple[int, int] | None = None,
        limit: int | None = None,
    ):
        super().__init__(dataset, class_names=class_names, inference_model=inference_model, every=every, prefix=prefix)
        self.image_size = image_size
        self.limit = limit

    def scores(self, model: keras.Model) -> dict[str, float | None]:
        result = evaluate_detector(
            model, self.dataset, class_names=self.class_names, image_size=self.image_size, limit=self.limit
        )
        return {key: result[key] for key in ("map", "map50")}


def _image_size(truth: dict, image_size, index: int) -> tuple[int, int]:
    if "height" in truth and "width" in truth:
        return int(truth["height"]), int(truth["width"])
    if image_size is None:
        raise ValueError(
            f"image_size must be given when a ground truth entry has no 'height' and 'width' (entry {index})"
        )
    return int(image_size[0]), int(image_size[1])


def _ground_truth_rows(truth: dict) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The indices of the rows that are objects, and their boxes, classes and crowd flags."""
    boxes = np.asarray(truth["boxes"], np.float64).reshape(-1, 4)
    classes = np.asarray(truth["classes"]).reshape(-1).astype(np.int64)
    crowd = np.asarray(truth.get("crowd", np.zeros(len(classes), bool))).reshape(-1).astype(bool)
    rows = np.flatnonzero((classes >= 0) & np.any(boxes != 0, axis=1))
    return rows, (boxes[rows], classes[rows], crowd[rows])


def _detection_rows(found: dict) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The indices of the rows that count (the 100 best scored detections), and their boxes, scores, classes."""
    boxes = np.asarray(found["boxes"], np.float64).reshape(-1, 4)
    scores = np.asarray(found["scores"], np.float64).reshape(-1)
    classes = np.asarray(found["classes"]).reshape(-1).astype(np.int64)
    valid = classes >= 0
    if "num_detections" in found:
        valid &= np.arange(len(classes)) < int(np.asarray(found["num_detections"]))
    rows = np.flatnonzero(valid)
    rows = rows[np.argsort(-scores[rows], kind="stable")[:_MAX_DETECTIONS]]
    return rows, (boxes[rows], scores[rows], classes[rows])


def _rles(masks, rows: np.ndarray) -> list[dict]:
    """COCO RLEs of the masks of `rows`: `masks` an `(N, H, W)` array (pixels at 0.5 or more) or a list of RLEs."""
    if isinstance(masks, list | tuple):
        return [masks[i] for i in rows]
    return encode_masks(np.asarray(masks)[rows])


def encode_masks(masks: np.ndarray) -> list[dict]:
    """`(N, H, W)` masks (a pixel is in at 0.5 or more) as COCO RLEs, their counts as text so they go into JSON."""
    rles = []
    for mask in masks:
        rle = mask_utils.encode(np.asfortranarray(np.asarray(mask) >= 0.5, dtype=np.uint8))
        rles.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")})
    return rles


def _to_coco_boxes(boxes: np.ndarray, height: int, width: int) -> list[list[float]]:
    """Normalised [x1, y1, x2, y2] -> COCO's pixel [x, y, width, height]."""
    scale = np.array([width, height, width, height], np.float64)
    pixels = boxes * scale
    sizes = np.maximum(pixels[:, 2:] - pixels[:, :2], 0.0)
    return np.concatenate([pixels[:, :2], sizes], axis=1).tolist()


def _defined(value: float) -> float | None:
    return None if value == -1 else float(value)


def _mean_defined(precision: np.ndarray) -> float | None:
    defined = precision[precision > -1]
    return float(np.mean(defined)) if defined.size else None


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


__all__ = [
    "DetectionMetrics",
    "PeriodicScores",
    "coco_evaluate",
    "collect_detections",
    "encode_masks",
    "evaluate_detector",
    "evaluate_instance_segmenter",
    "split_batch",
]
