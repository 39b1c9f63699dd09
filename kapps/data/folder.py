"""`folder:PATH`: an image classification set laid out as one subfolder per class.

Two layouts are read: `PATH/<class>/*.png` (split three ways, stratified, by the seed) and
`PATH/train/<class>/...` with `PATH/test/<class>/...` (and optionally `PATH/val/<class>/...`; without it the
validation split is carved from train).
"""

from __future__ import annotations

from pathlib import Path

from kapps.data.base import Data, fit_image
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def stratified_split(labels: np.ndarray, *, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Indices of `labels` split into parts of the given fractions (the last takes the rest), each class spread
    over the parts in proportion, fixed by the seed."""
    from sklearn.model_selection import train_test_split

    parts, rest, left = [], np.arange(len(labels)), 1.0
    for fraction in fractions[:-1]:
        taken, rest = train_test_split(
            rest, train_size=fraction / left, stratify=labels[rest], random_state=seed, shuffle=True
        )
        parts.append(np.sort(taken))
        left -= fraction
    return [*parts, np.sort(rest)]


def list_images(root: Path, class_names: list[str] | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """The image files under `root/<class>/`, their class indices and the (sorted) class names."""
    if class_names is None:
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_names:
        raise DataError(f"The folder source {str(root)!r} has no class subfolders.")
    files, labels = [], []
    for index, name in enumerate(class_names):
        found = sorted(p for p in (root / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += [str(p) for p in found]
        labels += [index] * len(found)
    if not files:
        raise DataError(f"The folder source {str(root)!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    return files, np.asarray(labels, dtype="int32"), class_names


def load_folder(spec: str, *, image_size, channels: int, seed: int, val_fraction: float) -> Data:
    """Load `folder:PATH` as a `Data`; images decoded with `channels` channels and fitted to `image_size`."""
    root = Path(spec[len("folder:") :]).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, train_labels, names = list_images(root / "train")
        test_files, test_labels, _ = list_images(root / "test", names)
        if (root / "val").is_dir():
            val_files, val_labels, _ = list_images(root / "val", names)
        else:
            keep, held = stratified_split(train_labels, fractions=(1 - val_fraction, val_fraction), seed=seed)
            files = np.asarray(train_files)
            val_files, val_labels = list(files[held]), train_labels[held]
            train_files, train_labels = list(files[keep]), train_labels[keep]
    else:
        all_files, labels, names = list_images(root)
        train, val, test = stratified_split(labels, fractions=(0.8 - val_fraction, val_fraction, 0.2), seed=seed)
        files = np.asarray(all_files)
        train_files, train_labels = list(files[train]), labels[train]
        val_files, val_labels = list(files[val]), labels[val]
        test_files, test_labels = list(files[test]), labels[test]

    def decode(path, label):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        image.set_shape((None, None, channels))
        return fit_image(image, image_size, resize=True), label

    def split(files, labels):
        ds = tf.data.Dataset.from_tensor_slices((np.asarray(files, dtype=str), np.asarray(labels, dtype="int32")))
        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    return Data(
        spec=spec,
        train=split(train_files, train_labels),
        val=split(val_files, val_labels),
        test=split(test_files, test_labels),
        input_shape=(*image_size, channels),
        class_names=names,
        sizes={"train": len(train_files), "val": len(val_files), "test": len(test_files)},
        worker_train=lambda count, index: split(train_files[index::count], train_labels[index::count]),
    )
