"""The embedded `shapes` source: deterministic synthetic scenes of simple shapes with boxes, classes, instance masks
and a semantic mask, so one source feeds detection, semantic and instance segmentation without a download.

Scenes are drawn with NumPy alone (the pixels come from `kapps.data.raster`), from a NumPy
`Generator(PCG64)` per split, with arithmetic and quantised trigonometry tables only: one seed gives bit-identical
scenes on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

from kapps.data.base import Data
from kapps.data.raster import SHAPES, mask_box, pattern, shape_mask

import numpy as np
import tensorflow as tf

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")

_SPLITS = ("train", "val", "test")


def render_scene(
    rng: np.random.Generator,
    *,
    image_size=(128, 128),
    max_objects: int = 6,
    classes: Sequence[str] = SHAPE_CLASSES,
    object_size=(0.15, 0.4),
    grid: int | None = 7,
    min_visible: float = 0.5,
) -> dict[str, np.ndarray]:
    """Draw one scene: a textured background with 1 to `max_objects` shapes of random class, size, colour and
    rotation, some of them striped or mottled, overlapping one another and the image border a little.

    Every labelled object stays recognisable: a shape that would hide more than `1 - min_visible` of an earlier
    one is not placed (another is tried instead), so no unlabelled fragment is ever left in the image. Each box is
    the tight box of the object's visible pixels.

    Args:
        rng: the random generator; the scene depends on nothing else.
        image_size: (height, width) in pixels.
        max_objects: most objects in a scene; the number is drawn uniformly from 1..max_objects and fewer are
            placed when the constraints leave no room after a fixed number of tries.
        classes: names from `SHAPE_CLASSES` to draw; class ids index this sequence.
        object_size: (smallest, largest) diameter of the circle a shape is inscribed in, as a fraction of the
            shorter image side; a shape's box side is 0.7 to 1 times its diameter.
        grid: no two box centres fall into one cell of a `grid` x `grid` grid over the image, as a YOLO v1
            detector (Redmon et al., 2016) predicts one class per cell; None allows any placement.
        min_visible: least fraction of each object's drawn area left visible by the objects above it.

    Returns:
        A dict of NumPy arrays: "image" uint8 (H, W, 3); "boxes" float32 (n, 4), normalised [x1, y1, x2, y2]
        with x2 = (last column + 1) / W; "classes" int32 (n,); "masks" uint8 (n, H, W), the visible pixels of
        each object; "semantic" int32 (H, W), 0 for background and class id + 1 for objects; "poses" float64
        (n, 4), each shape's rendering parameters [centre x, centre y, radius, degrees] in pixels (the shape of
        `kapps.data.raster.shape_mask`), from which `kapps.data.keypoints` derives exact corners. Objects are in
        drawing order, the bottom one first.
    """
    scene = _render(
        rng,
        image_size=_check_size(image_size),
        max_objects=_check_positive_int(max_objects, "max_objects"),
        class_shapes=_check_classes(classes),
        object_size=_check_object_size(object_size),
        grid=_check_grid(grid),
        min_visible=_check_min_visible(min_visible),
    )
    image, boxes, labels, instance, poses = scene
    ids = np.arange(1, len(labels) + 1, dtype=instance.dtype)
    masks = (instance[None] == ids[:, None, None]).astype(np.uint8)
    semantic = np.concatenate([[0], labels + 1]).astype(np.int32)[instance]
    return {"image": image, "boxes": boxes, "classes": labels, "masks": masks, "semantic": semantic, "poses": poses}


def load_shapes(
    *,
    image_size=(128, 128),
    seed: int = 0,
    sizes=(4000, 500, 500),
    max_objects: int = 6,
    max_boxes: int | None = None,
    masks: bool = False,
    object_size=(0.15, 0.4),
    grid: int | None = 7,
    min_visible: float = 0.5,
) -> Data:
    """The `shapes` source: train, val and test splits of synthetic scenes (see `render_scene`).

    Each split is drawn from its own generator, seeded from (`seed`, split), so the test split is independent of
    the training split and the same for one seed whatever the sizes of the other splits; a split's first k scenes
    do not depend on its size.

    Args:
        image_size: (height, width) of the images.
        seed: non-negative integer seed of all three splits.
        sizes: number of scenes in (train, val, test).
        max_objects: most objects in one scene.
        max_boxes: rows of the padded targets, at least `max_objects`; `max_objects` when None.
        masks: add "masks" (max_boxes, H, W) uint8 instance masks and "semantic" (H, W) int32 to the targets.
        object_size: (smallest, largest) shape diameter as a fraction of the shorter image side.
        grid: at most one box centre per cell of a grid x grid grid; None for any placement.
        min_visible: least visible fraction of every object.

    Returns:
        A `Data` whose splits are unbatched `(image, targets)`: image float32 (H, W, 3) in [0, 1]; targets a dict
        {"boxes": float32 (max_boxes, 4) normalised [x1, y1, x2, y2], zero rows for padding, "classes": int32
        (max_boxes,), -1 for padding}, plus "masks" and "semantic" when `masks` is true.
    """
    image_size = _check_size(image_size)
    max_objects = _check_positive_int(max_objects, "max_objects")
    max_boxes = max_objects if max_boxes is None else _check_positive_int(max_boxes, "max_boxes")
    if max_boxes < max_objects:
        raise ValueError(f"max_boxes must be at least max_objects={max_objects}. Received: max_boxes={max_boxes}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    sizes = tuple(sizes)
    if len(sizes) != 3 or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0 for n in sizes):
        raise ValueError(f"sizes must be three non-negative integers (train, val, test). Received: sizes={sizes!r}")
    options = {
        "image_size": image_size,
        "max_objects": max_objects,
        "class_shapes": _check_classes(SHAPE_CLASSES),
        "object_size": _check_object_size(object_size),
        "grid": _check_grid(grid),
        "min_visible": _check_min_visible(min_visible),
    }
    splits = {
        name: _split(
            np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), index]))),
            count=int(count),
            max_boxes=max_boxes,
            masks=masks,
            **options,
        )
        for index, (name, count) in enumerate(zip(_SPLITS, sizes, strict=True))
    }
    return Data(
        spec="shapes",
        **splits,
        input_shape=(*image_size, 3),
        class_names=list(SHAPE_CLASSES),
        sizes={name: int(count) for name, count in zip(_SPLITS, sizes, strict=True)},
    )


def _split(rng: np.random.Generator, *, count: int, max_boxes: int, masks: bool, **options) -> tf.data.Dataset:
    """`count` scenes as one dataset, built as arrays once; instance masks travel as one id map per image."""
    height, width = options["image_size"]
    images = np.zeros((count, height, width, 3), np.uint8)
    boxes = np.zeros((count, max_boxes, 4), np.float32)
    classes = np.full((count, max_boxes), -1, np.int32)
    instances = np.zeros((count, height, width), np.uint8) if masks else None
    for i in range(count):
        image, scene_boxes, scene_classes, instance, _ = _render(rng, **options)
        images[i] = image
        boxes[i, : len(scene_classes)] = scene_boxes
        classes[i, : len(scene_classes)] = scene_classes
        if masks:
            instances[i] = instance
    if not masks:
        return tf.data.Dataset.from_tensor_slices((images, boxes, classes)).map(
            _decode, num_parallel_calls=tf.data.AUTOTUNE
        )
    ids = tf.constant(np.arange(1, max_boxes + 1, dtype=np.uint8)[:, None, None])

    def decode_with_masks(image, boxes, classes, instance):
        image, targets = _decode(image, boxes, classes)
        targets["masks"] = tf.cast(tf.equal(instance[None], ids), tf.uint8)
        lookup = tf.concat([[0], tf.maximum(classes, -1) + 1], axis=0)
        targets["semantic"] = tf.gather(lookup, tf.cast(instance, tf.int32))
        return image, targets

    return tf.data.Dataset.from_tensor_slices((images, boxes, classes, instances)).map(
        decode_with_masks, num_parallel_calls=tf.data.AUTOTUNE
    )


def _decode(image, boxes, classes):
    return tf.cast(image, tf.float32) / 255.0, {"boxes": boxes, "classes": classes}


def _render(rng, *, image_size, max_objects, class_shapes, object_size, grid, min_visible):
    """One scene as (image uint8 (H, W, 3), boxes float32 (n, 4), classes int32 (n,), instance id map uint8
    (H, W) with 0 for background and k + 1 for object k, poses float64 (n, 4) [cx, cy, radius, degrees])."""
    height, width = image_size
    side = min(height, width)
    background = _background(rng)
    texture = pattern(rng, shape=image_size, kind=int(rng.integers(3)))[..., None]
    canvas = background[0] + (background[1] - background[0]) * texture  # (H, W, 3) float32

    target = int(rng.integers(1, max_objects + 1))
    instance = np.zeros(image_size, np.uint8)
    labels, areas, visible, boxes, colours, poses = [], [], [], [], [], []
    for _ in range(12 * target):
        if len(labels) == target:
            break
        label = int(rng.integers(len(class_shapes)))
        radius = rng.uniform(*object_size) * side / 2
        # The centre keeps at least 80% of the radius inside the image: shapes cross the border only a little.
        cx = rng.uniform(0.8 * radius, max(width - 0.8 * radius, 0.8 * radius))
        cy = rng.uniform(0.8 * radius, max(height - 0.8 * radius, 0.8 * radius))
        degrees = int(rng.integers(360))
        window, inside = shape_mask(
            class_shapes[label], centre=(cx, cy), radius=radius, degrees=degrees, image_size=image_size
        )
        area = int(np.count_nonzero(inside))
        if area < 4:
            continue
        lost = np.bincount(instance[window][inside], minlength=len(labels) + 1)[1:]
        if any(visible[k] - lost[k] < min_visible * areas[k] for k in range(len(labels))):
            continue
        new_boxes = [_uncovered_box(instance, k + 1, window, inside) if lost[k] else box for k, box in enumerate(boxes)]
        x1, y1, x2, y2 = mask_box(inside)
        top, left = window[0].start, window[1].start
        new_boxes.append((x1 + left, y1 + top, x2 + left, y2 + top))
        if grid is not None and not _one_per_cell(new_boxes, image_size, grid):
            continue
        colour = _object_colour(rng, background, colours)
        pixels = canvas[window]
        if rng.random() < 0.5:  # striped or mottled around its colour
            shade = pattern(rng, shape=inside.shape, kind=int(rng.integers(2)))[inside][:, None]
            pixels[inside] = np.clip(colour + np.float32(0.3) * (shade - np.float32(0.5)), 0.0, 1.0)
        else:
            pixels[inside] = colour
        instance[window][inside] = len(labels) + 1
        visible = [v - int(n) for v, n in zip(visible, lost, strict=True)] + [area]
        labels.append(label)
        areas.append(area)
        boxes = new_boxes
        colours.append(colour)
        poses.append((cx, cy, radius, degrees))

    # Grain of +-3% over everything, then rounding to 8 bits (the cast truncates the non-negative values).
    grain = rng.random((*image_size, 3), dtype=np.float32)
    grain *= np.float32(0.06 * 255.0)
    canvas *= np.float32(255.0)
    canvas += grain
    canvas -= np.float32(0.03 * 255.0 - 0.5)
    image = np.clip(canvas, 0.0, 255.0, out=canvas).astype(np.uint8)
    scale = np.array([width, height, width, height], np.float64)
    box_array = (np.array(boxes, np.float64).reshape(-1, 4) / scale).astype(np.float32)
    return image, box_array, np.array(labels, np.int32), instance, np.array(poses, np.float64).reshape(-1, 4)


def _uncovered_box(instance: np.ndarray, index: int, window, inside: np.ndarray) -> tuple[int, int, int, int]:
    """Pixel box of object `index` of the id map once the shape (`window`, `inside`) is drawn over it."""
    mask = instance == index
    mask[window] &= ~inside
    return mask_box(mask)


def _one_per_cell(boxes, image_size, grid: int) -> bool:
    height, width = image_size
    cells = {
        (min((y1 + y2) * grid // (2 * height), grid - 1), min((x1 + x2) * grid // (2 * width), grid - 1))
        for x1, y1, x2, y2 in boxes
    }
    return len(cells) == len(boxes)


def _background(rng) -> np.ndarray:
    """Two related colours (2, 3) float32 the background texture blends."""
    first = rng.random(3, dtype=np.float32)
    second = np.clip(first + rng.uniform(-0.3, 0.3, 3).astype(np.float32), 0.0, 1.0)
    return np.stack([first, second])


def _object_colour(rng, background: np.ndarray, others: list) -> np.ndarray:
    """The first of 16 random colours at least 0.5 from the background's and 0.3 from the other objects' (RGB
    distance), or the one that comes closest to that."""
    candidates = rng.random((16, 3), dtype=np.float32)
    score = np.min(np.sum((candidates[:, None] - background[None]) ** 2, axis=-1), axis=1) / np.float32(0.25)
    if others:
        apart = np.sum((candidates[:, None] - np.stack(others)[None]) ** 2, axis=-1)
        score = np.minimum(score, np.min(apart, axis=1) / np.float32(0.09))
    good = np.flatnonzero(score >= 1.0)
    return candidates[good[0] if good.size else int(np.argmax(score))]


def _check_size(image_size) -> tuple[int, int]:
    size = tuple(image_size)
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or s < 16 for s in size):
        raise ValueError(f"image_size must be (height, width) of at least 16 pixels each. Received: {image_size!r}")
    return int(size[0]), int(size[1])


def _check_positive_int(value, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    if value > 255:
        raise ValueError(f"{name} must be at most 255. Received: {name}={value!r}")
    return int(value)


def _check_classes(classes) -> tuple[str, ...]:
    names = tuple(classes) if not isinstance(classes, str) else (classes,)
    if not names or any(name not in SHAPES for name in names) or len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct names from {SHAPE_CLASSES}. Received: classes={classes!r}")
    return names


def _check_object_size(object_size) -> tuple[float, float]:
    size = tuple(object_size)
    if len(size) != 2 or not 0.0 < size[0] <= size[1] <= 1.0:
        raise ValueError(f"object_size must be (smallest, largest) with 0 < smallest <= largest <= 1. Received: {size}")
    return float(size[0]), float(size[1])


def _check_grid(grid) -> int | None:
    if grid is not None and (not isinstance(grid, (int, np.integer)) or isinstance(grid, bool) or grid < 1):
        raise ValueError(f"grid must be a positive integer or None. Received: grid={grid!r}")
    return None if grid is None else int(grid)


def _check_min_visible(min_visible) -> float:
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible must be in (0, 1]. Received: min_visible={min_visible!r}")
    return float(min_visible)
