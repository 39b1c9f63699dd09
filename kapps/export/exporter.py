"""`export()`: write the artifacts to a temporary folder, verify each in its own runtime, then move them in place.

Each artifact is compared with the Keras model by the model's output kind (`kapps.kinds`), which states its
criterion; the report records it beside the numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kapps.errors import ExportError
from kapps.export import writers
from kapps.export.recurrent import unrolled_twin
from kapps.export.runtimes import RUNNERS, Runner, keras_runner
from kapps.export.source import Source, load_source
from kapps.files import check_output_folder
from kapps.formats import FORMATS, QUANTIZATIONS
from kapps.kinds import Kind
from kapps.preprocessing import preprocess
from kapps.provenance import package_versions

import numpy as np

REPORT_FILE = "export_report.json"
# The distributions whose versions an export report records beside kapps': what wrote and ran the artifacts.
CONVERTERS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")

RUNTIMES = {"saved_model": "TensorFlow", "tflite": "LiteRT", "onnx": "onnxruntime"}


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
    progress: Callable[[str], None] | None = None,
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
        progress: called with one line as each stage ends (loading, writing, converting, verifying each artifact,
            moving into place), the stage's time included; the `kapps export` command prints them.

    Returns:
        The report also written to `<out>/export_report.json`.

    Raises:
        ExportError: bad options, an unwritable output folder, a TFLite file asked of a recurrent loop over a
            free number of steps, or an artifact that failed verification. Nothing is left in `out` by a failed
            export.
        ModelError: the model cannot be loaded, nothing says its task, its task has no output kind to compare its
            artifacts with, or its outputs do not fit its kind.
    """
    artifacts = plan(formats, quantize)
    if not isinstance(opset, int) or not 9 <= opset <= 18:
        raise ExportError(f"--opset must be between 9 and 18 (tf2onnx's range), not {opset!r}.")
    stage = _Stages(progress)
    source = load_source(path, data=data, data_dir=data_dir)
    kind = source.kind
    if quantize in kind.unsupported_quantizations:
        raise ExportError(kind.unsupported_quantizations[quantize])
    # What the converters read: the same weights with any recurrent loop unrolled (see kapps.export.recurrent);
    # every artifact is still compared with the model as trained.
    graph = unrolled_twin(source.model, tflite=any(a.format == "tflite" for a in artifacts))
    if quantize == "int8" and source.data is None:
        raise ExportError(
            "int8 quantization needs calibration data: export a run folder, or name a source with --data."
        )
    out = Path(out) if out is not None else Path("export") / source.name
    check_output_folder(out, error=ExportError)
    stage.done(f"loaded {source.model.name} ({source.task}) from {source.path}")
    inputs = _inputs(source, samples)
    calibration = None
    if quantize == "int8":
        images = source.data("train", calibration_samples)
        calibration = lambda: (images[i : i + 1] for i in range(len(images)))  # noqa: E731
    stage.done(f"read {len(inputs)} inputs from {source.data_description}")
    reference = keras_runner(source.model)
    expected = reference(inputs)
    kind.check({k: v.shape for k, v in expected.items()}, what=f"The model {str(source.path)!r}")
    report = {
        "source": str(source.path.resolve()),
        "out": str(out),
        "model": source.model.name,
        "task": source.task,
        "class_names": source.class_names,
        "preprocessing": source.preprocessing,
        "trained_policy": source.trained_policy,
        "inputs": {
            "data": source.data_description,
            "count": int(len(inputs)),
            "shape": list(inputs.shape[1:]),
        },
        "run_metrics": _run_metrics(source),
        "keras": {"median_latency_ms": _median_latency_ms(reference, inputs, latency_runs)},
        "artifacts": [],
        "versions": package_versions(*CONVERTERS),
    }
    stage.done(f"ran the Keras model on them and timed {latency_runs} batch-1 calls")
    # The artifacts are written beside `out` (export/ in the working directory by default), so its missing parents
    # are made now and removed again if the export fails.
    made = [folder for folder in out.parents if not folder.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        saved_model = tmp / "saved_model"
        if any(a.format in ("saved_model", "tflite") for a in artifacts):
            writers.write_saved_model(graph, saved_model)
            stage.done("wrote the SavedModel")
        for artifact in artifacts:
            target = tmp / artifact.path
            if artifact.format == "tflite":
                writers.write_tflite(saved_model, target, quantize=artifact.quantization, calibration=calibration)
                stage.done(f"converted {artifact.path} (TFLite, quantization {artifact.quantization})")
            elif artifact.format == "onnx":
                writers.write_onnx(graph, target, opset=opset)
                stage.done(f"converted {artifact.path} (ONNX, opset {opset})")
            entry = _verify(artifact, target, inputs, expected, latency_runs, kind=kind, model=source.model)
            report["artifacts"].append(entry)
            verdict = "passed" if entry["passed"] else "FAILED"
            stage.done(f"verified {artifact.path} in {RUNTIMES[artifact.format]}: {kind.describe(entry)}, {verdict}")
        failed = [e for e in report["artifacts"] if not e["passed"]]
        if failed:
            e = failed[0]
            raise ExportError(
                f"The {e['format']} ({e['quantization']}) artifact disagrees with Keras ({kind.describe(e)}; the "
                f"criterion: {e['criterion']}); nothing was written."
            )
        _move_into_place(tmp, out, [a.path for a in artifacts], report)
        made = []
        stage.done(f"moved {len(artifacts)} artifacts and {REPORT_FILE} into {out}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made:  # innermost first
            with contextlib.suppress(OSError):
                folder.rmdir()
    return report


class _Stages:
    """Reports each finished stage of an export as one line with its time: the time since the previous line."""

    def __init__(self, progress: Callable[[str], None] | None):
        self.progress = progress
        self.mark = time.perf_counter()

    def done(self, text: str) -> None:
        now = time.perf_counter()
        if self.progress is not None:
            self.progress(f"{text} ({now - self.mark:.1f} s)")
        self.mark = now


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
    images = np.random.default_rng(0).uniform(0, 1, (min(samples, 64), *shape)).astype("float32")
    return preprocess(images, source.preprocessing)


def _verify(artifact: Artifact, path: Path, inputs, expected: dict, latency_runs: int, *, kind: Kind, model) -> dict:
    """Run the artifact in its runtime on `inputs` and compare its outputs with Keras's by the kind's criterion."""
    runner = RUNNERS[artifact.format](path)
    got = runner(inputs)
    if set(got) != set(expected):
        raise ExportError(
            f"The {artifact.format} artifact's outputs {sorted(got)} are not the model's {sorted(expected)}."
        )
    quantized = not artifact.is_float
    comparison = kind.compare(got, expected, quantized=quantized, model=model)
    passed = comparison.pop("passed")
    return {
        "format": artifact.format,
        "quantization": artifact.quantization,
        "path": artifact.path,
        "bytes": _size(path),
        **comparison,
        "criterion": kind.criterion(quantized=quantized),
        "median_latency_ms": _median_latency_ms(runner, inputs, latency_runs),
        "passed": bool(passed),
    }


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
