"""Training throughput of LeNet-5 on the digits data: the recipe's tf.data pipeline vs. in-memory arrays.

Three variants train a fresh, compiled LeNet-5 (Adam, sparse categorical cross-entropy, batch 32) on the same
1,257 decoded 32x32 training digits:

* ``in-memory``: the images taken once into NumPy, fed as ``model.fit(x, y, batch_size=32, shuffle=True)``;
* ``pipeline``: ``kapps.data.pipeline(data.train, batch_size=32, training=True, seed=0)``, no augmentation,
  so it does the same work per step as ``in-memory`` and their ratio is the pure input-pipeline overhead
  (the headline figure; the target is pipeline / in-memory >= 0.95);
* ``pipeline+augment``: the recipe's pipeline with ``kapps.data.digit_augment(seed=0)``; its ratio to
  ``in-memory`` is informational, since the in-memory variant does no augmentation.

Each fit runs ``--epochs`` epochs; a callback times every epoch with ``time.perf_counter``, the first epoch
(tracing, cache filling) is dropped and the median of the others gives images/s = n_train / median epoch
seconds. The variants alternate for ``--repeats`` rounds and the table reports the median over rounds.

Run::

    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/input_pipeline.py
    TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python benchmarks/input_pipeline.py --repeats 5 --epochs 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import kapps.data
import kapps.models
from kapps.data.base import as_arrays

import keras
import numpy as np
import tensorflow as tf

BATCH_SIZE = 32
TARGET_RATIO = 0.95
BASELINE = "in-memory"


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time, its number of steps and how long its first batch took to start.

    Attributes:
        seconds: wall time of each epoch, from `on_epoch_begin` to `on_epoch_end`.
        steps: training steps run in each epoch.
        start_seconds: time from `on_epoch_begin` to the first `on_train_batch_begin` of each epoch, mostly
            the set-up of the epoch's data iterator.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.steps: list[int] = []
        self.start_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Start the epoch's clock."""
        self.steps.append(0)
        self._start = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Note when the epoch's first batch starts."""
        if self.steps[-1] == 0:
            self.start_seconds.append(time.perf_counter() - self._start)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Count the step."""
        self.steps[-1] += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Stop the epoch's clock and record the duration."""
        self.seconds.append(time.perf_counter() - self._start)


@dataclass
class Variant:
    """One way of feeding the training data, and the throughput measured for it in each round.

    Attributes:
        name: label printed in the table.
        fit: trains a fresh model for the given number of epochs with the given callbacks.
        images_per_second: one value per round, from that round's median epoch time.
        epoch_seconds: one median epoch time per round.
        start_seconds: one median time to an epoch's first batch per round.
        steps: the steps of every timed epoch (all equal when the comparison is fair).
    """

    name: str
    fit: Callable[[keras.Model, int, list[keras.callbacks.Callback]], None]
    images_per_second: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    start_seconds: list[float] = field(default_factory=list)
    steps: set[int] = field(default_factory=set)

    @property
    def median_images_per_second(self) -> float:
        """Median over rounds."""
        return statistics.median(self.images_per_second)


def fresh_model(seed: int = 0) -> keras.Model:
    """A newly built and compiled LeNet-5 with the same initial weights every time."""
    keras.utils.set_random_seed(seed)
    model = kapps.models.build("lenet5")
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def make_variants(data, x: np.ndarray, y: np.ndarray) -> list[Variant]:
    """The three ways of feeding the training split, the in-memory baseline first.

    Args:
        data: the `kapps.data.Data` of the digits source.
        x: the decoded training images as one float32 array.
        y: the training labels.

    Returns:
        The variants. The pipeline ones build their tf.data pipeline anew for every fit, so every fit starts
        from an empty cache.
    """
    steps = kapps.data.steps_per_epoch(len(x), BATCH_SIZE)

    def in_memory(model: keras.Model, epochs: int, callbacks: list) -> None:
        model.fit(x, y, batch_size=BATCH_SIZE, shuffle=True, epochs=epochs, verbose=0, callbacks=callbacks)

    def with_pipeline(augment: bool) -> Callable:
        def fit(model: keras.Model, epochs: int, callbacks: list) -> None:
            train = kapps.data.pipeline(
                data.train,
                batch_size=BATCH_SIZE,
                training=True,
                augment=kapps.data.digit_augment(seed=0) if augment else None,
                seed=0,
            )
            # The training pipeline is an endless stream of epochs: `fit` needs the batches in one epoch.
            model.fit(
                train,
                epochs=epochs,
                steps_per_epoch=steps,
                shuffle=False,  # the pipeline shuffles
                verbose=0,
                callbacks=callbacks,
            )

        return fit

    return [
        Variant(BASELINE, in_memory),
        Variant("pipeline", with_pipeline(augment=False)),
        Variant("pipeline+augment", with_pipeline(augment=True)),
    ]


