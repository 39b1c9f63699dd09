"""Batch-1 latency of a Faster R-CNN inference model in each runtime, and the share of it spent in non-maximum
suppression and in RoIAlign.

The detector is the recipe's CPU configuration (`recipes/faster_rcnn.py` defaults: resnet10_narrow, FPN of 64
channels, 128x128 inputs, anchors of 8 to 128 pixels on P2 .. P6, 1,000 anchors into the proposals' NMS, 100
proposals, RoIAlign 7x7 with one sample a bin, a 2x256 box head, 4 classes, score threshold 0.01), with random
weights, or the detector of a run folder (`--run`). Random weights are NMS's worst case: every class of every
proposal scores above 0.01, so the detection NMS visits all 400 candidates.

Besides the detector itself, the same network (the same layer objects, so the same weights) is timed with one part
replaced by something of the same output shape:

- `proposal NMS -> top-k`: the proposals are the 100 decoded, clipped boxes of highest objectness, without the
  NMS among the 1,000 (`kapps.detection.batched_nms`: ranking, the loop of NON_MAX_SUPPRESSION_V5);
- `detection NMS -> top-k`: the detections are the 100 (proposal, class) pairs of highest score, without the
  per-class NMS loops;
- `no NMS`: both;
- `RoIAlign -> crop`: every RoI gets the top-left 7x7 cells of P2 instead of its RoIAlign features.

Each variant is written as a SavedModel, a TFLite file (builtins only) and an ONNX file and timed beside the Keras
model's compiled call (`tf.function`) in interleaved rounds in one process (each round calls every variant in
every runtime once, in an order rotated from round to round); medians are reported. A part's share is `(detector
- variant without it) / detector`, and the NMS overhead is `detector / no NMS` (the issue's target: within 1.3x).

Run::

    TF_CPP_MIN_LOG_LEVEL=3 nice -n 15 .venv/bin/python benchmarks/two_stage_latency.py
    TF_CPP_MIN_LOG_LEVEL=3 nice -n 15 .venv/bin/python benchmarks/two_stage_latency.py --run saved_models/faster_rcnn
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import kapps.layers
import kapps.models
from kapps.detection import clip, decode
from kapps.export import onnx_runner, saved_model_runner, tflite_runner, writers
from kapps.export.machine import cpu_info, describe_cpu, load_average, set_tensorflow_threads, usable_cpus
from kapps.export.source import load_source
from kapps.layers.two_stage import RPN_VARIANCES, level_anchors_at

import keras
import numpy as np
import tensorflow as tf

# recipes/faster_rcnn.py's defaults at --image-size 128 on the shapes scenes (4 classes)
RECIPE = {
    "input_shape": (128, 128, 3),
    "num_classes": 4,
    "backbone": "resnet10_narrow",
    "fpn": True,
    "fpn_channels": 64,
    "sampling_ratio": 1,
    "anchor_sizes": [[8.0], [16.0], [32.0], [64.0], [128.0]],
    "pre_nms_top_n": 1000,
    "proposals": 100,
    "head_units": 256,
    "score_threshold": 0.01,
}
RUNTIMES = ("tf.function", "saved_model", "tflite", "onnx")


class TopKProposals(kapps.layers.Proposals):
    """`Proposals` with its NMS replaced by a top-k: the `post_nms_top_n` best of the `pre_nms_top_n` decoded boxes."""

    def call(self, objectness, deltas):
        k = min(self.pre_nms_top_n, self.anchors.shape[0])
        _, order = tf.math.top_k(tf.cast(objectness, tf.float32), k=k)
        chosen = tf.gather(tf.cast(deltas, tf.float32), order, batch_dims=1)
        anchors = level_anchors_at(
            order,
            image_size=self.image_size,
            feature_sizes=self.feature_sizes,
            sizes=self.sizes,
            aspect_ratios=self.aspect_ratios,
        )
        return clip(decode(chosen, anchors, variances=RPN_VARIANCES))[:, : self.post_nms_top_n]


class TopKDetections(keras.layers.Layer):
    """`NonMaxSuppression` replaced by a top-k: the `max_detections` (box, class) pairs of highest score."""

    def __init__(self, *, max_detections, score_threshold, iou_threshold=None, per_class=True, **kwargs):
        super().__init__(**kwargs)
        self.max_detections = max_detections
        self.score_threshold = score_threshold

    def call(self, boxes, class_scores):
        batch, classes = tf.shape(class_scores)[0], tf.shape(class_scores)[2]
        scores, index = tf.math.top_k(tf.reshape(class_scores, [batch, -1]), k=self.max_detections)
        return {
            "boxes": tf.gather(tf.reshape(boxes, [batch, -1, 4]), index, batch_dims=1),
            "scores": scores,
            "classes": index % classes,
            "num_detections": tf.reduce_sum(tf.cast(scores > self.score_threshold, tf.int32), axis=1),
        }


class CropPool(keras.layers.Layer):
    """`PyramidRoIPool` replaced by the top-left cells of the first map, the same for every RoI."""

    def __init__(self, output_size=7, **kwargs):
        for key in ("pooler", "sampling_ratio", "image_size", "k_min", "k0", "canonical_size"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.size = output_size[0] if isinstance(output_size, (list, tuple)) else output_size

    def call(self, maps, boxes):
        # TILE, not BROADCAST_TO: TFLite ran the detector with a BROADCAST_TO here 15% slower than with RoIAlign
        return tf.tile(maps[0][:, None, : self.size, : self.size, :], [1, tf.shape(boxes)[1], 1, 1, 1])


def variants(detector: keras.Model) -> dict[str, keras.Model]:
    """The detector and the same network (shared layers) with NMS or RoIAlign replaced, by name."""
    replaced = {"proposals": TopKProposals, "nms": TopKDetections, "roi_pool": CropPool}

    def clone(parts):
        def swap(layer):
            return replaced[layer.name].from_config(layer.get_config()) if layer.name in parts else layer

        return keras.models.clone_model(detector, clone_function=swap)

    return {
        "detector": detector,
        "proposal NMS -> top-k": clone({"proposals"}),
        "detection NMS -> top-k": clone({"nms"}),
        "no NMS": clone({"proposals", "nms"}),
        "RoIAlign -> crop": clone({"roi_pool"}),
    }


def load_detector(run: str | None) -> tuple[keras.Model, np.ndarray, str]:
    """The run's detector and 8 of its test images, or the recipe's configuration with random weights and random
    uniform images."""
    if run is not None:
        source = load_source(run)
        images = source.data("test", 8) if source.data is not None else None
        if images is None:
            images = np.random.default_rng(0).uniform(0, 1, (8, *source.model.input_shape[1:])).astype("float32")
        return source.model, images.astype("float32"), f"{run} ({source.data_description})"
    keras.utils.set_random_seed(0)
    detector = kapps.models.build("faster_rcnn", **RECIPE)
    images = np.random.default_rng(0).uniform(0, 1, (8, *RECIPE["input_shape"])).astype("float32")
    return detector, images, "the recipe's configuration, random weights, random uniform images"


def runners(model: keras.Model, folder: Path, threads: int) -> dict:
    """The model in each runtime: `images -> outputs` callables."""

    @tf.function(reduce_retracing=True)
    def compiled(images):
        return model(images, training=False)

    saved = writers.write_saved_model(model, folder / "saved_model")
    return {
        "tf.function": lambda x: tf.nest.map_structure(np.asarray, compiled(tf.constant(x))),
        "saved_model": saved_model_runner(saved),
        "tflite": tflite_runner(writers.write_tflite(saved, folder / "model.tflite"), num_threads=threads),
        "onnx": onnx_runner(writers.write_onnx(model, folder / "model.onnx"), num_threads=threads),
    }


def time_rounds(rows: dict, images: np.ndarray, runs: int) -> dict[tuple[str, str], float]:
    """Median batch-1 seconds of every row, timed in interleaved rounds (order rotated each round) after 3 warm-ups."""
    names = list(rows)
    for name in names:
        for i in range(3):
            rows[name](images[i % len(images)][None])
    seconds = {name: [] for name in names}
    for r in range(runs):
        image = images[r % len(images)][None]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            rows[name](image)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="a Faster R-CNN run folder (default: the recipe's configuration)")
    parser.add_argument("--runs", type=int, default=30, help="interleaved rounds (default: 30)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of every runtime (default: all)")
    args = parser.parse_args(argv)
    threads = args.threads or usable_cpus()
    set_tensorflow_threads(threads)
    detector, images, described = load_detector(args.run)
    models = variants(detector)
    load_before = load_average()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="kapps-two-stage-") as tmp:
        for index, (name, model) in enumerate(models.items()):
            start = time.perf_counter()
            for runtime, run in runners(model, Path(tmp) / str(index), threads).items():
                rows[name, runtime] = run
            print(f"{name}: written and loaded in 4 runtimes in {time.perf_counter() - start:.0f} s")
        medians = time_rounds(rows, images, args.runs)
    print(f"\n{describe_cpu(cpu_info())}; {threads} threads in every runtime")
    print(f"load average (1 min): {load_before} before, {load_average()} after")
    print(f"{detector.name} on {described}; batch 1, median of {args.runs} interleaved rounds, ms")
    width = max(len(n) for n in models)
    print(" " * width + "".join(f"{r:>13}" for r in RUNTIMES))
    for name in models:
        print(name.ljust(width) + "".join(f"{medians[name, r] * 1000:13.2f}" for r in RUNTIMES))
    full = {r: medians["detector", r] for r in RUNTIMES}
    print("\nshare of the detector's time (detector - variant) / detector, and the NMS overhead detector / no NMS:")
    shares = [
        ("proposal NMS", "proposal NMS -> top-k"),
        ("detection NMS", "detection NMS -> top-k"),
        ("both NMS", "no NMS"),
        ("RoIAlign", "RoIAlign -> crop"),
    ]
    print(" " * width + "".join(f"{r:>13}" for r in RUNTIMES))
    for label, name in shares:
        print(label.ljust(width) + "".join(f"{(full[r] - medians[name, r]) / full[r]:13.1%}" for r in RUNTIMES))
    print("NMS overhead".ljust(width) + "".join(f"{full[r] / medians['no NMS', r]:12.2f}x" for r in RUNTIMES))


if __name__ == "__main__":
    main()
