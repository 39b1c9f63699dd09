"""`export()`: write the artifacts to a temporary folder, verify each in its own runtime, then move them in place."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kapps.errors import ExportError
from kapps.export import writers
from kapps.export.runtimes import RUNNERS, Runner, keras_runner
from kapps.export.source import DETECTION_OUTPUTS, Source, is_detector, load_source
from kapps.files import check_output_folder
from kapps.formats import FORMATS, QUANTIZATIONS

import numpy as np

REPORT_FILE = "export_report.json"

# Classifiers: float artifacts must match Keras to this absolute difference and agree on every top-1 class;
# quantised ones must agree on at least this share of top-1 classes.
FLOAT_MAX_ABS_DIFF = 1e-4
QUANTIZED_TOP1 = 0.99
# Detectors (outputs boxes/scores/classes/num_detections) are compared on their detections, not raw tensors. A float
# artifact must give, on every image, detections that pair one-to-one with Keras's: boxes within DETECTION_ATOL
# (normalised), identical classes, scores within DETECTION_ATOL (a detection within DETECTION_ATOL of the score
# threshold may be missing on either side). A quantised one agrees on an image when its detections scoring at least
# QUANTIZED_SCORE_FLOOR, on either side, pair one-to-one with one of the other side at IoU >= MATCH_IOU with the same
# class; it must agree on at least QUANTIZED_DETECTIONS of the images. The floor leaves out the long tail of
# low-scoring detections (a detector kept for mAP reports everything above 0.01), where quantisation moves scores
# across the threshold; the bar is lower than the classifiers' 0.99 because a whole image must agree, and an overlap
# moved across the NMS threshold adds or drops one box.
DETECTION_ATOL = 1e-3
MATCH_IOU = 0.5
QUANTIZED_DETECTIONS = 0.9
QUANTIZED_SCORE_FLOOR = 0.25  # `kapps predict`'s default: the detections a user sees


@dataclass(frozen=True)
class Artifact:
    format: str
    quantization: str
    path: str

    @property
    def is_float(self) -> bool:
        return self.quantization == "none"


def plan(formats: str, quantize: str) -> list[Artifact]:
    """The artifacts one export call writes."""
    if formats not in FORMATS:
        raise ExportError(f"Unknown export format {formats!r}; choose one of {', '.join(FORMATS)}.")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"Unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZATIONS)}.")
    if quantize != "none" and formats in ("saved_model", "onnx"):
        raise ExportError(f"--quantize {quantize} applies to TFLite; use --format tflite or --format all.")
    tflite_name = "model.tflite" if quantize == "none" else f"model_{quantize}.tflite"
    if formats == "saved_model":
        return [Artifact("saved_model", "none", "saved_model")]
    if formats == "onnx":
        return [Artifact("onnx", "none", "model.onnx")]
    if formats == "tflite":
        return [Artifact("tflite", quantize, tflite_name)]
    artifacts = [
        Artifact("saved_model", "none", "saved_model"),
        Artifact("tflite", "none", "model.tflite"),
        Artifact("onnx", "none", "model.onnx"),
    ]
    if quantize != "none":
        artifacts.append(Artifact("tflite", quantize, tflite_name))
    return artifacts


def export(
    path,
    *,
    formats: str = "all",
    quantize: str = "none",
    opset: int = 17,
    out=None,
    data: str | None = None,
    data_dir: str | None = None,
    samples: int = 256,
    calibration_samples: int = 200,
    latency_runs: int = 50,
) -> dict:
    """Export a run folder or `.keras` file and verify every artifact against the Keras model.

    Args:
        path: run folder or `.keras` file.
        formats: `"saved_model"`, `"tflite"`, `"onnx"` or `"all"` (the three, plus the quantised TFLite file when
            `quantize` is not `"none"`).
        quantize: TFLite quantization: `"none"`, `"dynamic"`, `"float16"` or `"int8"`.
        opset: ONNX opset.
        out: output folder; `export/<run name>` when omitted.
        data: data source to take real inputs from instead of the run's own.
        data_dir: tensorflow-datasets data folder.
        samples: how many test images the outputs are compared on.
        calibration_samples: how many training images calibrate int8.
        latency_runs: batch-1 calls timed per runtime (the median is reported).

    Returns:
        The report also written to `<out>/export_report.json`.

    Raises:
        ExportError: bad options, an unwritable output folder, or an artifact that failed verification. Nothing is
            left in `out` by a failed export.
    """
    artifacts = plan(formats, quantize)
    if not isinstance(opset, int) or not 9 <= opset <= 18:
        raise ExportError(f"--opset must be between 9 and 18 (tf2onnx's range), not {opset!r}.")
    source = load_source(path, data=data, data_dir=data_dir)
    if quantize == "int8" and source.task == "detection":
        raise ExportError(
            "int8 quantization of a detector is not supported: TFLite's calibrator crashes on the NMS loop in its "
            "graph; use --quantize dynamic or float16."
        )
    if quantize == "int8" and source.data is None:
        raise ExportError(
            "int8 quantization needs calibration data: export a run folder, or name a source with --data."
        )
    out = Path(out) if out is not None else Path("export") / source.name
    check_output_folder(out, error=ExportError)
    inputs = _inputs(source, samples)
    calibration = None
    if quantize == "int8":
        images = source.data("train", calibration_samples)
        calibration = lambda: (images[i : i + 1] for i in range(len(images)))  # noqa: E731
    reference = keras_runner(source.model)
    expected = reference(inputs)
    report = {
        "source": str(source.path),
        "out": str(out),
        "model": source.model.name,
        "task": source.task,
        "class_names": source.class_names,
        "trained_policy": source.trained_policy,
        "inputs": {
            "data": source.data_description,
            "count": int(len(inputs)),
            "shape": list(inputs.shape[1:]),
        },
        "run_metrics": _run_metrics(source),
        "keras": {"median_latency_ms": _median_latency_ms(reference, inputs, latency_runs)},
        "artifacts": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        saved_model = tmp / "saved_model"
        if any(a.format in ("saved_model", "tflite") for a in artifacts):
            writers.write_saved_model(source.model, saved_model)
        for artifact in artifacts:
            target = tmp / artifact.path
            if artifact.format == "tflite":
                writers.write_tflite(saved_model, target, quantize=artifact.quantization, calibration=calibration)
            elif artifact.format == "onnx":
                writers.write_onnx(source.model, target, opset=opset)
            entry = _verify(artifact, target, inputs, expected, latency_runs, _score_threshold(source.model))
            report["artifacts"].append(entry)
        failed = [e for e in report["artifacts"] if not e["passed"]]
        if failed:
            e = failed[0]
            agreement = (
                f"detections agree on {e['detection_agreement']:.1%} of images"
                if "detection_agreement" in e
                else f"top-1 agreement {e['top1_agreement']}"
            )
            raise ExportError(
                f"The {e['format']} ({e['quantization']}) artifact disagrees with Keras: max abs diff "
                f"{e['max_abs_diff']:.3g}, {agreement}; nothing was written."
            )
        _move_into_place(tmp, out, [a.path for a in artifacts], report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _run_metrics(source: Source) -> dict:
    """The run's own test metrics (metrics.json), so the report says what the exported model scores."""
    metrics = source.path / "metrics.json"
    if not (source.path.is_dir() and metrics.is_file()):
        return {}
    try:
        return json.loads(metrics.read_text())
    except json.JSONDecodeError:
        return {}


