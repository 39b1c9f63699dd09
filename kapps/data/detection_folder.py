"""`folder:PATH` for detection: image folders annotated in the VOC XML or the COCO JSON layout.

The layouts, splits and classes are described in `kapps.data.load_detection`, the one entry point. Every
annotated image size is checked against the image file's own size; VOC's "difficult" objects and COCO's crowd
regions are left out of the targets. With `masks=True` (the COCO layout only) each object's "segmentation", a
polygon list or an RLE (uncompressed or compressed), is decoded by pycocotools at the image's size and resized with
the image (bilinear, then 0.5), into the targets' "masks" (max_boxes, H, W) uint8.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from kapps.data.base import Data, detection_image, detection_targets
from kapps.data.folder import IMAGE_SUFFIXES
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

TEST_FRACTION = 0.2  # the share of a folder's train part carved out for test when it lists no test split

# One record per image: (image file, boxes (n, 4) rel_xyxy before clipping, class indices (n,), and the objects'
# COCO segmentations as JSON text, "" without them).
Record = tuple[str, np.ndarray, np.ndarray, str]


def load_detection_folder(
    spec: str, *, image_size, seed: int, val_fraction: float, max_boxes: int, masks: bool = False
) -> Data:
    """Load `folder:PATH` in the VOC XML or the COCO JSON layout (see `kapps.data.load_detection`) as a `Data`;
    `masks` adds the COCO layout's instance masks to the targets."""
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    if (root / "Annotations").is_dir() and (root / "JPEGImages").is_dir():
        if masks:
            raise DataError(f"The folder {str(root)!r} is in the VOC layout, which has boxes only; masks need COCO's.")
        parts, class_names = _voc_folder(root)
    elif sorted((root / "annotations").glob("instances_train*.json")) or (root / "annotations.json").is_file():
        parts, class_names = _coco_folder(root)
    else:
        raise DataError(
            f"The folder {str(root)!r} is in neither detection layout: VOC (Annotations/*.xml with JPEGImages/) or "
            "COCO (annotations/instances_train*.json with train*/, or annotations.json with images/)."
        )
    train, val, test = carve_splits(parts, val_fraction=val_fraction, seed=seed)
    options = {"image_size": image_size, "max_boxes": max_boxes, "masks": masks}
    return Data(
        spec=spec,
        train=_records_dataset(train, **options),
        val=_records_dataset(val, **options),
        test=_records_dataset(test, **options),
        input_shape=(*image_size, 3),
        class_names=class_names,
        sizes={"train": len(train), "val": len(val), "test": len(test)},
        worker_train=lambda count, index: _records_dataset(train[index::count], **options),
    )


def carve_splits(parts: dict[str, list], *, val_fraction: float, seed: int) -> tuple[list, list, list]:
    """Train, val and test from the given parts; a missing val or test part is carved from train by the seed
    (`val_fraction` of it for val, `TEST_FRACTION` for test, at least one example each once train has three)."""
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


def image_file_size(image: Path, annotation: Path) -> tuple[int, int]:
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


def _record(
    image: Path, annotation: Path, size, boxes: list, classes: list, segmentations: list | None = None
) -> Record:
    """A record with pixel boxes [x1, y1, x2, y2] divided by the image's size, checked against the file."""
    actual = image_file_size(image, annotation)
    if size is not None and all(size) and tuple(size) != actual:  # a size of 0 means "not given" in some sets
        raise DataError(
            f"The annotation {str(annotation)!r} gives {str(image)!r} a size of {size[0]:g}x{size[1]:g} pixels "
            f"but the image is {actual[0]}x{actual[1]}."
        )
    width, height = actual
    boxes = np.asarray(boxes, dtype="float64").reshape(-1, 4) / [width, height, width, height]
    shapes = "" if segmentations is None else json.dumps(segmentations)
    return str(image), boxes.astype("float32"), np.asarray(classes, dtype="int32"), shapes


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
                shape = annotation.get("segmentation")
                objects[image_id].append(([x, y, x + w, y + h], index[category], shape))
        records = []
        for image_id, image in images.items():
            size = (float(image["width"]), float(image["height"])) if "width" in image and "height" in image else None
            kept = objects[image_id]
            boxes, classes, shapes = [b for b, _, _ in kept], [c for _, c, _ in kept], [s for _, _, s in kept]
            records.append(_record(folder / image["file_name"], path, size, boxes, classes, shapes))
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"The annotation file {str(path)!r} is malformed ({type(err).__name__}: {err}).") from None
    return records


def _records_dataset(records: list[Record], *, image_size, max_boxes: int, masks: bool = False) -> tf.data.Dataset:
    """An unbatched dataset decoding each record's image file (and, with `masks`, its objects' masks) and padding
    its targets."""
    if masks:
        for image, _, _, shapes in records:
            if any(shape is None for shape in json.loads(shapes or "[]")):
                raise DataError(f"An object of the image {image!r} has no 'segmentation', which masks need.")
    lengths = np.asarray([len(record[2]) for record in records], dtype="int64")
    boxes = np.concatenate([np.zeros((0, 4), "float32")] + [record[1] for record in records])
    classes = np.concatenate([np.zeros((0,), "int32")] + [record[2] for record in records])
    ds = tf.data.Dataset.from_tensor_slices(
        (
            np.asarray([record[0] for record in records], dtype=str),
            tf.RaggedTensor.from_row_lengths(boxes, lengths),
            tf.RaggedTensor.from_row_lengths(classes, lengths),
            np.asarray([record[3] for record in records], dtype=object).astype(bytes),
        )
    )

    def decode(path, boxes, classes, shapes):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        object_masks = None
        if masks:
            object_masks = tf.numpy_function(_decode_masks, [shapes, tf.shape(image)[:2]], tf.uint8, stateful=False)
            object_masks = tf.ensure_shape(object_masks, (None, None, None))
            resized = tf.image.resize(tf.cast(object_masks[..., None], tf.float32), image_size)[..., 0]
            object_masks = tf.cast(resized >= 0.5, tf.uint8)
        targets = detection_targets(boxes, classes, max_boxes=max_boxes, masks=object_masks)
        return detection_image(image, image_size=image_size), targets

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _decode_masks(shapes: bytes, size: np.ndarray) -> np.ndarray:
    """The objects' COCO segmentations (JSON text of a list of polygon lists or RLEs) as `(n, height, width)` uint8."""
    from pycocotools import mask as mask_utils

    height, width = (int(v) for v in size)
    decoded = []
    for shape in json.loads(shapes.decode() or "[]"):
        if isinstance(shape, list):  # polygons: one or more [x1, y1, x2, y2, ...]
            rle = mask_utils.merge(mask_utils.frPyObjects(shape, height, width))
        elif isinstance(shape.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(shape, height, width)
        else:  # compressed RLE
            rle = {"size": shape["size"], "counts": shape["counts"].encode("ascii")}
        decoded.append(mask_utils.decode(rle))
    return np.stack(decoded).astype(np.uint8) if decoded else np.zeros((0, height, width), np.uint8)
