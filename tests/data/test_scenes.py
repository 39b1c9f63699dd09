"""The embedded `shapes` scenes: determinism, exact boxes from masks, one centre per YOLO cell, padding."""

from kapps.data.scenes import SHAPE_CLASSES, load_shapes, render_scene

import numpy as np
import pytest


def rng(seed):
    return np.random.Generator(np.random.PCG64(seed))


def scenes(count, seed=0, **options):
    generator = rng(seed)
    return [render_scene(generator, **options) for _ in range(count)]


def split_arrays(ds):
    """A split as a list of (image, targets) NumPy pairs."""
    return list(ds.as_numpy_iterator())


def assert_same_split(a, b):
    assert len(a) == len(b)
    for (image_a, targets_a), (image_b, targets_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(image_a, image_b)
        for key in targets_a:
            np.testing.assert_array_equal(targets_a[key], targets_b[key])


def test_one_seed_gives_one_scene_and_another_seed_another():
    first, again, other = render_scene(rng(5)), render_scene(rng(5)), render_scene(rng(6))
    assert set(first) == {"image", "boxes", "classes", "masks", "semantic", "poses"}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])


def test_scene_arrays_have_the_documented_shapes_and_types():
    scene = render_scene(rng(0), image_size=(96, 112), max_objects=4)
    n = len(scene["classes"])
    assert 1 <= n <= 4
    assert scene["image"].shape == (96, 112, 3) and scene["image"].dtype == np.uint8
    assert scene["boxes"].shape == (n, 4) and scene["boxes"].dtype == np.float32
    assert scene["classes"].dtype == np.int32 and set(scene["classes"]) <= set(range(len(SHAPE_CLASSES)))
    assert scene["masks"].shape == (n, 96, 112) and scene["masks"].dtype == np.uint8
    assert scene["semantic"].shape == (96, 112) and scene["semantic"].dtype == np.int32


def test_boxes_are_the_exact_boxes_of_the_visible_masks_and_semantic_agrees():
    for scene in scenes(150, seed=1, image_size=(128, 96)):
        masks, classes = scene["masks"], scene["classes"]
        assert masks.sum(axis=0).max() <= 1  # visible parts never overlap
        expected_semantic = np.zeros((128, 96), np.int32)
        for mask, box, label in zip(masks, scene["boxes"], classes, strict=True):
            rows, cols = np.nonzero(mask)
            expected = np.array([cols.min() / 96, rows.min() / 128, (cols.max() + 1) / 96, (rows.max() + 1) / 128])
            np.testing.assert_array_equal(box, expected.astype(np.float32))
            expected_semantic[mask == 1] = label + 1
        np.testing.assert_array_equal(scene["semantic"], expected_semantic)


def cells(boxes, grid=7):
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return {tuple(cell) for cell in np.minimum((centres * grid).astype(int), grid - 1)}


def test_no_two_box_centres_share_a_cell_of_the_7x7_grid_unless_asked():
    for scene in scenes(200, seed=2):
        assert len(cells(scene["boxes"])) == len(scene["boxes"])
    shared = sum(len(cells(s["boxes"])) < len(s["boxes"]) for s in scenes(300, seed=2, grid=None))
    assert shared > 10  # without the rule, crowded scenes do put two centres in one cell
    for scene in scenes(100, seed=3, grid=4):
        assert len(cells(scene["boxes"], grid=4)) == len(scene["boxes"])


def test_classes_are_balanced_and_sizes_in_range_over_1000_scenes():
    batch = scenes(1000, seed=4)
    classes = np.concatenate([s["classes"] for s in batch])
    shares = np.bincount(classes, minlength=len(SHAPE_CLASSES)) / len(classes)
    assert np.all(np.abs(shares - 1 / len(SHAPE_CLASSES)) < 0.04), shares
    counts = np.bincount([len(s["classes"]) for s in batch], minlength=7)
    assert counts[0] == 0 and counts[6] > 100 and counts.sum() == 1000
    boxes = np.concatenate([s["boxes"] for s in batch])
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sides.max() <= 0.4 + 1 / 128 and np.percentile(sides, 5) >= 0.12
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0


