"""Batch-1 inference latency of a Keras model and of its exports, each in its own runtime.

For each model (kapps LeNet-5 on 32x32x1, keras.applications ResNet50 on 224x224x3, untrained) this measures
the median wall time of one batch-1 call in:

* Keras ``model.predict(x, verbose=0)`` (the baseline),
* ``tf.function(model, jit_compile=False, reduce_retracing=True)``,
* the SavedModel, the float32 and int8 TFLite files and the ONNX file, written with ``kapps.export.writers``
  and run through ``kapps.export.runtimes`` exactly as users of ``kapps export`` get them.

All runtimes of one model run in the same process, in interleaved rounds (each round times ``--runs`` calls of
every runtime in turn), so that machine noise hits them alike. The reported latency is the median over rounds
of each round's median; the speed-up column is Keras predict ms / runtime ms (higher is faster).

Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/export_latency.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/export_latency.py --models lenet5 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import kapps.data
import kapps.models
from kapps.data.base import as_arrays
from kapps.export import writers
from kapps.export.runtimes import onnx_runner, saved_model_runner, tflite_runner

import keras
import numpy as np
import tensorflow as tf

MODELS = ("lenet5", "resnet50")
DEFAULT_RUNS = {"lenet5": 50, "resnet50": 20}
BASELINE = "keras predict"


@dataclass
class Runtime:
    """One way of running the model on a batch-1 input, and what was measured for it.

    Attributes:
        name: label printed in the table.
        call: maps a float32 batch to the model's output (any form; it is only waited on).
        size_bytes: size of the artifact on disk, None for the in-process Keras variants.
        round_medians_ms: median call time of each timed round, in milliseconds.
        rel_diff: largest absolute difference of the output from Keras on the benchmark input, divided by
            the largest absolute Keras output (a sanity check that the artifact computes the same model).
    """

    name: str
    call: Callable[[np.ndarray], object]
    size_bytes: int | None = None
    round_medians_ms: list[float] = field(default_factory=list)
    rel_diff: float = float("nan")

    @property
    def median_ms(self) -> float:
        """Median of the per-round medians."""
        return statistics.median(self.round_medians_ms)


def build_model(name: str):
    """Build the benchmarked model `name` with fixed random weights.

    Args:
        name: ``"lenet5"`` or ``"resnet50"``.

    Returns:
        An untrained functional ``keras.Model``.
    """
    keras.utils.set_random_seed(0)
    if name == "lenet5":
        return kapps.models.build("lenet5")
    if name == "resnet50":
        return keras.applications.ResNet50(weights=None)
    raise ValueError(f"Unknown model {name!r}; choose from {MODELS}.")


def calibration_images(name: str, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Images that calibrate int8 quantisation of model `name`.

    Args:
        name: the model's name.
        input_shape: (height, width, channels) of one image.

    Returns:
        A float32 array of shape (N, height, width, channels).
    """
    if name == "lenet5":
        data = kapps.data.load("digits", image_size=input_shape[:2], seed=0)
        images, _ = as_arrays(data.train, 100)
        return images.astype("float32")
    # There is no ImageNet data offline, and the ResNet50 weights are random (weights=None) anyway, so random
    # uniform images in [0, 1) are as representative as anything: they only set the int8 activation ranges.
    return np.random.default_rng(1).uniform(0, 1, (16, *input_shape)).astype("float32")


def single_images(images: np.ndarray) -> Callable[[], Iterable[np.ndarray]]:
    """The calibration callable `writers.write_tflite` expects: each call yields (1, H, W, C) batches anew.

    Args:
        images: float32 array of shape (N, H, W, C).

    Returns:
        A function returning an iterator of single-image batches.
    """

    def batches() -> Iterator[np.ndarray]:
        for i in range(len(images)):
            yield images[i : i + 1]

    return batches


def disk_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def first_output(result: object) -> np.ndarray:
    """The single output array of a runtime's result (a runner's dict, a tensor or an array)."""
    if isinstance(result, dict):
        (result,) = result.values()
    return np.asarray(result)


def prepare_runtimes(model, name: str, folder: Path, tflite_threads: int | None) -> list[Runtime]:
    """Write the exports of `model` into `folder` and load each in its runtime.

    Args:
        model: the Keras model.
        name: the model's name (selects the calibration data).
        folder: where the artifacts are written.
        tflite_threads: ``num_threads`` of the TFLite interpreters (None: the runner's default).

    Returns:
        The runtimes, Keras predict first.
    """
    compiled = tf.function(model, jit_compile=False, reduce_retracing=True)
    runtimes = [
        Runtime(BASELINE, lambda x: model.predict(x, verbose=0)),
        Runtime("tf.function", lambda x: compiled(tf.convert_to_tensor(x), training=False).numpy()),
    ]

    def timed_write(label: str, write: Callable[[], Path]) -> Path:
        start = time.perf_counter()
        path = write()
        print(f"  wrote {label:<16} in {time.perf_counter() - start:6.1f} s ({disk_size(path) / 1e6:.2f} MB)")
        return path

    calibration = single_images(calibration_images(name, model.input_shape[1:]))
    saved = timed_write("SavedModel", lambda: writers.write_saved_model(model, folder / "saved_model"))
    float_tflite = timed_write(
        "TFLite float32", lambda: writers.write_tflite(saved, folder / "model.tflite", quantize="none")
    )
    int8_tflite = timed_write(
        "TFLite int8",
        lambda: writers.write_tflite(saved, folder / "model_int8.tflite", quantize="int8", calibration=calibration),
    )
    onnx = timed_write("ONNX", lambda: writers.write_onnx(model, folder / "model.onnx", opset=17))

    float_runner = tflite_runner(float_tflite, num_threads=tflite_threads)
    int8_runner = tflite_runner(int8_tflite, num_threads=tflite_threads)
    runtimes += [
        Runtime("SavedModel", saved_model_runner(saved), disk_size(saved)),
        Runtime("TFLite float32", float_runner, disk_size(float_tflite)),
        Runtime("TFLite int8", int8_runner, disk_size(int8_tflite)),
        Runtime("onnxruntime", onnx_runner(onnx), disk_size(onnx)),
    ]
    return runtimes


