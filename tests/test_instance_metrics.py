"""The CVPPP leaf metrics on hand-worked label images, and the soft-IoU Hungarian matching against brute force."""

import itertools

from kapps.instance_metrics import (
    best_dice,
    count_difference,
    dice_matrix,
    foreground_dice,
    leaf_scores,
    masks_to_labels,
    match_instances,
    matched_soft_iou,
    soft_iou_matrix,
    symmetric_best_dice,
)

import numpy as np
import pytest
import tensorflow as tf

# A big leaf of 6 pixels and a small one of 2; the prediction merges them into one leaf of 8 pixels.
TRUTH = np.array([[1, 1, 1, 1, 1, 1, 2, 2]])
MERGED = np.ones((1, 8), np.int64)


def test_symmetric_best_dice_is_the_minimum_of_the_two_directions_not_the_maximum():
    """Dice(merged, big) = 2*6/(8+6) = 6/7 and Dice(merged, small) = 2*2/(8+2) = 2/5. BD(merged, truth): the one
    predicted leaf's best is 6/7. BD(truth, merged): the big leaf's best is 6/7, the small one's 2/5, so
    (6/7 + 2/5) / 2 = 22/35. SBD is the smaller, 22/35 = 0.6286; taking the maximum would give 6/7 = 0.8571."""
    np.testing.assert_allclose(dice_matrix(MERGED, TRUTH), [[6 / 7, 2 / 5]])
    assert best_dice(MERGED, TRUTH) == pytest.approx(6 / 7)
    assert best_dice(TRUTH, MERGED) == pytest.approx(22 / 35)
    assert symmetric_best_dice(TRUTH, MERGED) == pytest.approx(22 / 35)
    assert symmetric_best_dice(MERGED, TRUTH) == pytest.approx(22 / 35)  # symmetric in its arguments


def test_a_two_dimensional_case_with_background_worked_by_hand():
    """Truth: leaves of 4 pixels each. Prediction: leaf A of 5 pixels covering truth leaf 1 and one background
    pixel, leaf B of 2 pixels inside truth leaf 2. Dice(A, 1) = 8/9, Dice(B, 2) = 4/6, cross pairs 0, so both
    directions give (8/9 + 2/3) / 2 = 7/9. Foregrounds: 8 and 7 pixels, 6 shared, FBD = 12/15."""
    truth = np.array([[1, 1, 0, 0], [1, 1, 2, 2], [0, 0, 2, 2]])
    predicted = np.array([[4, 4, 4, 0], [4, 4, 9, 0], [0, 0, 9, 0]])
    np.testing.assert_allclose(dice_matrix(predicted, truth), [[8 / 9, 0.0], [0.0, 2 / 3]])
    assert symmetric_best_dice(truth, predicted) == pytest.approx(7 / 9)
    assert foreground_dice(truth, predicted) == pytest.approx(0.8)
    assert count_difference(truth, predicted) == 0


def test_label_values_need_not_be_consecutive():
    truth = np.array([[1, 1, 0, 2, 2, 3]])
    relabelled = np.array([[40, 40, 0, 7, 7, 1000]])
    assert symmetric_best_dice(truth, relabelled) == 1.0
    assert foreground_dice(truth, relabelled) == 1.0 and count_difference(truth, relabelled) == 0


def test_count_difference_is_predicted_minus_true():
    truth = np.array([[1, 1, 2, 2, 0, 0]])
    assert count_difference(truth, np.array([[1, 2, 3, 3, 0, 0]])) == 1
    assert count_difference(truth, np.array([[5, 5, 5, 5, 0, 0]])) == -1


def test_empty_label_images_follow_the_stated_conventions():
    truth = np.array([[1, 1, 2, 0]])
    empty = np.zeros((1, 4), np.int32)
    assert best_dice(empty, truth) == 0.0 and best_dice(truth, empty) == 0.0
    assert symmetric_best_dice(truth, empty) == 0.0
    assert foreground_dice(truth, empty) == 0.0
    assert count_difference(truth, empty) == -2
    assert symmetric_best_dice(empty, empty) == 0.0  # BD of an image with no leaf is 0, as in CVPPP's code
    assert foreground_dice(empty, empty) == 1.0  # nothing to find, nothing found
    assert count_difference(empty, empty) == 0


def test_leaf_scores_report_the_mean_and_deviation_of_each_metric():
    truth_2d = np.array([[1, 1, 0, 0], [1, 1, 2, 2], [0, 0, 2, 2]])
    predicted_2d = np.array([[4, 4, 4, 0], [4, 4, 9, 0], [0, 0, 9, 0]])
    scores = leaf_scores([TRUTH, truth_2d], [MERGED, predicted_2d])
    sbd = [22 / 35, 7 / 9]
    fbd = [1.0, 0.8]
    assert scores["images"] == 2
    assert scores["sbd"] == pytest.approx(np.mean(sbd)) and scores["sbd_std"] == pytest.approx(np.std(sbd))
    assert scores["fbd"] == pytest.approx(0.9) and scores["fbd_std"] == pytest.approx(np.std(fbd))
    assert scores["dic"] == -0.5 and scores["abs_dic"] == 0.5 and scores["dic_std"] == 0.5
    assert leaf_scores([], [])["sbd"] is None


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        symmetric_best_dice(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="label image"):
        best_dice(np.zeros((2, 2), np.float32), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="pair up"):
        leaf_scores([TRUTH], [])


