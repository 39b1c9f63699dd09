"""Class subsets of a loaded source: some of its classes, relabelled, optionally with a small labelled budget.

>>> digits = kapps.data.load("digits", image_size=(32, 32))
>>> target = subset_classes(digits, [5, 6, 7, 8, 9], per_class=20, seed=0)  # labels 0..4, 100 training images
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.data.base import Data
from kapps.errors import DataError

import numpy as np
import tensorflow as tf


def subset_classes(data: Data, classes: Sequence[int | str], *, per_class: int | None = None, seed: int = 0) -> Data:
    """The examples of `classes` only, relabelled 0..k-1 in the order given.

    Args:
        data: a loaded source.
        classes: class indices (or class names) of `data`, in the order of the new labels.
        per_class: when given, keep only this many training examples of each class, drawn with `seed`
            (a stratified sample: every class gets the same number); validation and test keep all theirs.
        seed: seed of the per-class draw.

    Returns:
        A new `Data` whose `class_names` are those of `classes` and whose `sizes` count the kept examples.

    Raises:
        DataError: an unknown or repeated class, no classes, a `per_class` below 1, or a class with fewer than
            `per_class` training examples.
    """
    indices = [_class_index(data, c) for c in classes]
    if not indices:
        raise DataError("A class subset needs at least one class.")
    if len(set(indices)) != len(indices):
        raise DataError(f"The classes of a subset must differ; got {list(classes)!r}.")
    if per_class is not None and (not isinstance(per_class, int) or per_class < 1):
        raise DataError(f"per_class must be a positive whole number, not {per_class!r}.")
    # old label -> new label, -1 for the classes left out
    relabel = np.full(data.num_classes, -1, dtype="int32")
    relabel[indices] = np.arange(len(indices), dtype="int32")
    table = tf.constant(relabel)

    splits = {"train": data.train, "val": data.val, "test": data.test}
    labels = {name: _new_labels(split, relabel) for name, split in splits.items()}
    keep_train = labels["train"] >= 0
    if per_class is not None:
        names = [data.class_names[i] for i in indices]
        keep_train = _stratified(labels["train"], names, per_class, seed=seed)

    def select(split: tf.data.Dataset, keep: np.ndarray) -> tf.data.Dataset:
        mask = tf.constant(keep)
        kept = split.enumerate().filter(lambda i, example: tf.gather(mask, i))
        kept = kept.map(lambda i, example: (example[0], tf.gather(table, example[1])))
        # a filter hides the count; stating it spares Keras's "ran out of data" warning at each evaluation
        return kept.apply(tf.data.experimental.assert_cardinality(int(keep.sum())))

    return Data(
        spec=data.spec,
        train=select(data.train, keep_train),
        val=select(data.val, labels["val"] >= 0),
        test=select(data.test, labels["test"] >= 0),
        input_shape=data.input_shape,
        class_names=[data.class_names[i] for i in indices],
        sizes={
            "train": int(keep_train.sum()),
            "val": int((labels["val"] >= 0).sum()),
            "test": int((labels["test"] >= 0).sum()),
        },
    )


def _class_index(data: Data, label: int | str) -> int:
    if isinstance(label, str) and label in data.class_names:
        return data.class_names.index(label)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label < data.num_classes:
        return int(label)
    raise DataError(f"{data.spec!r} has no class {label!r}; it has classes 0..{data.num_classes - 1}.")


def _new_labels(split: tf.data.Dataset, relabel: np.ndarray) -> np.ndarray:
    """The new label of every example of `split` in order, -1 where its class is left out."""
    old = [batch for batch in split.map(lambda image, label: label).batch(4096).as_numpy_iterator()]
    old = np.concatenate(old).astype("int64") if old else np.zeros(0, "int64")
    return relabel[old]


def _stratified(labels: np.ndarray, names: list[str], per_class: int, *, seed: int) -> np.ndarray:
    """A mask keeping `per_class` examples of each new label (named by `names`), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), dtype=bool)
    for new in range(len(names)):
        where = np.flatnonzero(labels == new)
        if len(where) < per_class:
            raise DataError(
                f"Class {names[new]!r} has only {len(where)} training examples, fewer than per_class={per_class}."
            )
        keep[rng.choice(where, per_class, replace=False)] = True
    return keep
