"""Detection data: one entry point, `load_detection`, for the synthetic shapes, tensorflow-datasets' VOC and COCO,
and folders in the VOC XML or COCO JSON layout.

Every source gives unbatched `(image, targets)` examples in kapps' conventions: image float32 (H, W, 3) in [0, 1]
stretched to `image_size` (grey images repeated to RGB); targets `{"boxes": float32 (max_boxes, 4) normalised
[x1, y1, x2, y2] ("rel_xyxy"), padding rows 0, "classes": int32 (max_boxes,), padding -1}`. Boxes are clipped to
the image, boxes with no area left are dropped, and the first `max_boxes` objects (in annotation order) are kept.

Objects that the datasets' own evaluations ignore are left out of the targets of every split: VOC's "difficult"
objects and COCO's crowd regions. Evaluating on these targets is therefore slightly stricter than the official
protocols, which neither reward nor penalise detections of ignored objects.

    >>> data = kapps.data.load_detection("tfds:voc/2007", image_size=(448, 448))
    >>> image, targets = next(iter(data.train))
"""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from kapps.data.folder import IMAGE_SUFFIXES
from kapps.data.sources import Data
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

DETECTION_SOURCES = ("shapes", "tfds:voc/2007", "tfds:voc/2012", "tfds:coco/2017", "tfds:coco/2014", "folder:PATH")
TEST_FRACTION = 0.2

_ACCEPTED = "'shapes', 'tfds:voc/2007' (or another 'tfds:voc/...' config), 'tfds:coco/2017' or 'folder:PATH'"

# One record per image: (image file, boxes (n, 4) rel_xyxy before clipping, class indices (n,)).
Record = tuple[str, np.ndarray, np.ndarray]