def _inputs(source: Source, samples: int) -> np.ndarray:
    if source.data is not None:
        return source.data("test", samples).astype("float32")
    shape = source.model.input_shape[1:]
    if None in shape:
        raise ExportError(f"The model's input shape {shape} is not fixed; name a data source with --data.")
    return np.random.default_rng(0).uniform(0, 1, (min(samples, 64), *shape)).astype("float32")


def _verify(
    artifact: Artifact, path: Path, inputs, expected: dict, latency_runs: int, score_threshold: float | None
) -> dict:
    runner = RUNNERS[artifact.format](path)
    got = runner(inputs)
    if set(got) != set(expected):
        raise ExportError(
            f"The {artifact.format} artifact's outputs {sorted(got)} are not the model's {sorted(expected)}."
        )
    entry = {"format": artifact.format, "quantization": artifact.quantization, "path": artifact.path}
    entry["bytes"] = _size(path)
    if is_detector(expected):
        comparison = compare_detections(got, expected, exact=artifact.is_float, score_threshold=score_threshold)
        entry.update(comparison, top1_agreement=None)
        bar = 1.0 if artifact.is_float else QUANTIZED_DETECTIONS
        passed = comparison["detection_agreement"] >= bar
    else:
        diff = max(float(np.max(np.abs(got[k].astype("float64") - expected[k]))) for k in expected)
        top1 = _top1_agreement(got, expected)
        if artifact.is_float:
            passed = diff <= FLOAT_MAX_ABS_DIFF and top1 in (None, 1.0)
        else:
            passed = top1 is None or top1 >= QUANTIZED_TOP1
        entry.update(max_abs_diff=diff, top1_agreement=top1)
    entry["median_latency_ms"] = _median_latency_ms(runner, inputs, latency_runs)
    entry["passed"] = bool(passed)
    return entry


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

    Returns:
        `detection_agreement` (share of images that agree), `count_agreement` (share with the same num_detections),
        `max_box_diff`, `max_score_diff` (over the detections paired as nearest of the same class; 0 when there
        are none) and `max_abs_diff`, the larger of the two.
    """
    borderline = -np.inf if score_threshold is None else score_threshold + DETECTION_ATOL
    counts = [np.asarray(d["num_detections"]).reshape(-1).astype(int) for d in (got, expected)]
    agree, same_count, box_diff, score_diff = 0, 0, 0.0, 0.0
    for i, (n, n_ref) in enumerate(zip(*counts, strict=True)):
        a = {k: np.asarray(got[k])[i, :n].astype("float64") for k in DETECTION_OUTPUTS[:3]}
        b = {k: np.asarray(expected[k])[i, :n_ref].astype("float64") for k in DETECTION_OUTPUTS[:3]}
        same_count += n == n_ref
        pairs = _nearest_pairs(a, b)
        boxes = [float(np.max(np.abs(a["boxes"][j] - b["boxes"][k]))) for j, k in pairs]
        scores = [abs(a["scores"][j] - b["scores"][k]) for j, k in pairs]
        box_diff, score_diff = max([box_diff, *boxes]), max([score_diff, *scores])
        if exact:
            within = zip(pairs, boxes, scores, strict=True)
            close = [pair for pair, box, score in within if box <= DETECTION_ATOL and score <= DETECTION_ATOL]
            unpaired = np.concatenate(
                [np.delete(a["scores"], [j for j, _ in close]), np.delete(b["scores"], [k for _, k in close])]
            )
            agree += bool(np.all(unpaired <= borderline))
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


def _nearest_pairs(a: dict, b: dict) -> list[tuple[int, int]]:
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


def _score_threshold(model) -> float | None:
    """The score threshold of a detector's NonMaxSuppression layer; None for other models."""
    from kapps.layers.detection import NonMaxSuppression

    thresholds = [layer.score_threshold for layer in model.layers if isinstance(layer, NonMaxSuppression)]
    return thresholds[0] if thresholds else None


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


