"""`benchmark()`: every artifact of an export timed in its own runtime beside Keras, on one machine, in one process.

>>> result = kapps.export.benchmark.benchmark("export/lenet5-demo", batch_sizes=(1, 8), runs=20)

Keras `Model.predict` is the baseline, with the compiled model call (`tf.function`) beside it; the SavedModel,
TFLite files and ONNX file run as `kapps predict` runs them (`kapps.export.runtimes`). All of them are timed in
interleaved rounds: each round calls every runtime once, in an order rotated from round to round, so that what else
the machine does hits them alike. Latencies are of single calls; a ratio is Keras predict's median over the
runtime's (above 1 is faster). The CPU and thread counts head the result, because they decide the ranking: int8
kernels pay only where the CPU has int8 dot-product instructions (`kapps.export.machine`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kapps.errors import ExportError, ModelError, OptionError, OutputError
from kapps.export.machine import cpu_info, describe_cpu, load_average, set_tensorflow_threads, usable_cpus
from kapps.files import check_output_folder, write_atomic
from kapps.provenance import package_versions

import numpy as np

BENCHMARK_FILE = "benchmark.json"
REPORT_FILE = "export_report.json"  # as kapps.export.exporter writes it
BASELINE = "keras predict"
WARMUP_CALLS = 3  # untimed calls of every runtime at every batch size, before its rounds


@dataclass
class Timed:
    """One way of running the model, and the wall times measured for it.

    Attributes:
        name: the row's label (`keras predict`, `tf.function`, `saved_model`, `tflite`, `tflite int8`, `onnx`).
        runtime: what runs it (Keras, TensorFlow, LiteRT, onnxruntime).
        path: the artifact's path inside the export folder, None for the two Keras rows.
        threads: the runtime's intra-op thread count.
        call: maps a float32 batch to the model's outputs, on the host.
        seconds: batch size -> wall time of each timed call.
    """

    name: str
    runtime: str
    path: str | None
    threads: int
    call: Callable[[np.ndarray], object]
    seconds: dict[int, list[float]] = field(default_factory=dict)


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """The batch sizes of `--batch`: comma-separated positive integers such as `"1,8"`.

    Raises:
        OptionError: an empty list, a part that is not an integer, or one below 1.
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts) or not all(int(p) >= 1 for p in parts):
        raise OptionError(f"--batch takes comma-separated positive integers such as 1,8, not {text!r}.")
    return tuple(dict.fromkeys(int(p) for p in parts))