def load_detection(
    spec: str,
    *,
    image_size=(448, 448),
    seed: int = 0,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    max_boxes: int = 50,
    masks: bool = False,
    **source_kwargs,
) -> Data:
    """Load the detection source `spec` as three splits of `(image, targets)` examples.

    Sources:
        `"shapes"`: the embedded synthetic scenes (`kapps.data.scenes.load_shapes`, which receives
        `source_kwargs`); the only source with `masks=True` (instance masks and a semantic mask).

        `"tfds:voc/2007"` (any `tfds:voc/...` config): PASCAL VOC (Everingham et al. 2010) from
        tensorflow-datasets; its train, validation and test splits; 20 classes.

        `"tfds:coco/2017"` (or `"tfds:coco/2014"`): MS COCO (Lin et al. 2014); its test split has no labels, so
        COCO's validation split is the test split and the last `val_fraction` of train is held out for validation;
        80 classes.

        `"folder:PATH"`, in one of two layouts, chosen by what PATH holds:

        * VOC XML: `PATH/Annotations/*.xml` with the images in `PATH/JPEGImages/` (each XML's `<filename>`, or
          its stem + ".jpg"). Splits from `PATH/ImageSets/Main/{train,val,test}.txt` (one annotation stem a
          line); a missing val or test list is carved from train by the seed (`val_fraction`, and 20% for test),
          and without a train list all annotations are split that way. Classes: the lines of `PATH/classes.txt`
          if present, otherwise the sorted set of `<name>` values. Coordinates are divided by the `<size>` as
          tensorflow-datasets' VOC does.
        * COCO JSON: either `PATH/annotations/instances_train*.json` (+ optional `instances_val*.json`,
          `instances_test*.json`), each file's images in the folder named by its stem without "instances_"
          (`instances_train2017.json` -> `PATH/train2017/`); or a single `PATH/annotations.json` with its images
          in `PATH/images/`. As for tfds COCO, a val file without a test file becomes the test split and
          validation is carved from train; missing splits are carved from train by the seed as above. Classes:
          the train file's categories sorted by id, mapped to 0..C-1.

        Every annotated image size is checked against the image file's own size.

    Args:
        spec: the source, one of the above.
        image_size: (height, width) every image is resized to (a stretch: boxes are normalised and stay valid).
        seed: seed of the splits a source does not define itself.
        data_dir: tensorflow-datasets' data folder, for offline copies.
        val_fraction: share of the training data held out for validation where the source has no such split.
        max_boxes: rows of the padded targets; objects past it are dropped.
        masks: add instance and semantic masks to the targets (the shapes source only).
        **source_kwargs: further keywords of the shapes source (for example `sizes`, `max_objects`).

    Returns:
        The `Data`, with `class_names`, `sizes` (from the dataset's metadata or counted; -1 where unknown),
        `input_shape` (*image_size, 3) and `spec`.
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"A detection source must be one of {_ACCEPTED}, not {spec!r}.")
    image_size = tuple(image_size)
    if len(image_size) != 2 or not all(isinstance(n, int) and n > 0 for n in image_size):
        raise ValueError(f"image_size must be two positive integers (height, width). Received: {image_size!r}")
    if not isinstance(max_boxes, int) or max_boxes < 1:
        raise ValueError(f"max_boxes must be a positive integer. Received: max_boxes={max_boxes!r}")
    if not 0 < val_fraction < 1 - TEST_FRACTION:
        raise ValueError(f"val_fraction must be in (0, {1 - TEST_FRACTION}). Received: val_fraction={val_fraction!r}")
    if spec == "shapes":
        from kapps.data.scenes import load_shapes

        data = load_shapes(image_size=image_size, seed=seed, max_boxes=max_boxes, masks=masks, **source_kwargs)
        return dataclasses.replace(data, spec=spec)
    if source_kwargs:
        raise ValueError(f"Only the 'shapes' source takes extra keywords. Received: {sorted(source_kwargs)}")
    if masks:
        raise DataError(f"Only the 'shapes' source has masks; {spec!r} has boxes only.")
    options = {"image_size": image_size, "seed": seed, "val_fraction": val_fraction, "max_boxes": max_boxes}
    name = spec.removeprefix("tfds:")
    if spec.startswith("tfds:") and (name.startswith("voc/") or name in ("coco/2014", "coco/2017")):
        return _tfds_detection(spec, data_dir=data_dir, **options)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return _folder_detection(spec, **options)
    raise DataError(f"Unknown detection source {spec!r}; use {_ACCEPTED}.")


def _image(image: tf.Tensor, image_size) -> tf.Tensor:
    """A decoded image as float32 RGB in [0, 1], stretched to `image_size`."""
    image = tf.image.convert_image_dtype(image, tf.float32)
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    image = tf.image.resize(image, image_size)
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), (*image_size, 3))


def _targets(boxes: tf.Tensor, classes: tf.Tensor, max_boxes: int) -> dict[str, tf.Tensor]:
    """Boxes (n, 4) rel_xyxy and classes (n,) clipped, filtered and padded to `max_boxes` rows."""
    boxes = tf.clip_by_value(tf.cast(boxes, tf.float32), 0.0, 1.0)
    keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
    boxes = tf.boolean_mask(boxes, keep)[:max_boxes]
    classes = tf.cast(tf.boolean_mask(classes, keep)[:max_boxes], tf.int32)
    pad = max_boxes - tf.shape(classes)[0]
    return {
        "boxes": tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (max_boxes, 4)),
        "classes": tf.ensure_shape(tf.pad(classes, [[0, pad]], constant_values=-1), (max_boxes,)),
    }


def _tfds_detection(spec: str, *, data_dir, image_size, seed: int, val_fraction: float, max_boxes: int) -> Data:
    import tensorflow_datasets as tfds

    name = spec.removeprefix("tfds:")
    if name.startswith("coco/"):
        kept = 100 - round(val_fraction * 100)
        splits = {"train": f"train[:{kept}%]", "val": f"train[{kept}%:]", "test": "validation"}
        ignored = "is_crowd"
    else:
        splits = {"train": "train", "val": "validation", "test": "test"}
        ignored = "is_difficult"
    try:
        datasets, info = tfds.load(
            name, split=list(splits.values()), data_dir=data_dir, with_info=True, shuffle_files=False
        )
    except Exception as err:  # tfds raises many types for a missing or unknown dataset; all are the user's to fix
        where = f" in {data_dir!r}" if data_dir else ""
        raise DataError(
            f"tensorflow-datasets could not load {name!r}{where} ({type(err).__name__}: {str(err).splitlines()[0]})."
        ) from None

    def convert(example):
        objects = example["objects"]
        keep = tf.logical_not(objects[ignored])
        boxes = tf.gather(tf.boolean_mask(objects["bbox"], keep), [1, 0, 3, 2], axis=1)  # yxyx -> xyxy
        return _image(example["image"], image_size), _targets(boxes, tf.boolean_mask(objects["label"], keep), max_boxes)

    def size(split: str, ds: tf.data.Dataset) -> int:
        try:
            return int(info.splits[split].num_examples)
        except (KeyError, ValueError):  # splits unknown to the metadata (mocked data): count what tf.data knows
            n = int(ds.cardinality())
            return n if n >= 0 else -1

    train, val, test = (ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE) for ds in datasets)
    return Data(
        spec=spec,
        train=train,
        val=val,
        test=test,
        input_shape=(*image_size, 3),
        class_names=list(info.features["objects"]["label"].names),
        sizes={key: size(split, ds) for (key, split), ds in zip(splits.items(), datasets, strict=True)},
    )


def _folder_detection(spec: str, *, image_size, seed: int, val_fraction: float, max_boxes: int) -> Data:
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        parts, class_names = _voc_folder(root)
    elif sorted((root / "annotations").glob("instances_train*.json")) or (root / "annotations.json").is_file():
        parts, class_names = _coco_folder(root)
    else:
        raise DataError(
            f"The folder {str(root)!r} is in neither detection layout: VOC (Annotations/*.xml with JPEGImages/) or "
            "COCO (annotations/instances_train*.json with train*/, or annotations.json with images/)."
        )
    train, val, test = _splits(parts, val_fraction=val_fraction, seed=seed)
    return Data(
        spec=spec,
        train=_records_dataset(train, image_size=image_size, max_boxes=max_boxes),
        val=_records_dataset(val, image_size=image_size, max_boxes=max_boxes),
        test=_records_dataset(test, image_size=image_size, max_boxes=max_boxes),
        input_shape=(*image_size, 3),
        class_names=class_names,
        sizes={"train": len(train), "val": len(val), "test": len(test)},
    )


def _splits(parts: dict[str, list], *, val_fraction: float, seed: int) -> tuple[list, list, list]:
    """Train, val and test from the given parts; a missing val or test part is carved from train by the seed."""
    train = parts["train"]
    n = len(train)
    wanted = (("val", val_fraction), ("test", TEST_FRACTION))
    fractions = [0.0 if key in parts else fraction for key, fraction in wanted]
    counts = [round(fraction * n) for fraction in fractions]
    if n >= 3:  # tiny sets still get one example in each carved split
        counts = [max(count, 1) if fraction else 0 for count, fraction in zip(counts, fractions, strict=True)]
    order = np.random.default_rng(seed).permutation(n)
    val_at, test_at = order[: counts[0]], order[counts[0] : counts[0] + counts[1]]
    rest = np.sort(order[counts[0] + counts[1] :])
    carved_val, carved_test = ([train[i] for i in np.sort(at)] for at in (val_at, test_at))
    return [train[i] for i in rest], parts.get("val", carved_val), parts.get("test", carved_test)


def _image_file_size(image: Path, annotation: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header."""
    from PIL import Image, UnidentifiedImageError

    if not image.is_file():
        raise DataError(f"The annotation {str(annotation)!r} names the image {str(image)!r}, which does not exist.")
    if image.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(f"The image {str(image)!r} is not one of the readable kinds ({', '.join(IMAGE_SUFFIXES)}).")
    try:
        with Image.open(image) as opened:
            return opened.size
    except (OSError, UnidentifiedImageError):
        raise DataError(f"The file {str(image)!r} named in {str(annotation)!r} is not a readable image.") from None


