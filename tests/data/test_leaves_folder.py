"""`load_instances("folder:PATH")` on the CVPPP layout: palette, 16-bit and RGB labels, nearest-neighbour resizing,
numbering by area, split lists, and one-sentence errors for bad folders."""

from kapps.data.instances import INSTANCE_SOURCES, load_instances
from kapps.data.leaves_folder import numbered_labels
from kapps.errors import DataError

import numpy as np
import pytest
from PIL import Image

from tests.data.shares import assert_shared_by_file

# A 6x8 plant: leaf 7 (12 pixels), leaf 3 (8 pixels), leaf 9 (4 pixels); palette indices, not consecutive.
LABELS = np.array(
    [
        [0, 7, 7, 7, 0, 3, 3, 0],
        [0, 7, 7, 7, 0, 3, 3, 0],
        [0, 7, 7, 7, 0, 3, 3, 0],
        [0, 7, 7, 7, 0, 3, 3, 0],
        [0, 0, 0, 0, 0, 0, 9, 9],
        [0, 0, 0, 0, 0, 0, 9, 9],
    ],
    np.uint8,
)
NUMBERED = np.where(LABELS == 7, 1, np.where(LABELS == 3, 2, np.where(LABELS == 9, 3, 0)))


def palette_png(path, labels):
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette([value for k in range(256) for value in ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)])
    image.save(path)


def plant(folder, stem, labels, *, write_labels=palette_png):
    folder.mkdir(parents=True, exist_ok=True)
    height, width = labels.shape
    colours = np.full((height, width, 3), 60, np.uint8)
    colours[labels > 0] = (40, 160, 40)
    Image.fromarray(colours).save(folder / f"{stem}_rgb.png")
    write_labels(folder / f"{stem}_label.png", labels)
    Image.fromarray(((labels > 0) * 255).astype(np.uint8)).save(folder / f"{stem}_fg.png")


def cvppp(tmp_path, count=5):
    for k in range(count):
        plant(tmp_path / ("A1" if k < 3 else "A2"), f"plant{k + 1:03d}", np.roll(LABELS, k, axis=1))
    return tmp_path


def examples(ds):
    return [(image.numpy(), {key: value.numpy() for key, value in targets.items()}) for image, targets in ds]


def test_the_folder_is_shared_between_workers_by_file(tmp_path):
    assert_shared_by_file(load_instances(f"folder:{cvppp(tmp_path, count=6)}", image_size=(6, 8), seed=0))


def test_the_folder_source_is_listed():
    assert INSTANCE_SOURCES == ("leaves", "folder:PATH")


def test_palette_labels_are_read_as_indices_and_numbered_by_area(tmp_path):
    root = cvppp(tmp_path, count=1)
    data = load_instances(f"folder:{root}", image_size=(6, 8), seed=0)
    ((image, targets),) = examples(data.train.concatenate(data.val).concatenate(data.test))
    np.testing.assert_array_equal(targets["labels"], NUMBERED)
    assert targets["count"] == 3 and targets["masks"].shape == (3, 6, 8)  # max_leaves: the most in the folder
    for k in range(3):
        np.testing.assert_array_equal(targets["masks"][k], np.equal(NUMBERED, k + 1))
    np.testing.assert_allclose(image[0, 1], np.array([40, 160, 40]) / 255, atol=1e-6)
    assert data.class_names == ["background", "leaf"] and data.input_shape == (6, 8, 3)


def test_sixteen_bit_and_rgb_labels_give_the_same_leaves(tmp_path):
    def sixteen_bit(path, labels):
        Image.fromarray(labels.astype(np.uint16) * 1000).save(path)  # values up to 9000 need 16 bits

    def rgb(path, labels):
        colours = np.zeros((*labels.shape, 3), np.uint8)
        for value, colour in ((7, (255, 0, 0)), (3, (0, 255, 0)), (9, (10, 20, 30))):
            colours[labels == value] = colour
        Image.fromarray(colours).save(path)

    plant(tmp_path / "A3", "plant001", LABELS, write_labels=sixteen_bit)
    plant(tmp_path / "A4", "plant002", LABELS, write_labels=rgb)
    assert Image.open(tmp_path / "A3" / "plant001_label.png").mode.startswith("I")
    data = load_instances(f"folder:{tmp_path}", image_size=(6, 8), seed=0, val_fraction=0.5)
    found = examples(data.train.concatenate(data.val).concatenate(data.test))
    assert len(found) == 2
    for _, targets in found:
        np.testing.assert_array_equal(targets["labels"], NUMBERED)


