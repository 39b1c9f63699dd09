"""The embedded `wheat` images: determinism, points on the ears they name, counts, splits and padding."""

from kapps.data.keypoints import load_keypoints
from kapps.data.wheat import WHEAT_POINT_TYPES, load_wheat, render_wheat

import numpy as np
import pytest

TIP, BASE, SPIKELET = (WHEAT_POINT_TYPES.index(name) for name in ("spike_tip", "spike_base", "spikelet"))


def rng(seed):
    return np.random.Generator(np.random.PCG64(seed))


def images(count, seed=0, **options):
    generator = rng(seed)
    return [render_wheat(generator, **options) for _ in range(count)]


def test_one_seed_gives_one_image_and_another_seed_another():
    first, again, other = render_wheat(rng(5)), render_wheat(rng(5)), render_wheat(rng(6))
    assert set(first) == {"image", "points", "types", "spikes", "ears"}
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])


def test_arrays_have_the_documented_shapes_and_types():
    scene = render_wheat(rng(0), image_size=(96, 128))
    n = len(scene["types"])
    assert scene["image"].shape == (96, 128, 3) and scene["image"].dtype == np.uint8
    assert scene["points"].shape == (n, 2) and scene["points"].dtype == np.float32
    assert scene["types"].dtype == np.int32 and scene["spikes"].dtype == np.int32 and scene["spikes"].shape == (n,)
    assert scene["ears"].shape == (96, 128) and scene["ears"].dtype == np.uint8
    assert scene["points"].min() >= 0.0 and scene["points"].max() < 1.0


def test_every_point_lies_on_its_own_ear_and_almost_every_pixel_there_has_the_ear_colour():
    """The ear map at each point names the point's ear; and the pixel there is closer to the mean colour of that
    ear's pixels around it than to the mean colour of the ground around it for at least 97% of the points (97.8%
    measured; with x and y swapped, 16.6%)."""
    close, swapped = [], []
    for scene in images(15, seed=1):
        image, ears = scene["image"].astype(np.float64), scene["ears"]
        cols = np.floor(scene["points"][:, 0] * 256).astype(int)
        rows = np.floor(scene["points"][:, 1] * 256).astype(int)
        np.testing.assert_array_equal(ears[rows, cols], scene["spikes"] + 1)
        for row, col, ear in zip(rows, cols, scene["spikes"], strict=True):
            around = (slice(max(row - 12, 0), row + 13), slice(max(col - 12, 0), col + 13))
            own, ground = ears[around] == ear + 1, ears[around] == 0
            ear_colour, ground_colour = image[around][own].mean(axis=0), image[around][ground].mean(axis=0)
            for pixel, found in ((image[row, col], close), (image[col, row], swapped)):
                found.append(np.linalg.norm(pixel - ear_colour) < np.linalg.norm(pixel - ground_colour))
    assert len(close) > 1000
    assert np.mean(close) >= 0.97 and np.mean(swapped) < 0.5, (np.mean(close), np.mean(swapped))


def test_each_ear_has_one_tip_one_base_and_its_spikelets_in_range():
    counts, ear_counts = [], []
    for scene in images(40, seed=2):
        types, spikes = scene["types"], scene["spikes"]
        ears = int(spikes.max()) + 1
        ear_counts.append(ears)
        assert 1 <= ears <= 8
        assert set(np.unique(scene["ears"])) == set(range(ears + 1))  # every ear is seen
        for ear in range(ears):
            mine = types[spikes == ear]
            assert mine[0] == TIP and mine[1] == BASE and np.all(mine[2:] == SPIKELET)
            seen = len(mine) - 2
            # At least half of an ear's 10 to 25 spikelets stay in view; the last ear drawn keeps all of them.
            assert 5 <= seen <= 25
            if ear == ears - 1:
                assert 10 <= seen <= 25
                counts.append(seen)
        counts_of_ears = np.bincount(spikes, minlength=ears)
        assert np.all(counts_of_ears >= 2 + 5)
    assert min(counts) <= 12 and max(counts) >= 23  # the whole range is drawn
    assert min(ear_counts) == 1 and max(ear_counts) >= 7


def test_spikelets_asked_for_are_all_annotated_on_a_lone_ear():
    for scene in images(10, seed=3, max_spikes=1, spikelets=(12, 12)):
        assert np.array_equal(scene["types"], [TIP, BASE] + [SPIKELET] * 12)
        spikelets = scene["points"][2:] * 256
        steps = np.linalg.norm(np.diff(spikelets, axis=0), axis=1)
        assert steps.min() > 2.5  # neighbours in the two staggered rows stay apart
        tip, base = scene["points"][0] * 256, scene["points"][1] * 256
        # The spikelets run from the base to the tip.
        assert np.linalg.norm(spikelets[0] - base) < np.linalg.norm(spikelets[0] - tip)
        assert np.linalg.norm(spikelets[-1] - tip) < np.linalg.norm(spikelets[-1] - base)


