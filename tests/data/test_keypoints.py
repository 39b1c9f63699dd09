"""Point sources: the shapes' exact centres and corners, load_keypoints' specs, and folders of images with JSON
or CSV points."""

from __future__ import annotations

import json
from pathlib import Path

from kapps.data.base import unit_images
from kapps.data.detection import load_detection
from kapps.data.keypoints import SHAPE_POINT_TYPES, load_keypoints, shape_points
from kapps.data.raster import shape_corners, shape_mask
from kapps.data.scenes import SHAPE_CLASSES, render_scene
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf

CENTRE, CORNER = 0, 1


def rng(seed):
    return np.random.Generator(np.random.PCG64(seed))


def own_mask(scene, k):
    """The whole shape of object k (before anything hides it), as a full-image boolean mask."""
    cx, cy, radius, degrees = scene["poses"][k]
    size = scene["masks"].shape[1:]
    name = SHAPE_CLASSES[scene["classes"][k]]
    window, inside = shape_mask(name, centre=(cx, cy), radius=radius, degrees=int(degrees), image_size=size)
    mask = np.zeros(size, bool)
    mask[window] = inside
    return mask


def at(mask, x, y):
    row, col = int(np.floor(y)), int(np.floor(x))
    return 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1] and bool(mask[row, col])


def test_corners_are_on_the_rendered_outline_and_centres_on_the_object():
    """3 pixels from a corner towards the centre is inside the drawn shape (a triangle's 60-degree tip is under
    two pixels wide there), 1.5 pixels away from it is outside; a centre's pixel shows its object."""
    checked = {name: 0 for name in SHAPE_CLASSES}
    generator = rng(1)
    for _ in range(80):
        scene = render_scene(generator, image_size=(128, 128))
        points = shape_points(scene)
        pixels = points["points"] * 128
        for (x, y), kind, k in zip(pixels, points["types"], points["objects"], strict=True):
            cx, cy = scene["poses"][k][:2]
            name = SHAPE_CLASSES[scene["classes"][k]]
            if kind == CENTRE:
                assert (x, y) == pytest.approx((cx, cy), abs=1e-4) and at(scene["masks"][k], x, y)
                continue
            mask = own_mask(scene, k)
            towards = np.array([cx - x, cy - y]) / np.hypot(cx - x, cy - y)
            assert at(mask, *(np.array([x, y]) + 3 * towards)), (name, x, y)
            assert not at(mask, *(np.array([x, y]) - 1.5 * towards)), (name, x, y)
            checked[name] += 1
    assert checked["circle"] == 0 and min(checked[name] for name in ("square", "triangle", "cross")) > 30


def test_each_shape_has_its_number_of_corners_when_alone_and_inside():
    counts = {"circle": 0, "square": 4, "triangle": 3, "cross": 12}
    seen = set()
    generator = rng(0)
    for _ in range(60):
        scene = render_scene(generator, image_size=(96, 96), max_objects=1, object_size=(0.3, 0.5))
        points = shape_points(scene)
        corners = points["points"][points["types"] == CORNER] * 96
        name = SHAPE_CLASSES[scene["classes"][0]]
        cx, cy, radius, degrees = scene["poses"][0]
        every = shape_corners(name, centre=(cx, cy), radius=radius, degrees=int(degrees))
        if len(every) and (every.min() < 0 or every.max() >= 96):
            continue  # a corner off the image is not annotated
        assert np.sum(points["types"] == CENTRE) == 1
        assert len(corners) == counts[name], name
        seen.add(name)
    assert seen == set(SHAPE_CLASSES)


