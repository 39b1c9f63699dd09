"""The embedded `leaves` source: deterministic synthetic plant rosettes with one instance label per leaf, for leaf
segmentation and counting without a download (the task of the CVPPP leaf segmentation challenge, Scharr et al.
2016, and of recurrent instance segmentation, Romera-Paredes & Torr 2016).

An image is a background (soil with perlite specks, gravel or moss, sometimes inside the rim of a pot), then a
rosette of 1 to 20 leaves around a centre near the middle of the image. Leaves come in the order a rosette grows
them, oldest first: each one at the golden angle (137.5 degrees) from the one before, with some scatter, and
shorter than the one before, so the younger inner leaves lie on top of the older outer ones and hide part of them.
A leaf is a petiole from the centre and a blade, elliptic to lanceolate with a pointed tip, a little bent, with
a lighter midrib, faint side veins, shading across it and a shadow on what lies below. Plants vary in size, in
leaf shape and in colour (greens, some yellowish, some reddish); lighting varies in brightness, direction and
colour cast.

Drawn with NumPy from a NumPy `Generator(PCG64)` per split, angles in whole degrees from `kapps.data.raster`'s
quantised table: one seed draws one image.
"""

from __future__ import annotations

from kapps.data.base import Data, check_seed, check_sizes
from kapps.data.raster import cos_sin, light, pattern

import numpy as np
import tensorflow as tf

LEAF_CLASSES = ("background", "leaf")
MAX_LEAVES = 20

_SPLITS = ("train", "val", "test")
_GOLDEN_ANGLE = 137.5
_MIN_VISIBLE = 0.3  # least share of a leaf's own pixels left in view by the leaves above it
_MIN_PIXELS = 0.001  # least pixels of a leaf in view, as a share of the image (16 pixels at 128x128)


def render_rosette(rng: np.random.Generator, *, image_size=(128, 128), leaves=(1, MAX_LEAVES)) -> dict[str, np.ndarray]:
    """Draw one rosette with its leaf labels (see the module's description).

    Every labelled leaf stays in view: a leaf is only placed where it leaves each leaf below it at least 30% of
    that leaf's own pixels in view and at least 0.1% of the image, and a leaf that finds no such place in a few
    tries is not drawn at all, so the image shows no leaf that is not labelled. The number of leaves is drawn
    uniformly from `leaves`, and this rule rarely lowers it (of 60 rosettes asked for 5, 10, 15 or 18 leaves
    none had fewer; of 60 asked for 20, one had 19).

    Args:
        rng: the random generator; the image depends on nothing else.
        image_size: (height, width) in pixels, at least 32 each; lengths scale with the shorter side.
        leaves: (fewest, most) leaves, with 1 <= fewest <= most <= 255.

    Returns:
        A dict of NumPy arrays: "image" uint8 (H, W, 3); "labels" int32 (H, W), 0 for the background and 1..n
        for the leaves numbered by the pixels they show, most first (ties by drawing order), a pixel belonging to
        the leaf covering at least half of it on top; "count" int32 (), n; "layers" int32 (n,), the drawing
        position of each labelled leaf (0 the lowest, oldest leaf).
    """
    return _render(rng, image_size=_check_size(image_size), leaves=_check_leaves(leaves))


def load_leaves(
    *,
    image_size=(128, 128),
    seed: int = 0,
    sizes=(2000, 200, 200),
    leaves=(1, MAX_LEAVES),
    max_leaves: int | None = None,
) -> Data:
    """The `leaves` source: train, val and test splits of synthetic rosettes (see `render_rosette`).

    Each split is drawn from its own generator, seeded from (`seed`, split), so the test split is independent of
    the training split and the same for one seed whatever the sizes of the other splits; a split's first k images
    do not depend on its size. Images and labels are kept as 8-bit arrays (64 KiB an image at 128x128).

    Args:
        image_size: (height, width) of the images.
        seed: non-negative integer seed of all three splits.
        sizes: number of images in (train, val, test).
        leaves: (fewest, most) leaves of one rosette.
        max_leaves: rows of the padded "masks", at least `leaves[1]`; `leaves[1]` when None.

    Returns:
        A `Data` whose `class_names` are `LEAF_CLASSES` and whose splits are unbatched `(image, targets)`, the
        examples of every instance source (`kapps.data.instances`): image float32 (H, W, 3) in [0, 1]; targets
        {"labels": int32 (H, W), "masks": uint8 (max_leaves, H, W), "count": int32 ()}.
    """
    image_size = _check_size(image_size)
    leaves = _check_leaves(leaves)
    max_leaves = leaves[1] if max_leaves is None else _check_max_leaves(max_leaves, leaves[1])
    seed = check_seed(seed)
    sizes = check_sizes(sizes)
    splits = {}
    for index, (name, count) in enumerate(zip(_SPLITS, sizes, strict=True)):
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, index])))
        images = np.zeros((count, *image_size, 3), np.uint8)
        labels = np.zeros((count, *image_size), np.uint8)
        for i in range(count):
            scene = _render(rng, image_size=image_size, leaves=leaves)
            images[i], labels[i] = scene["image"], scene["labels"]
        splits[name] = labels_dataset(images, labels, max_leaves=max_leaves)
    return Data(
        spec="leaves",
        **splits,
        input_shape=(*image_size, 3),
        class_names=list(LEAF_CLASSES),
        sizes=dict(zip(_SPLITS, sizes, strict=True)),
    )


