"""Detection sources: tfds VOC and COCO through mock data, VOC XML and COCO JSON folders with known pixel boxes."""

from __future__ import annotations

import json
from pathlib import Path

from kapps.data.detection import load_detection
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests.data.shares import assert_shared_by_file

WIDTH, HEIGHT = 64, 48


def _examples(ds: tf.data.Dataset) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    return list(ds.as_numpy_iterator())


def _scene(value: int, *, box=(8, 12, 40, 36), grey: bool = False) -> np.ndarray:
    """A (HEIGHT, WIDTH) image of one flat value with a white rectangle at pixel box (x1, y1, x2, y2)."""
    image = np.full((HEIGHT, WIDTH, 1 if grey else 3), value, dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2, x1:x2] = 255
    return image


def _write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    encode = tf.io.encode_jpeg if path.suffix == ".jpg" else tf.io.encode_png
    path.write_bytes(encode(image).numpy())


def _voc_xml(filename: str, objects: list[tuple[str, tuple, bool]], *, size=(WIDTH, HEIGHT)) -> str:
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>"]
    parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


# name -> (image value, grey, objects as (class, pixel box, difficult)); every image is WIDTH x HEIGHT.
VOC_SCENES = {
    "a": (10, False, [("dog", (8, 12, 40, 36), False), ("cat", (0, 0, 64, 48), False)]),
    "b": (60, True, [("person", (16, 6, 48, 42), False), ("dog", (4, 4, 8, 8), True)]),
    "c": (110, False, [("cat", (32, 24, 64, 48), False)]),
    "d": (160, False, []),
    "e": (210, False, [("dog", (-4, 2, 20, 60), False)]),  # out of the image: clipped
}


@pytest.fixture
def voc_folder(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    for stem, (value, grey, objects) in VOC_SCENES.items():
        _write_image(root / "JPEGImages" / f"{stem}.png", _scene(value, grey=grey))
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.png", objects))
    return root


def _split_lists(root: Path, **splits: str) -> None:
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split, stems in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems) + "\n")


def _check_conventions(image, targets, *, image_size, max_boxes) -> None:
    assert image.shape == (*image_size, 3) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    boxes, classes = targets["boxes"], targets["classes"]
    assert boxes.shape == (max_boxes, 4) and boxes.dtype == np.float32
    assert classes.shape == (max_boxes,) and classes.dtype == np.int32
    assert np.all((boxes >= 0) & (boxes <= 1))
    assert np.all(boxes[:, 0] <= boxes[:, 2]) and np.all(boxes[:, 1] <= boxes[:, 3])
    np.testing.assert_array_equal(boxes[classes < 0], 0.0)


