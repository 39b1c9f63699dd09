"""Sequences for recurrent nets: the adding problem, and digit images read row by row.

>>> inputs, targets = adding_problem(length=100, count=1000, seed=0)  # (1000, 100, 2), (1000, 1)
>>> rows = digit_rows("digits", seed=0)  # Data of (32, 32) sequences: 32 steps of 32 pixels
>>> adding = adding_data(length=200, seed=0)  # Data of ((200, 2) sequence, (1,) sum) examples
"""

from __future__ import annotations

from kapps.data.base import Data, check_seed, check_sizes
from kapps.data.sources import load

import numpy as np
import tensorflow as tf


def adding_problem(*, length: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem: remember two marked numbers of a long sequence and answer their sum at its end.

    Each step has two channels: a value drawn uniformly in [0, 1], and a marker that is 1 at exactly two steps and
    0 elsewhere. The target is the sum of the two marked values. The first marker is at a step drawn uniformly in
    the first half of the sequence (`[0, length // 2)`), the second in the second half (`[length // 2, length)`),
    so that at least `length - length // 2` steps lie between the first marked value and the answer. This is the
    variant of Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of rectified linear units", 2015
    (values in [0, 1], the plain sum as target), with marker halves as later papers state them (kapps' choice; not
    checked against each paper's text). Hochreiter & Schmidhuber's original ("Long short-term memory", Neural
    Computation 1997, Sec. 5.4) draws values in [-1, 1], puts the first marker among the first ten steps and
    scales the target.

    A model that ignores the inputs and always answers 1 (the mean target) has a mean squared error of 1/6, the
    variance of a sum of two uniform values: the baseline a recurrent net must beat, which needs a memory of at
    least half the sequence.

    Args:
        length: steps per sequence, at least 2.
        count: number of sequences.
        seed: seed of the values and marker positions; one seed gives the same sequences on every machine.

    Returns:
        `(inputs, targets)`: float32 arrays of shape `(count, length, 2)` (value, marker) and `(count, 1)`, the
        shape of `kapps.models.rnn_classifier(head="regression")`'s output.
    """
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer of at least 2. Received: length={length!r}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer. Received: count={count!r}")
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (count, length))
    half = length // 2
    first = rng.integers(0, half, count)
    second = rng.integers(half, length, count)
    rows = np.arange(count)
    markers = np.zeros((count, length))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype("float32")
    targets = (values[rows, first] + values[rows, second])[:, None].astype("float32")
    return inputs, targets


ADDING_SPEC = "adding"
ADDING_SIZES = (10_000, 1_000, 1_000)


def adding_data(*, length: int, sizes: tuple[int, int, int] = ADDING_SIZES, seed: int = 0) -> Data:
    """The adding problem as a source: train, val and test splits of `(sequence (length, 2), sum (1,))` examples.

    Each split is `adding_problem` with its own seed (`3 seed`, `3 seed + 1` and `3 seed + 2`), so a split depends
    on `seed` and its own size only: a run's test split is found again from its seed and test size, whatever the
    size of its training split.

    Args:
        length: steps per sequence, at least 2.
        sizes: sequences in the (train, val, test) splits, each at least 1.
        seed: a non-negative integer.

    Returns:
        `Data` of spec `"adding"`, `input_shape` `(length, 2)`, no class names, and float32 `(1,)` targets.
    """
    seed = check_seed(seed)
    sizes = check_sizes(sizes)
    if min(sizes) < 1:
        raise ValueError(f"sizes must hold at least one sequence a split. Received: sizes={sizes!r}")
    splits = {}
    for k, (split, count) in enumerate(zip(("train", "val", "test"), sizes, strict=True)):
        inputs, targets = adding_problem(length=length, count=count, seed=3 * seed + k)
        splits[split] = tf.data.Dataset.from_tensor_slices((inputs, targets))
    return Data(
        spec=ADDING_SPEC,
        **splits,
        input_shape=(length, 2),
        class_names=[],
        sizes=dict(zip(("train", "val", "test"), sizes, strict=True)),
    )


def digit_rows(
    spec: str = "digits",
    *,
    image_size=(32, 32),
    seed: int = 0,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
) -> Data:
    """An image classification source read row by row: each image becomes a sequence of its rows, top to bottom,
    a step holding the pixels of one row (all channels of a pixel side by side).

    Args:
        spec: a classification source of `kapps.data.load`: `"digits"` (embedded, 32x32 grey by default, so 32
            steps of 32 pixels), `"tfds:mnist"` (28 steps of 28 pixels with `image_size=(28, 28)`)...
        image_size: (height, width) of the images: the number of steps and the pixels per row (times channels).
        seed, data_dir, val_fraction: as for `kapps.data.load`.

    Returns:
        `Data` whose examples are `(sequence (height, width * channels) float32 in [0, 1], label)` and whose
        `input_shape` is that sequence shape, `(steps, features)`.
    """
    data = load(spec, image_size=image_size, seed=seed, data_dir=data_dir, val_fraction=val_fraction)
    height, width, channels = data.input_shape
    shape = (height, width * channels)

    def to_rows(image, label):
        return tf.reshape(image, shape), label

    return Data(
        spec=data.spec,
        train=data.train.map(to_rows),
        val=data.val.map(to_rows),
        test=data.test.map(to_rows),
        input_shape=shape,
        class_names=data.class_names,
        sizes=data.sizes,
    )
