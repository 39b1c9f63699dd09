"""Segmentation sources: the shapes scenes' semantic masks, VOC-layout and CVPPP-layout folders, the Oxford-IIIT Pet
trimaps through tensorflow-datasets (mocked), the errors of bad specs and folders, and the instance labels of
`load_segmentation_instances`."""

import kapps.data
from kapps.data import load_detection, load_segmentation, load_segmentation_instances
from kapps.data.segmentation_folder import VOC_CLASSES
from kapps.errors import DataError

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from tests.data.shares import assert_shared_by_file


def _examples(split) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(image, mask) for image, mask in split.as_numpy_iterator()]


def _palette_png(path, indices: np.ndarray) -> None:
    """A VOC-style mask: palette PNG whose pixel values are `indices`, its colours unlike the indices."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[:, 0] = (np.arange(256) * 37 + 128) % 256  # index 1 is drawn (165, ...), not 1
    palette[255] = (224, 224, 192)
    image.putpalette(palette.reshape(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _image(path, height: int, width: int, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


def _mask(seed: int, *, height: int = 6, width: int = 8, largest: int = 3) -> np.ndarray:
    mask = np.random.default_rng(seed).integers(0, largest + 1, (height, width))
    mask[0, 0] = largest
    mask[-1, -1] = 255  # VOC's border label
    return mask


@pytest.fixture
def voc_folder(tmp_path):
    """Six 6x8 images with palette masks of indices 0..3 and 255, listed 4 for train and 2 for val."""
    root = tmp_path / "voc"
    for i in range(6):
        _image(root / "JPEGImages" / f"im{i}.png", 6, 8, 40 * i)
        _palette_png(root / "SegmentationClass" / f"im{i}.png", _mask(i))
    _image(root / "JPEGImages" / "unlabelled.png", 6, 8, 0)  # VOC has more images than masks: left out
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("im0\nim1\nim2\nim3\n")
    (lists / "val.txt").write_text("im4\nim5\n")
    return root


def test_shapes_masks_are_the_scenes_semantic_masks():
    data = load_segmentation("shapes", image_size=(32, 48), seed=3, sizes=(3, 1, 2), max_objects=4)
    scenes = load_detection("shapes", image_size=(32, 48), seed=3, sizes=(3, 1, 2), max_objects=4, masks=True)
    assert data.class_names == ["background", "circle", "square", "triangle", "cross"]
    assert data.sizes == {"train": 3, "val": 1, "test": 2} and data.input_shape == (32, 48, 3)
    for (image, mask), (scene, targets) in zip(_examples(data.test), scenes.test.as_numpy_iterator(), strict=True):
        assert image.dtype == np.float32 and mask.dtype == np.int32 and mask.shape == (32, 48)
        np.testing.assert_array_equal(image, scene)
        np.testing.assert_array_equal(mask, targets["semantic"])
        # each object's pixels carry its class + 1, the rest is background
        expected = np.zeros((32, 48), np.int32)
        for row, cls in enumerate(targets["classes"]):
            if cls >= 0:
                expected[targets["masks"][row] > 0] = cls + 1
        np.testing.assert_array_equal(mask, expected)
        assert 0 < np.count_nonzero(mask) < mask.size


def test_voc_folder_reads_palette_indices_not_colours(voc_folder):
    data = load_segmentation(f"folder:{voc_folder}", image_size=(6, 8), seed=0, val_fraction=0.25)
    # val.txt is the test split (VOC publishes no test masks); validation is carved from train: 1 of 4
    assert data.sizes == {"train": 3, "val": 1, "test": 2}
    test = _examples(data.test)
    for (image, mask), i in zip(test, (4, 5), strict=True):
        np.testing.assert_array_equal(mask, _mask(i))
        np.testing.assert_allclose(image, 40 * i / 255, atol=1e-6)
    trained = {round(float(image[0, 0, 0]) * 255) for image, _ in _examples(data.train) + _examples(data.val)}
    assert trained == {0, 40, 80, 120}
    # no classes.txt and largest index 3: generic names, background first
    assert data.class_names == ["background", "class_1", "class_2", "class_3"]


def test_a_segmentation_folder_is_shared_between_workers_by_file(voc_folder):
    assert_shared_by_file(load_segmentation(f"folder:{voc_folder}", image_size=(6, 8), seed=0))


def test_masks_are_resized_by_nearest_neighbour(voc_folder):
    data = load_segmentation(f"folder:{voc_folder}", image_size=(12, 24), seed=0)
    _, mask = _examples(data.test)[0]
    # twice the rows, three times the columns: every pixel repeated, 255 kept, no index in between
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(_mask(4), 2, axis=0), 3, axis=1))


def test_voc_classes_come_from_classes_txt_or_voc_when_21_indices(voc_folder, tmp_path):
    (voc_folder / "classes.txt").write_text("sky\nroad\ncar\nperson\ntree\n")
    assert load_segmentation(f"folder:{voc_folder}", image_size=(6, 8)).class_names == [
        "sky",
        "road",
        "car",
        "person",
        "tree",
    ]
    (voc_folder / "classes.txt").write_text("sky\nroad\n")
    with pytest.raises(DataError, match=r"use class index 3 but .*classes.txt' names only 2 classes\.$"):
        load_segmentation(f"folder:{voc_folder}", image_size=(6, 8))

    root = tmp_path / "voc21"
    _image(root / "images" / "a.jpg", 6, 8, 0)  # images/ and a JPEG also do
    _palette_png(root / "SegmentationClass" / "a.png", _mask(0, largest=20))
    data = load_segmentation(f"folder:{root}", image_size=(6, 8))
    assert data.class_names == list(VOC_CLASSES) and len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person"
    assert data.sizes == {"train": 1, "val": 0, "test": 0}  # fewer than three examples: nothing carved
    np.testing.assert_array_equal(_examples(data.train)[0][1], _mask(0, largest=20))


def test_cvppp_folder_gives_plant_and_background(tmp_path):
    root = tmp_path / "A1"  # CVPPP's folders: A1/plant001_rgb.png ...
    root.mkdir()
    for i in range(5):
        rgba = np.zeros((10, 12, 4), np.uint8)
        rgba[..., 1], rgba[..., 3] = 30 * i, 255
        Image.fromarray(rgba, mode="RGBA").save(root / f"plant{i:03d}_rgb.png")
        fg = np.zeros((10, 12), np.uint8)
        fg[2 : 4 + i, 3:9] = 255
        Image.fromarray(fg).save(root / f"plant{i:03d}_fg.png")
        Image.fromarray(fg // 255 * (i + 1)).save(root / f"plant{i:03d}_label.png")  # instance labels: not read
    data = load_segmentation(f"folder:{tmp_path}", image_size=(10, 12), seed=1)
    assert data.class_names == ["background", "plant"]
    assert data.sizes == {"train": 3, "val": 1, "test": 1}
    examples = _examples(data.train) + _examples(data.val) + _examples(data.test)
    for image, mask in examples:
        i = round(float(image[0, 0, 1]) * 255) // 30
        expected = np.zeros((10, 12), np.int32)
        expected[2 : 4 + i, 3:9] = 1
        np.testing.assert_array_equal(mask, expected)
        assert image.shape == (10, 12, 3)
    assert sorted(round(float(image[0, 0, 1]) * 255) // 30 for image, _ in examples) == [0, 1, 2, 3, 4]


def _fake_pets(requested: list[str]):
    """A `_as_dataset` replacement for tfds.testing.mock_data: two pets whose trimaps hold 1, 2 and 3 in columns."""

    def as_dataset(self, split, **kwargs):
        requested.append(str(split))
        trimap = np.array([[1, 2, 3, 2], [1, 1, 3, 2]], np.uint8)[..., None]
        example = {"image": np.full((2, 4, 3), 90, np.uint8), "segmentation_mask": trimap, "label": np.int64(3)}
        signature = tf.nest.map_structure(lambda a: tf.TensorSpec((None,) * a.ndim, tf.as_dtype(a.dtype)), example)
        ds = tf.data.Dataset.from_generator(lambda: iter([example] * 2), output_signature=signature)
        return ds.apply(tf.data.experimental.assert_cardinality(2))

    return as_dataset


def test_pet_trimaps_become_background_pet_and_ignored_border():
    requested = []
    with tfds.testing.mock_data(as_dataset_fn=_fake_pets(requested)):
        data = load_segmentation("tfds:oxford_iiit_pet", image_size=(4, 8), val_fraction=0.2)
        image, mask = _examples(data.train)[0]
    assert requested[-3:] == ["train[:80%]", "train[80%:]", "test"]
    assert data.class_names == ["background", "pet"] and data.sizes == {"train": 2, "val": 2, "test": 2}
    # trimap 1 (pet) -> 1, 2 (background) -> 0, 3 (border) -> 255; rows doubled, columns doubled by nearest
    expected = np.array([[1, 0, 255, 0], [1, 1, 255, 0]])
    np.testing.assert_array_equal(mask, np.repeat(np.repeat(expected, 2, axis=0), 2, axis=1))
    np.testing.assert_allclose(image, 90 / 255, atol=1e-6)


def _one_sentence(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0, message
    for fragment in fragments:
        assert fragment in message, message


def test_tfds_voc_has_no_segmentation_masks():
    with pytest.raises(DataError) as error:
        load_segmentation("tfds:voc/2012", image_size=(8, 8))
    _one_sentence(error, "'voc' builder has boxes and image labels but no segmentation masks", "'folder:PATH'")


@pytest.mark.parametrize("spec", ["", "nope", "tfds:mnist", "tfds:oxford_flowers102", "folder:", 7])
def test_unknown_specs(spec):
    with pytest.raises(DataError) as error:
        load_segmentation(spec, image_size=(8, 8))
    _one_sentence(error, "'shapes'", "'tfds:oxford_iiit_pet'", "'folder:PATH'")


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match=r"^image_size must be two positive integers"):
        load_segmentation("shapes", image_size=(8,))
    with pytest.raises(ValueError, match=r"^val_fraction must be in \(0, 0.8\)"):
        load_segmentation("shapes", image_size=(16, 16), val_fraction=0.9)
    with pytest.raises(ValueError, match=r"^Only the 'shapes' source takes extra keywords"):
        load_segmentation("folder:x", image_size=(16, 16), sizes=(1, 1, 1))


def test_folder_errors_name_the_file(voc_folder, tmp_path):
    def error(spec) -> str:
        with pytest.raises(DataError) as caught:
            load_segmentation(spec, image_size=(6, 8))
        _one_sentence(caught)
        return str(caught.value)

    assert "does not exist" in error(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    assert "neither segmentation layout" in error(f"folder:{tmp_path / 'empty'}")

    (voc_folder / "ImageSets" / "Segmentation" / "val.txt").write_text("im4\nim9\n")
    assert error(f"folder:{voc_folder}").endswith("val.txt' names 'im9', which has no mask.")
    (voc_folder / "ImageSets" / "Segmentation" / "val.txt").write_text("im4\n")

    _palette_png(voc_folder / "SegmentationClass" / "orphan.png", _mask(0))
    assert "orphan.png' has no image of the same name" in error(f"folder:{voc_folder}")
    _image(voc_folder / "JPEGImages" / "orphan.png", 7, 8, 0)
    assert error(f"folder:{voc_folder}").endswith(
        "is 8x6 pixels but its image " + repr(str(voc_folder / "JPEGImages" / "orphan.png")) + " is 8x7."
    )
    _image(voc_folder / "JPEGImages" / "orphan.png", 6, 8, 0)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(voc_folder / "SegmentationClass" / "orphan.png")
    assert "is a RGB image; class-index masks are palette (P) or greyscale (L) PNGs" in error(f"folder:{voc_folder}")

    cvppp = tmp_path / "cvppp"
    _image(cvppp / "plant001_rgb.png", 4, 4, 0)
    assert error(f"folder:{cvppp}").endswith("has no foreground mask 'plant001_fg.png' beside it.")
    (tmp_path / "lonely" / "SegmentationClass").mkdir(parents=True)
    assert "has SegmentationClass/ but no JPEGImages/ or images/" in error(f"folder:{tmp_path / 'lonely'}")


def test_shapes_instances_are_the_scenes_objects():
    kwargs = {"image_size": (32, 48), "seed": 3, "sizes": (3, 1, 6), "max_objects": 4}
    data = load_segmentation_instances("shapes", **kwargs)
    plain = load_segmentation("shapes", **kwargs)
    scenes = load_detection("shapes", masks=True, **kwargs)
    assert data.class_names == plain.class_names and data.sizes == plain.sizes
    triples = list(data.test.as_numpy_iterator())
    for (image, mask, instances), (plain_image, plain_mask), (_, targets) in zip(
        triples, _examples(plain.test), scenes.test.as_numpy_iterator(), strict=True
    ):
        np.testing.assert_array_equal(image, plain_image)
        np.testing.assert_array_equal(mask, plain_mask)
        assert instances.dtype == np.int32 and instances.shape == (32, 48)
        # object k of the scene (row k of its masks) is k + 1, the background 0
        expected = np.zeros((32, 48), np.int32)
        for row in range(len(targets["masks"])):
            expected[targets["masks"][row] > 0] = row + 1
        np.testing.assert_array_equal(instances, expected)
        # one class an object
        for k in np.unique(instances[instances > 0]):
            assert len(np.unique(mask[instances == k])) == 1
    assert max(int(instances.max()) for _, _, instances in triples) >= 2


def test_voc_folder_instances_come_from_segmentation_object(voc_folder):
    objects = {i: np.random.default_rng(10 + i).integers(0, 4, (6, 8)) for i in range(6)}
    for i, labels in objects.items():
        labels[0, 0] = 255  # VOC's void band in the object PNGs too: no object of its own
        _palette_png(voc_folder / "SegmentationObject" / f"im{i}.png", labels)
    data = load_segmentation_instances(f"folder:{voc_folder}", image_size=(12, 24), seed=0, val_fraction=0.25)
    assert data.sizes == {"train": 3, "val": 1, "test": 2}
    for (_, mask, instances), i in zip(data.test.as_numpy_iterator(), (4, 5), strict=True):
        expected = np.where(objects[i] == 255, 0, objects[i])
        np.testing.assert_array_equal(instances, np.repeat(np.repeat(expected, 2, axis=0), 3, axis=1))
        np.testing.assert_array_equal(mask, np.repeat(np.repeat(_mask(i), 2, axis=0), 3, axis=1))
        assert instances.dtype == np.int32


def test_cvppp_instances_are_the_label_pngs(tmp_path):
    root = tmp_path / "A1"
    root.mkdir()
    for i in range(3):
        _image(root / f"plant{i}_rgb.png", 6, 8, 50 * i)
        leaves = np.zeros((6, 8), np.uint8)
        leaves[1:3, 1:4], leaves[3:5, 4:7] = i + 1, i + 2  # two touching leaves
        Image.fromarray(leaves, mode="L").save(root / f"plant{i}_label.png")
        Image.fromarray((leaves > 0).astype(np.uint8) * 255).save(root / f"plant{i}_fg.png")
    data = load_segmentation_instances(f"folder:{tmp_path}", image_size=(6, 8), seed=0)
    examples = [*data.train.as_numpy_iterator(), *data.val.as_numpy_iterator(), *data.test.as_numpy_iterator()]
    assert len(examples) == 3
    for image, mask, instances in examples:
        i = round(float(image[0, 0, 0]) * 255) // 50
        assert set(np.unique(instances)) == {0, i + 1, i + 2}
        np.testing.assert_array_equal(mask, instances > 0)


def test_sources_without_instance_labels_are_refused(voc_folder, tmp_path):
    def error(spec) -> str:
        with pytest.raises(DataError) as caught:
            load_segmentation_instances(spec, image_size=(6, 8))
        _one_sentence(caught)
        return str(caught.value)

    assert error("tfds:oxford_iiit_pet").startswith("'tfds:oxford_iiit_pet' has no instance labels: its trimaps")
    assert error(f"folder:{voc_folder}").endswith(
        "has no instance labels: no SegmentationObject/ or instances/ beside SegmentationClass/."
    )
    for i in range(5):
        _palette_png(voc_folder / "SegmentationObject" / f"im{i}.png", _mask(i))
    assert error(f"folder:{voc_folder}").endswith(
        f"im5.png' has no instance labels {str(voc_folder / 'SegmentationObject' / 'im5.png')!r}."
    )
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(voc_folder / "SegmentationObject" / "im5.png")
    assert "is a RGB image; instance labels are palette (P) or greyscale (L) PNGs" in error(f"folder:{voc_folder}")

    cvppp = tmp_path / "cvppp"
    _image(cvppp / "plant001_rgb.png", 6, 8, 0)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(cvppp / "plant001_fg.png")
    assert error(f"folder:{cvppp}").endswith("has no instance labels 'plant001_label.png' beside it.")


def test_sources_are_listed():
    assert kapps.data.SEGMENTATION_SOURCES == ("shapes", "tfds:oxford_iiit_pet", "folder:PATH")
    assert kapps.data.IGNORE_LABEL == 255