def test_hidden_corners_are_left_out():
    """A corner is annotated exactly when it is in the image and at least half of its shape's own pixels within
    2.5 pixels of it are in view; occluded scenes leave many corners out."""
    left_out = kept = 0
    generator = rng(3)
    rows, cols = np.mgrid[0:128, 0:128] + 0.5
    for _ in range(60):
        scene = render_scene(generator, image_size=(128, 128))
        points = shape_points(scene)
        for k in range(len(scene["classes"])):
            mine = points["points"][(points["objects"] == k) & (points["types"] == CORNER)] * 128
            cx, cy, radius, degrees = scene["poses"][k]
            name = SHAPE_CLASSES[scene["classes"][k]]
            own, seen = own_mask(scene, k), scene["masks"][k].astype(bool)
            for x, y in shape_corners(name, centre=(cx, cy), radius=radius, degrees=int(degrees)):
                annotated = any(np.allclose((x, y), p, atol=1e-3) for p in mine)
                near = own & (np.hypot(cols - x, rows - y) <= 2.5)
                in_view = 0 <= x < 128 and 0 <= y < 128 and near.any() and 2 * (near & seen).sum() >= near.sum()
                assert annotated == in_view
                left_out += not annotated
                kept += annotated
    assert left_out > 20 and kept > 500


def test_load_keypoints_shapes_gives_the_detection_scenes_with_padded_points():
    data = load_keypoints("shapes", image_size=(64, 64), seed=2, sizes=(4, 1, 3), max_objects=3)
    boxes = load_detection("shapes", image_size=(64, 64), seed=2, sizes=(4, 1, 3), max_objects=3)
    assert data.class_names == list(SHAPE_POINT_TYPES) and data.spec == "shapes" and data.input_shape == (64, 64, 3)
    for split in ("train", "val", "test"):
        pairs = zip(getattr(data, split).as_numpy_iterator(), getattr(boxes, split).as_numpy_iterator(), strict=True)
        for (image, targets), (same_image, _) in pairs:
            assert image.dtype == np.uint8  # kept 8-bit, scaled by the pipeline
            np.testing.assert_array_equal(unit_images(image), same_image)
            assert targets["points"].shape == (39, 2) and targets["types"].shape == (39,)
            n = int(np.sum(targets["types"] >= 0))
            assert n >= 1 and np.all(targets["types"][n:] == -1) and np.all(targets["points"][n:] == -1.0)
            assert set(targets["types"][:n]) <= {CENTRE, CORNER}


@pytest.mark.parametrize(
    ("spec", "error"),
    [("", DataError), ("tfds:voc/2007", DataError), ("folder:", DataError), ("wheat:big", DataError)],
)
def test_unknown_specs_are_data_errors(spec, error):
    with pytest.raises(error, match="point source"):
        load_keypoints(spec)


def test_bad_common_arguments_name_themselves():
    with pytest.raises(ValueError, match="max_points"):
        load_keypoints("wheat", max_points=0)
    with pytest.raises(ValueError, match="image_size"):
        load_keypoints("shapes", image_size=(64,))


# Folders: images whose annotated points are white pixels on grey, so that a point read in the wrong place shows.
SIZES = {"a": (40, 30), "b": (50, 20), "c": (40, 30), "d": (32, 32), "e": (48, 24)}  # (width, height)
POINTS = {
    "a": [("spikelet", 10.5, 5.5), ("tip", 30.5, 20.5)],
    "b": [("spikelet", 45.5, 2.5)],
    "c": [],
    "d": [("tip", 0.5, 31.5), ("spikelet", 16.5, 16.5), ("spikelet", 20.5, 8.5)],
    "e": [("spikelet", 40.5, 12.5)],
}


def _write_folder(root: Path, *, csv_stems=("b", "d")) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for stem, (width, height) in SIZES.items():
        image = np.full((height, width, 3), 60, np.uint8)
        for _, x, y in POINTS[stem]:
            image[int(y), int(x)] = 255
        (root / f"{stem}.png").write_bytes(tf.io.encode_png(image).numpy())
        if stem in csv_stems:
            lines = ["type,x,y"] + [f"{kind},{x},{y}" for kind, x, y in POINTS[stem]]
            (root / f"{stem}.csv").write_text("\n".join(lines) + "\n")
        else:
            points = [{"type": kind, "x": x, "y": y} for kind, x, y in POINTS[stem]]
            (root / f"{stem}.json").write_text(json.dumps({"points": points, "width": width, "height": height}))
    return root


