"""Point metrics on hand-made point sets with known answers: Hungarian pairing, precision / recall / F1, PCK with
image and per-object reference sizes, counting, and HeatmapPeaks outputs read as pixels."""

from kapps.keypoints import choose_thresholds, count_scores, match_points, pck, point_scores, points_from_outputs

import numpy as np
import pytest


def image(*rows):
    """Points from (x, y, type) rows."""
    rows = np.array(rows, "float64").reshape(-1, 3)
    return {"points": rows[:, :2], "types": rows[:, 2].astype(int)}


def test_hungarian_pairing_keeps_the_most_pairs_within_the_radius():
    # truth A=(0, 0), B=(4, 0); predictions p=(2.5, 0) (nearest to B, 1.5 away) and q=(-2, 0) (2 from A).
    # Greedy nearest-first would pair p-B then q-A: 2 pairs. Move p to (1.9, 0), nearest to A (1.9 < 2.1):
    # greedy takes p-A and leaves q and B unpaired (6 apart); Hungarian pairs p-B (2.1) and q-A (2).
    truth = np.array([[0.0, 0.0], [4.0, 0.0]])
    predicted = np.array([[1.9, 0.0], [-2.0, 0.0]])
    assert sorted(match_points(predicted, truth, radius=2.5)) == [(0, 1), (1, 0)]
    # p-B is 2.1: p and q are both within reach of A only, and the nearer, p (1.9), takes it
    assert match_points(predicted, truth, radius=2.05) == [(0, 0)]
    assert match_points(np.zeros((0, 2)), truth, radius=3) == []
    # among pairings of as many pairs, the least total distance
    assert sorted(match_points(np.array([[0.5, 0.0], [3.0, 0.0]]), truth, radius=5)) == [(0, 0), (1, 1)]
    # a radius per true point
    assert match_points(np.array([[0.0, 1.0], [4.0, 1.0]]), truth, radius=np.array([0.5, 1.0])) == [(1, 1)]


