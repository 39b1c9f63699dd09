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

from kapps.data.base import Data, detection_image, detection_targets
from kapps.data.detection_folder import TEST_FRACTION, load_detection_folder
from kapps.data.scenes import load_shapes
from kapps.errors import DataError

import tensorflow as tf

DETECTION_SOURCES = ("shapes", "tfds:voc/2007", "tfds:voc/2012", "tfds:coco/2017", "tfds:coco/2014", "folder:PATH")
_ACCEPTED = "'shapes', 'tfds:voc/2007' (or another 'tfds:voc/...' config), 'tfds:coco/2017' or 'folder:PATH'"


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
        `source_kwargs`); with `masks=True`, instance masks and a semantic mask.

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
          the train file's categories sorted by id, mapped to 0..C-1. With `masks=True`, each object's
          "segmentation" (polygons, or an RLE uncompressed or compressed) becomes its instance mask.

        Every annotated image size is checked against the image file's own size.

    Args:
        spec: the source, one of the above.
        image_size: (height, width) every image is resized to (a stretch: boxes are normalised and stay valid).
        seed: seed of the splits a source does not define itself.
        data_dir: tensorflow-datasets' data folder, for offline copies.
        val_fraction: share of the training data held out for validation where the source has no such split.
        max_boxes: rows of the padded targets; objects past it are dropped.
        masks: add instance masks "masks" (max_boxes, H, W) uint8 to the targets, rows as the boxes' (the shapes
            source, which also adds a "semantic" mask, and COCO-layout folders).
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
        data = load_shapes(image_size=image_size, seed=seed, max_boxes=max_boxes, masks=masks, **source_kwargs)
        return dataclasses.replace(data, spec=spec)
    if source_kwargs:
        raise ValueError(f"Only the 'shapes' source takes extra keywords. Received: {sorted(source_kwargs)}")
    if masks and not spec.startswith("folder:"):
        raise DataError(f"Only the 'shapes' source and COCO-layout folders have masks; {spec!r} has boxes only.")
    options = {"image_size": image_size, "seed": seed, "val_fraction": val_fraction, "max_boxes": max_boxes}
    name = spec.removeprefix("tfds:")
    if spec.startswith("tfds:") and (name.startswith("voc/") or name in ("coco/2014", "coco/2017")):
        return _tfds_detection(spec, data_dir=data_dir, **options)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return load_detection_folder(spec, masks=masks, **options)
    raise DataError(f"Unknown detection source {spec!r}; use {_ACCEPTED}.")


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
        classes = tf.boolean_mask(objects["label"], keep)
        return detection_image(example["image"], image_size=image_size), detection_targets(
            boxes, classes, max_boxes=max_boxes
        )

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