def time_calls(call: Callable[[np.ndarray], object], x: np.ndarray, runs: int) -> float:
    """Median wall time of `runs` calls of `call(x)`, in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def benchmark(runtimes: list[Runtime], x: np.ndarray, *, runs: int, repeats: int, warmup: int) -> None:
    """Warm every runtime up, check its output against Keras, then time interleaved rounds (fills `runtimes`).

    Args:
        runtimes: the runtimes, Keras predict first; their `round_medians_ms` and `rel_diff` are filled.
        x: the batch-1 float32 input.
        runs: timed calls per runtime per round.
        repeats: number of rounds.
        warmup: untimed calls per runtime before the first round.
    """
    reference = first_output(runtimes[0].call(x)).astype("float64")
    scale = float(np.max(np.abs(reference))) or 1.0
    for runtime in runtimes:
        for _ in range(warmup):
            runtime.call(x)
        runtime.rel_diff = float(np.max(np.abs(first_output(runtime.call(x)) - reference))) / scale
    for round_index in range(repeats):
        # Rotate the order each round so that no runtime always runs first or right after the same neighbour.
        shift = round_index % len(runtimes)
        for runtime in runtimes[shift:] + runtimes[:shift]:
            runtime.round_medians_ms.append(time_calls(runtime.call, x, runs))


def print_table(name: str, runtimes: list[Runtime]) -> None:
    """Print one model's results as an aligned table."""
    baseline = runtimes[0].median_ms
    header = (
        f"{'runtime':<16} {'median ms':>10} {'speed-up':>9} {'round medians ms':>26} {'size MB':>8} {'rel diff':>9}"
    )
    print(f"\n{name}: batch-1 latency, median of round medians; speed-up = Keras predict ms / runtime ms")
    print("(rel diff: max |output - Keras output| / max |Keras output|, on the timed input)")
    print(header)
    print("-" * len(header))
    for r in runtimes:
        rounds = " ".join(f"{m:.2f}" for m in r.round_medians_ms)
        size = f"{r.size_bytes / 1e6:.2f}" if r.size_bytes is not None else "-"
        print(
            f"{r.name:<16} {r.median_ms:>10.3f} {baseline / r.median_ms:>8.2f}x {rounds:>26} {size:>8} "
            f"{r.rel_diff:>9.1e}"
        )


def run_model(name: str, args: argparse.Namespace) -> list[Runtime]:
    """Build, export and benchmark model `name`; print and return its runtimes."""
    model = build_model(name)
    runs = args.runs if args.runs is not None else DEFAULT_RUNS[name]
    x = np.random.default_rng(0).uniform(0, 1, (1, *model.input_shape[1:])).astype("float32")
    print(f"\n{name}: input {x.shape}, {model.count_params():,} parameters; writing exports")
    with tempfile.TemporaryDirectory(prefix=f"kapps-bench-{name}-") as tmp:
        runtimes = prepare_runtimes(model, name, Path(tmp), args.tflite_threads)
        print(f"  timing {len(runtimes)} runtimes: {args.repeats} rounds of {runs} calls each")
        benchmark(runtimes, x, runs=runs, repeats=args.repeats, warmup=args.warmup)
    print_table(name, runtimes)
    return runtimes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated models to run, of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="timed calls per runtime per round (default: 50 for LeNet-5, 20 for ResNet50)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (default: 3)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per runtime first (default: 5)")
    parser.add_argument(
        "--tflite-threads",
        type=int,
        default=os.cpu_count(),
        help="num_threads of the TFLite interpreters (default: CPU count, as kapps' own runner uses)",
    )
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        got = ", ".join(unknown) or "none"
        parser.error(f"--models takes a comma-separated subset of {', '.join(MODELS)}; got {got}")
    if (args.runs is not None and args.runs < 1) or args.repeats < 1 or args.warmup < 0:
        parser.error("--runs and --repeats must be positive and --warmup not negative")
    args.tflite_threads = args.tflite_threads or None
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print one table per model, then a line of speed-ups."""
    args = parse_args(argv)
    threads = args.tflite_threads if args.tflite_threads is not None else "default"
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, TFLite threads: {threads}")
    results = {name: run_model(name, args) for name in args.models}
    parts = []
    for name, runtimes in results.items():
        baseline = runtimes[0].median_ms
        ratios = ", ".join(f"{r.name} {baseline / r.median_ms:.2f}x" for r in runtimes[1:])
        parts.append(f"{name}: {ratios}")
    print("\nspeed-up vs Keras predict (predict ms / runtime ms): " + "; ".join(parts))


if __name__ == "__main__":
    main()
