"""Point data: one entry point, `load_keypoints`, for the synthetic wheat images, the keypoints of the synthetic
shapes, and folders of images annotated with points, for heatmap regression (stacked hourglass networks, Newell et
al. 2016) and counting.

Every source gives unbatched `(image, targets)` examples: image (H, W, 3) stretched to `image_size`, uint8 from the
embedded sources (`kapps.data.pipeline` keeps them 8-bit until it batches them, then scales them to [0, 1]) and float32
in [0, 1] from folders; targets `{"points": float32 (max_points, 2), "types": int32 (max_points,)}`. A point is relative
[x, y]: its pixel coordinate divided by the image's width and height, where (0, 0) is the top-left corner of the image
and the centre of pixel (row i, column j) is at ((j + 0.5) / W, (i + 0.5) / H); stretching an image leaves its relative
points where they are. A type indexes `Data.class_names`, the point type names, one heatmap each. Padding rows have
points -1 and type -1 (as detection's padding classes are -1).

Sources:
    `"wheat"`: the embedded wheat images (`kapps.data.wheat`): types spike_tip, spike_base, spikelet; every ear
    has its tip and base in view, and the spikelets seen are annotated.

    `"shapes"`: the embedded shapes scenes (`kapps.data.scenes`, the very images `load_detection("shapes")` gives
    for a seed) with their keypoints: types centre and corner. Every object has a centre; squares have 4 corners,
    triangles 3, crosses the 12 corners of their outline (8 at the arm ends, 4 where the arms meet), circles none.
    Corners are exact, computed from each shape's rendering parameters (`kapps.data.raster.shape_corners`). A
    point is kept when it is in the image and seen: a centre when its pixel shows the object, a corner when at
    least half of the object's own pixels within 2.5 pixels of it show the object.

    `"folder:PATH"`, images with one annotation file each, side by side::

        PATH/
          plant_001.png             an image (.png, .jpg, .jpeg, .bmp or .gif)
          plant_001.json            {"points": [{"type": "spikelet", "x": 123.5, "y": 40.0}, ...]}
          plant_002.jpg
          plant_002.csv             a header "type,x,y", then one point a line: spikelet,123.5,40.0
          point_types.txt           optional: the type names, one a line, in the order of their ids
          splits/train.txt          optional: image stems (file names without suffix), one a line;
          splits/val.txt              also val.txt and test.txt; a missing val or test list is carved
          splits/test.txt             from train by the seed (`val_fraction`, and 20% for test), and
                                      without train.txt all images are split that way

    Coordinates are in pixels of the original image, in the continuous convention above (x from 0 at the left
    edge to the width at the right edge); a JSON file may also give "width" and "height", which are checked
    against the image. Without `point_types.txt` the types are the sorted set of the names found. An image with
    no points has an empty list (or a CSV with the header only).

    >>> data = kapps.data.load_keypoints("wheat", image_size=(256, 256), seed=0)
    >>> image, targets = next(iter(data.train))  # targets["points"][targets["types"] == 2]: the spikelets
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from kapps.data.base import Data, check_seed, check_sizes, detection_image, point_targets, points_dataset
from kapps.data.detection_folder import TEST_FRACTION, carve_splits, image_file_size
from kapps.data.folder import IMAGE_SUFFIXES
from kapps.data.raster import shape_corners, shape_mask
from kapps.data.scenes import SHAPE_CLASSES, render_scene
from kapps.data.wheat import load_wheat
from kapps.errors import DataError

import numpy as np
import tensorflow as tf

KEYPOINT_SOURCES = ("wheat", "shapes", "folder:PATH")
SHAPE_POINT_TYPES = ("centre", "corner")
_ACCEPTED = "'wheat', 'shapes' or 'folder:PATH'"
_SPLITS = ("train", "val", "test")
_CORNER_REACH = 2.5  # pixels around a corner whose visibility decides whether the corner is seen


def load_keypoints(
    spec: str,
    *,
    image_size=(256, 256),
    seed: int = 0,
    max_points: int | None = None,
    val_fraction: float = 0.1,
    **source_kwargs,
) -> Data:
    """Load the point source `spec` as three splits of `(image, {"points", "types"})` examples (see the module).

    Args:
        spec: `"wheat"`, `"shapes"` or `"folder:PATH"`.
        image_size: (height, width) every image is drawn at or resized to.
        seed: seed of the embedded sources and of the splits a folder does not list.
        max_points: rows of the padded targets; points past it are dropped. By default the most an image of the
            source can have (wheat: `max_spikes * (2 + most spikelets)`; shapes: 13 per object) or, for a
            folder, the most points of any of its images.
        val_fraction: share of a folder's images held out for validation when it lists no val split.
        **source_kwargs: further keywords of the embedded sources: `sizes`, and for wheat `max_spikes` and
            `spikelets` (`kapps.data.wheat.load_wheat`), for shapes `max_objects`, `object_size`, `grid` and
            `min_visible` (`kapps.data.scenes.load_shapes`).

    Returns:
        The `Data`, whose `class_names` are the point type names.
    """
    if not isinstance(spec, str) or not spec:
        raise DataError(f"A point source must be one of {_ACCEPTED}, not {spec!r}.")
    image_size = tuple(image_size)
    if len(image_size) != 2 or not all(isinstance(n, int) and n > 0 for n in image_size):
        raise ValueError(f"image_size must be two positive integers (height, width). Received: {image_size!r}")
    if max_points is not None and (not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1):
        raise ValueError(f"max_points must be a positive integer or None. Received: max_points={max_points!r}")
    if spec == "wheat":
        return load_wheat(image_size=image_size, seed=seed, max_points=max_points, **source_kwargs)
    if spec == "shapes":
        return load_shape_keypoints(image_size=image_size, seed=seed, max_points=max_points, **source_kwargs)
    if spec.startswith("folder:") and len(spec) > len("folder:"):
        if source_kwargs:
            raise ValueError(f"Only the embedded sources take extra keywords. Received: {sorted(source_kwargs)}")
        if not 0 < val_fraction < 1 - TEST_FRACTION:
            raise ValueError(f"val_fraction must be in (0, {1 - TEST_FRACTION}). Received: {val_fraction!r}")
        return load_points_folder(spec, image_size=image_size, seed=seed, max_points=max_points,
                                  val_fraction=val_fraction)  # fmt: skip
    raise DataError(f"Unknown point source {spec!r}; use {_ACCEPTED}.")


def shape_points(scene: dict[str, np.ndarray], *, classes=SHAPE_CLASSES) -> dict[str, np.ndarray]:
    """The keypoints of a shapes scene (`kapps.data.scenes.render_scene`'s dict): each object's centre and
    corners that are in the image and seen (see the module).

    Args:
        scene: the scene, with its "classes", "masks" and "poses".
        classes: the class names the scene was drawn with (its class ids index them).

    Returns:
        {"points": float32 (n, 2) relative [x, y], "types": int32 (n,) indices of `SHAPE_POINT_TYPES`,
        "objects": int32 (n,) the object of each point}, object by object in drawing order, centre first.
    """
    height, width = scene["masks"].shape[1:]
    points, types, objects = [], [], []
    for k, (label, (cx, cy, radius, degrees)) in enumerate(zip(scene["classes"], scene["poses"], strict=True)):
        name, seen = classes[int(label)], scene["masks"][k].astype(bool)
        if _inside((cx, cy), width, height) and seen[int(cy), int(cx)]:
            points.append((cx, cy))
            types.append(0)
            objects.append(k)
        pose = {"centre": (cx, cy), "radius": radius, "degrees": int(degrees)}
        window, own = shape_mask(name, **pose, image_size=(height, width))
        rows, cols = np.nonzero(own)
        rows, cols = rows + window[0].start, cols + window[1].start
        for x, y in shape_corners(name, **pose):
            near = np.hypot(cols + 0.5 - x, rows + 0.5 - y) <= _CORNER_REACH
            if _inside((x, y), width, height) and near.any() and 2 * seen[rows[near], cols[near]].sum() >= near.sum():
                points.append((x, y))
                types.append(1)
                objects.append(k)
    scale = np.array([width, height], np.float64)
    return {
        "points": (np.array(points, np.float64).reshape(-1, 2) / scale).astype(np.float32),
        "types": np.array(types, np.int32),
        "objects": np.array(objects, np.int32),
    }


def load_shape_keypoints(
    *,
    image_size=(256, 256),
    seed: int = 0,
    sizes=(4000, 500, 500),
    max_points: int | None = None,
    max_objects: int = 6,
    **scene_options,
) -> Data:
    """The `shapes` point source: `load_shapes`' scenes for the same seed and options, with `shape_points` as
    targets; `max_points` defaults to 13 an object (a cross's centre and 12 corners)."""
    seed, sizes = check_seed(seed), check_sizes(sizes)
    options = {"image_size": image_size, "max_objects": max_objects, **scene_options}
    render_scene(np.random.default_rng(0), **options)  # checks the options once, before any split is drawn
    max_points = 13 * max_objects if max_points is None else max_points
    splits = {}
    for index, (name, count) in enumerate(zip(_SPLITS, sizes, strict=True)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))  # as load_shapes
        scenes = [render_scene(rng, **options) for _ in range(count)]
        targets = [shape_points(scene) for scene in scenes]
        splits[name] = points_dataset(
            [scene["image"] for scene in scenes],
            [t["points"] for t in targets],
            [t["types"] for t in targets],
            image_size=tuple(image_size),
            max_points=max_points,
        )
    return Data(
        spec="shapes",
        **splits,
        input_shape=(*image_size, 3),
        class_names=list(SHAPE_POINT_TYPES),
        sizes=dict(zip(_SPLITS, sizes, strict=True)),
    )


def load_points_folder(spec: str, *, image_size, seed: int, max_points: int | None, val_fraction: float) -> Data:
    """Load `folder:PATH`, images with one JSON or CSV file of points each (see the module), as a `Data`."""
    root = Path(spec.removeprefix("folder:")).expanduser()
    if not root.is_dir():
        raise DataError(f"The folder source {str(root)!r} does not exist or is not a folder.")
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"The folder {str(root)!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    stems = [image.stem for image in images]
    if len(set(stems)) != len(stems):
        twice = sorted({stem for stem in stems if stems.count(stem) > 1})[0]
        raise DataError(f"The folder {str(root)!r} has more than one image named {twice!r}; stems must be unique.")
    annotated = {image.stem: (image, _annotation_file(image)) for image in images}
    for orphan in sorted(set(root.glob("*.json")) | set(root.glob("*.csv"))):
        if orphan.stem not in annotated:
            raise DataError(f"The annotation {str(orphan)!r} has no image of the same name beside it.")
    named = {stem: _read_points(annotation, image) for stem, (image, annotation) in annotated.items()}

    types_file = root / "point_types.txt"
    if types_file.is_file():
        type_names = [line.strip() for line in types_file.read_text().splitlines() if line.strip()]
    else:
        type_names = sorted({kind for _, points in named.values() for kind, _, _ in points})
    if not type_names:
        raise DataError(f"The folder {str(root)!r} annotates no points and has no point_types.txt.")
    index = {name: i for i, name in enumerate(type_names)}
    records = {}
    for stem, (size, points) in named.items():
        unknown = sorted({kind for kind, _, _ in points if kind not in index})
        if unknown:
            where = str(annotated[stem][1])
            raise DataError(f"The points of {where!r} have types not in {str(types_file)!r}: {unknown}.")
        xy = np.array([(x, y) for _, x, y in points], np.float64).reshape(-1, 2) / np.array(size, np.float64)
        kinds = np.array([index[kind] for kind, _, _ in points], np.int32)
        records[stem] = (str(annotated[stem][0]), xy.astype(np.float32), kinds)

    parts = {"train": list(records.values())}
    listed = {split: root / "splits" / f"{split}.txt" for split in _SPLITS}
    if listed["train"].is_file():
        parts = {}
        for split, listing in listed.items():
            if listing.is_file():
                wanted = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
                missing = [stem for stem in wanted if stem not in records]
                if missing:
                    raise DataError(f"The split list {str(listing)!r} names {missing[0]!r}, which is not an image.")
                parts[split] = [records[stem] for stem in wanted]
    train, val, test = carve_splits(parts, val_fraction=val_fraction, seed=seed)
    if max_points is None:
        max_points = max([1] + [len(kinds) for _, _, kinds in records.values()])
    return Data(
        spec=spec,
        train=_records_dataset(train, image_size=image_size, max_points=max_points),
        val=_records_dataset(val, image_size=image_size, max_points=max_points),
        test=_records_dataset(test, image_size=image_size, max_points=max_points),
        input_shape=(*image_size, 3),
        class_names=type_names,
        sizes={"train": len(train), "val": len(val), "test": len(test)},
    )


def _inside(point, width: int, height: int) -> bool:
    return 0 <= point[0] < width and 0 <= point[1] < height


def _annotation_file(image: Path) -> Path:
    found = [path for path in (image.with_suffix(".json"), image.with_suffix(".csv")) if path.is_file()]
    if len(found) != 1:
        what = "has both" if found else "has neither"
        raise DataError(f"The image {str(image)!r} {what} {image.stem}.json and {image.stem}.csv beside it; give one.")
    return found[0]


def _read_points(annotation: Path, image: Path) -> tuple[tuple[int, int], list[tuple[str, float, float]]]:
    """The image's (width, height) and its points (type, x, y) in pixels, checked to lie in the image."""
    size = image_file_size(image, annotation)
    try:
        if annotation.suffix == ".json":
            document = json.loads(annotation.read_text())
            declared = (document.get("width"), document.get("height"))
            if declared != (None, None) and tuple(float(v) for v in declared) != tuple(map(float, size)):
                raise DataError(
                    f"The annotation {str(annotation)!r} gives a size of {declared[0]}x{declared[1]} pixels but the "
                    f"image {str(image)!r} is {size[0]}x{size[1]}."
                )
            rows = document["points"]
        else:
            with annotation.open(newline="") as file:
                reader = csv.DictReader(file)
                if [name.strip() for name in reader.fieldnames or []] != ["type", "x", "y"]:
                    raise DataError(f"The annotation {str(annotation)!r} does not start with the header 'type,x,y'.")
                rows = [{key.strip(): value for key, value in row.items()} for row in reader]
        points = [(str(row["type"]).strip(), float(row["x"]), float(row["y"])) for row in rows]
    except DataError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error, AttributeError, KeyError, TypeError,
            ValueError) as err:  # fmt: skip
        raise DataError(
            f"The annotation {str(annotation)!r} is not a list of points with a type, x and y "
            f"({type(err).__name__}: {err})."
        ) from None
    for kind, x, y in points:
        if not kind or not (0 <= x <= size[0] and 0 <= y <= size[1]):
            raise DataError(
                f"The annotation {str(annotation)!r} has the point ({kind!r}, {x:g}, {y:g}), which needs a type and "
                f"to lie in the {size[0]}x{size[1]} image."
            )
    return size, points


def _records_dataset(records: list, *, image_size, max_points: int) -> tf.data.Dataset:
    """An unbatched dataset decoding each record's image file and padding its points."""
    lengths = np.asarray([len(kinds) for _, _, kinds in records], dtype="int64")
    points = np.concatenate([np.zeros((0, 2), "float32")] + [xy for _, xy, _ in records])
    types = np.concatenate([np.zeros((0,), "int32")] + [kinds for _, _, kinds in records])
    ds = tf.data.Dataset.from_tensor_slices(
        (
            np.asarray([path for path, _, _ in records], dtype=str),
            tf.RaggedTensor.from_row_lengths(points, lengths),
            tf.RaggedTensor.from_row_lengths(types, lengths),
        )
    )

    def decode(path, points, types):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return detection_image(image, image_size=image_size), point_targets(points, types, max_points=max_points)

    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
