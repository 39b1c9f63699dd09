"""`folder:PATH` for semantic segmentation: images with class-index mask PNGs (VOC's `SegmentationClass` layout) or
CVPPP's `*_rgb.png` with `*_fg.png` foreground masks.

The layouts, splits and classes are described in `kapps.data.load_segmentation` (and the instance labels in
`kapps.data.load_segmentation_instances`), the entry points. Every mask is
read once when the source is loaded, to check its mode and size against its image and to find the class indices it
uses; examples are then decoded lazily in tf.data. Masks are read with Pillow, because TensorFlow's PNG decoder turns
a palette PNG into its colours, and a VOC mask's pixels are the palette's indices.
"""

from __future__ import annotations

from pathlib import Path

from kapps.data.base import Data, detection_image
from kapps.data.detection_folder import carve_splits
from kapps.data.folder import IMAGE_SUFFIXES
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

IGNORE_LABEL = 255
VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
_INDEX_MODES = ("P", "L", "1")  # palette, grey and 1-bit PNGs hold class indices; RGB masks hold colours

# One record per example: (image file, mask file), or (image file, mask file, instance label file).
Record = tuple[str, ...]
# Where the instance labels of the VOC layout are: VOC's own folder, or the one beside the generic `masks/`.
_INSTANCE_FOLDERS = ("SegmentationObject", "instances")


def segmentation_example(image: tf.Tensor, mask: tf.Tensor, *, image_size) -> tuple[tf.Tensor, tf.Tensor]:
    """A decoded image and its (H, W) or (H, W, 1) class-index mask as one example of every segmentation source:
    the image float32 RGB in [0, 1] stretched bilinearly to `image_size`, the mask int32 (H, W) stretched by nearest
    neighbour, so that it keeps its class indices and its ignore label."""
    mask = tf.reshape(mask, tf.concat([tf.shape(mask)[:2], [1]], axis=0))
    mask = tf.image.resize(tf.cast(mask, tf.int32), image_size, method="nearest")[..., 0]
    return detection_image(image, image_size=image_size), tf.ensure_shape(mask, image_size)


def load_segmentation_folder(spec: str, *, image_size, seed: int, val_fraction: float, instances: bool = False) -> Data:
    """Load `folder:PATH` in the VOC or the CVPPP layout (see `kapps.data.load_segmentation`) as a `Data`; with
    `instances`, each example also has its instance labels (see `kapps.data.load_segmentation_instances`)."""
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    masks = next((root / name for name in ("SegmentationClass", "masks") if (root / name).is_dir()), None)
    if masks is not None:
        parts, class_names, binary = *_voc_folder(root, masks, instances=instances), False
    elif next(root.rglob("*_rgb.png"), None) is not None:
        parts, class_names, binary = _cvppp_folder(root, instances=instances), ["background", "plant"], True
    else:
        raise DataError(
            f"The folder {str(root)!r} is in neither segmentation layout: VOC (SegmentationClass/*.png with "
            "JPEGImages/ or images/) or CVPPP (*_rgb.png with *_fg.png)."
        )
    train, val, test = carve_splits(parts, val_fraction=val_fraction, seed=seed)
    return Data(
        spec=spec,
        train=_records_dataset(train, image_size=image_size, binary=binary, instances=instances),
        val=_records_dataset(val, image_size=image_size, binary=binary, instances=instances),
        test=_records_dataset(test, image_size=image_size, binary=binary, instances=instances),
        input_shape=(*image_size, 3),
        class_names=class_names,
        sizes={"train": len(train), "val": len(val), "test": len(test)},
        worker_train=lambda count, index: _records_dataset(
            train[index::count], image_size=image_size, binary=binary, instances=instances
        ),
    )