def test_folder_points_are_relative_and_follow_the_listed_splits(tmp_path):
    root = _write_folder(tmp_path / "plants")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a\nb\nd\n")
    (root / "splits" / "val.txt").write_text("c\n")
    (root / "splits" / "test.txt").write_text("e\n")
    data = load_keypoints(f"folder:{root}", image_size=(60, 80), seed=0)
    assert data.class_names == ["spikelet", "tip"] and data.input_shape == (60, 80, 3)
    assert data.sizes == {"train": 3, "val": 1, "test": 1}
    assert data.num_classes == 2
    train = list(data.train.as_numpy_iterator())
    for stem, (image, targets) in zip("abd", train, strict=True):
        width, height = SIZES[stem]
        assert targets["points"].shape == (3, 2)  # the most points of any image
        n = len(POINTS[stem])
        expected = np.array([(x / width, y / height) for _, x, y in POINTS[stem]], np.float32).reshape(-1, 2)
        np.testing.assert_allclose(targets["points"][:n], expected, atol=1e-6)
        np.testing.assert_array_equal(targets["types"][:n], [0 if k == "spikelet" else 1 for k, _, _ in POINTS[stem]])
        assert np.all(targets["types"][n:] == -1) and np.all(targets["points"][n:] == -1)
        for x, y in expected:  # the bright pixel is where the point says, after the stretch to 80x60
            assert image[int(y * 60), int(x * 80)].mean() > image.mean() + 0.05
    ((_, val),) = data.val.as_numpy_iterator()
    assert np.all(val["types"] == -1)
    ((_, test),) = data.test.as_numpy_iterator()
    np.testing.assert_allclose(test["points"][0], [40.5 / 48, 12.5 / 24], atol=1e-6)


def test_folder_without_lists_is_split_by_the_seed_and_point_types_fix_the_order(tmp_path):
    root = _write_folder(tmp_path / "plants", csv_stems=("a", "b", "c", "d", "e"))
    (root / "point_types.txt").write_text("tip\nspikelet\nbase\n")
    first = load_keypoints(f"folder:{root}", image_size=(32, 32), seed=1, max_points=2)
    again = load_keypoints(f"folder:{root}", image_size=(32, 32), seed=1, max_points=2)
    assert first.class_names == ["tip", "spikelet", "base"]
    assert sum(first.sizes.values()) == 5 and first.sizes["val"] == 1 and first.sizes["test"] == 1
    for split in ("train", "val", "test"):
        a, b = (list(getattr(d, split).as_numpy_iterator()) for d in (first, again))
        for (_, ta), (_, tb) in zip(a, b, strict=True):
            np.testing.assert_array_equal(ta["points"], tb["points"])
            assert ta["types"].shape == (2,) and set(ta["types"]) <= {-1, 0, 1}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "a.json").unlink(), "has neither"),
        (lambda root: (root / "a.csv").write_text("type,x,y\n"), "has both"),
        (lambda root: (root / "b.csv").write_text("kind,x,y\nspikelet,1,2\n"), "header"),
        (lambda root: (root / "b.csv").write_text("type,x,y\nspikelet,1,abc\n"), "not a list of points"),
        (lambda root: (root / "a.json").write_text('{"points": [{"type": "tip", "x": 41, "y": 2}]}'), "lie in"),
        (lambda root: (root / "a.json").write_text('{"points": [], "width": 41, "height": 30}'), "size of 41x30"),
        (lambda root: (root / "a.json").write_text("{not json"), "not a list of points"),
        (lambda root: (root / "z.json").write_text('{"points": []}'), "no image"),
        (lambda root: (root / "point_types.txt").write_text("tip\n"), "types not in"),
        (lambda root: (root / "splits").mkdir() or (root / "splits" / "train.txt").write_text("a\nq\n"), "'q'"),
    ],
)
def test_folder_mistakes_are_one_sentence_data_errors(tmp_path, damage, message):
    root = _write_folder(tmp_path / "plants")
    damage(root)
    with pytest.raises(DataError, match=message):
        load_keypoints(f"folder:{root}", image_size=(32, 32))


def test_missing_or_empty_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_keypoints(f"folder:{tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="no images"):
        load_keypoints(f"folder:{tmp_path}")
    with pytest.raises(ValueError, match="extra keywords"):
        load_keypoints(f"folder:{tmp_path}", sizes=(1, 1, 1))
