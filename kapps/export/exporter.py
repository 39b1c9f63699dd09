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
# artifact must give, on every image, the same num_detections and the same valid rows in order: boxes within
# DETECTION_ATOL (normalised), identical classes, scores within DETECTION_ATOL. A quantised one agrees on an image
# when its detections pair one-to-one with Keras's at IoU >= MATCH_IOU with the same class; it must agree on at least
# QUANTIZED_DETECTIONS of the images. That bar is lower than the classifiers' 0.99 because a whole image must agree,
# and a score moved by quantisation across the score threshold or an overlap across the NMS threshold adds or drops
# one box.
DETECTION_ATOL = 1e-3
MATCH_IOU = 0.5
QUANTIZED_DETECTIONS = 0.9


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
            entry = _verify(artifact, target, inputs, expected, latency_runs)
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


def _verify(artifact: Artifact, path: Path, inputs, expected: dict, latency_runs: int) -> dict:
    runner = RUNNERS[artifact.format](path)
    got = runner(inputs)
    if set(got) != set(expected):
        raise ExportError(
            f"The {artifact.format} artifact's outputs {sorted(got)} are not the model's {sorted(expected)}."
        )
    entry = {"format": artifact.format, "quantization": artifact.quantization, "path": artifact.path}
    entry["bytes"] = _size(path)
    if is_detector(expected):
        comparison = compare_detections(got, expected, exact=artifact.is_float)
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


def compare_detections(got: dict, expected: dict, *, exact: bool = True) -> dict:
    """Compare a detector's outputs with the reference's, image by image, on the valid rows only.

    Args:
        got, expected: batched detector outputs (`boxes`, `scores`, `classes`, `num_detections`).
        exact: float artifacts: an image agrees when num_detections is the same and the rows, in score order, have
            boxes and scores within `DETECTION_ATOL` and identical classes. Otherwise (quantised artifacts) an image
            agrees when num_detections is the same and the detections pair one-to-one at IoU >= `MATCH_IOU` with the
            same class.

    Returns:
        `detection_agreement` (share of images that agree), `count_agreement` (share with the same num_detections),
        `max_box_diff`, `max_score_diff` (over the rows of images with the same count; 0 when there are none) and
        `max_abs_diff`, the larger of the two.
    """
    counts = [np.asarray(d["num_detections"]).reshape(-1).astype(int) for d in (got, expected)]
    agree, same_count, box_diff, score_diff = 0, 0, 0.0, 0.0
    for i, (n, n_ref) in enumerate(zip(*counts, strict=True)):
        if n != n_ref:
            continue
        same_count += 1
        a = {k: np.asarray(got[k])[i, :n] for k in DETECTION_OUTPUTS[:3]}
        b = {k: np.asarray(expected[k])[i, :n] for k in DETECTION_OUTPUTS[:3]}
        boxes = float(np.max(np.abs(a["boxes"].astype("float64") - b["boxes"]), initial=0.0))
        scores = float(np.max(np.abs(a["scores"].astype("float64") - b["scores"]), initial=0.0))
        box_diff, score_diff = max(box_diff, boxes), max(score_diff, scores)
        classes = np.array_equal(a["classes"].astype(int), b["classes"].astype(int))
        if exact:
            agree += classes and boxes <= DETECTION_ATOL and scores <= DETECTION_ATOL
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


def _paired(a: dict, b: dict) -> bool:
    """Whether detections `a` pair one-to-one with `b` (same count) at IoU >= MATCH_IOU and the same class."""
    free = list(range(len(a["boxes"])))
    for box, cls in zip(b["boxes"], b["classes"], strict=True):
        match = next((j for j in free if a["classes"][j] == cls and _iou(a["boxes"][j], box) >= MATCH_IOU), None)
        if match is None:
            return False
        free.remove(match)
    return True


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