def _record(image: Path, annotation: Path, size, boxes: list, classes: list) -> Record:
    """A record with pixel boxes [x1, y1, x2, y2] divided by the image's size, checked against the file."""
    actual = _image_file_size(image, annotation)
    if size is not None and all(size) and tuple(size) != actual:  # a size of 0 means "not given" in some sets
        raise DataError(
            f"The annotation {str(annotation)!r} gives {str(image)!r} a size of {size[0]:g}x{size[1]:g} pixels "
            f"but the image is {actual[0]}x{actual[1]}."
        )
    width, height = actual
    boxes = np.asarray(boxes, dtype="float64").reshape(-1, 4) / [width, height, width, height]
    return str(image), boxes.astype("float32"), np.asarray(classes, dtype="int32")


def _number(element: ET.Element, path: str, annotation: Path) -> float:
    text = element.findtext(path)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"The annotation {str(annotation)!r} has no number in <{path}> (found {text!r}).") from None


def _voc_folder(root: Path) -> tuple[dict[str, list[Record]], list[str]]:
    xml_files = sorted((root / "Annotations").glob("*.xml"))
    if not xml_files:
        raise DataError(f"The folder {str(root / 'Annotations')!r} has no .xml annotations.")
    parsed = {}
    for path in xml_files:
        try:
            node = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise DataError(f"The annotation {str(path)!r} is not well-formed XML ({err}).") from None
        objects = []
        for obj in node.findall("object"):
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise DataError(f"The annotation {str(path)!r} has an <object> without a <name>.")
            box = [_number(obj, f"bndbox/{key}", path) for key in ("xmin", "ymin", "xmax", "ymax")]
            objects.append((name, box, (obj.findtext("difficult") or "0").strip() == "1"))
        size = node.find("size")
        size = (_number(size, "width", path), _number(size, "height", path)) if size is not None else None
        filename = (node.findtext("filename") or "").strip() or f"{path.stem}.jpg"
        parsed[path.stem] = (path, root / "JPEGImages" / filename, size, objects)

    classes_file = root / "classes.txt"
    if classes_file.is_file():
        class_names = [line.strip() for line in classes_file.read_text().splitlines() if line.strip()]
    else:
        class_names = sorted({name for *_, objects in parsed.values() for name, _, _ in objects})
    index = {name: i for i, name in enumerate(class_names)}
    records = {}
    for stem, (path, image, size, objects) in parsed.items():
        unknown = sorted({name for name, _, _ in objects if name not in index})
        if unknown:
            raise DataError(f"The annotation {str(path)!r} names classes not in {str(classes_file)!r}: {unknown}.")
        kept = [(index[name], box) for name, box, difficult in objects if not difficult]
        records[stem] = _record(image, path, size, [box for _, box in kept], [c for c, _ in kept])

    parts = {}
    for split in ("train", "val", "test"):
        listing = root / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            stems = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
            missing = [stem for stem in stems if stem not in records]
            if missing:
                raise DataError(f"The split list {str(listing)!r} names {missing[0]!r}, which has no annotation.")
            parts[split] = [records[stem] for stem in stems]
    if "train" not in parts:
        parts = {"train": list(records.values())}
    return parts, class_names


