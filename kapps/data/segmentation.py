"""Semantic segmentation data: one entry point, `load_segmentation`, for the synthetic shapes, tensorflow-datasets'
Oxford-IIIT Pet and folders of images with masks.

Every source gives unbatched `(image, mask)` examples: image float32 (H, W, 3) in [0, 1] stretched bilinearly to
`image_size` (grey images repeated to RGB), mask int32 (H, W) of class indices stretched by nearest neighbour, with
`IGNORE_LABEL` (255) on pixels that no loss or metric should count. `Data.class_names` names the indices; index 0 is
the background wherever the source has one.

    >>> data = kapps.data.load_segmentation("shapes", image_size=(128, 128))
    >>> image, mask = next(iter(data.train))  # (128, 128, 3) float32, (128, 128) int32 in 0..4

`load_segmentation_instances` gives the same examples with each object's own label as a third element, for the
losses that need to know where one object ends and the next begins (U-Net's border weights, Ronneberger et al.
2015, eq. 2): the shapes scenes, VOC's `SegmentationObject` and CVPPP's `*_label.png` have them.
"""

from __future__ import annotations

import dataclasses

from kapps.data.base import Data
from kapps.data.detection_folder import TEST_FRACTION
from kapps.data.scenes import SHAPE_CLASSES, load_shapes
from kapps.data.segmentation_folder import IGNORE_LABEL, VOC_CLASSES, load_segmentation_folder, segmentation_example
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

SEGMENTATION_SOURCES = ("shapes", "tfds:oxford_iiit_pet", "folder:PATH")
_ACCEPTED = "'shapes', 'tfds:oxford_iiit_pet' or 'folder:PATH'"

# Oxford-IIIT Pet's trimap values (Parkhi et al. 2012): 1 pet, 2 background, 3 the unclassified border between them.
PET_CLASSES = ("background", "pet")
_PET_TRIMAP = {1: 1, 2: 0}  # every other value, the border 3 included, becomes IGNORE_LABEL


def load_segmentation(
    spec: str,
    *,
    image_size,
    seed: int = 0,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    **source_kwargs,
) -> Data:
    """Load the segmentation source `spec` as three splits of `(image, mask)` examples.

    Sources:
        `"shapes"`: the embedded synthetic scenes (`kapps.data.scenes.load_shapes`, which receives
        `source_kwargs`, for example `sizes` or `max_objects`); class 0 is the background and 1..4 the shapes of
        `SHAPE_CLASSES` (circle, square, triangle, cross). No pixel is ignored.

        `"tfds:oxford_iiit_pet"`: the Oxford-IIIT Pet trimaps (Parkhi et al. 2012) from tensorflow-datasets, as
        two classes: trimap 2 -> 0 "background", 1 -> 1 "pet", and the border 3 -> `IGNORE_LABEL`. The border is
        ignored rather than made a third class because it is not a kind of thing but the band the annotators left
        unclassified (fur, blur, mixed pixels): as a class it would reward drawing outlines, and any metric would
        count a band whose truth nobody knows. Its train split minus the last `val_fraction` (held out for
        validation) and its test split.

        `"tfds:voc/2012"` (or any `tfds:voc/...`) is refused: tensorflow-datasets' `voc` builder has boxes and
        image labels but no segmentation masks. Download VOC2012 and load its `VOC2012/` folder as `folder:PATH`.

        `"folder:PATH"`, in one of two layouts, chosen by what PATH holds:

        * VOC: class-index masks `PATH/SegmentationClass/*.png` (or `PATH/masks/*.png`), each with the image of
          the same stem in `PATH/JPEGImages/` (or `PATH/images/`; any of .jpg, .png, .jpeg, .bmp, .gif). A mask's
          pixels are class indices: a palette ("P") PNG's palette indices, as VOC's are (not its colours), or a
          greyscale ("L") PNG's values; 255 is `IGNORE_LABEL` (VOC's object borders). Splits from
          `PATH/ImageSets/Segmentation/{train,val,test}.txt` (one stem a line): as VOC2012 publishes no test
          masks, a val list without a test list is the test split, and validation is carved from train by the
          seed (`val_fraction`); a missing test list is carved the same way (20% of train); without a train list
          all masks are split that way. Classes: the lines of `PATH/classes.txt` (line k names index k) if present;
          otherwise VOC's 21 names (`VOC_CLASSES`, background first) when the largest index used is 20; otherwise
          "background", "class_1", ..., "class_K" up to the largest index used.
        * CVPPP (Scharr et al. 2016): `*_rgb.png` images anywhere under PATH, each with its `*_fg.png`
          foreground mask beside it; two classes, 0 "background" and 1 "plant" (a mask pixel that is not black).
          Split by the seed as above.

        Every mask's size is checked against its image's when the source is loaded.

    Args:
        spec: the source, one of the above.
        image_size: (height, width) every image and mask is resized to (a stretch; masks by nearest neighbour).
        seed: seed of the splits a source does not define itself.
        data_dir: tensorflow-datasets' data folder, for offline copies.
        val_fraction: share of the training data held out for validation where the source has no such split.
        **source_kwargs: further keywords of the shapes source.

    Returns:
        The `Data`, with `class_names`, `sizes` (from the dataset's metadata or counted; -1 where unknown),
        `input_shape` (*image_size, 3) and `spec`.

    Raises:
        DataError: an unknown source, a missing or malformed folder, or a dataset tensorflow-datasets cannot load.
        ValueError: `image_size` or `val_fraction` out of range, or keywords for a source other than shapes.
    """
    return _load(
        spec,
        image_size=image_size,
        seed=seed,
        data_dir=data_dir,
        val_fraction=val_fraction,
        instances=False,
        **source_kwargs,
    )