def test_precision_recall_and_f1_per_type():
    truths = [image((10, 10, 0), (20, 10, 0), (30, 30, 1)), image((5, 5, 1))]
    predictions = [
        image((11, 10, 0), (40, 40, 0), (30, 32, 1)),  # type 0: one found, one false; type 1: found (2 px)
        image((5, 9, 1), (50, 50, 0)),  # type 1 at 4 px: missed at r = 3, and a false one; type 0: a false one
    ]
    scores = point_scores(predictions, truths, radius=3, num_types=2)
    t0, t1 = scores["per_type"]
    assert (t0["true_positives"], t0["false_positives"], t0["false_negatives"]) == (1, 2, 1)
    assert (t1["true_positives"], t1["false_positives"], t1["false_negatives"]) == (1, 1, 1)
    assert t0["precision"] == pytest.approx(1 / 3) and t0["recall"] == pytest.approx(1 / 2)
    assert t0["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert scores["precision"] == pytest.approx(2 / 5) and scores["recall"] == pytest.approx(2 / 4)
    assert point_scores(predictions, truths, radius=4, num_types=2)["per_type"][1]["recall"] == 1.0
    # a type with nothing predicted and nothing true is perfect, nothing predicted for true points has recall 0
    empty = point_scores([image()], [image((1, 1, 0))], radius=3, num_types=2)["per_type"]
    assert (empty[0]["precision"], empty[0]["recall"], empty[0]["f1"]) == (1.0, 0.0, 0.0)
    assert (empty[1]["precision"], empty[1]["recall"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="one entry per image"):
        point_scores(predictions, truths[:1], radius=3, num_types=2)
    with pytest.raises(ValueError, match="radius must be"):
        point_scores(predictions, truths, radius=-1, num_types=2)


def test_pck_with_the_image_size_and_with_object_sizes():
    truths = [image((10, 10, 0), (50, 50, 1)), image((20, 20, 0))]
    predictions = [image((13, 10, 0), (50, 56, 1)), image((20, 24, 0), (90, 90, 1))]
    # image size 100 px, alpha 0.05: within 5 px. Found: (10, 10) at 3, (20, 20) at 4; missed (50, 50) at 6
    result = pck(predictions, truths, alpha=0.05, reference=100)
    assert result == {"pck": pytest.approx(2 / 3), "per_type": [1.0, 0.0], "points": 3}
    # one size per image, 100 and 20 px: within 10 px in image 0 (both found), 2 px in image 1 (4 px: missed)
    assert pck(predictions, truths, alpha=0.1, reference=[100, 20])["per_type"] == [0.5, 1.0]
    assert pck(predictions, truths, alpha=0.1, reference=[100, 20])["pck"] == pytest.approx(2 / 3)
    # one size per true point (each object's box): 40 and 100 px in image 0, 30 in image 1, at alpha 0.1
    per_point = pck(predictions, truths, alpha=0.1, reference=[np.array([40.0, 100.0]), np.array([30.0])])
    # within 4 px: (10, 10) at 3 found; within 10: (50, 50) at 6 found; within 3: (20, 20) at 4 missed
    assert per_point["per_type"] == [0.5, 1.0] and per_point["pck"] == pytest.approx(2 / 3)
    assert pck(predictions, truths, alpha=0.1, reference=[np.array([20.0, 50.0]), np.array([50.0])])["pck"] == 1 / 3
    assert pck([image()], [image()], alpha=0.1, reference=10)["pck"] is None
    with pytest.raises(ValueError, match="alpha must be positive"):
        pck(predictions, truths, alpha=0, reference=100)
    with pytest.raises(ValueError, match="one per image"):
        pck(predictions, truths, alpha=0.1, reference=[100])


def test_counting():
    result = count_scores([3, 5, 4, 0], [3, 4, 6, 0])
    assert result == {"count_accuracy": 0.5, "count_mae": 0.75, "count_relative_error": pytest.approx(3 / 13)}
    per_type = count_scores([[1, 10], [2, 12]], [[1, 11], [2, 12]])
    assert per_type["count_accuracy"] == [1.0, 0.5] and per_type["count_mae"] == [0.0, 0.5]
    assert count_scores([0, 1], [0, 0])["count_relative_error"] is None  # nothing to count
    with pytest.raises(ValueError, match="one shape"):
        count_scores([1, 2], [1])


def test_points_from_heatmap_peaks_outputs_in_pixels():
    outputs = {
        "points": np.array([[[[0.5, 0.25], [0.1, 0.1], [0.0, 0.0]], [[0.75, 1.0], [0.0, 0.0], [0.0, 0.0]]]]),
        "scores": np.array([[[0.9, 0.4, 0.0], [0.8, 0.0, 0.0]]]),
        "num_points": np.array([[2, 1]]),
    }
    (found,) = points_from_outputs(outputs, width=200, height=100)
    np.testing.assert_allclose(found["points"], [[100, 25], [20, 10], [150, 100]])
    np.testing.assert_array_equal(found["types"], [0, 0, 1])
    np.testing.assert_allclose(found["scores"], [0.9, 0.4, 0.8])


def test_each_type_gets_its_threshold_of_best_f1():
    """Type 0: true points at x = 10, 20, 30; detections there scoring 0.9, 0.8, 0.35 and false ones scoring 0.5
    and 0.4. Above 0.3 all five are kept (F1 2 * 3/5 * 1 / (3/5 + 1) = 0.75); above 0.35, the first two and both
    false ones (F1 0.571); above 0.5 only the two true ones left (F1 0.8); above 0.8 one (0.5). Best: 0.5. Type 1:
    a true point found at 0.2 and nothing false, so the lowest candidate keeping it, 0.1, wins its tie with 0.15."""

    def scored(*rows):
        rows = np.array(rows, "float64").reshape(-1, 4)
        return {"points": rows[:, :2], "types": rows[:, 2].astype(int), "scores": rows[:, 3]}

    predictions = [
        scored((10, 0, 0, 0.9), (20, 0, 0, 0.8), (60, 0, 0, 0.5)),
        scored((30, 0, 0, 0.35), (70, 0, 0, 0.4), (5, 5, 1, 0.2)),
    ]
    truths = [image((10, 0, 0), (20, 0, 0)), image((30, 0, 0), (5, 6, 1))]
    candidates = [0.1, 0.15, 0.3, 0.35, 0.5, 0.8]
    t0, t1 = choose_thresholds(predictions, truths, radius=3, num_types=2, candidates=candidates)
    assert t0 == {"threshold": 0.5, "precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8)}
    assert t1 == {"threshold": 0.1, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    # a threshold keeps points scoring strictly more: at 0.2 alone type 1's point is gone
    ((_, only),) = [choose_thresholds(predictions, truths, radius=3, num_types=2, candidates=[0.2])]
    assert (only["recall"], only["f1"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least one threshold"):
        choose_thresholds(predictions, truths, radius=3, num_types=2, candidates=[])