def measure(variant: Variant, n_train: int, epochs: int) -> None:
    """Train a fresh model with `variant` and append the round's throughput to it.

    Args:
        variant: the variant to run.
        n_train: number of training examples (one epoch).
        epochs: epochs to train; the first is discarded as warm-up.
    """
    timer = EpochTimer()
    variant.fit(fresh_model(), epochs, [timer])
    median_seconds = statistics.median(timer.seconds[1:])
    variant.epoch_seconds.append(median_seconds)
    variant.start_seconds.append(statistics.median(timer.start_seconds[1:]))
    variant.images_per_second.append(n_train / median_seconds)
    variant.steps.update(timer.steps[1:])


def print_table(variants: list[Variant], n_train: int, epochs: int) -> None:
    """Print the throughput of each variant and its ratio to the in-memory baseline."""
    baseline = variants[0].median_images_per_second
    print(
        f"\nLeNet-5 training throughput, {n_train} images/epoch, batch {BATCH_SIZE}: median of {epochs - 1} "
        "timed epochs per round, median over rounds"
    )
    print(
        f"(ratio = variant images/s / {BASELINE} images/s; steps = steps per epoch; "
        "start ms = median time from epoch begin to its first batch)"
    )
    header = (
        f"{'variant':<18} {'images/s':>9} {'ratio':>6} {'epoch ms':>9} {'start ms':>9} {'steps':>6}   "
        "per-round images/s"
    )
    print(header)
    print("-" * len(header))
    for v in variants:
        rounds = " ".join(f"{ips:7.0f}" for ips in v.images_per_second)
        epoch_ms = statistics.median(v.epoch_seconds) * 1000
        start_ms = statistics.median(v.start_seconds) * 1000
        steps = "/".join(str(n) for n in sorted(v.steps))
        ratio = v.median_images_per_second / baseline
        throughput = v.median_images_per_second
        print(f"{v.name:<18} {throughput:>9.0f} {ratio:>6.3f} {epoch_ms:>9.1f} {start_ms:>9.1f} {steps:>6}   {rounds}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the alternating variants (default: 3)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per fit, the first one discarded (default: 6)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 2:
        parser.error("--repeats must be at least 1 and --epochs at least 2 (the first epoch is discarded)")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark, print the table and a final line of ratios."""
    args = parse_args(argv)
    data = kapps.data.load("digits", image_size=(32, 32), seed=0)
    x, y = as_arrays(data.train)
    n_train = len(x)
    if n_train != data.sizes["train"]:
        raise RuntimeError(f"as_arrays gave {n_train} examples, the source says {data.sizes['train']}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPUs")
    print(f"digits train split: {x.shape} {x.dtype}; {args.repeats} rounds x {args.epochs} epochs a variant")

    variants = make_variants(data, x, y)
    for round_index in range(args.repeats):
        # Rotate the starting variant so no variant always runs first (or right after another) in a round.
        order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
        for variant in order:
            measure(variant, n_train, args.epochs)
        done = ", ".join(f"{v.name} {v.images_per_second[-1]:.0f}" for v in variants)
        print(f"  round {round_index + 1}/{args.repeats} images/s: {done}")
    print_table(variants, n_train, args.epochs)

    baseline, plain, augmented = (v.median_images_per_second for v in variants)
    verdict = "meets" if plain / baseline >= TARGET_RATIO else "misses"
    print(
        f"\nratios: pipeline / in-memory = {plain / baseline:.3f} ({verdict} the >= {TARGET_RATIO} target); "
        f"pipeline+augment / in-memory = {augmented / baseline:.3f} (informational: in-memory has no augment)"
    )


if __name__ == "__main__":
    main()
