"""R-CNN (Girshick et al., "Rich feature hierarchies for accurate object detection and semantic segmentation",
CVPR 2014): a pipeline, not one graph.

An image goes through four separate stages: selective search proposes about 2000 class-independent regions
(OpenCV contrib, `kapps.detection.selective_search`); each region is warped with 16 pixels of context to the CNN's
input size (`kapps.detection.warp`); the CNN, fine-tuned on warped regions, gives a feature vector a region; then a
linear SVM a class scores it, a ridge regressor a class moves its box, and greedy non-maximum suppression within
each class (IoU 0.3) keeps the best of overlapping detections.

Why no single Keras graph: selective search is OpenCV's graph-based segmentation and hierarchical grouping on the
CPU, not a TensorFlow op, and the number of proposals differs from image to image. So `RCNN` is a Python object
that holds its Keras CNN and the linear heads' coefficients, saves them as `cnn.keras`, `heads.npz` and
`rcnn.json` (no pickles), and is called like the other kapps detectors: images in, the padded `boxes`, `scores`,
`classes`, `num_detections` out, which `kapps.metrics.evaluate_detector` and `kapps.viz.plot_detections` take. It
does not export (`kapps export`), because there is no graph to export; Fast and Faster R-CNN are the answer to that.

Scores are the SVMs' margins (positive: the SVM says object), not probabilities.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kapps.detection.coder import decode
from kapps.detection.regions import MODES, selective_search, warp
from kapps.detection.suppression import check_nms_settings, nms
from kapps.models.detection.rcnn_heads import PLAIN, Linear

import keras
import numpy as np
import tensorflow as tf

CNN_FILE = "cnn.keras"
HEADS_FILE = "heads.npz"
CONFIG_FILE = "rcnn.json"


@dataclass(frozen=True)
class RCNNSettings:
    """How an `RCNN` proposes, warps and suppresses (its learnt parts are its CNN and heads).

    Attributes:
        context: pixels of context around each warped region, at the CNN's input size (the paper's p = 16 at 227).
        proposal_mode: selective search's mode, `"fast"` as in the paper.
        max_proposals: proposals kept an image (the paper: about 2000).
        proposal_scale: image resize factor before selective search.
        nms_iou: a detection overlapping a better one of its class by more than this is dropped (the paper: 0.3).
        score_threshold: detections whose SVM score is at or below this are dropped before NMS.
        max_detections: detections kept an image, the best ones.
    """

    context: float = 16.0
    proposal_mode: str = "fast"
    max_proposals: int = 2000
    proposal_scale: float = 1.0
    nms_iou: float = 0.3
    score_threshold: float = -1.0
    max_detections: int = 100

    def __post_init__(self):
        if self.proposal_mode not in MODES:
            raise ValueError(f"proposal_mode must be one of {MODES}. Received: proposal_mode={self.proposal_mode!r}")
        check_nms_settings(max_detections=self.max_detections, iou_threshold=self.nms_iou)


class RCNN:
    """A fitted R-CNN: proposals, warped regions, CNN features, per-class SVMs and box regressors, per-class NMS.

    The CNN is a classifier of warped regions (K classes and background); the SVMs read the input of its last
    layer (the paper's fc7), the box regressors its last feature map, flattened (the paper's pool5).

    Args:
        cnn: the fine-tuned region classifier; its input size is the warp size.
        class_names: the K class names.
        svms: `Linear` from features to K scores (`rcnn_heads.fit_svms`).
        boxes: `Linear` from the flattened feature map to K (t_x, t_y, t_w, t_h) (`rcnn_heads.fit_box_regressors`);
            None: detections keep their proposal boxes.
        settings: `RCNNSettings`.
    """

    def __init__(
        self,
        cnn: keras.Model,
        *,
        class_names: Sequence[str],
        svms: Linear,
        boxes: Linear | None = None,
        settings: RCNNSettings | None = None,
    ):
        self.cnn = cnn
        self.class_names = [str(name) for name in class_names]
        self.svms = svms
        self.boxes = boxes
        self.settings = settings or RCNNSettings()
        k = len(self.class_names)
        if svms.weights.shape[1] != k or (boxes is not None and boxes.weights.shape[1] != 4 * k):
            raise ValueError(
                f"svms must score {k} classes and boxes regress 4 numbers for each. Received: svms "
                f"{svms.weights.shape}, boxes {None if boxes is None else boxes.weights.shape}"
            )
        self.warp_size = tuple(int(n) for n in cnn.input_shape[1:3])
        self._features = region_features(cnn, size=self.warp_size, context=self.settings.context)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def proposals(self, image) -> np.ndarray:
        """Selective search's `(N, 4)` `rel_xyxy` proposals of one `(H, W, 3)` image in [0, 1]."""
        s = self.settings
        return selective_search(image, mode=s.proposal_mode, max_proposals=s.max_proposals, scale=s.proposal_scale)

    def features(self, image, proposals) -> tuple[np.ndarray, np.ndarray]:
        """The SVMs' `(N, D)` and the box regressors' `(N, D2)` features of one image's regions."""
        return self._features(image, proposals)

    def detect(self, image, proposals=None) -> dict[str, np.ndarray]:
        """Detections of one `(H, W, 3)` image in [0, 1], best first: `{"boxes" (k, 4) rel_xyxy, "scores" (k,) SVM
        scores, "classes" (k,)}`. `proposals` replace selective search's when given."""
        proposals = self.proposals(image) if proposals is None else np.asarray(proposals, np.float32).reshape(-1, 4)
        if not len(proposals):
            return _no_detections()
        features, box_features = self.features(image, proposals)
        scores = self.svms(features)  # (N, K)
        if self.boxes is None:
            boxes = np.repeat(proposals[:, None], self.num_classes, axis=1)
        else:
            deltas = self.boxes(box_features).reshape(len(proposals), self.num_classes, 4)
            boxes = np.clip(np.asarray(decode(deltas, proposals[:, None], variances=PLAIN)), 0.0, 1.0)
        return self._suppress(boxes, scores)

    def _suppress(self, boxes: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
        """Per-class NMS of `(N, K, 4)` boxes with `(N, K)` scores, then the best `max_detections` of all classes."""
        s = self.settings
        found = []
        for k in range(self.num_classes):
            keep = (scores[:, k] > s.score_threshold) & np.all(boxes[:, k, 2:] > boxes[:, k, :2], axis=1)
            if not keep.any():
                continue
            kept = nms(boxes[keep, k], scores[keep, k], max_detections=s.max_detections, iou_threshold=s.nms_iou)
            count = int(kept["num_detections"])
            found.append((np.asarray(kept["boxes"])[:count], np.asarray(kept["scores"])[:count], np.full(count, k)))
        if not found:
            return _no_detections()
        boxes, scores, classes = (np.concatenate(parts) for parts in zip(*found, strict=True))
        best = np.argsort(-scores, kind="stable")[: s.max_detections]
        return {"boxes": boxes[best], "scores": scores[best], "classes": classes[best].astype(np.int32)}

    def __call__(self, images, training: bool = False) -> dict[str, np.ndarray]:
        """Detect in a batch of images, as a kapps detector model does: `(B, H, W, 3)` in [0, 1] to `{"boxes"
        (B, K, 4), "scores" (B, K), "classes" (B, K), "num_detections" (B,)}`, K = `max_detections`, each image's
        detections by score, then padding (box 0, score 0, class -1)."""
        del training  # nothing here behaves differently in training
        images = np.asarray(images, np.float32)
        k = self.settings.max_detections
        out = {
            "boxes": np.zeros((len(images), k, 4), np.float32),
            "scores": np.zeros((len(images), k), np.float32),
            "classes": np.full((len(images), k), -1, np.int32),
            "num_detections": np.zeros(len(images), np.int32),
        }
        for i, image in enumerate(images):
            found = self.detect(image)
            count = len(found["scores"])
            for key in ("boxes", "scores", "classes"):
                out[key][i, :count] = found[key]
            out["num_detections"][i] = count
        return out

    predict = __call__

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `cnn.keras`, `heads.npz` (the coefficients) and `rcnn.json` (class names, settings) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.cnn.save(folder / CNN_FILE)
        arrays = {f"svms_{key}": value for key, value in _linear_arrays(self.svms).items()}
        if self.boxes is not None:
            arrays.update({f"boxes_{key}": value for key, value in _linear_arrays(self.boxes).items()})
        np.savez(folder / HEADS_FILE, **arrays)
        config = {"class_names": self.class_names, "settings": asdict(self.settings)}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RCNN:
        """The `RCNN` that `save` wrote into `folder` (the CNN loaded with `safe_mode=True`)."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        cnn = keras.saving.load_model(folder / CNN_FILE, compile=False, safe_mode=True)
        with np.load(folder / HEADS_FILE, allow_pickle=False) as heads:
            arrays = dict(heads)
        boxes = _linear(arrays, "boxes") if "boxes_weights" in arrays else None
        return cls(
            cnn,
            class_names=config["class_names"],
            svms=_linear(arrays, "svms"),
            boxes=boxes,
            settings=RCNNSettings(**config["settings"]),
        )


def feature_model(cnn: keras.Model) -> keras.Model:
    """The CNN up to its features: outputs the input of its last layer (fc7's place) and its last feature map
    (pool5's place, rank 4)."""
    maps = [layer.output for layer in cnn.layers if len(layer.output.shape) == 4]
    if not maps:
        raise ValueError(f"cnn must have a layer with a feature map output. Received: {cnn.name!r}")
    return keras.Model(cnn.input, [cnn.layers[-1].input, maps[-1]], name=f"{cnn.name}_features")


def region_features(cnn: keras.Model, *, size: Sequence[int], context: float, batch_size: int = 512):
    """A function `(image (H, W, 3) or images (B, H, W, 3), boxes (N, 4)[, box_indices (N,)])` -> the SVMs' `(N, D)`
    and the box regressors' `(N, D2)` features of the warped regions, as NumPy arrays, `batch_size` regions at a
    time through one traced graph (warp and CNN)."""
    extractor = feature_model(cnn)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, None, 3), tf.float32),
            tf.TensorSpec((None, 4), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
    )
    def run(images, boxes, box_indices):
        regions = warp(images, boxes, size=size, context=context, box_indices=box_indices)
        features, maps = extractor(regions, training=False)
        return tf.cast(features, tf.float32), tf.reshape(tf.cast(maps, tf.float32), (tf.shape(boxes)[0], -1))

    def features(images, boxes, box_indices=None):
        images = np.asarray(images, np.float32)
        if box_indices is None:
            images = images[None]
            box_indices = np.zeros(len(boxes), np.int32)
        boxes, box_indices = np.asarray(boxes, np.float32), np.asarray(box_indices, np.int32)
        parts = [
            run(images, boxes[start : start + batch_size], box_indices[start : start + batch_size])
            for start in range(0, len(boxes), batch_size)
        ]
        return tuple(np.concatenate([np.asarray(part[i]) for part in parts]) for i in range(2))

    return features


def table_features(features, images: np.ndarray, regions: dict, *, images_per_call: int = 64):
    """`region_features`' two arrays for a whole table of regions (`label_regions`) of uint8 `images`, a group of
    `images_per_call` images at a time, so the images reach the graph a few at a time as float32."""
    index = np.asarray(regions["image"])
    boxes = np.asarray(regions["boxes"], np.float32)
    parts = []
    for start in range(0, len(images), images_per_call):
        rows = (index >= start) & (index < start + images_per_call)
        if rows.any():
            group = images[start : start + images_per_call].astype(np.float32) / 255.0
            parts.append(features(group, boxes[rows], index[rows] - start))
    # the parts hold the rows group by group, each group's in table order: put them back in table order
    order = np.argsort(index // images_per_call, kind="stable")
    joined = [np.concatenate([part[i] for part in parts]) for i in range(2)]
    result = [np.empty_like(array) for array in joined]
    for array, out in zip(joined, result, strict=True):
        out[order] = array
    return tuple(result)


def _no_detections() -> dict[str, np.ndarray]:
    return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "classes": np.zeros(0, np.int32)}


def _linear_arrays(linear: Linear) -> dict[str, np.ndarray]:
    return {"weights": linear.weights, "bias": linear.bias, "scale": np.float32(linear.scale)}


def _linear(arrays: dict, prefix: str) -> Linear:
    return Linear(
        weights=arrays[f"{prefix}_weights"], bias=arrays[f"{prefix}_bias"], scale=float(arrays[f"{prefix}_scale"])
    )
