"""`folder:PATH` for instance segmentation: the CVPPP leaf segmentation layout (Scharr et al. 2016), read by
`kapps.data.load_instances` (whose docstring describes the layout).

Every label file is read once when the source is loaded, to check it against its image and to count its leaves;
examples are then decoded lazily in tf.data. Labels are read with Pillow, because TensorFlow's PNG decoder turns a
palette PNG into its colours, and a CVPPP label's pixels are the palette's indices.
"""

from __future__ import annotations

from pathlib import Path

from kapps.data.base import Data, detection_image
from kapps.data.detection_folder import carve_splits
from kapps.data.leaves import LEAF_CLASSES, instance_targets
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

_SPLITS = ("train", "val", "test")
_LABEL_MODES = ("P", "L", "1", "I;16", "I;16B", "I;16L", "I", "RGB", "RGBA")

# One record per example: (image file, label file).
Record = tuple[str, str]


def load_leaves_folder(spec: str, *, image_size, seed: int, val_fraction: float, max_leaves: int | None) -> Data:
    """Load `folder:PATH` in the CVPPP layout (see `kapps.data.load_instances`) as a `Data` of instance examples."""
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    images = sorted(root.rglob("*_rgb.png"))
    if not images:
        raise DataError(f"The folder {str(root)!r} has no CVPPP images (*_rgb.png with *_label.png beside them).")
    records, most = {}, 0
    for image in images:
        label = image.with_name(image.name.removesuffix("_rgb.png") + "_label.png")
        if not label.is_file():
            raise DataError(f"The image {str(image)!r} has no instance labels {label.name!r} beside it.")
        _check_size(label, image)
        most = max(most, len(np.unique(read_labels(label))) - 1)
        records[image.relative_to(root).as_posix().removesuffix("_rgb.png")] = (str(image), str(label))
    if max_leaves is None:
        max_leaves = max(most, 1)
    elif most > max_leaves:
        raise DataError(f"A label image in {str(root)!r} has {most} leaves, more than max_leaves={max_leaves}.")

    listed = {}
    for split in _SPLITS:
        listing = root / "splits" / f"{split}.txt"
        if listing.is_file():
            stems = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
            missing = [stem for stem in stems if stem not in records]
            if missing:
                raise DataError(f"The split list {str(listing)!r} names {missing[0]!r}, which has no *_rgb.png image.")
            listed[split] = stems
    if "train" not in listed:  # every image no list names
        named = {stem for stems in listed.values() for stem in stems}
        listed["train"] = [stem for stem in records if stem not in named]
    parts = {split: [records[stem] for stem in stems] for split, stems in listed.items()}
    train, val, test = carve_splits(parts, val_fraction=val_fraction, seed=seed)
    return Data(
        spec=spec,
        train=_records_dataset(train, image_size=image_size, max_leaves=max_leaves),
        val=_records_dataset(val, image_size=image_size, max_leaves=max_leaves),
        test=_records_dataset(test, image_size=image_size, max_leaves=max_leaves),
        input_shape=(*image_size, 3),
        class_names=list(LEAF_CLASSES),
        sizes={"train": len(train), "val": len(val), "test": len(test)},
        worker_train=lambda count, index: _records_dataset(
            train[index::count], image_size=image_size, max_leaves=max_leaves
        ),
    )


def read_labels(path) -> np.ndarray:
    """A CVPPP label file as int64 (H, W), 0 the background and one other value per leaf: a palette PNG's indices,
    a grey or 16-bit PNG's values, or an RGB(A) PNG's colours packed as 65536 r + 256 g + b (black the
    background)."""
    from PIL import Image

    with Image.open(path) as opened:
        mode = opened.mode
        if mode not in _LABEL_MODES:
            raise DataError(f"The label image {str(path)!r} is a {mode} image; use a palette, grey or 16-bit PNG.")
        if mode == "RGBA":
            opened = opened.convert("RGB")
        values = np.asarray(opened).astype(np.int64)
    if values.ndim == 3:
        return (values[..., 0] << 16) | (values[..., 1] << 8) | values[..., 2]
    return values


def numbered_labels(labels: np.ndarray, image_size) -> np.ndarray:
    """Labels (h, w) of any values, 0 the background, resized to `image_size` by nearest neighbour (the source
    pixel whose centre is nearest each target pixel's centre) and numbered 1..n by the pixels each leaf keeps,
    most first (ties by the original value); a leaf left with no pixel is gone."""
    height, width = labels.shape
    rows = np.minimum(((np.arange(image_size[0]) + 0.5) * height / image_size[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(image_size[1]) + 0.5) * width / image_size[1]).astype(np.int64), width - 1)
    resized = labels[rows[:, None], cols[None, :]]
    values, inverse, counts = np.unique(resized, return_inverse=True, return_counts=True)
    leaves = values != 0
    order = np.lexsort((values[leaves], -counts[leaves]))  # most pixels first, then the smaller value
    numbers = np.zeros(len(values), np.int32)
    numbers[np.flatnonzero(leaves)[order]] = np.arange(1, len(order) + 1, dtype=np.int32)
    return numbers[inverse.reshape(resized.shape)]


def _check_size(label: Path, image: Path) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as opened:
            image_size = opened.size
        with Image.open(label) as opened:
            label_size = opened.size
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"The file {err.filename or str(label)!r} is not a readable image.") from None
    if label_size != image_size:
        raise DataError(
            f"The label image {str(label)!r} is {label_size[0]}x{label_size[1]} pixels but its image {str(image)!r} "
            f"is {image_size[0]}x{image_size[1]}."
        )


def _records_dataset(records: list[Record], *, image_size, max_leaves: int) -> tf.data.Dataset:
    """An unbatched dataset decoding each record's image and label files into an instance example."""
    images = np.asarray([image for image, _ in records], dtype=str).reshape(-1)
    labels = np.asarray([label for _, label in records], dtype=str).reshape(-1)

    def read(path: bytes) -> np.ndarray:
        return numbered_labels(read_labels(path.decode()), image_size)

    def decode(image_path, label_path):
        image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
        label = tf.ensure_shape(tf.numpy_function(read, [label_path], tf.int32, stateful=False), image_size)
        return detection_image(image, image_size=image_size), instance_targets(label, max_leaves=max_leaves)

    return tf.data.Dataset.from_tensor_slices((images, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