def _top1_agreement(got: dict, expected: dict) -> float | None:
    """Share of inputs whose arg-max class agrees, over every (batch, classes) output; None when there is none."""
    scores = [
        float(np.mean(np.argmax(got[k], -1) == np.argmax(v, -1)))
        for k, v in expected.items()
        if v.ndim == 2 and v.shape[-1] > 1
    ]
    return min(scores) if scores else None


def _median_latency_ms(runner: Runner, inputs: np.ndarray, runs: int) -> float:
    """Median wall time of `runs` batch-1 calls, after a few warm-up calls."""
    for i in range(3):
        runner(inputs[i % len(inputs)][None])
    times = []
    for i in range(runs):
        image = inputs[i % len(inputs)][None]
        start = time.perf_counter()
        runner(image)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1000, 4)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _move_into_place(tmp: Path, out: Path, names: list[str], report: dict) -> None:
    """Move the verified artifacts into `out`, replacing older ones of the same name, and merge the report."""
    out.mkdir(parents=True, exist_ok=True)
    previous = out / REPORT_FILE
    if previous.is_file():
        try:
            kept = [e for e in json.loads(previous.read_text()).get("artifacts", []) if e.get("path") not in names]
        except (json.JSONDecodeError, AttributeError):
            kept = []
        kept = [e for e in kept if (out / e["path"]).exists()]
        report["artifacts"] = kept + report["artifacts"]
    for name in names:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(tmp / name, target)
    (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp / REPORT_FILE, out / REPORT_FILE)