def test_load_shapes_pads_targets_and_adds_masks_when_asked():
    data = load_shapes(image_size=(64, 64), seed=0, sizes=(6, 2, 3), max_objects=3, max_boxes=5, masks=True)
    assert data.spec == "shapes" and data.class_names == list(SHAPE_CLASSES) and data.input_shape == (64, 64, 3)
    assert data.sizes == {"train": 6, "val": 2, "test": 3}
    examples = split_arrays(data.train)
    assert len(examples) == 6
    for image, targets in examples:
        assert image.shape == (64, 64, 3) and image.dtype == np.float32 and 0.0 <= image.min() <= image.max() <= 1.0
        assert targets["boxes"].shape == (5, 4) and targets["boxes"].dtype == np.float32
        assert targets["classes"].shape == (5,) and targets["classes"].dtype == np.int32
        assert targets["masks"].shape == (5, 64, 64) and targets["masks"].dtype == np.uint8
        assert targets["semantic"].shape == (64, 64) and targets["semantic"].dtype == np.int32
        n = int(np.sum(targets["classes"] >= 0))
        assert 1 <= n <= 3 and np.all(targets["classes"][n:] == -1)
        assert not targets["boxes"][n:].any() and not targets["masks"][n:].any()
        for k in range(n):
            assert np.all(targets["semantic"][targets["masks"][k] == 1] == targets["classes"][k] + 1)
        assert np.array_equal(targets["semantic"] > 0, targets["masks"].any(axis=0))
    # The same scenes as render_scene draws, without masks by default.
    plain = split_arrays(load_shapes(image_size=(64, 64), seed=0, sizes=(6, 2, 3), max_objects=3).train)
    assert set(plain[0][1]) == {"boxes", "classes"} and plain[0][1]["boxes"].shape == (3, 4)
    for (image, targets), (plain_image, plain_targets) in zip(examples, plain, strict=True):
        np.testing.assert_array_equal(image, plain_image)
        np.testing.assert_array_equal(targets["boxes"][:3], plain_targets["boxes"])


def test_splits_are_fixed_by_the_seed_and_the_test_split_ignores_the_train_size():
    small = load_shapes(image_size=(32, 32), seed=7, sizes=(3, 2, 4))
    large = load_shapes(image_size=(32, 32), seed=7, sizes=(9, 2, 4))
    assert_same_split(split_arrays(small.test), split_arrays(large.test))
    assert_same_split(split_arrays(small.train), split_arrays(large.train.take(3)))
    train_images = {image.tobytes() for image, _ in split_arrays(large.train)}
    assert not any(image.tobytes() in train_images for image, _ in split_arrays(large.test))
    other = load_shapes(image_size=(32, 32), seed=8, sizes=(3, 2, 4))
    assert not np.array_equal(split_arrays(other.test)[0][0], split_arrays(small.test)[0][0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": (8, 64)}, "image_size"),
        ({"max_objects": 0}, "max_objects"),
        ({"max_objects": 4, "max_boxes": 3}, "max_boxes"),
        ({"object_size": (0.5, 0.2)}, "object_size"),
        ({"grid": 0}, "grid"),
        ({"min_visible": 0.0}, "min_visible"),
        ({"seed": -1}, "seed"),
        ({"sizes": (10, 2)}, "sizes"),
    ],
)
def test_bad_arguments_name_themselves(options, message):
    with pytest.raises(ValueError, match=message):
        load_shapes(**options)


def test_render_scene_draws_only_the_classes_asked_for():
    batch = scenes(50, seed=9, classes=("triangle", "circle"))
    assert set(np.concatenate([s["classes"] for s in batch])) == {0, 1}
    with pytest.raises(ValueError, match="classes"):
        render_scene(rng(0), classes=("hexagon",))