def test_voc_folder_with_split_lists_gives_exact_boxes_classes_and_pixels(voc_folder):
    _split_lists(voc_folder, train=["a", "b", "c"], val=["d"], test=["e"])
    data = load_detection(f"folder:{voc_folder}", image_size=(HEIGHT, WIDTH), max_boxes=3)
    assert data.spec == f"folder:{voc_folder}"
    assert data.class_names == ["cat", "dog", "person"]  # sorted set of <name>, the difficult one included
    assert data.sizes == {"train": 3, "val": 1, "test": 1} and data.input_shape == (HEIGHT, WIDTH, 3)
    train, val, test = (_examples(split) for split in (data.train, data.val, data.test))
    for image, targets in train + val + test:
        _check_conventions(image, targets, image_size=(HEIGHT, WIDTH), max_boxes=3)
    (a_image, a), (b_image, b), (_, c) = train
    np.testing.assert_allclose(a["boxes"][:2], [[0.125, 0.25, 0.625, 0.75], [0, 0, 1, 1]], atol=1e-6)
    np.testing.assert_array_equal(a["classes"], [1, 0, -1])
    # The difficult dog of "b" is left out of the targets.
    np.testing.assert_allclose(b["boxes"], [[0.25, 0.125, 0.75, 0.875], [0, 0, 0, 0], [0, 0, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(b["classes"], [2, -1, -1])
    np.testing.assert_allclose(c["boxes"][0], [0.5, 0.5, 1.0, 1.0], atol=1e-6)
    # At the native size the image is the PNG's pixels / 255; the grey one is repeated into three equal channels.
    np.testing.assert_allclose(a_image, _scene(10) / 255.0, atol=1e-6)
    np.testing.assert_allclose(b_image, np.repeat(_scene(60, grey=True), 3, axis=-1) / 255.0, atol=1e-6)
    # "d" has no objects: all padding; "e" runs out of the image on the left and bottom: clipped.
    np.testing.assert_array_equal(val[0][1]["classes"], [-1, -1, -1])
    np.testing.assert_allclose(test[0][1]["boxes"][0], [0.0, 2 / 48, 20 / 64, 1.0], atol=1e-6)


def test_a_detection_folder_is_shared_between_workers_by_file(voc_folder):
    assert_shared_by_file(load_detection(f"folder:{voc_folder}", image_size=(32, 32), seed=0))


def test_voc_folder_without_lists_is_split_by_seed_and_stretched(voc_folder):
    (voc_folder / "classes.txt").write_text("person\ndog\ncat\nhorse\n")
    data = load_detection(f"folder:{voc_folder}", image_size=(32, 32), seed=3, max_boxes=2)
    assert data.class_names == ["person", "dog", "cat", "horse"]
    # 5 images: 20% test = 1, 10% val rounds to 0 but tiny sets keep one, 3 for training.
    assert data.sizes == {"train": 3, "val": 1, "test": 1}
    # Every kept object once, under the classes.txt order (person 0, dog 1, cat 2); "e"'s dog clipped.
    expected = {
        (0.125, 0.25, 0.625, 0.75): 1,
        (0.0, 0.0, 1.0, 1.0): 2,
        (0.25, 0.125, 0.75, 0.875): 0,
        (0.5, 0.5, 1.0, 1.0): 2,
        (0.0, 0.041667, 0.3125, 1.0): 1,
    }
    found = {}
    for split in (data.train, data.val, data.test):
        for image, targets in _examples(split):
            _check_conventions(image, targets, image_size=(32, 32), max_boxes=2)
            for box, label in zip(targets["boxes"], targets["classes"], strict=True):
                if label >= 0:
                    found[tuple(np.round(box.astype(np.float64), 6).tolist())] = int(label)
    assert found == expected
    again = load_detection(f"folder:{voc_folder}", image_size=(32, 32), seed=3, max_boxes=2)
    np.testing.assert_array_equal(_examples(again.test)[0][0], _examples(data.test)[0][0])


def _coco_json(images: list[tuple[int, str]], annotations: list[tuple[int, int, list, int]]) -> dict:
    return {
        "images": [{"id": i, "file_name": name, "width": WIDTH, "height": HEIGHT} for i, name in images],
        "annotations": [
            {"id": n, "image_id": i, "category_id": c, "bbox": bbox, "iscrowd": crowd, "area": bbox[2] * bbox[3]}
            for n, (i, c, bbox, crowd) in enumerate(annotations)
        ],
        "categories": [{"id": 7, "name": "kite"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
    }


@pytest.fixture
def coco_folder(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    train_images = [(i, f"{i:03d}.jpg") for i in range(1, 6)]
    for _, name in train_images:
        _write_image(root / "train2017" / name, _scene(100))
    train = _coco_json(
        train_images,
        [(1, 7, [8, 12, 32, 24], 0), (1, 3, [0, 0, 64, 48], 1), (2, 1, [16, 6, 32, 36], 0)]
        + [(i, 3, [4, 4, 8, 8], 0) for i in (3, 4, 5)],
    )
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(train))
    _write_image(root / "val2017" / "900.png", _scene(50, grey=True))
    val = _coco_json([(900, "900.png"), (901, "901.png")], [(900, 1, [32, 24, 32, 24], 0)])
    _write_image(root / "val2017" / "901.png", _scene(20))
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(val))
    return root


def test_coco_folder_maps_category_ids_and_uses_val_as_test(coco_folder):
    data = load_detection(f"folder:{coco_folder}", image_size=(24, 40), seed=0, max_boxes=4)
    assert data.class_names == ["person", "car", "kite"]  # ids 1, 3, 7 -> 0, 1, 2
    assert data.sizes == {"train": 4, "val": 1, "test": 2}
    test = _examples(data.test)
    for image, targets in test + _examples(data.train) + _examples(data.val):
        _check_conventions(image, targets, image_size=(24, 40), max_boxes=4)
    np.testing.assert_allclose(test[0][1]["boxes"][0], [0.5, 0.5, 1.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(test[0][1]["classes"], [0, -1, -1, -1])
    np.testing.assert_array_equal(test[1][1]["classes"], [-1, -1, -1, -1])  # an image without annotations
    boxes = {}
    for _, targets in _examples(data.train) + _examples(data.val):
        for box, label in zip(targets["boxes"], targets["classes"], strict=True):
            if label >= 0:
                boxes.setdefault(int(label), []).append(np.round(box.astype(np.float64), 6).tolist())
    # Image 1: the kite [8, 12, 32, 24] (x, y, w, h) is kept and the crowd car is dropped.
    assert boxes[2] == [[0.125, 0.25, 0.625, 0.75]]
    assert boxes[0] == [[0.25, 0.125, 0.75, 0.875]]
    assert boxes[1] == [[0.0625, 0.083333, 0.1875, 0.25]] * 3


def test_coco_single_file_layout(tmp_path):
    root = tmp_path / "mine"
    images = [(i, f"{i}.png") for i in range(10)]
    for _, name in images:
        _write_image(root / "images" / name, _scene(30))
    annotations = [(i, 7, [0, 0, 32, 48], 0) for i in range(10)]
    (root / "annotations.json").write_text(json.dumps(_coco_json(images, annotations)))
    data = load_detection(f"folder:{root}", image_size=(16, 16), val_fraction=0.2, max_boxes=1)
    assert data.sizes == {"train": 6, "val": 2, "test": 2}
    for _, targets in _examples(data.train):
        np.testing.assert_allclose(targets["boxes"], [[0.0, 0.0, 0.5, 1.0]], atol=1e-6)
        np.testing.assert_array_equal(targets["classes"], [2])


def _fake_tfds(requested: list[str]):
    """A `_as_dataset` replacement for tfds.testing.mock_data: three examples of known objects per split."""

    def as_dataset(self, split, **kwargs):
        requested.append(str(split))
        bbox = np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0]], np.float32)  # yxyx
        ignored = np.array([False, True, False])
        example = {
            "image": np.full((30, 50, 3), 200, np.uint8),
            "objects": {"bbox": bbox, "label": np.array([3, 7, 11]), "is_difficult": ignored, "is_crowd": ignored},
        }
        signature = tf.nest.map_structure(lambda a: tf.TensorSpec((None,) * a.ndim, tf.as_dtype(a.dtype)), example)
        ds = tf.data.Dataset.from_generator(lambda: iter([example] * 3), output_signature=signature)
        return ds.apply(tf.data.experimental.assert_cardinality(3))

    return as_dataset


@pytest.mark.parametrize(
    ("spec", "num_classes", "splits"),
    [
        ("tfds:voc/2007", 20, ["train", "validation", "test"]),
        ("tfds:coco/2017", 80, ["train[:80%]", "train[80%:]", "validation"]),
    ],
)
def test_tfds_detection_sets(spec, num_classes, splits):
    requested = []
    with tfds.testing.mock_data(as_dataset_fn=_fake_tfds(requested)):
        data = load_detection(spec, image_size=(20, 40), val_fraction=0.2, max_boxes=1)
        examples = {name: _examples(split) for name, split in [("train", data.train), ("test", data.test)]}
    assert requested[-3:] == splits
    assert len(data.class_names) == num_classes and data.num_classes == num_classes
    assert data.sizes == {"train": 3, "val": 3, "test": 3}
    image, targets = examples["train"][0]
    _check_conventions(image, targets, image_size=(20, 40), max_boxes=1)
    np.testing.assert_allclose(image, 200 / 255, atol=1e-6)
    # yxyx [0.1, 0.2, 0.5, 0.6] -> xyxy; the difficult/crowd object is dropped; max_boxes=1 drops the third.
    np.testing.assert_allclose(targets["boxes"], [[0.2, 0.1, 0.6, 0.5]], atol=1e-6)
    np.testing.assert_array_equal(targets["classes"], [3])


def _one_sentence(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("spec", ["", "nope", "tfds:mnist", "tfds:coco/2017_panoptic", "folder:"])
def test_unknown_specs(spec):
    with pytest.raises(DataError) as error:
        load_detection(spec)
    _one_sentence(error, "'shapes'", "'tfds:voc/2007'", "'tfds:coco/2017'", "'folder:PATH'")


def test_folder_errors_name_the_file(tmp_path, voc_folder, coco_folder):
    cases = []
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{tmp_path / 'absent'}")
    cases.append((error, "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{tmp_path / 'empty'}")
    cases.append((error, "neither detection layout"))
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{voc_folder}", masks=True)
    cases.append((error, "masks"))

    (voc_folder / "JPEGImages" / "c.png").unlink()
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{voc_folder}")
    cases.append((error, "c.xml", "c.png", "does not exist"))
    (voc_folder / "Annotations" / "c.xml").write_text(_voc_xml("a.png", [("dog", (1, 2, 3, 4), False)], size=(60, 48)))
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{voc_folder}")
    cases.append((error, "c.xml", "60x48", "64x48"))
    (voc_folder / "Annotations" / "c.xml").write_text("<annotation><object><name>dog</name>")
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{voc_folder}")
    cases.append((error, "c.xml", "not well-formed XML"))
    (voc_folder / "Annotations" / "c.xml").write_text(_voc_xml("a.png", [("dog", ("one", 2, 3, 4), False)]))
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{voc_folder}")
    cases.append((error, "c.xml", "<bndbox/xmin>"))

    train_json = coco_folder / "annotations" / "instances_train2017.json"
    document = json.loads(train_json.read_text())
    document["annotations"][0]["category_id"] = 99
    train_json.write_text(json.dumps(document))
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{coco_folder}")
    cases.append((error, "instances_train2017.json", "99"))
    train_json.write_text('{"images": [')
    with pytest.raises(DataError) as error:
        load_detection(f"folder:{coco_folder}")
    cases.append((error, "instances_train2017.json", "not readable JSON"))
    for error, *fragments in cases:
        _one_sentence(error, *fragments)


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="max_boxes"):
        load_detection("tfds:voc/2007", max_boxes=0)
    with pytest.raises(ValueError, match="val_fraction"):
        load_detection("tfds:voc/2007", val_fraction=0.9)
    with pytest.raises(ValueError, match="shapes"):
        load_detection("tfds:voc/2007", sizes=(1, 1, 1))


def test_coco_folder_masks_from_polygons_and_both_rles(tmp_path):
    from pycocotools import mask as mask_utils

    root = tmp_path / "masks"
    truth = np.zeros((3, HEIGHT, WIDTH), np.uint8)
    truth[0, 12:36, 8:40] = 1  # the polygon's rectangle: corners at pixel edges
    truth[1, 5:20, 44:60] = 1
    truth[1, 10:14, 50:54] = 0  # a hole, which only an RLE can say
    truth[2, 30:46, 2:20] = 1
    compressed = mask_utils.encode(np.asfortranarray(truth[1]))
    runs, current, count = [], 0, 0
    for value in truth[2].flatten(order="F"):  # an uncompressed RLE: run lengths from 0s, column-major
        if value != current:
            runs.append(count)
            current, count = value, 0
        count += 1
    runs.append(count)
    annotations = [
        {"segmentation": [[70, 0, 75, 0, 75, 5]], "bbox": [70, 0, 5, 5]},  # outside the image: dropped with its box
        {"segmentation": [[8, 12, 40, 12, 40, 36, 8, 36]], "bbox": [8, 12, 32, 24]},
        {"segmentation": {"size": [HEIGHT, WIDTH], "counts": compressed["counts"].decode()}, "bbox": [44, 5, 16, 15]},
        {"segmentation": {"size": [HEIGHT, WIDTH], "counts": runs}, "bbox": [2, 30, 18, 16]},
        {"segmentation": [[0, 0, 64, 0, 64, 48]], "bbox": [0, 0, 64, 48], "iscrowd": 1},  # dropped, as its box
    ]
    document = _coco_json([(1, "1.png")], [])
    document["annotations"] = [
        {"id": n, "image_id": 1, "category_id": 1, "area": 1.0, **a} for n, a in enumerate(annotations)
    ]
    _write_image(root / "images" / "1.png", _scene(40))
    (root / "annotations.json").write_text(json.dumps(document))
    data = load_detection(f"folder:{root}", image_size=(HEIGHT, WIDTH), masks=True, max_boxes=5, val_fraction=0.1)
    ((_, targets),) = _examples(data.train)
    assert targets["masks"].shape == (5, HEIGHT, WIDTH) and targets["masks"].dtype == np.uint8
    np.testing.assert_array_equal(targets["classes"], [0, 0, 0, -1, -1])
    # pycocotools rasterises a polygon's edges at pixel centres: allow its one-pixel border
    assert np.abs(targets["masks"][0].astype(int) - truth[0]).sum() <= 2 * (32 + 24)
    assert (targets["masks"][0] & truth[0]).sum() >= 0.85 * truth[0].sum()
    np.testing.assert_array_equal(targets["masks"][1:3], truth[1:3])
    assert not targets["masks"][3:].any()
    half = load_detection(f"folder:{root}", image_size=(24, 32), masks=True, max_boxes=5, val_fraction=0.1)
    ((_, small),) = _examples(half.train)
    # resized with the image, bilinear then 0.5: a pixel is in where either of the two rows it halves is
    np.testing.assert_array_equal(small["masks"][1], truth[1].reshape(24, 2, 32, 2).max(axis=(1, 3)))
    np.testing.assert_array_equal(small["masks"][2], truth[2][::2, ::2])
    with pytest.raises(DataError, match="boxes only"):
        load_detection("tfds:voc/2007", masks=True)
