"""The measurements that need an accelerator, in one run of under 8 minutes on one GPU.

1. ResNet-50 training images/s (224x224, 1000 classes, random images, SGD with momentum) in four settings:
   float32 and `mixed_float16`, each without and with XLA (`jit_compile`). Each setting is compiled and warmed up
   on a few steps (XLA compiles there), then timed over `--steps` steps; the model is freed before the next.
2. The YOLO recipe's first epoch (`recipes/yolo.py --epochs 1 --pretrain-epochs 0`, its default data and precision
   `auto`, so `mixed_float16` on a GPU of compute capability 7.0 or more): the epoch's seconds as Keras logs them,
   and the whole process's.
3. Batch-32 inference through that run's exported artifacts: `kapps export RUN --format all`, then `kapps benchmark
   EXPORT --batch 32`, which times the SavedModel, TFLite and ONNX files beside Keras `predict`.

It prints a line per stage with its time, then the ratios: mixed_float16 over float32 (with and without XLA), XLA
over no XLA (in each precision), and each artifact's batch-32 images/s over Keras `predict`'s.

Without a GPU it prints one line saying so and exits with status 0. `--smoke` runs every stage at a toy size on
whatever device there is, to check the script itself (not a measurement).

    bash benchmarks/gpu_check.sh            # or: python benchmarks/gpu_check.py [--batch-size 64 --steps 30]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(message: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)


def resnet50_images_per_second(*, precision: str, jit_compile: bool, batch_size: int, image_size: int, steps: int):
    """(images/s over `steps` timed training steps, seconds spent compiling and warming up)."""
    import kapps.models

    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = kapps.models.build("resnet50", input_shape=(image_size, image_size, 3), num_classes=1000)
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),  # wrapped in loss scaling under mixed_float16
            loss=keras.losses.SparseCategoricalCrossentropy(),
            jit_compile=jit_compile,
        )
        images = tf.random.uniform((batch_size, image_size, image_size, 3), seed=0)
        labels = tf.random.uniform((batch_size,), maxval=1000, dtype=tf.int32, seed=1)
        batches = tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(2)
        warm = time.perf_counter()
        model.fit(batches, steps_per_epoch=3, epochs=1, verbose=0, shuffle=False)  # traces, and compiles with XLA
        warm = time.perf_counter() - warm
        begin = time.perf_counter()
        model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
        return batch_size * steps / (time.perf_counter() - begin), warm
    finally:
        keras.mixed_precision.set_global_policy(previous)


def run(command: list[str], *, log: Path) -> str:
    """Run `command` from the repository root; its stdout, or a RuntimeError with the end of its log."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    log.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:3])} failed; see {log}:\n{result.stderr[-2000:]}")
    return result.stdout


def epoch_seconds(log: str) -> float | None:
    """The seconds Keras logged for the first epoch: its first `40/40 - 95s - ...` line (`verbose=2`)."""
    found = re.search(r"^\s*\d+/\d+ - (\d+(?:\.\d+)?)(m?s) - ", log, re.M)
    if not found:
        return None
    value = float(found.group(1))
    return value / 1000 if found.group(2) == "ms" else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64, help="ResNet-50 training batch (default: 64)")
    parser.add_argument("--steps", type=int, default=30, help="timed ResNet-50 steps a setting (default: 30)")
    parser.add_argument("--work", default=None, help="folder for the YOLO run and its export (default: temporary)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device: checks the script only")
    args = parser.parse_args(argv)

    import kapps  # noqa: F401  (TensorFlow, imported quietly)

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.smoke:
        print("gpu_check: no GPU is visible to TensorFlow on this machine, so there is nothing to measure.")
        return 0
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus] or ["CPU"]
    start = time.perf_counter()
    stage(f"gpu_check on {', '.join(names)}; TensorFlow {tf.__version__}{' (smoke run)' if args.smoke else ''}", start)

    image_size, batch_size, steps = (32, 4, 2) if args.smoke else (224, args.batch_size, args.steps)
    training = {}
    for precision in ("float32", "mixed_float16"):
        for xla in (False, True):
            ips, warm = resnet50_images_per_second(
                precision=precision, jit_compile=xla, batch_size=batch_size, image_size=image_size, steps=steps
            )
            training[precision, xla] = ips
            stage(
                f"ResNet-50 training, {precision}, {'XLA' if xla else 'no XLA'}: {ips:.1f} images/s "
                f"(batch {batch_size}, {steps} steps; warm-up {warm:.1f} s)",
                start,
            )

    work = Path(args.work or tempfile.mkdtemp(prefix="kapps-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    run_folder, export_folder = work / "yolo", work / "yolo-export"
    python = sys.executable
    yolo = [python, "recipes/yolo.py", "--epochs", "1", "--pretrain-epochs", "0", "--out", str(run_folder)]
    yolo += ["--no-resume", "--map-every", "1"]
    if args.smoke:
        yolo += ["--scenes", "64,16,16", "--steps-per-epoch", "2"]
    begin = time.perf_counter()
    log = run(yolo, log=work / "yolo.log")
    process_seconds = time.perf_counter() - begin
    config = json.loads((run_folder / "config.json").read_text())
    first_epoch = epoch_seconds(log)
    stage(
        f"YOLO recipe, first epoch: {first_epoch} s as Keras logs it ({config['precision_policy']}); "
        f"the whole process {process_seconds:.1f} s",
        start,
    )

    run(
        [python, "-m", "kapps.cli", "export", str(run_folder), "--format", "all", "--out", str(export_folder)],
        log=work / "export.log",
    )
    stage(f"exported the YOLO run to {export_folder}", start)
    runs = "3" if args.smoke else "10"
    run(
        [python, "-m", "kapps.cli", "benchmark", str(export_folder), "--batch", "32", "--runs", runs],
        log=work / "benchmark.log",
    )
    inference = json.loads((export_folder / "benchmark.json").read_text())
    stage("timed batch-32 inference through the artifacts", start)

    print("\nratios")
    for xla in (False, True):
        ratio = training["mixed_float16", xla] / training["float32", xla]
        print(f"  ResNet-50 training, mixed_float16 / float32, {'XLA' if xla else 'no XLA'}: {ratio:.2f}x")
    for precision in ("float32", "mixed_float16"):
        print(
            f"  ResNet-50 training, XLA / no XLA, {precision}: "
            f"{training[precision, True] / training[precision, False]:.2f}x"
        )
    best = max(training, key=training.get)
    print(
        f"  ResNet-50 training, best ({best[0]}, {'XLA' if best[1] else 'no XLA'}) / float32 without XLA: "
        f"{training[best] / training['float32', False]:.2f}x"
    )
    for entry in inference["runtimes"]:
        if entry["name"] == "keras predict":
            continue
        timing = entry["batches"]["32"]
        print(
            f"  YOLO batch-32 inference, {entry['name']} / Keras predict: {timing['vs_keras_predict']:.2f}x "
            f"({timing['images_per_s']:.0f} images/s)"
        )
    if first_epoch:
        options, scenes = config["options"], config["data"]["sizes"]["train"]
        steps = -(-scenes // options["batch_size"])
        images = min(scenes, min(steps, options["steps_per_epoch"] or steps) * options["batch_size"])
        print(f"  YOLO first epoch: {first_epoch:.1f} s, {images / first_epoch:.0f} training images/s")
    stage(f"done; the YOLO run, export and logs are in {work}", start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