def benchmark(
    path,
    *,
    batch_sizes=(1, 8),
    runs: int = 20,
    threads: int | None = None,
    out=None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Time every artifact of an export folder, or of a run folder's default export, beside the Keras model.

    Args:
        path: an export folder (`kapps export`'s output: export_report.json and artifacts), or a run folder whose
            export is `export/<run name>` (where `kapps export RUN` writes it by default).
        batch_sizes: the batch sizes to time, each with its own warm-up and rounds.
        runs: interleaved rounds per batch size; each round times one call of every runtime.
        threads: intra-op threads of TensorFlow, the LiteRT interpreter and onnxruntime alike; every usable CPU
            when None. TensorFlow's count can only be set before it executes anything, so call this early.
        out: where benchmark.json goes; `<export folder>/benchmark.json` when None.
        progress: called with one line per stage (loading, warm-up, each round), as the work goes.

    Returns:
        The result written to benchmark.json: `cpu`, `load_average` (before and after), `threads`, `versions`,
        `export`, `source`, `inputs`, `batch_sizes`, `runs` and `runtimes`, one entry per runtime with, per batch
        size, `median_ms`, `p90_ms`, `images_per_s`, `vs_keras_predict` (Keras predict's median / this one's) and
        `calls_ms`, every timed call; plus `out`, where the file went.

    Raises:
        OptionError: a batch size, `runs` or `threads` below 1.
        ExportError: the path is neither an export nor a run folder, the run has no export, or there is nothing to
            time in it.
        ModelError: the export's source model is gone or its input size is not fixed.
        OutputError: benchmark.json cannot be written (found before any timing).
    """
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or not all(isinstance(b, int) and b >= 1 for b in batch_sizes):
        raise OptionError(f"Batch sizes must be positive integers, not {batch_sizes!r}.")
    if not isinstance(runs, int) or runs < 1:
        raise OptionError(f"--runs must be at least 1, not {runs!r}.")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise OptionError(f"--threads must be at least 1, not {threads!r}.")
    wanted = threads or usable_cpus()
    tf_threads = set_tensorflow_threads(wanted)
    if tf_threads != wanted:
        progress(f"TensorFlow was already running with {tf_threads} intra-op threads, so it keeps them")
    folder = export_folder(Path(path))
    report = _read_report(folder)
    artifacts = find_artifacts(folder)
    target = Path(out) if out is not None else folder / BENCHMARK_FILE
    if target.is_dir():
        raise OutputError(f"The output {str(target)!r} is a folder; give a file path such as {BENCHMARK_FILE}.")
    check_output_folder(target.parent)
    start = time.perf_counter()
    model, images, data = _load_source(report, count=max(batch_sizes))
    cpu = cpu_info()
    load_before = load_average()
    progress(describe_cpu(cpu))
    progress(f"loaded the Keras model {model.name} from {report['source']} in {time.perf_counter() - start:.1f} s")
    timed = _keras_rows(model, tf_threads)
    for name, artifact_path in artifacts:
        start = time.perf_counter()
        timed.append(_artifact_row(name, folder, artifact_path, threads=wanted, tf_threads=tf_threads))
        progress(f"loaded {name} ({timed[-1].runtime}) from {artifact_path} in {time.perf_counter() - start:.1f} s")

    _time_rounds(timed, images, batch_sizes=batch_sizes, runs=runs, progress=progress)
    result = {
        "cpu": cpu,
        "load_average": {"before": load_before, "after": load_average()},
        "threads": {"tensorflow_intra_op": tf_threads, "litert": wanted, "onnxruntime_intra_op": wanted},
        "versions": package_versions("tensorflow", "keras", "ai-edge-litert", "onnxruntime"),
        "export": str(folder),
        "source": report["source"],
        "inputs": {"data": data, "shape": list(images.shape[1:])},
        "batch_sizes": list(batch_sizes),
        "runs": runs,
        "warmup_calls": WARMUP_CALLS,
        "runtimes": _summaries(timed, batch_sizes),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, lambda file: file.write((json.dumps(result, indent=2) + "\n").encode()))
    result["out"] = str(target)
    return result


def export_folder(path: Path) -> Path:
    """The export folder to time: `path` itself, or for a run folder its default export `export/<run name>`.

    Raises:
        ExportError: the path is missing, is neither kind of folder, or is a run that has not been exported.
    """
    if not path.exists():
        raise ExportError(f"{str(path)!r} does not exist.")
    if path.is_dir() and (path / REPORT_FILE).is_file():
        return path
    if path.is_dir() and (path / "model.keras").is_file():
        default = Path("export") / path.resolve().name
        if (default / REPORT_FILE).is_file():
            return default
        raise ExportError(
            f"The run {str(path)!r} has no export in {str(default)!r} yet; run `kapps export {path}` first."
        )
    raise ExportError(
        f"{str(path)!r} is neither an export folder (no {REPORT_FILE}) nor a run folder (no model.keras)."
    )


def find_artifacts(folder: Path) -> list[tuple[str, str]]:
    """The artifacts in an export folder as (row name, path inside the folder), in the order they are timed.

    Raises:
        ExportError: the folder holds none of saved_model/, model.tflite, model_*.tflite, model.onnx.
    """
    found = []
    if (folder / "saved_model" / "saved_model.pb").is_file():
        found.append(("saved_model", "saved_model"))
    if (folder / "model.tflite").is_file():
        found.append(("tflite", "model.tflite"))
    for file in sorted(folder.glob("model_*.tflite")):
        found.append((f"tflite {file.stem.removeprefix('model_')}", file.name))
    if (folder / "model.onnx").is_file():
        found.append(("onnx", "model.onnx"))
    if not found:
        raise ExportError(
            f"{str(folder)!r} holds no artifact to time (saved_model/, model.tflite, model_*.tflite, model.onnx)."
        )
    return found


def format_benchmark(result: dict) -> str:
    """The result as text: the machine and threads, then an aligned table, one row per runtime and batch size."""
    threads = result["threads"]
    inputs = result["inputs"]
    lines = [
        describe_cpu(result["cpu"]),
        _describe_load(result["load_average"], result["cpu"]["logical_cpus"]),
        f"threads: TensorFlow intra-op {threads['tensorflow_intra_op']} (Keras predict, tf.function, SavedModel), "
        f"LiteRT {threads['litert']}, onnxruntime intra-op {threads['onnxruntime_intra_op']}",
        f"inputs: {'x'.join(str(d) for d in inputs['shape'])} images from {inputs['data']}; {result['runs']} "
        f"interleaved rounds per batch size; vs predict = Keras predict median / median (above 1 is faster)",
    ]
    header = ("runtime", "path", "batch", "median ms", "p90 ms", "images/s", "vs predict")
    rows = [header]
    for batch in result["batch_sizes"]:
        for entry in result["runtimes"]:
            stats = entry["batches"][str(batch)]
            rows.append(
                (
                    entry["name"],
                    entry["path"] or "-",
                    str(batch),
                    f"{stats['median_ms']:.3f}",
                    f"{stats['p90_ms']:.3f}",
                    f"{stats['images_per_s']:.1f}",
                    f"{stats['vs_keras_predict']:.2f}x",
                )
            )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    for r in rows:
        cells = [cell.ljust(w) if c < 2 else cell.rjust(w) for c, (cell, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _describe_load(load: dict, cpus: int) -> str:
    if load["before"] is None:
        return "load average: unknown on this platform"
    busy = " (a busy machine: other work shares the CPUs, so compare ratios, not times)"
    return f"load average (1 min): {load['before']:.2f} before, {load['after']:.2f} after, on {cpus} usable CPUs" + (
        busy if max(load["before"], load["after"]) > cpus else ""
    )


def _read_report(folder: Path) -> dict:
    try:
        report = json.loads((folder / REPORT_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ExportError(f"{str(folder / REPORT_FILE)!r} is not valid JSON.") from None
    if not isinstance(report, dict) or not isinstance(report.get("source"), str):
        raise ExportError(f"{str(folder / REPORT_FILE)!r} does not name the export's source model.")
    return report


def _load_source(report: dict, *, count: int):
    """The export's Keras model (float32, as exported), `count` input images and where they come from.

    The images are the run's own test images, or those of the data source the export was verified on, when the
    report names one; otherwise random uniform in [0, 1].
    """
    from kapps.export.source import load_source

    source_path = Path(report["source"])
    if not source_path.exists():
        raise ModelError(
            f"The export's source {str(source_path)!r} (named in {REPORT_FILE}) is gone, so Keras cannot be timed."
        )
    described = str(report.get("inputs", {}).get("data", ""))
    named = re.fullmatch(r"(.+) \(seed \d+\)", described)
    source = load_source(source_path, data=named.group(1) if named else None)
    shape = tuple(source.model.input_shape[1:])
    if None in shape:
        raise ModelError(
            f"The model's input shape {shape} is not fixed; export it built with a fixed input size to benchmark it."
        )
    if source.data is None:
        images = np.random.default_rng(0).uniform(0, 1, (count, *shape)).astype("float32")
        return source.model, images, "random uniform images in [0, 1]"
    images = source.data("test", count).astype("float32")
    images = np.concatenate([images] * -(-count // len(images)))[:count]  # repeated when the split is smaller
    return source.model, images, f"{source.data_description}, test split"


def _time_rounds(timed: list[Timed], images: np.ndarray, *, batch_sizes, runs: int, progress) -> None:
    """Fill every row's `seconds`: per batch size a warm-up, then `runs` rounds that call every row once each, in
    an order rotated by one from round to round so that no row always runs first or after the same neighbour."""
    for batch in batch_sizes:
        x = images[:batch]
        start = time.perf_counter()
        for row in timed:
            for _ in range(WARMUP_CALLS):
                row.call(x)
            row.seconds[batch] = []
        progress(
            f"batch {batch}: warm-up, {WARMUP_CALLS} calls of each runtime, in {time.perf_counter() - start:.1f} s"
        )
        for round_index in range(runs):
            start = time.perf_counter()
            shift = round_index % len(timed)
            for row in timed[shift:] + timed[:shift]:
                began = time.perf_counter()
                row.call(x)
                row.seconds[batch].append(time.perf_counter() - began)
            progress(f"batch {batch}: round {round_index + 1}/{runs} in {time.perf_counter() - start:.2f} s")


def _keras_rows(model, threads: int) -> list[Timed]:
    import tensorflow as tf

    @tf.function(jit_compile=False, reduce_retracing=True)
    def compiled(images):
        return model(images, training=False)

    def predict(images):
        return model.predict(images, batch_size=len(images), verbose=0)

    def call(images):
        return tf.nest.map_structure(np.asarray, compiled(tf.constant(images)))

    return [Timed(BASELINE, "Keras", None, threads, predict), Timed("tf.function", "TensorFlow", None, threads, call)]


def _artifact_row(name: str, folder: Path, path: str, *, threads: int, tf_threads: int) -> Timed:
    """The artifact at `folder / path` loaded in its own runtime, as `kapps predict` loads it."""
    from kapps.export.runtimes import onnx_runner, saved_model_runner, tflite_runner

    if name == "saved_model":
        return Timed(name, "TensorFlow", path, tf_threads, saved_model_runner(folder / path))
    if name == "onnx":
        return Timed(name, "onnxruntime", path, threads, onnx_runner(folder / path, num_threads=threads))
    return Timed(name, "LiteRT", path, threads, tflite_runner(folder / path, num_threads=threads))


def _summaries(timed: list[Timed], batch_sizes: tuple[int, ...]) -> list[dict]:
    baseline = {b: float(np.median(timed[0].seconds[b])) for b in batch_sizes}
    entries = []
    for row in timed:
        batches = {}
        for b in batch_sizes:
            median = float(np.median(row.seconds[b]))
            batches[str(b)] = {
                "median_ms": median * 1000,
                "p90_ms": float(np.percentile(row.seconds[b], 90)) * 1000,
                "images_per_s": b / median,
                "vs_keras_predict": baseline[b] / median,
                "calls_ms": [s * 1000 for s in row.seconds[b]],
            }
        entries.append({"name": row.name, "runtime": row.runtime, "path": row.path, "threads": row.threads})
        entries[-1]["batches"] = batches
    return entries