def load_segmentation_instances(
    spec: str,
    *,
    image_size,
    seed: int = 0,
    data_dir: str | None = None,
    val_fraction: float = 0.1,
    **source_kwargs,
) -> Data:
    """`load_segmentation`'s examples with the objects' instance labels: `(image, mask, instances)`.

    `instances` is int32 (H, W) at `image_size` (stretched by nearest neighbour, as the mask): 0 on the background
    and k > 0 on the pixels of the k-th object, from the same annotation as the mask, so an object's pixels carry
    one class in the mask. Splits, sizes and class names are `load_segmentation`'s for the same arguments.

    Sources:
        `"shapes"`: the renderer's instance map (object k of the scene, in drawing order, is k + 1).

        `"folder:PATH"`, VOC layout: `PATH/SegmentationObject/<stem>.png` beside each `SegmentationClass` mask
        (`PATH/instances/<stem>.png` beside `masks/`): palette or greyscale PNGs whose indices number the objects;
        VOC's 255 (the void band around objects) becomes 0, as the class mask already ignores those pixels.

        `"folder:PATH"`, CVPPP layout: `<plant>_label.png` beside each `<plant>_rgb.png`, one index a leaf.

        `"tfds:oxford_iiit_pet"` is refused: its trimaps mark one pet and its background, not separate objects.

    Args:
        spec, image_size, seed, data_dir, val_fraction, **source_kwargs: as `load_segmentation`.

    Returns:
        The `Data`, its splits of unbatched `(image, mask, instances)`.

    Raises:
        DataError: as `load_segmentation`, and a source or folder without instance labels.
        ValueError: as `load_segmentation`.
    """
    return _load(
        spec,
        image_size=image_size,
        seed=seed,
        data_dir=data_dir,
        val_fraction=val_fraction,
        instances=True,
        **source_kwargs,
    )


