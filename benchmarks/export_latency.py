"""Inference latency of a Keras model and of its verified exports, each in its own runtime, as `kapps benchmark`
measures it.

For each model (kapps LeNet-5 on 32x32x1, keras.applications ResNet50 on 224x224x3, both untrained) this saves the
model as a `.keras` file, exports it with `kapps.export.export` (SavedModel, TFLite float32 and int8, ONNX; each
verified against Keras in its own runtime, but for ResNet50's int8 file: see `export_model`), then times every
artifact beside Keras `model.predict` and the compiled model call (`tf.function`) with
`kapps.export.benchmark.benchmark`: interleaved rounds, median and p90 latency, images/s and each runtime's ratio to
Keras predict, headed by the CPU's vector extensions and the thread counts.

Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/export_latency.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/export_latency.py --models lenet5 --batch 1,8 --runs 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import kapps.export
import kapps.models
from kapps.export import writers
from kapps.export.benchmark import BASELINE, benchmark, format_benchmark, parse_batch_sizes
from kapps.export.machine import set_tensorflow_threads, usable_cpus

import keras
import numpy as np

MODELS = ("lenet5", "resnet50")
DEFAULT_RUNS = {"lenet5": 50, "resnet50": 20}


def build_model(name: str) -> keras.Model:
    """The benchmarked model `name` (`"lenet5"` or `"resnet50"`), untrained, with fixed random weights."""
    keras.utils.set_random_seed(0)
    if name == "lenet5":
        return kapps.models.build("lenet5")
    return keras.applications.ResNet50(weights=None)


def export_model(name: str, folder: Path) -> Path:
    """Save model `name` as a `.keras` file in `folder`, export it there with an int8 file, return the export folder.

    LeNet-5's int8 file is calibrated and verified on the embedded digits. ResNet50's random weights give
    near-uniform softmax scores, below the int8 output step, so the export's top-1 check refuses its int8 file
    (agreement 0%); latency does not depend on the weights' values, so that one file is written unverified,
    calibrated on random uniform images, beside the verified float artifacts.
    """
    model = build_model(name)
    source = folder / f"{name}.keras"
    model.save(source)
    out = folder / f"export-{name}"
    start = time.perf_counter()
    options = {"out": out, "samples": 32, "calibration_samples": 96, "latency_runs": 3}
    if name == "lenet5":
        kapps.export.export(source, formats="all", quantize="int8", data="digits", **options)
    else:
        kapps.export.export(source, formats="all", **options)
        images = np.random.default_rng(1).uniform(0, 1, (16, *model.input_shape[1:])).astype("float32")
        calibration = lambda: (images[i : i + 1] for i in range(len(images)))  # noqa: E731
        writers.write_tflite(out / "saved_model", out / "model_int8.tflite", quantize="int8", calibration=calibration)
    print(f"{name}: {model.count_params():,} parameters, exported in {time.perf_counter() - start:.0f} s")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--batch", default="1", help="comma-separated batch sizes (default: 1)")
    parser.add_argument("--runs", type=int, default=None, help="interleaved rounds (default: 50 LeNet-5, 20 ResNet50)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of every runtime (default: all)")
    parser.add_argument("--keep", default=None, help="folder to keep the exports and benchmark.json files in")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models takes a comma-separated subset of {', '.join(MODELS)}; got {', '.join(unknown)}")
    args.batch = parse_batch_sizes(args.batch)
    if (args.runs is not None and args.runs < 1) or (args.threads is not None and args.threads < 1):
        parser.error("--runs and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Export and benchmark each model, print its table, then one line of ratios to Keras predict."""
    args = parse_args(argv)
    set_tensorflow_threads(args.threads or usable_cpus())  # before TensorFlow runs anything, or it cannot change
    summary = []
    with tempfile.TemporaryDirectory(prefix="kapps-bench-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            result = benchmark(
                export_model(name, folder),
                batch_sizes=args.batch,
                runs=args.runs or DEFAULT_RUNS[name],
                threads=args.threads,
            )
            print(f"\n{name}\n{format_benchmark(result)}\n")
            for batch in args.batch:
                ratios = ", ".join(
                    f"{r['name']} {r['batches'][str(batch)]['vs_keras_predict']:.2f}x"
                    for r in result["runtimes"]
                    if r["name"] != BASELINE
                )
                summary.append(f"{name} batch {batch}: {ratios}")
    print("ratio to Keras predict (predict median / runtime median, above 1 is faster):")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