def test_masks_become_labels_by_the_largest_step_above_the_threshold():
    masks = np.array(
        [
            [[0.9, 0.6, 0.1, 0.0]],
            [[0.2, 0.7, 0.4, 0.0]],
            [[0.0, 0.0, 0.45, 0.55]],
        ]
    )
    np.testing.assert_array_equal(masks_to_labels(masks), [[1, 2, 0, 3]])
    np.testing.assert_array_equal(masks_to_labels(masks, count=2), [[1, 2, 0, 0]])
    np.testing.assert_array_equal(masks_to_labels(masks, threshold=0.4), [[1, 2, 3, 3]])
    np.testing.assert_array_equal(masks_to_labels(masks, count=0), [[0, 0, 0, 0]])


def test_soft_iou_by_hand():
    """p = [0.5, 1, 0, 0], y = [1, 1, 0, 0]: overlap 1.5, union 1.5 + 2 - 1.5 = 2, soft IoU 0.75; with y2 =
    [0, 0, 1, 1] the overlap is 0; two empty masks score 0."""
    predicted = np.array([[[0.5, 1.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0]]])
    truth = np.array([[[1, 1, 0, 0]], [[0, 0, 1, 1]], [[0, 0, 0, 0]]])
    np.testing.assert_allclose(soft_iou_matrix(predicted, truth), [[0.75, 0.0, 0.0], [0.0, 0.0, 0.0]])


def best_total(iou, steps, leaves):
    """The largest total IoU over every pairing of min(steps, leaves) distinct steps and leaves (brute force)."""
    k = min(steps, leaves)
    return max(
        sum(iou[s, n] for s, n in zip(chosen_steps, chosen_leaves, strict=True))
        for chosen_steps in itertools.permutations(range(steps), k)
        for chosen_leaves in itertools.combinations(range(leaves), k)
    )


@pytest.mark.parametrize(("steps", "leaves"), [(4, 3), (3, 5), (4, 4)])
def test_hungarian_matching_finds_the_best_total_soft_iou(steps, leaves):
    generator = np.random.default_rng(steps * 10 + leaves)
    predicted = generator.random((steps, 6, 6))
    truth = (generator.random((leaves, 6, 6)) > 0.6).astype(np.uint8)
    rows, cols = match_instances(predicted, truth)
    iou = soft_iou_matrix(predicted, truth)
    assert len(rows) == len(set(rows)) == min(steps, leaves) == len(set(cols))
    assert iou[rows, cols].sum() == pytest.approx(best_total(iou, steps, leaves))


def test_hungarian_matching_beats_greedy_on_a_crossed_case():
    """Step 0 overlaps leaf 0 (IoU 3/4) more than leaf 1 (1/5), and step 1 overlaps only leaf 0 (2/3): greedy,
    taking the largest IoU first, pairs step 0 with leaf 0 and step 1 with leaf 1 (total 3/4); the best pairing
    crosses them (1/5 + 2/3 = 13/15)."""
    truth = np.array([[[1, 1, 1, 0, 0, 0]], [[0, 0, 0, 1, 1, 0]]])
    predicted = np.array([[[1, 1, 1, 1, 0, 0]], [[1, 1, 0, 0, 0, 0]]], np.float64)
    iou = soft_iou_matrix(predicted, truth)
    np.testing.assert_allclose(iou, [[3 / 4, 1 / 5], [2 / 3, 0.0]])
    rows, cols = match_instances(predicted, truth)
    assert list(zip(rows, cols, strict=True)) == [(0, 1), (1, 0)]


def test_the_tensorflow_matching_agrees_with_numpy_within_each_count_and_passes_gradients():
    generator = np.random.default_rng(7)
    predicted = generator.random((2, 4, 5, 5)).astype(np.float32)
    truth = (generator.random((2, 5, 5, 5)) > 0.5).astype(np.uint8)
    counts = np.array([3, 5], np.int32)
    truth[0, 3:] = 0  # padding rows past the first image's count

    variable = tf.Variable(predicted)
    with tf.GradientTape() as tape:
        iou, steps = tf.function(matched_soft_iou)(variable, truth, counts)
        total = tf.reduce_sum(iou)
    iou, steps, gradient = iou.numpy(), steps.numpy(), tape.gradient(total, variable).numpy()

    # Image 0: its 3 leaves matched among its first 3 steps; step 3 takes no part and gets no gradient.
    rows, cols = match_instances(predicted[0, :3], truth[0, :3])
    assert list(steps[0]) == [*(rows[np.argsort(cols)]), -1, -1]
    np.testing.assert_allclose(iou[0, :3], soft_iou_matrix(predicted[0], truth[0])[steps[0, :3], [0, 1, 2]], rtol=1e-5)
    assert list(iou[0, 3:]) == [0.0, 0.0]
    assert np.all(gradient[0, 3] == 0) and np.any(gradient[0, :3] != 0)
    # Image 1: 5 leaves and 4 steps, every step matched to one leaf and one leaf left out.
    rows, cols = match_instances(predicted[1], truth[1])
    assert sorted(steps[1]) == [-1, 0, 1, 2, 3]
    for s, n in zip(rows, cols, strict=True):
        assert steps[1, n] == s
    assert iou[1].sum() == pytest.approx(soft_iou_matrix(predicted[1], truth[1])[rows, cols].sum(), rel=1e-5)
    assert np.all(np.isfinite(gradient))
