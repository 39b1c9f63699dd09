"""Counting ears from tips, bases and spikelets: the support of a tip-base line, the pairing, the count, and the
thresholds chosen for exact counts, on hand-built points."""

from kapps.keypoints.ears import EarCounter, choose_ear_thresholds, line_support, pair_ends

import numpy as np
import pytest

TIP, BASE, SPIKELET = 0, 1, 2


def ear(tip, base, spikelets=12):
    """An ear's points: its tip and base, and spikelets evenly along the line between them."""
    tip, base = np.asarray(tip, float), np.asarray(base, float)
    along = base + np.linspace(0.05, 0.95, spikelets)[:, None] * (tip - base)
    return tip, base, along


def image(*parts):
    """One image's points from `(type, xy (N, 2), score)` parts."""
    points, types, scores = [], [], []
    for kind, xy, score in parts:
        xy = np.asarray(xy, float).reshape(-1, 2)
        points.append(xy)
        types += [kind] * len(xy)
        scores += [score] * len(xy)
    return {"points": np.concatenate(points), "types": np.array(types), "scores": np.array(scores)}


def counter(**kwargs):
    settings = {"pair_threshold": 0.5, "single_threshold": 0.8, "spikelet_threshold": 0.5}
    return EarCounter(tip=TIP, base=BASE, spikelet=SPIKELET, **{**settings, **kwargs})


def test_line_support_is_the_share_of_the_line_near_a_spikelet():
    tips, bases = np.array([[0.0, 0.0]]), np.array([[0.0, 100.0], [100.0, 0.0]])
    spikelets = np.array([[0.0, y] for y in range(15, 86, 5)], float)  # along the first line only, 5 px apart
    support = line_support(tips, bases, spikelets, radius=3.0)
    # the 16 samples of the first line lie between 15 and 85 px down it, each within 2.5 px of a spikelet
    assert support[0, 0] == pytest.approx(1.0)
    # along the second line (the x axis) the samples are 15-85 px from the y axis: near none
    assert support[0, 1] == 0.0
    half = line_support(tips, bases[:1], spikelets[spikelets[:, 1] <= 50], radius=3.0)  # the upper half covered
    assert half[0, 0] == pytest.approx(9 / 16)  # samples at 15 + 70 k / 15 px: 9 within 3 px of 50 px or above
    assert line_support(tips, bases, np.zeros((0, 2)), radius=3.0).tolist() == [[0.0, 0.0]]


def test_pairs_are_one_to_one_and_need_support():
    support = np.array([[0.9, 0.85], [0.95, 0.1]])
    assert pair_ends(support, min_support=0.8) == ([0, 1], [1, 0])  # two pairs beat the single best one
    assert pair_ends(support, min_support=0.92) == ([1], [0])
    assert pair_ends(np.zeros((0, 3)), min_support=0.8) == ([], [])


def test_an_ear_counts_once_from_its_two_ends_and_a_stray_end_only_if_confident():
    tip1, base1, along1 = ear((50, 20), (60, 150))
    tip2, base2, along2 = ear((150, 30), (140, 160))
    two_ears = [(TIP, tip1, 0.6), (BASE, base1, 0.6), (SPIKELET, along1, 0.9)]
    two_ears += [(TIP, tip2, 0.7), (BASE, base2, 0.55), (SPIKELET, along2, 0.9)]
    assert counter().count(image(*two_ears)) == 2  # neither end alone above 0.8: the pairs count
    assert counter(pair_threshold=0.65).count(image(*two_ears)) == 0  # ear 2's tip (0.7) is alone and not sure
    assert counter(pair_threshold=0.65, single_threshold=0.65).count(image(*two_ears)) == 1
    # a second peak on ear 1's tip: unpaired, so it counts only above the single threshold
    assert counter().count(image(*two_ears, (TIP, (52, 30), 0.7))) == 2
    assert counter().count(image(*two_ears, (TIP, (52, 30), 0.85))) == 3
    # an ear whose tip was missed: its base counts if confident alone
    third = [(BASE, (220, 200), 0.9)]
    assert counter().count(image(*two_ears, *third)) == 3
    # the spikelets too faint to count: no line is supported, and only confident ends are ears
    faint = [(k, xy, 0.3 if k == SPIKELET else s) for k, xy, s in two_ears]
    assert counter().count(image(*faint)) == 0
    assert counter(single_threshold=0.65).count(image(*faint)) == 1
    np.testing.assert_array_equal(counter().counts([image(*two_ears), image(*faint)]), [2, 0])


def test_the_ends_of_two_ears_side_by_side_are_not_paired_across():
    """The line from one ear's tip to the other's base crosses the gap between them, where no spikelet is: only
    the two ears' own lines are supported, so a faint end pairs with its own ear's end alone."""
    tip1, base1, along1 = ear((50, 20), (50, 150))
    tip2, base2, along2 = ear((110, 20), (110, 150))
    tips, bases, spikelets = np.stack([tip1, tip2]), np.stack([base1, base2]), np.concatenate([along1, along2])
    support = line_support(tips, bases, spikelets, radius=10)
    assert support[0, 0] == support[1, 1] == 1.0
    assert support[0, 1] < 0.3 and support[1, 0] < 0.3  # only the samples near the ends, at the other ear
    # one faint tip and one faint base: an ear if they are one ear's, none if they are two ears' ends
    assert counter(radius=10).count(image((TIP, tip1, 0.6), (BASE, base1, 0.6), (SPIKELET, spikelets, 0.9))) == 1
    assert counter(radius=10).count(image((TIP, tip1, 0.6), (BASE, base2, 0.6), (SPIKELET, spikelets, 0.9))) == 0


def test_thresholds_are_chosen_for_exact_counts():
    tip1, base1, along1 = ear((50, 20), (60, 150))
    tip2, base2, along2 = ear((150, 30), (140, 160))
    spikelets = [(SPIKELET, along1, 0.9), (SPIKELET, along2, 0.9)]
    images = [
        image((TIP, tip1, 0.45), (BASE, base1, 0.5), *spikelets[:1]),  # one ear of faint ends
        image((TIP, tip1, 0.7), (BASE, base1, 0.7), (TIP, tip2, 0.9), *spikelets),  # ear 2's base missed
        image((TIP, tip2, 0.6), (BASE, base2, 0.6), (BASE, (10, 200), 0.6), *spikelets[1:]),  # a stray base
    ]
    chosen, scores = choose_ear_thresholds(
        images, [1, 2, 1], candidates=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8], tip=TIP, base=BASE, spikelet=SPIKELET,
        spikelet_threshold=0.5,
    )  # fmt: skip
    # exact everywhere needs pairs from 0.4 or lower (the faint ear) and singles above 0.6 (the stray base) but
    # below 0.9 (ear 2's lone tip): pair 0.3, single 0.6, the lowest of the exact choices
    assert (chosen.pair_threshold, chosen.single_threshold) == (0.3, 0.6)
    assert scores == {"count_accuracy": 1.0, "count_mae": 0.0}
    np.testing.assert_array_equal(chosen.counts(images), [1, 2, 1])


def test_impossible_settings_are_refused():
    with pytest.raises(ValueError, match="pair_threshold must be at least 0 and at most single_threshold"):
        counter(pair_threshold=0.9, single_threshold=0.5)
    with pytest.raises(ValueError, match=r"radius must be above 0 and min_support in \(0, 1\]"):
        counter(min_support=0)