def _load(spec: str, *, image_size, seed: int, data_dir, val_fraction: float, instances: bool, **source_kwargs):
    if not isinstance(spec, str) or not spec:
        raise DataError(f"A segmentation source must be one of {_ACCEPTED}, not {spec!r}.")
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
        raise ValueError(f"image_size must be two positive integers (height, width). Received: {image_size!r}")
    if not 0 < val_fraction < 1 - TEST_FRACTION:
        raise ValueError(f"val_fraction must be in (0, {1 - TEST_FRACTION}). Received: val_fraction={val_fraction!r}")
    if spec == "shapes":
        return _shapes(image_size=size, seed=seed, instances=instances, **source_kwargs)
    if source_kwargs:
        raise ValueError(f"Only the 'shapes' source takes extra keywords. Received: {sorted(source_kwargs)}")
    name = spec.removeprefix("tfds:")
    if spec.startswith("tfds:") and (name == "voc" or name.startswith("voc/")):
        raise DataError(
            f"tensorflow-datasets' 'voc' builder has boxes and image labels but no segmentation masks, so {spec!r} "
            "cannot be loaded for segmentation; download VOC2012 and load its VOC2012 folder as 'folder:PATH'."
        )
    if spec.startswith("tfds:") and (name == "oxford_iiit_pet" or name.startswith("oxford_iiit_pet:")):
        if instances:
            raise DataError(
                f"{spec!r} has no instance labels: its trimaps mark one pet and its background, not separate objects."
            )
        return _pets(spec, image_size=size, data_dir=data_dir, val_fraction=val_fraction)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        return load_segmentation_folder(
            spec, image_size=size, seed=seed, val_fraction=val_fraction, instances=instances
        )
    raise DataError(f"Unknown segmentation source {spec!r}; use {_ACCEPTED}.")


def _shapes(*, image_size, seed: int, instances: bool, **source_kwargs) -> Data:
    """The shapes scenes with their semantic masks as the targets (and their instance maps with `instances`)."""
    if "masks" in source_kwargs:
        raise ValueError("The 'shapes' segmentation source makes its masks itself. Received: masks")
    data = load_shapes(image_size=image_size, seed=seed, masks=True, **source_kwargs)

    def semantic(image, targets):
        return image, targets["semantic"]

    def with_instances(image, targets):
        # the rows of "masks" are the objects' disjoint visible pixels: row k is object k + 1 of the id map
        masks = tf.cast(targets["masks"], tf.int32)  # (max_boxes, H, W)
        ids = tf.range(1, tf.shape(masks)[0] + 1)[:, None, None]
        return image, targets["semantic"], tf.reduce_sum(masks * ids, axis=0)

    convert = with_instances if instances else semantic
    splits = {name: getattr(data, name).map(convert) for name in ("train", "val", "test")}
    return dataclasses.replace(data, spec="shapes", **splits, class_names=["background", *SHAPE_CLASSES])


def _pets(spec: str, *, image_size, data_dir: str | None, val_fraction: float) -> Data:
    import tensorflow_datasets as tfds

    name = spec.removeprefix("tfds:")
    kept = 100 - round(val_fraction * 100)
    splits = {"train": f"train[:{kept}%]", "val": f"train[{kept}%:]", "test": "test"}
    try:
        datasets = tfds.load(name, split=list(splits.values()), data_dir=data_dir, shuffle_files=False)
    except Exception as err:  # tfds raises many types for a missing or unknown dataset; all are the user's to fix
        where = f" in {data_dir!r}" if data_dir else ""
        raise DataError(
            f"tensorflow-datasets could not load {name!r}{where} ({type(err).__name__}: {str(err).splitlines()[0]})."
        ) from None
    lookup = np.full(256, IGNORE_LABEL, np.int32)
    for trimap, label in _PET_TRIMAP.items():
        lookup[trimap] = label
    table = tf.constant(lookup)

    def convert(example):
        mask = tf.gather(table, tf.cast(example["segmentation_mask"], tf.int32))
        return segmentation_example(example["image"], mask, image_size=image_size)

    def size(ds: tf.data.Dataset) -> int:
        n = int(ds.cardinality())
        return n if n >= 0 else -1

    train, val, test = (ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE) for ds in datasets)
    return Data(
        spec=spec,
        train=train,
        val=val,
        test=test,
        input_shape=(*image_size, 3),
        class_names=list(PET_CLASSES),
        sizes={key: size(ds) for key, ds in zip(splits, datasets, strict=True)},
    )


__all__ = [
    "IGNORE_LABEL",
    "PET_CLASSES",
    "SEGMENTATION_SOURCES",
    "VOC_CLASSES",
    "load_segmentation",
    "load_segmentation_instances",
]