def _coco_folder(root: Path) -> tuple[dict[str, list[Record]], list[str]]:
    if (root / "annotations.json").is_file():
        files = {"train": (root / "annotations.json", root / "images")}
    else:
        files = {}
        for split in ("train", "val", "test"):
            found = sorted((root / "annotations").glob(f"instances_{split}*.json"))
            if len(found) > 1:
                folder = str(root / "annotations")
                raise DataError(f"The folder {folder!r} has {len(found)} instances_{split}*.json files, not one.")
            if found:
                files[split] = (found[0], root / found[0].stem.removeprefix("instances_"))
        if "val" in files and "test" not in files:
            files["test"] = files.pop("val")  # as for tfds COCO: the labelled val set is the test set
    documents = {split: _read_json(path) for split, (path, _) in files.items()}
    categories = _field(documents["train"], "categories", files["train"][0])
    try:
        ids = sorted(int(c["id"]) for c in categories)
        names = {int(c["id"]): str(c["name"]) for c in categories}
    except (KeyError, TypeError, ValueError):
        raise DataError(f"The annotation file {str(files['train'][0])!r} has malformed categories.") from None
    index = {category: i for i, category in enumerate(ids)}
    parts = {split: _coco_records(documents[split], path, images, index) for split, (path, images) in files.items()}
    return parts, [names[category] for category in ids]


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"The annotation file {str(path)!r} is not readable JSON ({err}).") from None
    if not isinstance(document, dict):
        raise DataError(f"The annotation file {str(path)!r} is not a COCO JSON object.")
    return document


def _field(document: dict, key: str, path: Path) -> list:
    value = document.get(key)
    if not isinstance(value, list):
        raise DataError(f"The annotation file {str(path)!r} has no {key!r} list.")
    return value


def _coco_records(document: dict, path: Path, folder: Path, index: dict[int, int]) -> list[Record]:
    if not folder.is_dir():
        raise DataError(f"The image folder {str(folder)!r} of {str(path)!r} does not exist.")
    try:
        images = {int(image["id"]): image for image in _field(document, "images", path)}
        objects = {image_id: [] for image_id in images}
        for annotation in document.get("annotations", []):
            image_id, category = int(annotation["image_id"]), int(annotation["category_id"])
            if image_id not in images:
                raise DataError(f"The annotation file {str(path)!r} annotates an unlisted image id {image_id}.")
            if category not in index:
                raise DataError(f"The annotation file {str(path)!r} uses the unknown category id {category}.")
            if not annotation.get("iscrowd", 0):
                x, y, w, h = (float(v) for v in annotation["bbox"])
                objects[image_id].append(([x, y, x + w, y + h], index[category]))
        records = []
        for image_id, image in images.items():
            size = (float(image["width"]), float(image["height"])) if "width" in image and "height" in image else None
            kept = objects[image_id]
            records.append(_record(folder / image["file_name"], path, size, [b for b, _ in kept], [c for _, c in kept]))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"The annotation file {str(path)!r} is malformed ({type(err).__name__}: {err}).") from None
    return records


def _records_dataset(records: list[Record], *, image_size, max_boxes: int) -> tf.data.Dataset:
    """An unbatched dataset decoding each record's image file and padding its targets."""
    lengths = np.asarray([len(classes) for _, _, classes in records], dtype="int64")
    boxes = np.concatenate([np.zeros((0, 4), "float32")] + [b for _, b, _ in records])
    classes = np.concatenate([np.zeros((0,), "int32")] + [c for _, _, c in records])
    ds = tf.data.Dataset.from_tensor_slices(
        (
            np.asarray([path for path, _, _ in records], dtype=str),
            tf.RaggedTensor.from_row_lengths(boxes, lengths),
            tf.RaggedTensor.from_row_lengths(classes, lengths),
        )
    )

    def decode(path, boxes, classes):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return _image(image, image_size), _targets(boxes, classes, max_boxes)

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