def spikelet_spacing(scenes, side):
    """The median distance in pixels from each spikelet to the nearest other spikelet of its ear."""
    gaps = []
    for scene in scenes:
        xy = scene["points"] * side
        for ear in np.unique(scene["spikes"]):
            mine = xy[(scene["spikes"] == ear) & (scene["types"] == SPIKELET)]
            if len(mine) > 1:
                d = np.linalg.norm(mine[:, None] - mine[None], axis=-1) + np.eye(len(mine)) * 1e9
                gaps += list(d.min(axis=1))
    return float(np.median(gaps))


def test_zoom_draws_every_length_larger_and_one_leaves_the_images_as_they_were():
    """At zoom 2 a 128-pixel image's ears are drawn as large in pixels as a 256-pixel image's at zoom 1 (the
    spikelets as far apart), twice as large as at zoom 1, and fewer ears fit; zoom 1 is the default's image."""
    plain, zoomed = images(12, image_size=(128, 128)), images(12, image_size=(128, 128), zoom=2.0)
    large = images(12, image_size=(256, 256))
    spacing = {name: spikelet_spacing(s, side) for name, s, side in
               (("plain", plain, 128), ("zoomed", zoomed, 128), ("large", large, 256))}  # fmt: skip
    assert spacing["zoomed"] == pytest.approx(2 * spacing["plain"], rel=0.15), spacing
    assert spacing["zoomed"] == pytest.approx(spacing["large"], rel=0.15), spacing
    ears = [sum(len(np.unique(s["spikes"])) for s in scenes) for scenes in (plain, zoomed)]
    assert ears[1] < ears[0], ears
    np.testing.assert_array_equal(
        images(1, image_size=(96, 96), zoom=1.0)[0]["image"], images(1, image_size=(96, 96))[0]["image"]
    )


def test_load_wheat_pads_points_and_types_with_minus_one():
    data = load_wheat(image_size=(96, 96), seed=0, sizes=(4, 2, 2), max_spikes=3)
    assert data.spec == "wheat" and data.class_names == list(WHEAT_POINT_TYPES)
    assert data.input_shape == (96, 96, 3) and data.sizes == {"train": 4, "val": 2, "test": 2}
    examples = list(data.train.as_numpy_iterator())
    assert len(examples) == 4
    for image, targets in examples:
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert targets["points"].shape == (3 * 27, 2) and targets["types"].shape == (3 * 27,)
        n = int(np.sum(targets["types"] >= 0))
        assert 2 <= n <= 3 * 27 and np.all(targets["types"][n:] == -1) and np.all(targets["points"][n:] == -1.0)
        assert np.all((targets["points"][:n] >= 0) & (targets["points"][:n] < 1))
    cut = load_wheat(image_size=(96, 96), seed=0, sizes=(4, 2, 2), max_spikes=3, max_points=5)
    for (_, full), (_, short) in zip(examples, cut.train.as_numpy_iterator(), strict=True):
        n = min(int(np.sum(full["types"] >= 0)), 5)
        np.testing.assert_array_equal(short["points"][:n], full["points"][:n])
        np.testing.assert_array_equal(short["types"], np.pad(full["types"][:n], (0, 5 - n), constant_values=-1))


def test_splits_are_fixed_by_the_seed_and_the_first_images_ignore_the_sizes():
    def arrays(ds):
        return list(ds.as_numpy_iterator())

    small = load_wheat(image_size=(80, 80), seed=4, sizes=(2, 1, 2))
    large = load_wheat(image_size=(80, 80), seed=4, sizes=(4, 3, 2))
    for split, count in (("train", 2), ("val", 1), ("test", 2)):
        for (image_a, a), (image_b, b) in zip(arrays(getattr(small, split)), arrays(getattr(large, split))[:count],
                                              strict=True):  # fmt: skip
            np.testing.assert_array_equal(image_a, image_b)
            np.testing.assert_array_equal(a["points"], b["points"])
    train = {image.tobytes() for image, _ in arrays(large.train)}
    assert not any(image.tobytes() in train for image, _ in arrays(large.test) + arrays(large.val))
    other = load_wheat(image_size=(80, 80), seed=5, sizes=(2, 1, 2))
    assert not np.array_equal(arrays(other.test)[0][0], arrays(small.test)[0][0])
    through = load_keypoints("wheat", image_size=(80, 80), seed=4, sizes=(2, 1, 2))
    assert through.class_names == list(WHEAT_POINT_TYPES)
    for (image_a, a), (image_b, b) in zip(arrays(through.test), arrays(small.test), strict=True):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(a["types"], b["types"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": (32, 64)}, "image_size"),
        ({"max_spikes": 0}, "max_spikes"),
        ({"spikelets": (12, 10)}, "spikelets"),
        ({"spikelets": (1, 10)}, "spikelets"),
        ({"max_points": 0}, "max_points"),
        ({"zoom": 0.1}, "zoom must be a number from 0.25 to 8"),
        ({"seed": -1}, "seed"),
        ({"sizes": (10, 2)}, "sizes"),
    ],
)
def test_bad_arguments_name_themselves(options, message):
    with pytest.raises(ValueError, match=message):
        load_wheat(**options)
