"""Training throughput of kapps ResNet-50 vs. keras.applications ResNet50, step for step in one process.

Both models are built untrained from the same seed: ``kapps.models.build("resnet50")`` (the keras.applications
layout) and ``keras.applications.ResNet50(weights=None)``, at ``--image-size`` x ``--image-size`` x 3 with 1000
classes. Both are compiled alike (SGD, sparse categorical cross-entropy, ``jit_compile=False``) and trained on
the same ``--steps`` random batches (fixed seed) with ``model.train_on_batch``.

Each model is first warmed up on one batch (the first ``train_on_batch`` traces the train step); then the two
models alternate for ``--repeats`` rounds, each round timing ``--steps`` calls of one model with
``time.perf_counter``, so that machine noise hits both alike. Images/s of a round = batch size x steps / round
seconds; the table reports the median over rounds. The headline is kapps images/s / keras images/s, and the
target is kapps no more than 1.05x slower, i.e. a ratio >= 1 / 1.05 (0.952).

Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/train_step.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/train_step.py --image-size 128 --steps 3 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import kapps.models

import keras
import numpy as np
import tensorflow as tf

NUM_CLASSES = 1000
PARAM_COUNT = 25_636_712
TARGET_SLOWDOWN = 1.05
BASELINE = "keras.applications"


@dataclass
class Contender:
    """One compiled model and the throughput measured for it in each round.

    Attributes:
        name: label printed in the table.
        model: the compiled `keras.Model`.
        images_per_second: one value per timed round.
    """

    name: str
    model: keras.Model
    images_per_second: list[float] = field(default_factory=list)

    @property
    def median_images_per_second(self) -> float:
        """Median over rounds."""
        return statistics.median(self.images_per_second)


def compiled(build: Callable[[], keras.Model], seed: int = 0) -> keras.Model:
    """Build a model from a fixed seed and compile it the way both contenders are compiled."""
    keras.utils.set_random_seed(seed)
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(), loss="sparse_categorical_crossentropy", jit_compile=False)
    return model


def make_contenders(image_size: int) -> list[Contender]:
    """The keras.applications baseline first, then kapps, both untrained at `image_size` x `image_size` x 3."""
    input_shape = (image_size, image_size, 3)
    return [
        Contender(BASELINE, compiled(lambda: keras.applications.ResNet50(weights=None, input_shape=input_shape))),
        Contender("kapps resnet50", compiled(lambda: kapps.models.build("resnet50", input_shape=input_shape))),
    ]


def random_batches(steps: int, batch_size: int, image_size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`steps` batches of uniform [0, 1) float32 images and integer labels, the same for every model and round."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.uniform(0, 1, (batch_size, image_size, image_size, 3)).astype("float32"),
            rng.integers(0, NUM_CLASSES, (batch_size,)).astype("int32"),
        )
        for _ in range(steps)
    ]


def time_round(model: keras.Model, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Images/s of one round: one `train_on_batch` per batch, timed together with `time.perf_counter`."""
    images = sum(len(x) for x, _ in batches)
    start = time.perf_counter()
    for x, y in batches:
        model.train_on_batch(x, y)
    return images / (time.perf_counter() - start)


def print_table(contenders: list[Contender], args: argparse.Namespace) -> None:
    """Print each model's median throughput, its ratio to keras.applications and the per-round values."""
    baseline = contenders[0].median_images_per_second
    print(
        f"\nResNet-50 training throughput, batch {args.batch_size} at {args.image_size}x{args.image_size}x3, "
        f"{args.steps} train_on_batch steps a round: median over {args.repeats} rounds"
    )
    print(f"(ratio = model images/s / {BASELINE} images/s; ms/step = 1000 x batch / images/s)")
    header = f"{'model':<20} {'images/s':>9} {'ratio':>6} {'ms/step':>9}   per-round images/s"
    print(header)
    print("-" * len(header))
    for c in contenders:
        throughput = c.median_images_per_second
        rounds = " ".join(f"{ips:7.2f}" for ips in c.images_per_second)
        ms_per_step = 1000 * args.batch_size / throughput
        print(f"{c.name:<20} {throughput:>9.2f} {throughput / baseline:>6.3f} {ms_per_step:>9.1f}   {rounds}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8, help="images per training step (default: 8)")
    parser.add_argument("--image-size", type=int, default=224, help="height and width of the images (default: 224)")
    parser.add_argument("--steps", type=int, default=5, help="timed train_on_batch calls a round (default: 5)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each model, alternating (default: 5)")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.steps, args.repeats) < 1:
        parser.error("--batch-size, --steps and --repeats must be positive")
    if args.image_size < 32:
        parser.error(f"--image-size must be at least 32 (ResNet50's smallest input); got {args.image_size}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and a final ratio line."""
    args = parse_args(argv)
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    contenders = make_contenders(args.image_size)
    for c in contenders:
        print(f"  {c.name:<20} {c.model.count_params():,} parameters")
    # Global average pooling makes the count independent of the image size.
    counts = sorted({c.model.count_params() for c in contenders})
    if counts != [PARAM_COUNT]:
        raise RuntimeError(f"both models should have {PARAM_COUNT:,} parameters; got {counts}")

    batches = random_batches(args.steps, args.batch_size, args.image_size)
    for c in contenders:
        start = time.perf_counter()
        c.model.train_on_batch(*batches[0])
        print(f"  warm-up {c.name:<20} first train_on_batch (traces) {time.perf_counter() - start:6.1f} s")

    for round_index in range(args.repeats):
        # Swap the order every round so that neither model always runs first.
        order = contenders if round_index % 2 == 0 else contenders[::-1]
        for c in order:
            c.images_per_second.append(time_round(c.model, batches))
        done = ", ".join(f"{c.name} {c.images_per_second[-1]:.2f}" for c in contenders)
        print(f"  round {round_index + 1}/{args.repeats} images/s: {done}")
    print_table(contenders, args)

    keras_ips, kapps_ips = (c.median_images_per_second for c in contenders)
    ratio = kapps_ips / keras_ips
    target = 1 / TARGET_SLOWDOWN
    verdict = "meets" if ratio >= target else "misses"
    print(
        f"\nratio: kapps images/s / keras images/s = {ratio:.3f} ({verdict} the >= {target:.3f} target, "
        f"i.e. kapps at most {TARGET_SLOWDOWN}x slower)"
    )


if __name__ == "__main__":
    main()