def test_labels_are_resized_by_nearest_neighbour_and_a_vanished_leaf_is_not_counted():
    # Halving takes the source pixel whose centre is nearest each target pixel's: rows 1, 3, 5, columns 1, 3, 5, 7.
    np.testing.assert_array_equal(numbered_labels(LABELS, (3, 4)), [[1, 1, 2, 0], [1, 1, 2, 0], [0, 0, 0, 3]])
    # Columns 2 and 6: leaves 7 and 3 keep two pixels each (the smaller value first), leaf 9 one.
    np.testing.assert_array_equal(numbered_labels(LABELS, (3, 2)), [[2, 1], [2, 1], [0, 3]])
    # One row, source row 3: leaf 9 has no pixel left and is not counted.
    np.testing.assert_array_equal(numbered_labels(LABELS, (1, 4)), [[1, 1, 2, 0]])
    doubled = numbered_labels(LABELS, (12, 16))
    np.testing.assert_array_equal(doubled, np.repeat(np.repeat(NUMBERED, 2, 0), 2, 1))


def test_leaves_of_equal_area_keep_the_order_of_their_values():
    labels = np.array([[5, 5, 0, 2, 2]])
    np.testing.assert_array_equal(numbered_labels(labels, (1, 5)), [[2, 2, 0, 1, 1]])


def test_split_lists_name_stems_below_the_folder_and_the_rest_is_carved_by_the_seed(tmp_path):
    root = cvppp(tmp_path, count=6)
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("A2/plant005\nA1/plant002\n")
    data = load_instances(f"folder:{root}", image_size=(6, 8), seed=1, val_fraction=0.25)
    assert data.sizes == {"train": 3, "val": 1, "test": 2}
    test_labels = [targets["labels"] for _, targets in examples(data.test)]
    expected = [np.roll(LABELS, k, axis=1) for k in (4, 1)]
    for labels, source in zip(test_labels, expected, strict=True):
        np.testing.assert_array_equal(labels > 0, source > 0)
    again = load_instances(f"folder:{root}", image_size=(6, 8), seed=1, val_fraction=0.25)
    first = [t["labels"] for _, t in examples(data.val)]
    second = [t["labels"] for _, t in examples(again.val)]
    np.testing.assert_array_equal(first, second)


def test_max_leaves_pads_the_masks_and_a_plant_with_more_leaves_is_refused(tmp_path):
    root = cvppp(tmp_path, count=3)
    data = load_instances(f"folder:{root}", image_size=(6, 8), max_leaves=5)
    _, targets = examples(data.train)[0]
    assert targets["masks"].shape == (5, 6, 8) and targets["masks"][3:].sum() == 0
    with pytest.raises(DataError, match="has 3 leaves, more than max_leaves=2"):
        load_instances(f"folder:{root}", image_size=(6, 8), max_leaves=2)


def test_bad_folders_get_one_sentence(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_instances(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="no CVPPP images"):
        load_instances(f"folder:{tmp_path}")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "plant001_rgb.png")
    with pytest.raises(DataError, match="has no instance labels 'plant001_label.png'"):
        load_instances(f"folder:{tmp_path}")
    palette_png(tmp_path / "plant001_label.png", LABELS[:, :6])
    with pytest.raises(DataError, match="is 6x6 pixels but its image"):
        load_instances(f"folder:{tmp_path}")
    Image.fromarray(np.zeros((6, 8), np.float32)).save(tmp_path / "plant001_label.tiff")
    (tmp_path / "plant001_label.tiff").rename(tmp_path / "plant001_label.png")
    with pytest.raises(DataError, match="is a F image"):
        load_instances(f"folder:{tmp_path}")
    palette_png(tmp_path / "plant001_label.png", LABELS)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("plant404\n")
    with pytest.raises(DataError, match="names 'plant404', which has no"):
        load_instances(f"folder:{tmp_path}")


def test_unknown_sources_and_bad_arguments_are_refused():
    with pytest.raises(DataError, match="Unknown instance source 'cvppp'"):
        load_instances("cvppp")
    with pytest.raises(ValueError, match="image_size"):
        load_instances("leaves", image_size=(0, 5))
    with pytest.raises(ValueError, match="max_leaves"):
        load_instances("leaves", max_leaves=0)
    with pytest.raises(ValueError, match="Only the 'leaves' source"):
        load_instances("folder:/tmp", sizes=(1, 1, 1))