def _voc_folder(root: Path, mask_folder: Path, *, instances: bool) -> tuple[dict[str, list[Record]], list[str]]:
    image_folder = next((root / name for name in ("JPEGImages", "images") if (root / name).is_dir()), None)
    if image_folder is None:
        raise DataError(f"The folder {str(root)!r} has {mask_folder.name}/ but no JPEGImages/ or images/ beside it.")
    object_folder = next((root / name for name in _INSTANCE_FOLDERS if (root / name).is_dir()), None)
    if instances and object_folder is None:
        raise DataError(
            f"The folder {str(root)!r} has no instance labels: no SegmentationObject/ or instances/ beside "
            f"{mask_folder.name}/."
        )
    mask_files = sorted(mask_folder.glob("*.png"))
    if not mask_files:
        raise DataError(f"The folder {str(mask_folder)!r} has no .png masks.")
    images = {p.stem: p for p in sorted(image_folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    records, largest = {}, 0
    for mask in mask_files:
        image = images.get(mask.stem)
        if image is None:
            raise DataError(f"The mask {str(mask)!r} has no image of the same name in {str(image_folder)!r}.")
        values = _index_values(mask, image)
        largest = max([largest, *(int(v) for v in values if v != IGNORE_LABEL)])
        records[mask.stem] = (str(image), str(mask))
        if instances:
            objects = object_folder / mask.name
            if not objects.is_file():
                raise DataError(f"The mask {str(mask)!r} has no instance labels {str(objects)!r}.")
            _index_values(objects, image, kind="instance labels")
            records[mask.stem] += (str(objects),)

    classes_file = root / "classes.txt"
    if classes_file.is_file():
        class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
        if largest >= len(class_names):
            raise DataError(
                f"The masks use class index {largest} but {str(classes_file)!r} names only {len(class_names)} classes."
            )
    elif largest == len(VOC_CLASSES) - 1:
        class_names = list(VOC_CLASSES)
    else:
        class_names = ["background", *(f"class_{k}" for k in range(1, largest + 1))]

    parts = {}
    for split in ("train", "val", "test"):
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if listing.is_file():
            stems = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
            missing = [stem for stem in stems if stem not in records]
            if missing:
                raise DataError(f"The split list {str(listing)!r} names {missing[0]!r}, which has no mask.")
            parts[split] = [records[stem] for stem in stems]
    if "train" not in parts:
        return {"train": list(records.values())}, class_names
    if "val" in parts and "test" not in parts:
        parts["test"] = parts.pop("val")  # VOC's test masks are not public: its val set is the test set
    return parts, class_names


def _cvppp_folder(root: Path, *, instances: bool) -> dict[str, list[Record]]:
    records = []
    for image in sorted(root.rglob("*_rgb.png")):
        stem = image.name.removesuffix("_rgb.png")
        mask = image.with_name(stem + "_fg.png")
        if not mask.is_file():
            raise DataError(f"The image {str(image)!r} has no foreground mask {mask.name!r} beside it.")
        _check_sizes(mask, image)
        records.append((str(image), str(mask)))
        if instances:
            labels = image.with_name(stem + "_label.png")
            if not labels.is_file():
                raise DataError(f"The image {str(image)!r} has no instance labels {labels.name!r} beside it.")
            _index_values(labels, image, kind="instance labels")
            records[-1] += (str(labels),)
    return {"train": records}


def _check_sizes(mask: Path, image: Path) -> str:
    """The mask's Pillow mode, once its size is checked against the image's."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as opened:
            image_size = opened.size
        with Image.open(mask) as opened:
            mask_size, mode = opened.size, opened.mode
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"The file {err.filename or str(mask)!r} is not a readable image.") from None
    if mask_size != image_size:
        raise DataError(
            f"The mask {str(mask)!r} is {mask_size[0]}x{mask_size[1]} pixels but its image {str(image)!r} is "
            f"{image_size[0]}x{image_size[1]}."
        )
    return mode


def _index_values(mask: Path, image: Path, *, kind: str = "class-index masks") -> np.ndarray:
    """The indices a VOC-layout mask (or an instance label file, `kind`) uses, once its mode and size are
    checked."""
    mode = _check_sizes(mask, image)
    if mode not in _INDEX_MODES:
        raise DataError(f"The mask {str(mask)!r} is a {mode} image; {kind} are palette (P) or greyscale (L) PNGs.")
    return np.unique(_read_mask(str(mask).encode(), False))


def _read_mask(path: bytes, binary: bool) -> np.ndarray:
    """A mask file (its path as bytes, as tf.data passes it) as uint8 (H, W): a palette PNG's indices, a grey PNG's
    values, or with `binary` 1 where the (greyscale-converted) foreground mask is not black and 0 elsewhere."""
    from PIL import Image

    with Image.open(path.decode()) as opened:
        if binary:
            return (np.asarray(opened.convert("L")) > 0).astype(np.uint8)
        return np.asarray(opened).astype(np.uint8)  # a P, L or 1 image: its indices, values, or 0 and 1


def _records_dataset(records: list[Record], *, image_size, binary: bool, instances: bool) -> tf.data.Dataset:
    """An unbatched dataset decoding each record's image and mask files into a segmentation example, and its
    instance labels into a third element with `instances` (int32, nearest neighbour, the void 255 made 0)."""
    columns = 3 if instances else 2
    files = tuple(np.asarray([record[i] for record in records], dtype=str).reshape(-1) for i in range(columns))

    def decode(image_path, mask_path, *instance_path):
        image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
        mask = tf.numpy_function(_read_mask, [mask_path, binary], tf.uint8, stateful=False)
        example = segmentation_example(image, tf.ensure_shape(mask, (None, None)), image_size=image_size)
        if not instance_path:
            return example
        labels = tf.numpy_function(_read_mask, [instance_path[0], False], tf.uint8, stateful=False)
        labels = tf.image.resize(
            tf.cast(tf.ensure_shape(labels, (None, None))[..., None], tf.int32), image_size, method="nearest"
        )[..., 0]
        labels = tf.where(labels == IGNORE_LABEL, 0, labels)
        return *example, tf.ensure_shape(labels, image_size)

    return tf.data.Dataset.from_tensor_slices(files).map(decode, num_parallel_calls=tf.data.AUTOTUNE)