def instance_targets(labels: tf.Tensor, *, max_leaves: int) -> dict[str, tf.Tensor]:
    """The targets of every instance source from a label image (H, W) numbered 1..n without gaps (0 background):
    {"labels": int32 (H, W), "masks": uint8 (max_leaves, H, W), mask k showing label k + 1 and the rows past n
    zero, "count": int32 () n}."""
    labels = tf.cast(labels, tf.int32)
    ids = tf.range(1, max_leaves + 1, dtype=tf.int32)[:, None, None]
    masks = tf.cast(tf.equal(labels[None], ids), tf.uint8)
    return {"labels": labels, "masks": masks, "count": tf.reduce_max(tf.concat([[0], tf.reshape(labels, [-1])], 0))}


def labels_dataset(images: np.ndarray, labels: np.ndarray, *, max_leaves: int) -> tf.data.Dataset:
    """An unbatched split of `(image, targets)` from uint8 images (N, H, W, 3) and label images (N, H, W), scaled
    to [0, 1] and expanded into `instance_targets` as they are read."""

    def decode(image, label):
        return tf.cast(image, tf.float32) / 255.0, instance_targets(label, max_leaves=max_leaves)

    return tf.data.Dataset.from_tensor_slices((images, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _render(rng, *, image_size, leaves) -> dict[str, np.ndarray]:
    height, width = image_size
    side = min(height, width)
    centre = np.array([width, height], np.float64) / 2 + rng.uniform(-0.08, 0.08, 2) * side
    image = _background(rng, image_size, centre)
    plant = _plant(rng, side)
    shadow = np.array(cos_sin(int(rng.integers(360)))) * rng.uniform(0.8, 2.0) * side / 128
    target = int(rng.integers(leaves[0], leaves[1] + 1))
    owner = np.zeros(image_size, np.int32)  # drawing position + 1 of the leaf on top
    areas: list[int] = []
    seen: list[int] = []
    least = max(_MIN_PIXELS * height * width, 4.0)
    for k in range(target):
        for attempt in range(6):
            leaf = _plan_leaf(rng, plant, centre, k=k, count=target, attempt=attempt)
            found = _leaf_pixels(leaf, image_size)
            if found is None:
                continue
            window, alpha, frame = found
            inside = alpha >= 0.5
            area = int(np.count_nonzero(inside))
            if area < least:
                continue
            lost = np.bincount(owner[window][inside], minlength=len(areas) + 1)[1:]
            if any(seen[j] - lost[j] < max(_MIN_VISIBLE * areas[j], least) for j in range(len(areas))):
                continue
            _cast_shadow(image, leaf, shadow, image_size)
            _paint_leaf(image, window, alpha, frame, leaf)
            owner[window][inside] = len(areas) + 1
            seen = [v - int(n) for v, n in zip(seen, lost, strict=True)] + [area]
            areas.append(area)
            break
    image = light(rng, image, brightness=(0.8, 1.25), gradient=(0.0, 0.4))
    # Number the leaves by the pixels they show, most first; ties keep drawing order (a stable sort).
    layers = np.argsort(-np.asarray(seen, np.int64), kind="stable").astype(np.int32)
    lookup = np.zeros(len(seen) + 1, np.int32)
    lookup[layers + 1] = np.arange(1, len(seen) + 1, dtype=np.int32)
    return {"image": image, "labels": lookup[owner], "count": np.int32(len(seen)), "layers": layers}


def _plant(rng, side: int) -> dict:
    """What the leaves of one plant share: size, shape, bend and colour."""
    tint = rng.random()
    if tint < 0.15:  # yellowish (chlorotic or young)
        colour = [rng.uniform(0.45, 0.6), rng.uniform(0.55, 0.68), rng.uniform(0.12, 0.25)]
    elif tint < 0.3:  # reddish (anthocyanin)
        colour = [rng.uniform(0.4, 0.55), rng.uniform(0.25, 0.38), rng.uniform(0.15, 0.25)]
    else:
        colour = [rng.uniform(0.12, 0.35), rng.uniform(0.38, 0.6), rng.uniform(0.08, 0.22)]
    lanceolate = rng.random()  # 0 elliptic .. 1 lanceolate
    return {
        "radius": rng.uniform(0.28, 0.48) * side,
        "ratio": rng.uniform(0.5, 0.75) - 0.28 * lanceolate,  # blade width / blade length
        "petiole": rng.uniform(0.15, 0.4),  # share of the leaf's length
        "base": 0.45 + 0.35 * lanceolate,  # exponent of the blade's rounding at its base
        "tip": 0.75 + 0.45 * lanceolate,  # exponent of its taper to the tip: 1 and more is pointed
        "colour": np.asarray(colour, np.float32),
        "start": int(rng.integers(360)),
        "turn": 1 if rng.random() < 0.5 else -1,  # the rosette's spiral goes clockwise or counterclockwise
    }


def _plan_leaf(rng, plant: dict, centre, *, k: int, count: int, attempt: int) -> dict:
    """The geometry and colour of leaf `k` of `count` (0 the oldest), a little different at each attempt."""
    scatter = 12 + 20 * attempt
    degrees = int(round(plant["start"] + plant["turn"] * k * _GOLDEN_ANGLE + rng.uniform(-scatter, scatter))) % 360
    youth = (k + 1) / count  # 1 for the youngest
    length = plant["radius"] * (1.0 - 0.62 * youth**0.9) * rng.uniform(0.85, 1.1)
    petiole = length * plant["petiole"] * rng.uniform(0.8, 1.2) * (1.0 - 0.4 * youth)
    blade = length - petiole
    ageing = (1 - youth) * rng.uniform(0.0, 0.25)  # older leaves are a little darker or yellower
    colour = plant["colour"] * rng.uniform(0.9, 1.12, 3).astype(np.float32) * np.float32(1.08 - 0.2 * ageing)
    if rng.random() < 0.5:
        colour = colour + np.float32(ageing) * (np.array([0.7, 0.62, 0.2], np.float32) - colour)
    return {
        "centre": np.asarray(centre, np.float64) + rng.uniform(-0.02, 0.02, 2) * plant["radius"],
        "degrees": degrees,
        "petiole": petiole,
        "blade": blade,
        "half_width": blade * plant["ratio"] * rng.uniform(0.85, 1.15) / 2,
        "stalk": max(0.05 * blade * plant["ratio"], 0.7),  # half the petiole's width
        "base": plant["base"],
        "tip": plant["tip"] * rng.uniform(0.9, 1.1),
        "bend": rng.uniform(-0.15, 0.15),  # sideways offset of the tip, as a share of the blade's length
        "fold": np.float32(rng.uniform(-0.15, 0.15)),  # one half of the blade lighter than the other
        "veins": np.float32(rng.uniform(0.25, 0.5)),  # spacing of the side veins, as a share of the half width
        "colour": np.clip(colour, 0.0, 1.0).astype(np.float32),
    }


def _leaf_pixels(leaf: dict, image_size, offset=(0.0, 0.0)):
    """A leaf's coverage of the image, or None where it misses the image: (window, alpha (h, w) float32 in
    [0, 1], frame), `frame` the leaf's coordinates (along, across, half width) at the window's pixel centres.
    `offset` (x, y) moves the leaf (for its shadow)."""
    height, width = image_size
    cx, cy = leaf["centre"][0] + offset[0], leaf["centre"][1] + offset[1]
    cos, sin = cos_sin(leaf["degrees"])
    length = leaf["petiole"] + leaf["blade"]
    reach = leaf["half_width"] + abs(leaf["bend"]) * leaf["blade"] + 1.5
    xs = cx + np.array([0, length, length, 0]) * cos - np.array([-reach, -reach, reach, reach]) * sin
    ys = cy + np.array([0, length, length, 0]) * sin + np.array([-reach, -reach, reach, reach]) * cos
    c0, c1 = max(int(np.floor(xs.min())), 0), min(int(np.ceil(xs.max())) + 1, width)
    r0, r1 = max(int(np.floor(ys.min())), 0), min(int(np.ceil(ys.max())) + 1, height)
    if c0 >= c1 or r0 >= r1:
        return None
    dx = np.arange(c0, c1, dtype=np.float32)[None, :] + np.float32(0.5 - cx)
    dy = np.arange(r0, r1, dtype=np.float32)[:, None] + np.float32(0.5 - cy)
    cos, sin = np.float32(cos), np.float32(sin)
    along = cos * dx + sin * dy  # from the centre to the tip
    across = cos * dy - sin * dx
    s = (along - np.float32(leaf["petiole"])) / np.float32(leaf["blade"])  # 0 at the blade's base, 1 at its tip
    across = across - np.float32(leaf["bend"] * leaf["blade"]) * np.clip(s, 0, 1) ** 2
    a, b = leaf["base"], leaf["tip"]
    widest = (a / (a + b)) ** a * (b / (a + b)) ** b
    clipped = np.clip(s, np.float32(0), np.float32(1))
    profile = clipped**a * (1 - clipped) ** b * np.float32(leaf["half_width"] / widest)
    half = np.where((s > 0) & (s < 1), profile, np.float32(-1))
    blade = half - np.abs(across) + np.float32(0.5)
    stalk = np.where((along > 0) & (s < 0.3), np.float32(leaf["stalk"]) - np.abs(across) + np.float32(0.5), 0)
    alpha = np.clip(np.maximum(blade, stalk), np.float32(0), np.float32(1))
    return (slice(r0, r1), slice(c0, c1)), alpha, (s, across, half)


def _paint_leaf(image: np.ndarray, window, alpha: np.ndarray, frame, leaf: dict) -> None:
    """The leaf's colours over `image`: shaded across the blade (one half lighter, the rim darker), a lighter
    midrib and petiole, faint side veins, lighter towards the tip."""
    s, across, half = frame
    t = across / np.maximum(half, np.float32(1.0))  # -1 .. 1 across the blade
    rim = np.clip(np.abs(t), np.float32(0), np.float32(1))
    shade = np.float32(1.0) + leaf["fold"] * np.sign(t) - np.float32(0.25) * rim * rim
    shade += np.float32(0.12) * np.clip(s, np.float32(0), np.float32(1))
    midrib = np.clip(np.float32(1.0) - np.abs(across) / np.float32(0.5 + 0.04 * leaf["half_width"]), 0, 1)
    midrib *= (s < 0.92).astype(np.float32)
    veins = np.cos((s * np.float32(leaf["blade"]) - np.abs(across)) / (leaf["veins"] * np.float32(leaf["half_width"])))
    shade += np.float32(0.28) * midrib + np.float32(0.05) * np.clip(veins * 4 - 3, 0, 1)
    region = image[window]
    colour = leaf["colour"] * shade[..., None]
    region += alpha[..., None] * (np.clip(colour, 0, 1) - region)


def _cast_shadow(image: np.ndarray, leaf: dict, offset, image_size) -> None:
    """Darken what lies under a leaf moved by `offset` (x, y): the shadow it casts before it is drawn."""
    found = _leaf_pixels(leaf, image_size, offset=offset)
    if found is not None:
        window, alpha, _ = found
        image[window] *= (np.float32(1.0) - np.float32(0.35) * alpha)[..., None]


def _background(rng, image_size, centre) -> np.ndarray:
    """Soil with perlite specks, gravel or moss (float32 (H, W, 3) in [0, 1]), half the time inside a pot's rim."""
    kind = int(rng.integers(3))
    if kind == 1:  # gravel: grey to beige pebbles with dark gaps
        image = _gravel(rng, image_size)
    else:
        blotches = pattern(rng, shape=image_size, kind=0)
        grain = rng.random(image_size, dtype=np.float32)
    if kind == 0:  # soil: dark brown clods, white perlite specks
        colour = np.array([0.2, 0.14, 0.09], np.float32) * np.float32(rng.uniform(0.7, 1.7))
        colour += rng.uniform(-0.02, 0.02, 3).astype(np.float32)
        light = np.float32(0.6) + np.float32(0.5) * blotches + np.float32(0.25) * grain
        image = colour * light[..., None]
        specks = grain > np.float32(1 - rng.uniform(0.002, 0.012))
        image[specks] = np.float32(0.85)
    elif kind == 2:  # moss: dark olive with fine speckle
        colour = np.array([0.16, 0.2, 0.08], np.float32) + rng.random(3, dtype=np.float32) * np.float32(0.1)
        light = np.float32(0.55) + np.float32(0.35) * blotches + np.float32(0.5) * grain * grain
        image = colour * light[..., None]
    if rng.random() < 0.5:
        _pot(rng, image, centre)
    return image


def _gravel(rng, image_size) -> np.ndarray:
    """Pebbles on a jittered grid, each a shaded disc of its own grey or beige."""
    height, width = image_size
    side = min(height, width)
    spacing = rng.uniform(0.035, 0.07) * side
    rows, cols = int(np.ceil(height / spacing)) + 1, int(np.ceil(width / spacing)) + 1
    centres = np.stack(np.meshgrid(np.arange(cols), np.arange(rows)), -1).reshape(-1, 2) + rng.uniform(
        -0.3, 0.3, (rows * cols, 2)
    )
    centres = (centres * spacing).astype(np.float32)
    tones = np.float32(0.35) + np.float32(0.35) * rng.random((rows * cols, 1), dtype=np.float32)
    tones = tones * (
        np.array([1.0, 0.95, 0.85], np.float32) + rng.uniform(-0.03, 0.03, (rows * cols, 3)).astype(np.float32)
    )
    # Each pixel shows its nearest pebble centre, shaded by the distance to it.
    ys = (np.arange(height, dtype=np.float32) + np.float32(0.5))[:, None]
    xs = (np.arange(width, dtype=np.float32) + np.float32(0.5))[None, :]
    gy = np.clip((ys / spacing).astype(np.int64), 0, rows - 1)
    gx = np.clip((xs / spacing).astype(np.int64), 0, cols - 1)
    best = np.full(image_size, np.inf, np.float32)
    nearest = np.zeros(image_size, np.int64)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            index = np.clip(gy + oy, 0, rows - 1) * cols + np.clip(gx + ox, 0, cols - 1)
            distance = (xs - centres[index, 0]) ** 2 + (ys - centres[index, 1]) ** 2
            closer = distance < best
            best = np.where(closer, distance, best)
            nearest = np.where(closer, index, nearest)
    rho = np.sqrt(best) / np.float32(0.62 * spacing)
    shade = np.clip(np.float32(1.15) - np.float32(0.6) * rho * rho, np.float32(0.2), np.float32(1.2))
    return tones[nearest] * shade[..., None]


def _pot(rng, image: np.ndarray, centre) -> None:
    """A pot's rim around the plant: outside it the tray (dark plastic or terracotta), on it a lighter band."""
    height, width = image.shape[:2]
    side = min(height, width)
    radius = rng.uniform(0.45, 0.7) * side
    band = rng.uniform(0.02, 0.05) * side
    ys = (np.arange(height, dtype=np.float32) + np.float32(0.5))[:, None] - np.float32(centre[1])
    xs = (np.arange(width, dtype=np.float32) + np.float32(0.5))[None, :] - np.float32(centre[0])
    distance = np.sqrt(xs * xs + ys * ys) - np.float32(radius)
    if rng.random() < 0.5:
        tray = np.array([0.08, 0.08, 0.09], np.float32) + np.float32(rng.uniform(0, 0.12))
    else:
        tray = np.array([0.62, 0.34, 0.22], np.float32) * np.float32(rng.uniform(0.8, 1.1))
    outside = np.clip(distance + np.float32(0.5), 0, 1)[..., None]
    image += outside * (tray - image)
    rim = np.clip(np.float32(band / 2 + 0.5) - np.abs(distance - np.float32(band / 2)), 0, 1)[..., None]
    image += rim * (np.clip(tray * np.float32(1.5) + np.float32(0.1), 0, 1) - image)


def _check_size(image_size) -> tuple[int, int]:
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or any(not isinstance(s, (int, np.integer)) or isinstance(s, bool) or s < 32 for s in size):
        raise ValueError(f"image_size must be (height, width) of at least 32 pixels each. Received: {image_size!r}")
    return int(size[0]), int(size[1])


def _check_leaves(leaves) -> tuple[int, int]:
    pair = tuple(leaves) if isinstance(leaves, (tuple, list)) else ()
    if len(pair) != 2 or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) for n in pair):
        pair = ()
    if not pair or not 1 <= pair[0] <= pair[1] <= 255:
        raise ValueError(f"leaves must be (fewest, most) with 1 <= fewest <= most <= 255. Received: leaves={leaves!r}")
    return int(pair[0]), int(pair[1])


def _check_max_leaves(max_leaves, most: int) -> int:
    if not isinstance(max_leaves, (int, np.integer)) or isinstance(max_leaves, bool) or not most <= max_leaves <= 255:
        raise ValueError(
            f"max_leaves must be an integer from the most leaves ({most}) to 255. Received: max_leaves={max_leaves!r}"
        )
    return int(max_leaves)
